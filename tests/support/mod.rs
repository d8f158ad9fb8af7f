//! Redis servers the tests start and own: on free ports of 127.0.0.1, in a temporary
//! directory, stopped (by their process id) when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process of our own.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a standalone server.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("ratelimit-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL to our own child) and waits for it to go.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Freezes the server (SIGSTOP to our own child): connections stay open and nothing is
    /// answered, as when Redis stalls.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

/// Script and function calls (`EVAL`, `EVALSHA`, `FCALL`) counted in the output of
/// `INFO commandstats`.
pub fn script_calls_in(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter(|l| {
            ["cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_fcall:"]
                .iter()
                .any(|name| l.starts_with(name))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

impl RedisServer {
    /// Script and function calls (`EVAL`, `EVALSHA`, `FCALL`) the server has served so far.
    pub fn script_calls(&self) -> u64 {
        script_calls_in(&self.cli(&["INFO", "commandstats"]))
    }

    /// Redis's own clock, in seconds since the Unix epoch.
    pub fn time_secs(&self) -> u64 {
        let time = self.cli(&["TIME"]);
        time.lines()
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("TIME")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        nodes[0].cli(&create);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// An example built beside this test's: target/debug/examples/<name>.
pub fn example_binary(name: &str) -> PathBuf {
    built("examples", name, "cargo build --examples")
}

/// A binary of a workspace crate built beside this test's: target/debug/<name>.
#[allow(dead_code)]
pub fn binary(name: &str) -> PathBuf {
    built("", name, "cargo build --workspace --bins --all-features")
}

fn built(kind: &str, name: &str, how: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug/deps/<test>");
    let path = debug.join(kind).join(name);
    assert!(
        path.exists(),
        "{} is not built: run `{how}` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The example server as a process of our own, killed (by its id) when dropped.
pub struct ExampleServer {
    child: Child,
    pub port: u16,
}

impl ExampleServer {
    /// In memory, whatever the environment says.
    pub fn start() -> ExampleServer {
        ExampleServer::start_with(&[])
    }

    /// With these environment variables (`REDIS_URL`, ...).
    pub fn start_with(env: &[(&str, &str)]) -> ExampleServer {
        ExampleServer::spawn(env, Stdio::null(), Stdio::null())
    }

    /// With these environment variables, all it prints (its banner, warnings and errors)
    /// written to `log`.
    pub fn start_logged(env: &[(&str, &str)], log: &std::path::Path) -> ExampleServer {
        let file = std::fs::File::create(log).expect("the log file");
        let banner = file.try_clone().expect("the log file, again");
        ExampleServer::spawn(env, Stdio::from(banner), Stdio::from(file))
    }

    fn spawn(env: &[(&str, &str)], stdout: Stdio, stderr: Stdio) -> ExampleServer {
        let port = free_port();
        let child = Command::new(example_binary("server"))
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_URLS")
            // Whatever the shell running the tests has set: each test says what it wants.
            .env_remove("RATELIMIT_SHADOW")
            .env_remove("RATELIMIT_KEY_SECRET")
            .env_remove("RATELIMIT_OVERRIDES")
            .env_remove("RATELIMIT_TRUSTED_PROXIES")
            .env_remove("RATELIMIT_LEASES")
            .env_remove("RATELIMIT_HEADERS")
            .env_remove("RATELIMIT_REDIS_TLS_CA")
            .env_remove("RATELIMIT_REDIS_TLS_CERT")
            .env_remove("RATELIMIT_REDIS_TLS_KEY")
            .env_remove("REDIS_SENTINEL_URLS")
            .env_remove("REDIS_SENTINEL_MASTER")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the example server starts");
        let server = ExampleServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The sum of every series of `name` (with any labels) in its `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        self.metric_where(name, "")
    }

    /// The sum of the series of `name` whose line holds `labels` (`store="redis"`, say).
    pub fn metric_where(&self, name: &str, labels: &str) -> f64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("the server");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']) && rest.contains(labels))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The requests the server itself refused on `/data` so far, from its `/metrics`.
    pub fn data_refusals(&self) -> u64 {
        let refused = self.metric_where(
            "ratelimit_decisions_total",
            r#"{rule="server::data",outcome="denied",store="memory"}"#,
        );
        refused as u64
    }
}

impl ExampleServer {
    /// Kills the process at once (SIGKILL, by its id): it hands nothing back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `count` requests at once to `path`, spread over `servers` in turn, each with the
/// header `X-API-Key: key` when given; their statuses.
pub async fn send(
    servers: &[&ExampleServer],
    path: &str,
    key: Option<&str>,
    count: usize,
) -> Vec<u16> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let requests = (0..count).map(|i| {
        let mut request = client.get(servers[i % servers.len()].url(path));
        if let Some(key) = key {
            request = request.insert_header(("X-API-Key", key));
        }
        let request = request.send();
        async move {
            request
                .await
                .map(|r| r.status().as_u16())
                .expect("answered")
        }
    });
    futures_util::future::join_all(requests).await
}

/// `/data` (10 per 10 s per API key, a sliding log): `count` requests with `key`.
pub async fn data(servers: &[&ExampleServer], key: &str, count: usize) -> Vec<u16> {
    send(servers, "/data", Some(key), count).await
}

/// The sum of `name` (every series) over the `/metrics` of `servers`: a fleet's count.
pub fn fleet_metric(servers: &[&ExampleServer], name: &str) -> f64 {
    servers.iter().map(|s| s.metric(name)).sum()
}

/// How many of `statuses` are `status`.
pub fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// Two example servers started with `env` (naming `redis`), each connected to it: they connect
/// on first use, in the background.
pub async fn fleet_on(redis: &RedisServer, env: &[(&str, &str)]) -> (ExampleServer, ExampleServer) {
    let (a, b) = (
        ExampleServer::start_with(env),
        ExampleServer::start_with(env),
    );
    for server in [&a, &b] {
        until_decided(server, || redis.script_calls()).await;
    }
    (a, b)
}

/// Sends `/data` warm-up requests to `server` until `decided()` (script calls on the Redis it
/// uses, say) grows: the connection is made on first use, in the background.
pub async fn until_decided(server: &ExampleServer, decided: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = decided();
    while decided() == before {
        assert!(
            Instant::now() < deadline,
            "no decision of {} reached Redis",
            server.port
        );
        data(&[server], "warm-up", 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `App::new().app_data(limiter).service(..)...` with `workers` workers on a free port of
/// 127.0.0.1, in the background of the current Actix system; its address and handle.
#[allow(unused_macros)]
macro_rules! serve {
    ($limiter:expr, $workers:expr, $($service:expr),+ $(,)?) => {{
        let limiter = $limiter.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().app_data(limiter.clone())$(.service($service))+
        })
        .workers($workers)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (addr, handle)
    }};
}
// Each test uses some of what is here.
#[allow(unused_imports)]
pub(crate) use serve;

/// The `Retry-After` of a response, in seconds; 0 when absent.
pub fn retry_after(headers: &actix_web::http::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// A limiter on `redis` deciding on the limiter's (manual) `clock`, connected before it is
/// returned (the connection is made on first use).
pub async fn limiter_on_redis(
    redis: &RedisServer,
    clock: &ratelimit_runtime::ManualClock,
    builder: ratelimit_runtime::RateLimiterBuilder,
) -> ratelimit_runtime::RateLimiter {
    use ratelimit_runtime::store::{RedisOptions, TimeSource};
    let limiter = builder
        .ignore_env()
        .clock(clock.clone())
        .redis(redis.url())
        .redis_options(RedisOptions {
            time: TimeSource::Client,
            timeout: Duration::from_secs(2),
            ..RedisOptions::default()
        })
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter.redis_stats().unwrap().degraded || redis.script_calls() == 0 {
        assert!(Instant::now() < deadline, "never on Redis");
        let warm_up = ratelimit_runtime::Quota::from_parts(100, 60).unwrap();
        let _ = limiter.check_key(&warm_up, "warm-up", 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    limiter
}

/// The value of the series `series` (name and labels as exposed, e.g.
/// `ratelimit_penalties_total{rule="a"}`) in `limiter`'s metrics; 0 when absent.
pub fn series(limiter: &ratelimit_runtime::RateLimiter, series: &str) -> f64 {
    limiter
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The statuses of `n` requests to `app`, one after another, each made by `request`.
pub async fn statuses<S, B>(
    app: &S,
    n: usize,
    request: impl Fn() -> actix_http::Request,
) -> Vec<u16>
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let res = actix_web::test::call_service(app, request()).await;
        out.push(res.status().as_u16());
    }
    out
}
