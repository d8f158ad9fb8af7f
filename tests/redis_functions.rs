//! Decisions on Redis are calls of a Redis function (`FCALL`) where Redis has functions (7.0
//! and later), and of the same Lua as a script (`EVALSHA`) where it cannot run them: a
//! function Redis lost is loaded again, and a user the ACL refuses `FUNCTION` decides with the
//! script. Counted in the server's own `INFO commandstats`. And what the fixed window's one
//! `INCRBY` must not do: lose another window's count when a decision is refused, or take a
//! Redis failure (out of memory) for a corrupt key.

mod support;

use std::time::Duration;

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, RedisOptions, RedisStore, Store, TimeSource};
use ratelimit_runtime::{Quota, QuotaSource, RateLimiter, Rule};
use support::RedisServer;

/// Calls of `command` the server has served (`INFO commandstats`).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn limiter(url: String) -> RateLimiter {
    RateLimiter::builder()
        .ignore_env()
        .redis(url)
        .build()
        .unwrap()
}

/// The URL of a user `redis` lets run anything but `FUNCTION` and `FCALL`.
fn user_without_functions(redis: &RedisServer) -> String {
    redis.cli(&[
        "ACL",
        "SETUSER",
        "scripts",
        "on",
        ">secret",
        "~*",
        "+@all",
        "-function",
        "-fcall",
    ]);
    format!("redis://scripts:secret@127.0.0.1:{}", redis.port)
}

fn five_a_minute() -> Rule {
    Rule::new(
        "five",
        QuotaSource::Fixed(Quota::from_parts(5, 60).unwrap()),
    )
}

#[actix_web::test]
async fn decisions_are_function_calls_and_a_lost_function_is_loaded_again() {
    let redis = RedisServer::start();
    let limiter = limiter(redis.url());
    let rule = five_a_minute();
    for _ in 0..5 {
        assert!(limiter.check_key(&rule, "k", 1).await.is_allowed());
    }
    assert!(!limiter.check_key(&rule, "k", 1).await.is_allowed());
    // Each decided on Redis, the refusal too.
    assert_eq!(calls(&redis, "fcall"), 6);
    assert_eq!(calls(&redis, "evalsha"), 0, "no script call");
    assert!(redis
        .cli(&["FUNCTION", "LIST"])
        .contains("ratelimit_decide_"));
    // Redis loses its functions (a restart without persistence, a flush): the next decision
    // loads the library again and is decided, on the budget Redis still holds.
    redis.cli(&["FUNCTION", "FLUSH"]);
    let other = Rule::new(
        "other",
        QuotaSource::Fixed(Quota::from_parts(2, 60).unwrap()),
    );
    assert!(limiter.check_key(&other, "k", 1).await.is_allowed());
    assert!(redis
        .cli(&["FUNCTION", "LIST"])
        .contains("ratelimit_decide_"));
    assert_eq!(limiter.check_key(&other, "k", 1).await.remaining(), 0);
    assert_eq!(limiter.redis_stats().unwrap().errors, 0);
}

#[actix_web::test]
async fn a_user_refused_functions_decides_with_the_script() {
    let redis = RedisServer::start();
    let limiter = limiter(user_without_functions(&redis));
    let rule = five_a_minute();
    for _ in 0..5 {
        assert!(limiter.check_key(&rule, "k", 1).await.is_allowed());
    }
    let refused = limiter.check_key(&rule, "k", 1).await;
    assert!(!refused.is_allowed());
    assert_eq!(calls(&redis, "fcall"), 0);
    assert_eq!(calls(&redis, "evalsha"), 6);
    assert_eq!(limiter.redis_stats().unwrap().errors, 0);
}

fn fixed_window(key: u128, limit: u32) -> Check {
    Check {
        key,
        group: 5,
        algorithm: AlgorithmKind::FixedWindow,
        limit: Limit::new(Quota::from_parts(limit, 60).unwrap()),
        cost: 1,
        max_wait: 0,
        probe: false,
    }
}

/// A store on the clients' clock, for instants the test chooses.
async fn client_clock_store(url: &str) -> RedisStore {
    let options = RedisOptions {
        time: TimeSource::Client,
        timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    RedisStore::connect(url, options).await.unwrap()
}

const MINUTE: u64 = 60_000_000_000;
/// The start of a minute.
const T0: u64 = 1_700_000_040 * 1_000_000_000;

#[actix_web::test]
async fn a_refused_decision_keeps_the_count_of_another_window() {
    let redis = RedisServer::start();
    let store = client_clock_store(&redis.url()).await;
    let counted = fixed_window(1, 10);
    let spent = fixed_window(2, 1);
    // Window W: 3 of 10 spent, and the other limit's only unit.
    for _ in 0..3 {
        assert!(store.decide(&[counted], T0).await.unwrap().allowed);
    }
    assert!(store.decide(&[spent], T0).await.unwrap().allowed);
    // A process whose clock is a window ahead spends the other limit's unit of the next
    // window, then decides both together: refused by the other limit, once `counted`'s key
    // (holding window W's count) was charged for the next window.
    assert!(store.decide(&[spent], T0 + MINUTE).await.unwrap().allowed);
    let refused = store.decide(&[counted, spent], T0 + MINUTE).await.unwrap();
    assert!(!refused.allowed && refused.decisions[0].allowed);
    // The key of `counted` held window W's count when the refusal gave its charge back: W
    // still counts 3 (the next request there is the fourth).
    let back_in_w = store.decide(&[counted], T0 + 1).await.unwrap();
    assert!(back_in_w.allowed);
    assert_eq!(
        back_in_w.decisions[0].remaining, 6,
        "window W kept its count"
    );
}

#[actix_web::test]
async fn redis_out_of_memory_is_a_redis_failure_not_a_corrupt_key() {
    let redis = RedisServer::start();
    // The script path (a user without functions), where the write fails inside the Lua.
    let url = user_without_functions(&redis);
    for url in [redis.url(), url] {
        let store = client_clock_store(&url).await;
        redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
        redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
        let error = store.decide(&[fixed_window(9, 10)], T0).await.unwrap_err();
        redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
        assert!(!error.is_unsupported(), "{url}: {error}");
        assert!(error.to_string().contains("OOM"), "{url}: {error}");
        // Nothing was charged.
        let after = store.decide(&[fixed_window(9, 10)], T0).await.unwrap();
        assert_eq!(after.decisions[0].remaining, 9, "{url}");
        redis.cli(&["FLUSHALL"]);
    }
}
