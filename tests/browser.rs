//! The example server's `/demo` in a real browser: Debian's `chromium`, headless, driven
//! through the DevTools protocol (over awc's WebSocket client). `/demo?run=15&key=K` sends 15
//! requests to `/data` (10 per 10 s per key) through `ratelimit.js`'s `fetchWithRetry`: all end
//! 200, the run takes at least the window (the last five waited for it), and the server refused
//! at most 2 (the pacing works). The test saves a screenshot of the page after the burst to
//! `target/demo.png`. Also runs the unit tests of `ratelimit.js` with `node --test`.
//!
//! `scripts/test.sh` installs `chromium` and `nodejs` where missing; a machine without them
//! (and no way to install them) skips these tests with a message saying so.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::ExampleServer;

fn found(program: &str) -> Option<PathBuf> {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?;
    let path = path.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// A headless chromium, ended by its id when dropped.
struct Browser {
    child: Child,
    /// The browser's DevTools WebSocket URL.
    devtools: String,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    fn start(chromium: &Path) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("ratelimit-chromium-{}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1100,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let devtools = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium's DevTools endpoint within 30 s");
        Browser {
            child,
            devtools,
            _profile: tempdir::Dir(profile),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One DevTools session: commands in, their results out (events are skipped).
struct DevTools {
    socket: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    next_id: u64,
}

impl DevTools {
    async fn connect(url: &str) -> DevTools {
        let (_, socket) = awc::Client::new()
            .ws(url)
            .max_frame_size(64 << 20)
            .connect()
            .await
            .expect("the DevTools WebSocket");
        DevTools { socket, next_id: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        let mut text = Vec::new();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("an answer from the browser")
                .expect("the socket open")
                .expect("a frame");
            let done = match frame {
                Frame::Text(bytes) => {
                    text.clear();
                    text.extend_from_slice(&bytes);
                    true
                }
                Frame::Continuation(item) => {
                    use actix_http::ws::Item;
                    match item {
                        Item::FirstText(b) | Item::FirstBinary(b) => {
                            text.clear();
                            text.extend_from_slice(&b);
                            false
                        }
                        Item::Continue(b) => {
                            text.extend_from_slice(&b);
                            false
                        }
                        Item::Last(b) => {
                            text.extend_from_slice(&b);
                            true
                        }
                    }
                }
                _ => false,
            };
            if !done {
                continue;
            }
            let message: Value = serde_json::from_slice(&text).expect("JSON from the browser");
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// The value of `expression` in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }
}

#[actix_web::test]
async fn the_demo_page_paces_a_burst_in_a_real_browser() {
    let Some(chromium) = found("chromium") else {
        eprintln!(
            "SKIPPED: no chromium on this machine (scripts/test.sh installs Debian's chromium)"
        );
        return;
    };
    let server = ExampleServer::start();
    let browser = Browser::start(&chromium);
    let mut session = DevTools::connect(&browser.devtools).await;
    let target = session
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let page_url = browser
        .devtools
        .replace("/devtools/browser/", "/devtools/page/")
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{}", target["targetId"].as_str().unwrap()))
        .unwrap();
    let mut page = DevTools::connect(&page_url).await;
    page.call("Page.enable", json!({})).await;
    let key = format!("browser-{}", std::process::id());
    let started = Instant::now();
    page.call(
        "Page.navigate",
        json!({"url": server.url(&format!("/demo?run=15&key={key}"))}),
    )
    .await;
    let deadline = started + Duration::from_secs(60);
    while page
        .eval("document.body && document.body.dataset.done")
        .await
        != "1"
    {
        assert!(Instant::now() < deadline, "the run never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let log = page
        .eval("document.getElementById('log').textContent")
        .await;
    let lines: Vec<&str> = log.as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 15, "{log}");
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[..2], [i.to_string().as_str(), "200"], "{log}");
    }
    assert!(
        took >= Duration::from_secs(10),
        "the last five waited for the window: {took:?}"
    );
    let refused = server.data_refusals();
    assert!(
        refused <= 2,
        "{refused} requests were refused: the pacing did not hold them"
    );

    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // In the checkout's target/ even when the build's target directory is elsewhere.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).unwrap();
    eprintln!(
        "the page after the burst: {} ({took:?}, {refused} refused)",
        path.display()
    );
}

#[test]
fn ratelimit_js_unit_tests_pass_under_node() {
    let Some(node) = found("node").or_else(|| found("nodejs")) else {
        eprintln!("SKIPPED: no node on this machine (scripts/test.sh installs Debian's nodejs)");
        return;
    };
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let output = Command::new(node)
        .args(["--test", "ratelimit.test.js"])
        .current_dir(&demo)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node --test failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}
