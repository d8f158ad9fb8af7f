//! The limiter on Redis beside actix-extensible-rate-limit's Redis backend, end to end over
//! HTTP on loopback, in one run; then Redis CPU per decision for each algorithm.
//!
//! `cargo bench --bench redis_http`. Starts its own `redis-server` on a free port and one
//! single-worker Actix server per configuration, drives each with 32 concurrent connections for
//! a few seconds, and reads Redis's `INFO commandstats` around each run. Client, servers and
//! Redis share this machine's cores: compare the ratios, not the absolute numbers.

use std::process::Command;
use std::time::Duration;

use actix_extensible_rate_limit::backend::redis::RedisBackend;
use actix_extensible_rate_limit::backend::SimpleInputFunctionBuilder;
use actix_web::{get, App, HttpResponse, HttpServer};
use futures_util::future::join_all;
use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, RedisOptions, RedisStore, Store};
use ratelimit_runtime::{ratelimit, Quota, RateLimiter};

const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(4);

#[get("/")]
async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/")]
#[ratelimit(limit = 1_000_000, per = 3600)]
async fn ours_allowed() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/")]
#[ratelimit(limit = 1, per = 3600)]
async fn ours_denied() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

// The Redis processes the tests start and stop, shared with the benchmark.
#[path = "../tests/support/mod.rs"]
mod support;

use support::{free_port, RedisServer as Redis};

fn cli(redis: &Redis, args: &[&str]) -> String {
    redis.cli(args)
}

/// (calls, total µs) of Redis commands whose name starts with one of `commands`.
fn redis_work(redis: &Redis, commands: &[&str]) -> (u64, u64) {
    let stats = cli(redis, &["INFO", "commandstats"]);
    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    stats
        .lines()
        .filter(|l| {
            commands
                .iter()
                .any(|c| l.starts_with(&format!("cmdstat_{c}:")))
        })
        .fold((0, 0), |(calls, usec), l| {
            (calls + field(l, "calls"), usec + field(l, "usec"))
        })
}

/// Serves the app factory on a free port with one worker, in a thread of its own.
macro_rules! serve {
    ($factory:expr) => {{
        let port = free_port();
        let factory = $factory;
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(factory)
                    .workers(1)
                    .bind(("127.0.0.1", port))
                    .unwrap();
                server.run().await.unwrap();
            })
        });
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        port
    }};
}

/// Requests per second over `RUN` from wrk (one thread, `CONCURRENCY` connections), and how
/// many answers were not 2xx.
fn load_blocking(port: u16) -> (f64, u64) {
    let url = format!("http://127.0.0.1:{port}/");
    // Warm-up: connections, the script, the first key.
    let _ = Command::new("wrk")
        .args(["-t1", "-c4", "-d1s", &url])
        .output();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONCURRENCY}"),
            &format!("-d{}s", RUN.as_secs()),
            &url,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        number("Requests/sec:"),
        number("Non-2xx or 3xx responses:") as u64,
    )
}

fn warm_up(port: u16) {
    let _ = Command::new("wrk")
        .args(["-t1", "-c4", "-d1s", &format!("http://127.0.0.1:{port}/")])
        .output();
}

/// [`load_blocking`] off the async runtime, which keeps serving Redis connections meanwhile.
async fn load(port: u16) -> (f64, u64) {
    actix_web::rt::task::spawn_blocking(move || load_blocking(port))
        .await
        .unwrap()
}

/// CPU seconds Redis has used so far (user + system).
fn redis_cpu(redis: &Redis) -> f64 {
    cli(redis, &["INFO", "cpu"])
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Installs wrk with apt-get where it is missing, as scripts/test.sh installs redis-server.
fn install_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0"));
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
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "redis_http: run with `cargo bench --bench redis_http` (installs wrk where missing)"
        );
        return;
    }
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("warn"));
    install_wrk();
    let redis = Redis::start();
    let url = redis.url();
    actix_web::rt::System::new().block_on(run(&redis, &url));
}

