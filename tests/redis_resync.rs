//! Resync after an outage: two example-server processes share a fixed window on a Redis of
//! our own; Redis stalls (SIGSTOP) while both admit alone in their memory (the fallback), then
//! resumes. Once each process finds Redis again, what it admitted alone is charged to Redis, so
//! the fleet does not get a second full budget in the same window.

mod support;

use std::time::{Duration, Instant};

use support::{ExampleServer, RedisServer};

/// `/rate-limited` (a fixed window per client address), overridden to 20 an hour: a window
/// long enough for the whole test.
const LIMIT: usize = 20;
const OVERRIDES: &str = "\"server::rate_limited\" = \"20/hour\"\n";
const WINDOW_SECS: u64 = 3_600;

/// Sends `count` requests to `/rate-limited` of `server` at once; their statuses.
async fn hit(server: &ExampleServer, count: usize) -> Vec<u16> {
    support::send(&[server], "/rate-limited", None, count).await
}

fn passed(statuses: &[u16]) -> usize {
    support::count(statuses, 200)
}

/// What Redis holds as spent in the window: the one fixed-window state among the keys of this
/// Redis, which serves this test alone (an integer, the window's tag times 2^33 plus what was
/// spent in it).
fn spent_on_redis(redis: &RedisServer) -> Option<u64> {
    let keys = redis.cli(&["--scan", "--pattern", "ratelimit:{*"]);
    keys.lines().find_map(|key| {
        let value: u64 = redis.cli(&["GET", key.trim()]).trim().parse().ok()?;
        Some(value % (1 << 33))
    })
}

