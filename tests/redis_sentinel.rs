//! Redis behind Sentinel, with a failover: a master and a replica with a password, and three
//! sentinels with a password of their own, all processes of ours on free ports. Two
//! example-server processes share one exact budget on the master; the master is killed; every
//! request meanwhile is answered by the failure policy within the timeout; once the sentinels
//! promote the replica, both processes decide on it again, by themselves.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{count, data, free_port, ExampleServer};

const PASSWORD: &str = "master-pw-51c2";
const SENTINEL_PASSWORD: &str = "sentinel-pw-9e07";
const MASTER: &str = "ratelimit-master";

/// A `redis-server` or `redis-sentinel` process of ours.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn cli(&self, password: &str, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-a", password, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, its replica and three sentinels.
struct Deployment {
    dir: PathBuf,
    master: Process,
    replica: Process,
    sentinels: Vec<Process>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            sentinel.kill();
        }
        self.master.kill();
        self.replica.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis(dir: &std::path::Path, replica_of: Option<u16>) -> Process {
    let port = free_port();
    let data = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&data).unwrap();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", data.to_str().unwrap()])
        .args(["--requirepass", PASSWORD, "--masterauth", PASSWORD]);
    if let Some(master) = replica_of {
        command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh installs it)");
    let process = Process { child, port };
    until("redis-server starts", Duration::from_secs(10), || {
        process.cli(PASSWORD, &["PING"]).trim() == "PONG"
    });
    process
}

fn sentinel(dir: &std::path::Path, master: u16) -> Process {
    let port = free_port();
    let config = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nrequirepass {SENTINEL_PASSWORD}\n\
             sentinel sentinel-pass {SENTINEL_PASSWORD}\n\
             sentinel monitor {MASTER} 127.0.0.1 {master} 2\n\
             sentinel auth-pass {MASTER} {PASSWORD}\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 10000\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-sentinel")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-sentinel is installed (scripts/test.sh installs it)");
    let process = Process { child, port };
    until("redis-sentinel starts", Duration::from_secs(10), || {
        process.cli(SENTINEL_PASSWORD, &["PING"]).trim() == "PONG"
    });
    process
}

