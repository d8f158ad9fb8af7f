//! HTTP on Redis, end to end: our limiter beside actix-extensible-rate-limit's Redis backend
//! (the peer) in the same run, in three scenarios, with a server without any limiter as the
//! baseline. (Redis time per decision of each algorithm, without HTTP: `benches/redis_store.rs`.)
//!
//! `cargo bench --bench redis_http` runs 3 rounds of 6 s per configuration;
//! `cargo bench --bench redis_http -- --quick` one round of 2 s; `REDIS_HTTP_ROUNDS` and
//! `REDIS_HTTP_SECONDS` set either exactly.
//!
//! It starts its own `redis-server` on a free port, serves each configuration from this process
//! (one Actix worker) and drives it with wrk (1 thread, 64 connections), installing wrk with
//! apt-get where it is missing. This process and Redis run on core 0, wrk on core 1. The
//! configurations take turns within each round, and the table gives each one's medians:
//! requests per second, the CPU this process (server, our Redis thread, the peer's connection)
//! and Redis spent per request, and the commands Redis ran per request.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use actix_extensible_rate_limit::backend::redis::RedisBackend;
use actix_extensible_rate_limit::backend::{SimpleInputFunctionBuilder, SimpleInputFuture};
use actix_web::dev::{ServerHandle, ServiceRequest};
use actix_web::{get, App, HttpResponse, HttpServer};
use ratelimit_runtime::{ratelimit, Leases, RateLimiter, RateLimiterBuilder};

// The Redis processes the tests start and stop, shared with the benchmark.
#[path = "../tests/support/mod.rs"]
mod support;

use support::RedisServer;

#[path = "common/redis_usage.rs"]
mod redis_usage;

use redis_usage::RedisUsage;

/// Our configurations, each run in every scenario beside the peer.
const OURS: &[Ours] = &[
    Ours::new("ours", |redis| RateLimiter::builder().redis(redis)),
    Ours::new("ours, leases", |redis| {
        RateLimiter::builder()
            .redis(redis)
            .redis_leases(Leases::new())
    }),
    // Our own in-memory path, what leases aim at: no Redis at all.
    Ours::new("ours, memory", |_| RateLimiter::builder()),
    // Another is one more line; its keys in Redis stay apart from the others'.
];

/// A configuration of ours: its name and its limiter on the benchmark's Redis.
struct Ours {
    name: &'static str,
    limiter: fn(redis_url: &str) -> RateLimiterBuilder,
}

impl Ours {
    const fn new(name: &'static str, limiter: fn(&str) -> RateLimiterBuilder) -> Ours {
        Ours { name, limiter }
    }
}

const CONNECTIONS: u32 = 64;
const API_KEYS: u32 = 10_000;
/// The allowed scenarios' limit, written out in their handlers' attributes too: more than any
/// run sends, so that nothing is denied.
const NEVER_REACHED: u64 = 1_000_000_000;
const PER: Duration = Duration::from_secs(3600);

#[get("/")]
async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

// Every request comes from 127.0.0.1: one key.
#[get("/")]
#[ratelimit(limit = 1_000_000_000, per = 3600)]
async fn ours_hot_key() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/")]
#[ratelimit(limit = 1_000_000_000, per = 3600, scope = "header:x-api-key")]
async fn ours_api_keys() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/")]
#[ratelimit(limit = 1, per = 3600)]
async fn ours_denied() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

/// What the requests of a run look like to the limiter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    HotKey,
    ApiKeys,
    Denied,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::HotKey, Scenario::ApiKeys, Scenario::Denied];

    fn title(self) -> &'static str {
        match self {
            Scenario::HotKey => "one hot key, allowed",
            Scenario::ApiKeys => "10,000 API keys, allowed",
            Scenario::Denied => "every request denied",
        }
    }

    /// The peer's key and quota, the same as our handler's for this scenario.
    fn peer_input(self) -> impl Fn(&ServiceRequest) -> SimpleInputFuture + 'static {
        let limit = if self == Scenario::Denied {
            1
        } else {
            NEVER_REACHED
        };
        // The scenario in the key keeps the scenarios' budgets apart, as our rule names do.
        let input = SimpleInputFunctionBuilder::new(PER, limit).custom_key(self.title());
        match self {
            Scenario::ApiKeys => input.custom_fn(api_key),
            Scenario::HotKey | Scenario::Denied => input.peer_ip_key(),
        }
        .build()
    }
}

