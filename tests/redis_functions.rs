//! Decisions on Redis are calls of a Redis function (`FCALL`) where Redis has functions (7.0
//! and later), and of the same Lua as a script (`EVALSHA`) where it cannot run them: a
//! function Redis lost is loaded again, and a user the ACL refuses `FUNCTION` decides with the
//! script. Counted in the server's own `INFO commandstats`.

mod support;

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
    let limiter = limiter(format!("redis://scripts:secret@127.0.0.1:{}", redis.port));
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