#[actix_web::test]
async fn units_admitted_alone_during_a_stall_are_charged_to_redis_when_it_answers_again() {
    let redis = RedisServer::start();
    // A whole window ahead: far from its end, the test's requests all fall in one window.
    let into_window = redis.time_secs() % WINDOW_SECS;
    if into_window > WINDOW_SECS - 60 {
        tokio::time::sleep(Duration::from_secs(WINDOW_SECS - into_window + 1)).await;
    }
    let dir = std::env::temp_dir().join(format!("ratelimit-resync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let overrides = dir.join("overrides.toml");
    std::fs::write(&overrides, OVERRIDES).unwrap();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_OVERRIDES", overrides.to_str().unwrap()),
        ("RATELIMIT_KEY_SECRET", "resync-fleet"),
    ];
    // Both connected (they connect on first use, in the background), on another rule.
    let (a, b) = support::fleet_on(&redis, &env).await;
    // On Redis: 5 of the 20 spent, across the fleet.
    assert_eq!(passed(&hit(&a, 3).await), 3);
    assert_eq!(passed(&hit(&b, 2).await), 2);
    assert_eq!(spent_on_redis(&redis), Some(5));

    // Redis stalls: each process limits alone, in its own memory, from a whole budget.
    // One request at a time: a process sends Redis only the first (it times out, and Redis
    // runs it late, once resumed), then leaves Redis alone for a second. (Requests sent at once
    // at the start of a stall all reach Redis before the first times out, and Redis runs them
    // all late: counted twice, by Redis and by the resync, an outage errs on refusing.)
    redis.pause();
    let (mut alone_a, mut alone_b) = (0, 0);
    for _ in 0..25 {
        alone_a += passed(&hit(&a, 1).await);
        alone_b += passed(&hit(&b, 1).await);
    }
    assert_eq!((alone_a, alone_b), (LIMIT, LIMIT), "each process alone");
    assert_eq!(a.metric("ratelimit_redis_fallback"), 1.0);
    redis.resume();

    // Each process tries Redis again a second after its last failure; its first answer from
    // Redis starts the resync.
    let mut admitted_after = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.metric("ratelimit_redis_fallback") != 0.0 || b.metric("ratelimit_redis_fallback") != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the processes never found Redis again"
        );
        admitted_after += passed(&hit(&a, 1).await) + passed(&hit(&b, 1).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Resynced: the window's budget is spent on Redis, which had seen only the 5 and the probes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while spent_on_redis(&redis) != Some(LIMIT as u64) {
        assert!(
            Instant::now() < deadline,
            "Redis never held what was admitted alone: {:?} spent",
            spent_on_redis(&redis)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Redis had seen the 5, the requests sent as it stalled (one a second per process) and
    // the probes that found it again: the resync charged the rest of the budget.
    let late = a.metric("ratelimit_redis_errors_total") + b.metric("ratelimit_redis_errors_total");
    let resynced = a.metric("ratelimit_redis_resynced_units_total")
        + b.metric("ratelimit_redis_resynced_units_total");
    assert!(
        resynced >= LIMIT as f64 - 5.0 - late - admitted_after as f64 && resynced > 0.0,
        "charged what still fit: {resynced} units ({late} late, {admitted_after} probes)"
    );

    // No second budget: every later request of the window is refused, by either process.
    let later = passed(&hit(&a, 10).await) + passed(&hit(&b, 10).await);
    assert_eq!(
        later, 0,
        "once resynced, the fleet holds no more than the limit"
    );
    let total = 5 + alone_a + alone_b + admitted_after + later;
    assert!(
        total <= LIMIT + alone_a + alone_b,
        "the window's fleet total ({total}) stays within the limit plus what each admitted alone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each algorithm that a budget can be charged to, in one process on a manual clock: 3 of 10
/// spent on Redis, 10 admitted alone while Redis stalls, then the resync charges what still
/// fits (10 - 3, less the request Redis ran late and the one that found it again), and
/// another process of the fleet finds the budget spent.
#[actix_web::test]
async fn every_algorithm_is_charged_what_still_fits() {
    use ratelimit_runtime::algorithm::AlgorithmKind;
    use ratelimit_runtime::store::{RedisOptions, TimeSource};
    use ratelimit_runtime::{ManualClock, Quota, QuotaSource, RateLimiter, Rule};

    let redis = RedisServer::start();
    for algorithm in [
        AlgorithmKind::FixedWindow,
        AlgorithmKind::SlidingWindow,
        AlgorithmKind::SlidingLog,
        AlgorithmKind::TokenBucket,
        AlgorithmKind::Gcra,
    ] {
        let clock = ManualClock::at_secs(1_700_000_040);
        let limiter = |prefix: &str| {
            RateLimiter::builder()
                .clock(clock.clone())
                .redis(redis.url())
                .key_prefix(prefix)
                .redis_options(RedisOptions {
                    time: TimeSource::Client,
                    timeout: Duration::from_millis(300),
                    ..RedisOptions::default()
                })
                .build()
                .unwrap()
        };
        let prefix = format!("resync-{}", algorithm.name());
        let (one, other) = (limiter(&prefix), limiter(&prefix));
        let mut rule = Rule::new(
            "resynced",
            QuotaSource::Fixed(Quota::from_parts(10, 60).unwrap()),
        );
        rule.algorithm = algorithm;
        let name = algorithm.name();
        // Connected (a decision of this limiter reached Redis), then 3 spent on Redis.
        let deadline = Instant::now() + Duration::from_secs(10);
        let before = redis.script_calls();
        while redis.script_calls() == before || one.redis_stats().unwrap().degraded {
            assert!(Instant::now() < deadline, "{name}: never on Redis");
            let _ = one.check_key(&rule, "warm-up", 1).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            assert!(one.check_key(&rule, "k", 1).await.is_allowed(), "{name}");
        }
        redis.pause();
        let mut alone = 0;
        for _ in 0..12 {
            alone += usize::from(one.check_key(&rule, "k", 1).await.is_allowed());
        }
        assert_eq!(alone, 10, "{name}: a whole budget alone");
        assert!(one.redis_stats().unwrap().degraded, "{name}");
        redis.resume();
        // A second on, the limiter tries Redis again: the request finds it (and is decided on
        // it), and starts the resync.
        clock.advance(Duration::from_millis(1_100));
        assert!(
            one.check_key(&rule, "k", 1).await.is_allowed(),
            "{name}: on Redis"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while one.redis_stats().unwrap().resynced_units == 0 {
            assert!(Instant::now() < deadline, "{name}: never resynced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // 3, the late one, the one that found Redis: 5 fit.
        assert_eq!(one.redis_stats().unwrap().resynced_units, 5, "{name}");
        assert!(
            !other.check_key(&rule, "k", 1).await.is_allowed(),
            "{name}: the fleet's budget is spent"
        );
    }
}