fn api_key(req: &ServiceRequest) -> Result<String, actix_web::Error> {
    req.headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| actix_web::error::ErrorBadRequest("no x-api-key"))
}

/// Which server a configuration runs.
enum Server {
    Plain,
    Ours(RateLimiter, Scenario),
    // Boxed: the peer's backend is ten times the size of our limiter.
    Peer(Box<RedisBackend>, Scenario),
}

struct Configuration {
    name: &'static str,
    server: Server,
    samples: Vec<Sample>,
}

impl Configuration {
    fn new(name: &'static str, server: Server) -> Configuration {
        Configuration {
            name,
            server,
            samples: Vec::new(),
        }
    }

    fn scenario(&self) -> Option<Scenario> {
        match self.server {
            Server::Plain => None,
            Server::Ours(_, scenario) | Server::Peer(_, scenario) => Some(scenario),
        }
    }

    fn is_peer(&self) -> bool {
        matches!(self.server, Server::Peer(..))
    }

    fn median(&self, field: fn(&Sample) -> f64) -> f64 {
        let mut values: Vec<f64> = self.samples.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }
}

/// One Actix worker on a free port of 127.0.0.1, served by the current Actix system: its port
/// and the handle that stops it. A macro, as `App`'s type differs with what it wraps.
macro_rules! start_server {
    ($factory:expr) => {{
        let server = HttpServer::new($factory)
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (port, handle)
    }};
}

fn start(server: &Server) -> (u16, ServerHandle) {
    match server {
        Server::Plain => start_server!(|| App::new().service(plain)),
        Server::Ours(limiter, scenario) => {
            let (limiter, scenario) = (limiter.clone(), *scenario);
            start_server!(move || {
                let app = App::new().app_data(limiter.clone());
                match scenario {
                    Scenario::HotKey => app.service(ours_hot_key),
                    Scenario::ApiKeys => app.service(ours_api_keys),
                    Scenario::Denied => app.service(ours_denied),
                }
            })
        }
        Server::Peer(backend, scenario) => {
            let (backend, scenario) = (RedisBackend::clone(backend), *scenario);
            start_server!(move || {
                let limiter = actix_extensible_rate_limit::RateLimiter::builder(
                    backend.clone(),
                    scenario.peer_input(),
                )
                .add_headers()
                .build();
                App::new().wrap(limiter).service(plain)
            })
        }
    }
}

/// One measured run of one configuration, per request.
struct Sample {
    rate: f64,
    server_us: f64,
    redis_us: f64,
    redis_commands: f64,
    redis_script_calls: f64,
}

/// How long the runs last and where they go.
struct Settings {
    rounds: usize,
    run: Duration,
    /// Whether this process and Redis stay on core 0, and wrk on core 1.
    pinned: bool,
    clock_ticks_per_second: f64,
    api_keys_script: ScriptFile,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::args().any(|a| a == "--quick");
        let var = |name: &str| std::env::var(name).ok()?.trim().parse::<u64>().ok();
        let rounds = var("REDIS_HTTP_ROUNDS").unwrap_or(if quick { 1 } else { 3 });
        let seconds = var("REDIS_HTTP_SECONDS").unwrap_or(if quick { 2 } else { 6 });
        Settings {
            rounds: rounds.max(1) as usize,
            run: Duration::from_secs(seconds.max(1)),
            pinned: pin_to_core_0(),
            clock_ticks_per_second: clock_ticks_per_second(),
            api_keys_script: ScriptFile::api_keys(),
        }
    }

    /// wrk on one thread (on core 1 when pinned), with the scenario's script.
    fn wrk(
        &self,
        port: u16,
        scenario: Option<Scenario>,
        connections: u32,
        run: Duration,
    ) -> Command {
        let mut wrk = if self.pinned {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", "1", "wrk"]);
            taskset
        } else {
            Command::new("wrk")
        };
        wrk.args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", run.as_secs()),
        ]);
        if scenario == Some(Scenario::ApiKeys) {
            wrk.arg("-s").arg(&self.api_keys_script.0);
        }
        wrk.arg(format!("http://127.0.0.1:{port}/"));
        wrk
    }
}

/// Pins this process, and so every thread and process it starts from now on (they inherit
/// it), to core 0: the Actix worker, our Redis thread, the peer's connection and
/// `redis-server` share that core, and wrk is given core 1 to itself. `taskset -p` on our own
/// process id keeps the benchmark free of `unsafe` affinity calls.
fn pin_to_core_0() -> bool {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("redis_http: fewer than two cores, nothing pinned");
        return false;
    }
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .output()
        .is_ok_and(|out| out.status.success());
    if !pinned {
        println!("redis_http: taskset (util-linux) failed, nothing pinned");
    }
    pinned
}

