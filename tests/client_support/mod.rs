//! What the client tests share: the example server as a process of our own, a tiny scripted
//! HTTP server, and the numbers of the ideal schedule on `/data`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `/data` of the example server: 10 requests per 10 s per API key, sliding log. 30 requests
/// then go in three rounds of 10, at 0 s, 10 s and 20 s: the ideal run lasts 20 s, and a paced
/// client must finish within 10 % of it.
pub const REQUESTS: usize = 30;
pub const TASKS: usize = 4;
pub const IDEAL: Duration = Duration::from_secs(20);
/// The server may refuse this many requests in total, no more.
pub const MAX_429S: u64 = 2;

/// Sleeps until `phase` past a whole second of the system clock.
///
/// The server announces resets in whole Unix seconds, rounded up, and a paced client waits for
/// the announced second: each later round then starts up to a second after the window really
/// ends, and where within its second a run starts decides whether 30 requests take 21 s or
/// 22 s (the second and third rounds start on a whole second, the first does not). Starting
/// at a fixed phase makes the figure the same on every run: 21.5 s from half a second in.
pub fn start_at_phase(phase: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
    let wait = if into_second <= phase {
        phase - into_second
    } else {
        Duration::from_secs(1) - into_second + phase
    };
    std::thread::sleep(wait);
}

/// Whether `elapsed` is within 10 % of the ideal schedule.
pub fn within_ten_percent(elapsed: Duration) -> bool {
    elapsed >= IDEAL.mul_f64(0.9) && elapsed <= IDEAL.mul_f64(1.1)
}

/// An API key no other test (or earlier run) uses, so that budgets never mix.
pub fn api_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{test}-{}-{nanos}", std::process::id())
}

/// `requests` requests sent by `tasks` concurrent tasks that share the work, each sending its
/// next request when its last is answered; every status, in no particular order.
pub async fn from_tasks<F, R>(tasks: usize, requests: usize, send: F) -> Vec<u16>
where
    F: Fn() -> R,
    R: std::future::Future<Output = u16>,
{
    let left = AtomicUsize::new(requests);
    let take = || {
        left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    let one_task = || async {
        let mut statuses = Vec::new();
        while take() {
            statuses.push(send().await);
        }
        statuses
    };
    let all = futures_util::future::join_all((0..tasks).map(|_| one_task())).await;
    all.into_iter().flatten().collect()
}

// The example server and free ports, shared with the other integration tests.
#[path = "../support/mod.rs"]
mod support;
// Each test uses some of them.
#[allow(unused_imports)]
pub use support::{binary, example_binary, ExampleServer};

/// A one-thread HTTP/1.1 server that answers its first `refusals` requests with
/// `429` and `Retry-After: 1`, and every later one with `200`. It counts the requests it got.
pub struct ScriptedServer {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
}

impl ScriptedServer {
    pub fn start(refusals: usize) -> ScriptedServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        // The thread ends with the test process; it only ever serves this test.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let hit = counter.fetch_add(1, Ordering::SeqCst);
                let _ = answer(stream, hit < refusals);
            }
        });
        ScriptedServer { port, hits }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/orders", self.port)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `Content-Length` body) and answers it, closing the connection.
fn answer(stream: TcpStream, refuse: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let response = if refuse {
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    } else {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    };
    let mut stream = stream;
    stream.write_all(response.as_bytes())?;
    stream.flush()
}