async fn run(redis: &Redis, url: &str) {
    let ours_limiter = RateLimiter::builder().redis(url).build().unwrap();
    let manager = redis_0_26::aio::ConnectionManager::new(redis_0_26::Client::open(url).unwrap())
        .await
        .unwrap();
    let backend = RedisBackend::builder(manager)
        .key_prefix(Some("aerl:"))
        .build();

    let baseline = serve!(|| App::new().service(plain));
    let (l1, l2) = (ours_limiter.clone(), ours_limiter.clone());
    let ours_ok = serve!(move || App::new().app_data(l1.clone()).service(ours_allowed));
    let ours_no = serve!(move || App::new().app_data(l2.clone()).service(ours_denied));
    let (b1, b2) = (backend.clone(), backend.clone());
    let theirs_ok = serve!(move || {
        let input = SimpleInputFunctionBuilder::new(Duration::from_secs(3600), 1_000_000)
            .peer_ip_key()
            .build();
        App::new()
            .wrap(
                actix_extensible_rate_limit::RateLimiter::builder(b1.clone(), input)
                    .add_headers()
                    .build(),
            )
            .service(plain)
    });
    let theirs_no = serve!(move || {
        let input = SimpleInputFunctionBuilder::new(Duration::from_secs(3600), 1)
            .peer_ip_key()
            .build();
        App::new()
            .wrap(
                actix_extensible_rate_limit::RateLimiter::builder(b2.clone(), input)
                    .add_headers()
                    .build(),
            )
            .service(plain)
    });

    let ours_cmds: &[&str] = &["evalsha", "eval"];
    let theirs_cmds: &[&str] = &["multi", "bitfield", "expire", "ttl", "exec"];
    println!(
        "\nHTTP on loopback, 1 worker per server, {CONCURRENCY} connections, {} s each\n",
        RUN.as_secs()
    );
    println!("| configuration | req/s | ratio to no limiter | Redis calls per request | Redis µs per request | Redis CPU busy |");
    println!("|---|---|---|---|---|---|");
    let _ = actix_web::rt::task::spawn_blocking(move || warm_up(baseline)).await;
    let (base, _) = load(baseline).await;
    println!("| no limiter | {base:.0} | 1.00 | | | |");
    for (name, port, cmds) in [
        ("ours, Redis, allowed", ours_ok, ours_cmds),
        (
            "actix-extensible-rate-limit, Redis, allowed",
            theirs_ok,
            theirs_cmds,
        ),
        ("ours, Redis, every request denied", ours_no, ours_cmds),
        (
            "actix-extensible-rate-limit, Redis, every request denied",
            theirs_no,
            theirs_cmds,
        ),
    ] {
        // Warm up outside the measurement: connections, the script, the first key.
        let _ = actix_web::rt::task::spawn_blocking(move || warm_up(port)).await;
        let (before, cpu_before) = (redis_work(redis, cmds), redis_cpu(redis));
        let (rate, denied) = load(port).await;
        let (after, cpu_after) = (redis_work(redis, cmds), redis_cpu(redis));
        let busy = (cpu_after - cpu_before) / RUN.as_secs_f64() * 100.0;
        let requests = rate * RUN.as_secs_f64(); // wrk's rate over its own elapsed time
        let calls = (after.0 - before.0) as f64 / requests;
        let usec = (after.1 - before.1) as f64 / requests;
        println!(
            "| {name} | {rate:.0} | {:.2} | {calls:.2} | {usec:.2} | {busy:.0}% |",
            rate / base
        );
        if (denied > 0) != name.contains("denied") {
            println!("  (unexpected: {denied} non-2xx answers)");
        }
    }
    println!("\nours on Redis: {:?}", ours_limiter.redis_stats());
    redis_cpu_per_algorithm(redis, url).await;
}

/// Redis CPU per decision for each algorithm (`INFO commandstats`): decisions sent one at a
/// time (one per script call), then 1,000 at once (batched by the store's thread).
async fn redis_cpu_per_algorithm(redis: &Redis, url: &str) {
    println!("\nRedis CPU per allowed decision (INFO commandstats, script time only)\n");
    println!("| algorithm | µs, one per call | µs, batched | decisions per call, batched |");
    println!("|---|---|---|---|");
    let options = RedisOptions {
        timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(url, options).await.unwrap();
    // A limit large enough that all pass.
    let limit = Limit::new(Quota::from_parts(100_000, 3600).unwrap());
    for (n, algorithm) in AlgorithmKind::ALL.into_iter().enumerate() {
        // Keys of their own per algorithm: a key holds one algorithm's state.
        let check = |i: u64| {
            let key = ((n as u64) << 32) | i;
            Check {
                key,
                group: key,
                algorithm,
                limit,
                cost: 1,
                max_wait: 0,
            }
        };
        cli(redis, &["CONFIG", "RESETSTAT"]);
        for i in 0..2_000u64 {
            store
                .decide(&[check(i)], 0)
                .await
                .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        }
        let (_, alone) = redis_work(redis, &["evalsha"]);
        cli(redis, &["CONFIG", "RESETSTAT"]);
        for batch in 0..20u64 {
            let decisions = (0..1_000u64).map(|i| {
                let check = check(10_000 + batch * 1_000 + i);
                let store = &store;
                async move { store.decide(&[check], 0).await.map_err(|e| e.to_string()) }
            });
            if let Some(Err(e)) = join_all(decisions).await.into_iter().find(Result::is_err) {
                panic!("{algorithm}: {e}");
            }
        }
        let (calls, batched) = redis_work(redis, &["evalsha"]);
        println!(
            "| {algorithm} | {:.2} | {:.2} | {:.1} |",
            alone as f64 / 2_000.0,
            batched as f64 / 20_000.0,
            20_000.0 / calls.max(1) as f64
        );
    }
}