/// The unit of the CPU times in `/proc/self/stat`.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds this process has used so far: all its threads, user and system.
fn process_cpu(settings: &Settings) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command name (which may hold spaces) come the fields from the third (state)
    // on; utime and stime are the 14th and 15th.
    let after_name = &stat[stat.rfind(')').expect("(comm)") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<f64>().unwrap())
        .sum();
    ticks / settings.clock_ticks_per_second
}

/// The wrk script giving each request one of `API_KEYS` keys in turn; removed when dropped.
struct ScriptFile(PathBuf);

impl ScriptFile {
    fn api_keys() -> ScriptFile {
        let path = std::env::temp_dir().join(format!("redis_http-{}.lua", std::process::id()));
        let script = format!(
            "local n = 0\n\
             request = function()\n\
             \x20 n = (n + 1) % {API_KEYS}\n\
             \x20 return wrk.format(nil, nil, {{ [\"X-API-Key\"] = \"key-\" .. n }})\n\
             end\n"
        );
        std::fs::write(&path, script).expect("a temporary file for the wrk script");
        ScriptFile(path)
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What wrk reports of a run.
struct Load {
    requests: f64,
    rate: f64,
    non_2xx: f64,
    socket_errors: Option<String>,
}

/// Runs wrk off the async runtime, which keeps serving the peer's Redis connection meanwhile.
async fn run_wrk(mut wrk: Command) -> Load {
    let out = actix_web::rt::task::spawn_blocking(move || wrk.output())
        .await
        .unwrap()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let number = |prefix: &str| line(prefix).and_then(|v| v.parse::<f64>().ok());
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let Some(requests) = requests.filter(|&n| n > 0.0) else {
        panic!(
            "wrk answered nothing usable:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    Load {
        requests,
        rate: number("Requests/sec:").unwrap_or(0.0),
        non_2xx: number("Non-2xx or 3xx responses:").unwrap_or(0.0),
        socket_errors: line("Socket errors:").map(str::to_owned),
    }
}

/// Serves the configuration, warms it up (connections, scripts, the first keys) and measures
/// one run of it.
async fn measure(
    settings: &Settings,
    redis: &RedisServer,
    configuration: &Configuration,
) -> (Sample, Load) {
    let (port, server) = start(&configuration.server);
    let scenario = configuration.scenario();
    run_wrk(settings.wrk(port, scenario, 4, Duration::from_secs(1))).await;
    // Redis is read outside the server's CPU window: redis-cli is a process we start.
    let redis_before = RedisUsage::now(redis);
    let server_before = process_cpu(settings);
    let load = run_wrk(settings.wrk(port, scenario, CONNECTIONS, settings.run)).await;
    let server_cpu = process_cpu(settings) - server_before;
    let redis_after = RedisUsage::now(redis);
    server.stop(true).await;
    let per_request = |total: f64| total / load.requests;
    let sample = Sample {
        rate: load.rate,
        server_us: per_request(server_cpu * 1e6),
        redis_us: per_request((redis_after.cpu_seconds - redis_before.cpu_seconds) * 1e6),
        redis_commands: per_request(redis_after.commands - redis_before.commands),
        redis_script_calls: per_request(redis_after.script_calls - redis_before.script_calls),
    };
    (sample, load)
}

/// Whether the run's answers are what its scenario expects; if not, why.
fn unexpected(configuration: &Configuration, load: &Load) -> Option<String> {
    let denied_expected = configuration.scenario() == Some(Scenario::Denied);
    let denied = load.non_2xx / load.requests;
    let problem = if denied_expected && denied < 0.99 {
        Some(format!("only {:.1}% denied", denied * 100.0))
    } else if !denied_expected && load.non_2xx > 0.0 {
        Some(format!("{} answers not 2xx", load.non_2xx))
    } else {
        load.socket_errors.clone()
    };
    problem.map(|p| format!("{}: {p}", label(configuration)))
}

fn label(configuration: &Configuration) -> String {
    match configuration.scenario() {
        Some(scenario) => format!("{}, {}", scenario.title(), configuration.name),
        None => configuration.name.to_string(),
    }
}

/// Installs wrk with apt-get where it is missing, as scripts/test.sh installs redis-server.
fn install_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .status()
    };
    println!("redis_http: installing wrk");
    let installed = apt(&["update", "-qq"])
        .and_then(|_| apt(&["install", "-y", "-qq", "wrk"]))
        .is_ok_and(|status| status.success());
    assert!(installed, "redis_http needs wrk: apt-get install wrk");
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "redis_http: run with `cargo bench --bench redis_http` (installs wrk where missing)"
        );
        return;
    }
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("warn"));
    install_wrk();
    // Pinned before Redis starts, which inherits core 0.
    let settings = Settings::from_env();
    let redis = RedisServer::start();
    actix_web::rt::System::new().block_on(async {
        http(&settings, &redis).await;
    });
}