impl Deployment {
    fn start() -> Deployment {
        let dir = std::env::temp_dir().join(format!("ratelimit-sentinel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let master = redis(&dir, None);
        let replica = redis(&dir, Some(master.port));
        until("the replica syncs", Duration::from_secs(20), || {
            replica
                .cli(PASSWORD, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels: Vec<Process> = (0..3).map(|_| sentinel(&dir, master.port)).collect();
        let deployment = Deployment {
            dir,
            master,
            replica,
            sentinels,
        };
        // Each sentinel knows the replica and the other two: a failover can be agreed on.
        until(
            "the sentinels find each other",
            Duration::from_secs(30),
            || {
                deployment.sentinels.iter().all(|s| {
                    let info = s.cli(SENTINEL_PASSWORD, &["SENTINEL", "MASTER", MASTER]);
                    let field = |name: &str| {
                        let lines: Vec<&str> = info.lines().map(str::trim).collect();
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .map(|v| v.to_string())
                    };
                    field("num-other-sentinels").as_deref() == Some("2")
                        && field("num-slaves").as_deref() == Some("1")
                })
            },
        );
        deployment
    }

    fn sentinel_urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first sentinel names it.
    fn named_master(&self) -> Option<u16> {
        let answer = self.sentinels[0].cli(
            SENTINEL_PASSWORD,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// Decisions `server` made on Redis so far, from its metrics.
fn on_redis(server: &ExampleServer) -> f64 {
    // Every series with store="redis", whatever the rule and the outcome.
    server.metric_where("ratelimit_decisions_total", "store=\"redis\"")
}

#[actix_web::test]
async fn two_processes_follow_the_master_through_a_failover() {
    let mut deployment = Deployment::start();
    let sentinels = deployment.sentinel_urls();
    // The master's own password, in the URL form of its name; the sentinels' in theirs.
    let master = format!("redis://:{PASSWORD}@{MASTER}");
    let env = [
        ("REDIS_SENTINEL_URLS", sentinels.as_str()),
        ("REDIS_SENTINEL_MASTER", master.as_str()),
        ("RATELIMIT_KEY_SECRET", "sentinel-fleet"),
    ];
    let log = deployment.dir.join("a.log");
    let (a, b) = (
        ExampleServer::start_logged(&env, &log),
        ExampleServer::start_with(&env),
    );
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while on_redis(server) == 0.0 {
            assert!(Instant::now() < deadline, "never decided on the master");
            data(&[server], "warm-up", 1).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // /data: 10 per 10 s per API key, across both processes, on the master.
    let statuses = data(&[&a, &b], "before", 30).await;
    let spent = Instant::now();
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 20));
    // Replicated (`WAIT`): what a failover loses is only what the replica has not received.
    assert_eq!(
        deployment
            .master
            .cli(PASSWORD, &["WAIT", "1", "2000"])
            .trim(),
        "1"
    );

    // And 10 more units, spent just before the master dies, without waiting for the replica:
    // what the failover loses of them is measured below.
    let burst = data(&[&a, &b], "burst", 10).await;
    assert_eq!(count(&burst, 200), 10);

    let old = deployment.master.port;
    let killed = Instant::now();
    deployment.master.kill();
    // Until the promotion and after: every request answered by the policy (the fallback
    // limits in each process's memory), each within the Redis timeout, never an error.
    let mut slowest = Duration::ZERO;
    let mut promoted = None;
    let mut back = [None, None];
    let mut round = 0;
    while back.iter().any(Option::is_none) {
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "after {:?}: promoted {promoted:?}, back on Redis {back:?}",
            killed.elapsed()
        );
        if promoted.is_none() && deployment.named_master().is_some_and(|port| port != old) {
            promoted = Some(killed.elapsed());
        }
        for (i, server) in [&a, &b].into_iter().enumerate() {
            let before = on_redis(server);
            let started = Instant::now();
            let status = client()
                .get(server.url("/data"))
                .insert_header(("X-API-Key", format!("during-{round}-{i}")))
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16();
            slowest = slowest.max(started.elapsed());
            assert_eq!(status, 200, "a fresh key passes, on Redis or the fallback");
            if back[i].is_none() && promoted.is_some() && on_redis(server) > before {
                back[i] = Some(killed.elapsed());
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted = promoted.expect("promoted before both were back");
    eprintln!(
        "failover: promoted after {promoted:?}, processes back on Redis after {back:?}, \
         slowest request {slowest:?} over {round} rounds"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "each request answered within the timeout (50 ms) and the server's own time: {slowest:?}"
    );
    for at in back.into_iter().flatten() {
        assert!(
            at < promoted + Duration::from_secs(5),
            "back on Redis within a few seconds of the promotion: {at:?} (promoted {promoted:?})"
        );
    }
    // On the new master, asked by a third process (the first two answer the keys they saw
    // refused from their own cache of denials): the budget spent before the failover was
    // replicated. Its entries live 10 s: this must run before they would expire anyway.
    let c = ExampleServer::start_with(&env);
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_redis(&c) == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the third process never decided on Redis"
        );
        data(&[&c], "warm-up-c", 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        spent.elapsed() < Duration::from_secs(9),
        "the failover took too long to check what it kept: {:?}",
        spent.elapsed()
    );
    let statuses = data(&[&c], "before", 10).await;
    assert_eq!(
        count(&statuses, 200),
        0,
        "nothing spent before the failover was lost"
    );
    // Replication is asynchronous: units of the last moments may be lost (passing again now).
    let lost = count(&data(&[&c], "burst", 10).await, 200);
    eprintln!("failover: {lost} of the 10 units spent just before the master died were lost");
    // And the two processes share one exact budget again.
    let statuses = data(&[&a, &b], "after", 30).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 20));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("moved from") && !logged.contains(PASSWORD),
        "the move is logged, without the password: {logged}"
    );
    assert!(deployment
        .replica
        .cli(PASSWORD, &["ROLE"])
        .starts_with("master"));
}
