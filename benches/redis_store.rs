//! The Redis store on its own, without HTTP: how much CPU this process spends per decision
//! (building the script call, the connection, parsing the reply, waking the caller), and what
//! Redis spends. 32 tasks on one single-threaded runtime (as one Actix worker) decide allowed
//! fixed-window checks over 10,000 keys, one after another each, on a Redis the benchmark
//! starts; three runs, medians.
//!
//! `cargo bench --bench redis_store`

use std::time::{Duration, Instant};

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, RedisOptions, RedisStore, Store};
use ratelimit_runtime::Quota;

#[path = "../tests/support/mod.rs"]
mod support;

use support::RedisServer;

const TASKS: u64 = 32;
const DECISIONS: u64 = 200_000;

/// This process's CPU time (user and system) so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Redis's own CPU time so far, in seconds.
fn redis_cpu_seconds(redis: &RedisServer) -> f64 {
    redis
        .cli(&["INFO", "cpu"])
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// One run: decisions per second, and µs of CPU per decision here and in Redis.
async fn run(store: &RedisStore, redis: &RedisServer, round: u64) -> (f64, f64, f64) {
    let limit = Limit::new(Quota::from_parts(1_000_000_000, 3600).expect("a quota"));
    let (started, cpu, redis_cpu) = (Instant::now(), cpu_seconds(), redis_cpu_seconds(redis));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..DECISIONS / TASKS {
                    let check = Check {
                        key: u128::from((round * 1_000_000 + task * DECISIONS + i) % 10_000),
                        group: 1,
                        algorithm: AlgorithmKind::FixedWindow,
                        limit,
                        cost: 1,
                        max_wait: 0,
                        probe: false,
                    };
                    let verdict = store.decide(&[check], 0).await.expect("Redis decides");
                    assert!(verdict.allowed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
    let n = DECISIONS as f64;
    (
        n / started.elapsed().as_secs_f64(),
        (cpu_seconds() - cpu) * 1e6 / n,
        (redis_cpu_seconds(redis) - redis_cpu) * 1e6 / n,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("redis_store: run with `cargo bench --bench redis_store`");
        return;
    }
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let runs: Vec<(f64, f64, f64)> = runtime.block_on(async {
        let options = RedisOptions {
            timeout: Duration::from_secs(2),
            ..RedisOptions::default()
        };
        let store = RedisStore::connect(&redis.url(), options)
            .await
            .expect("connects");
        let mut runs = Vec::new();
        for round in 0..3 {
            runs.push(run(&store, &redis, round).await);
        }
        runs
    });
    println!("| decisions/s | client µs per decision | Redis µs per decision |");
    println!("|---|---|---|");
    println!(
        "| {:.0} | {:.2} | {:.2} |",
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect()),
        median(runs.iter().map(|r| r.2).collect()),
    );
}