/// The configurations of the table, in the order they run within a round: the baseline, then
/// in each scenario ours and the peer.
async fn configurations(redis: &RedisServer) -> Vec<Configuration> {
    let url = redis.url();
    let limiters: Vec<(&str, RateLimiter)> = OURS
        .iter()
        .enumerate()
        .map(|(i, ours)| {
            // A prefix each, so that configurations of ours never share a Redis key.
            let limiter = (ours.limiter)(&url).key_prefix(format!("ours{i}")).build();
            (ours.name, limiter.expect("our limiter builds"))
        })
        .collect();
    let client = redis_0_26::Client::open(url.as_str()).unwrap();
    let connection = redis_0_26::aio::ConnectionManager::new(client)
        .await
        .unwrap();
    let peer = RedisBackend::builder(connection)
        .key_prefix(Some("aerl:"))
        .build();
    let mut configurations = vec![Configuration::new("no limiter", Server::Plain)];
    for scenario in Scenario::ALL {
        for (name, limiter) in &limiters {
            configurations.push(Configuration::new(
                name,
                Server::Ours(limiter.clone(), scenario),
            ));
        }
        configurations.push(Configuration::new(
            "actix-extensible-rate-limit",
            Server::Peer(Box::new(peer.clone()), scenario),
        ));
    }
    configurations
}

async fn http(settings: &Settings, redis: &RedisServer) {
    let mut configurations = configurations(redis).await;
    let mut notes = Vec::new();
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..configurations.len()).collect();
        // Every other round backwards, so that no configuration always runs right after the
        // same neighbour (whose keys and connections Redis has just been busy with).
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (sample, load) = measure(settings, redis, &configurations[i]).await;
            eprintln!(
                "redis_http: round {}/{}, {}: {:.0} req/s",
                round + 1,
                settings.rounds,
                label(&configurations[i]),
                sample.rate
            );
            notes.extend(unexpected(&configurations[i], &load));
            configurations[i].samples.push(sample);
        }
    }
    print_table(settings, &configurations);
    for note in notes {
        println!("- unexpected: {note}");
    }
    // One limiter of ours serves every scenario: its figures once, with its first scenario.
    for configuration in &configurations {
        if let Server::Ours(limiter, Scenario::HotKey) = &configuration.server {
            println!("- {}: {:?}", configuration.name, limiter.redis_stats());
        }
    }
}

fn print_table(settings: &Settings, configurations: &[Configuration]) {
    let layout = if settings.pinned {
        "this process (one Actix worker) and Redis on core 0, wrk on core 1"
    } else {
        "nothing pinned"
    };
    println!(
        "\nHTTP on loopback, {layout}; wrk: 1 thread, {CONNECTIONS} connections; \
         medians of {} round(s) of {} s\n",
        settings.rounds,
        settings.run.as_secs()
    );
    println!("| scenario | configuration | req/s | ratio to the peer | server µs/req | Redis µs/req | Redis commands/req (script calls) |");
    println!("|---|---|---|---|---|---|---|");
    for configuration in configurations {
        let rate = configuration.median(|s| s.rate);
        let peer = configurations
            .iter()
            .find(|c| c.is_peer() && c.scenario() == configuration.scenario());
        let ratio = peer.map_or(String::new(), |peer| {
            format!("{:.2}", rate / peer.median(|s| s.rate))
        });
        println!(
            "| {} | {} | {} | {ratio} | {:.1} | {:.1} | {:.2} ({:.2}) |",
            configuration.scenario().map_or("", Scenario::title),
            configuration.name,
            thousands(rate),
            configuration.median(|s| s.server_us),
            configuration.median(|s| s.redis_us),
            configuration.median(|s| s.redis_commands),
            configuration.median(|s| s.redis_script_calls),
        );
    }
    println!();
}

/// `123456.7` as `123,457`.
fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
