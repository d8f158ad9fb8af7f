//! The Redis store on its own, without HTTP, on a Redis the benchmark starts.
//!
//! - How much CPU this process spends per decision (building the script call, the connection,
//!   parsing the reply, waking the caller), and what Redis spends: 32 tasks on one
//!   single-threaded runtime (as one Actix worker) decide allowed fixed-window checks over
//!   10,000 keys, one after another each; three runs, medians.
//! - Redis time per allowed decision for each algorithm (`INFO commandstats`, the script's own
//!   time): on keys that hold a state (the steady state of a busy API) and on new keys, one
//!   decision per call and batched (1,000 at once, which the store sends as script calls of
//!   up to 64 decisions); beside the floor of any script: an empty one, one reading `TIME`, and
//!   `TIME` with one `INCRBY`.
//!
//! `cargo bench --bench redis_store`

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, RedisOptions, RedisStore, Store};
use ratelimit_runtime::Quota;

#[path = "../tests/support/mod.rs"]
mod support;

use support::RedisServer;

#[path = "common/redis_usage.rs"]
mod redis_usage;

use redis_usage::RedisUsage;

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
    // Before the table of the first part, which it prints as it goes.
    println!("| decisions/s | client µs per decision | Redis µs per decision |");
    println!("|---|---|---|");
    println!(
        "| {:.0} | {:.2} | {:.2} |",
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect()),
        median(runs.iter().map(|r| r.2).collect()),
    );
    runtime.block_on(async {
        floors(&redis).await;
        per_algorithm(&redis).await;
    });
}

const ALONE: u64 = 2_000;
const BATCHES: u64 = 20;
const BATCH: u64 = 1_000;

/// Redis's time in scripts per call of the least a script can do, one call after another.
async fn floors(redis: &RedisServer) {
    let client = redis_0_26::Client::open(redis.url().as_str()).expect("a client");
    let mut connection = client
        .get_multiplexed_tokio_connection()
        .await
        .expect("connects");
    println!("\nThe floor: Redis µs per script call, one call after another\n");
    println!("| script | µs per call |");
    println!("|---|---|");
    let scripts = [
        ("`return 0`", "return 0"),
        ("`TIME`", "redis.call('TIME') return 0"),
        (
            "`TIME`, `INCRBY`",
            "redis.call('TIME') return redis.call('INCRBY', KEYS[1], 1)",
        ),
    ];
    for (name, source) in scripts {
        let sha: String = redis_0_26::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(&mut connection)
            .await
            .expect("the script loads");
        let before = RedisUsage::now(redis);
        for i in 0..ALONE {
            let _: i64 = redis_0_26::cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(format!("floor:{}", i % 100))
                .query_async(&mut connection)
                .await
                .expect("the script runs");
        }
        let after = RedisUsage::now(redis);
        println!(
            "| {name} | {:.2} |",
            (after.script_us - before.script_us) / (after.script_calls - before.script_calls)
        );
    }
}

/// Redis's time in scripts per allowed decision, for each algorithm.
async fn per_algorithm(redis: &RedisServer) {
    println!("\nRedis µs per allowed decision (INFO commandstats, script time)\n");
    println!(
        "| algorithm | keys with a state, alone | with a state, batched | new keys, alone | new keys, batched | decisions per call, batched |"
    );
    println!("|---|---|---|---|---|---|");
    let options = RedisOptions {
        timeout: Duration::from_secs(2),
        prefix: "algorithms".to_string(),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&redis.url(), options)
        .await
        .expect("connects");
    let limit = Limit::new(Quota::from_parts(1_000_000, 3600).expect("a quota"));
    for (n, algorithm) in AlgorithmKind::ALL.into_iter().enumerate() {
        // Keys of their own per algorithm: a key holds one algorithm's state.
        let check = |i: u64| {
            let key = ((n as u64) << 32) | i;
            Check {
                key: key.into(),
                group: key,
                algorithm,
                limit,
                cost: 1,
                max_wait: 0,
                probe: false,
            }
        };
        let alone = |first: u64| {
            let store = &store;
            async move {
                let before = RedisUsage::now(redis);
                for i in first..first + ALONE {
                    let verdict = store.decide(&[check(i)], 0).await;
                    assert!(verdict.is_ok_and(|v| v.allowed), "{algorithm}");
                }
                (RedisUsage::now(redis).script_us - before.script_us) / ALONE as f64
            }
        };
        let batched = |first: u64| {
            let store = &store;
            async move {
                let before = RedisUsage::now(redis);
                for batch in 0..BATCHES {
                    let decisions = (0..BATCH).map(|i| {
                        let check = check(first + batch * BATCH + i);
                        async move { store.decide(&[check], 0).await }
                    });
                    let verdicts = join_all(decisions).await;
                    assert!(verdicts.into_iter().all(|v| v.is_ok_and(|v| v.allowed)));
                }
                let after = RedisUsage::now(redis);
                let decisions = (BATCHES * BATCH) as f64;
                (
                    (after.script_us - before.script_us) / decisions,
                    decisions / (after.script_calls - before.script_calls).max(1.0),
                )
            }
        };
        // New keys: each decided for the first time. Then the same keys again: they hold a
        // state.
        let new_alone = alone(0).await;
        let (new_batched, _) = batched(100_000).await;
        let held_alone = alone(0).await;
        let (held_batched, per_call) = batched(100_000).await;
        println!(
            "| {algorithm} | {held_alone:.2} | {held_batched:.2} | {new_alone:.2} | {new_batched:.2} | {per_call:.1} |"
        );
    }
}
