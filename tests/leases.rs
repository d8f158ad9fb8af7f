//! Leases of Redis budgets, on a manual clock: two limiters sharing one Redis stand for two
//! processes of a fleet. The fleet-wide bounds hold whatever the order of requests; units are
//! spent locally, handed back when unspent, and never leased for the sliding algorithms.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use ratelimit_runtime::algorithm::AlgorithmKind;
use ratelimit_runtime::store::{RedisOptions, TimeSource};
use ratelimit_runtime::{Leases, ManualClock, Quota, QuotaSource, RateLimiter, Rule};
use support::RedisServer;

const LIFETIME: Duration = Duration::from_millis(100);
const START_SECS: u64 = 1_700_000_040;

/// Redis on the limiter's manual clock, with time to answer on a busy machine.
fn options() -> RedisOptions {
    RedisOptions {
        time: TimeSource::Client,
        timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    }
}

/// A limiter on `server` under `prefix`, deciding on `clock`, leasing when `leases`.
fn limiter(server: &RedisServer, prefix: &str, clock: &ManualClock, leases: bool) -> RateLimiter {
    let mut builder = RateLimiter::builder()
        .clock(clock.clone())
        .redis(server.url())
        .key_prefix(prefix)
        .redis_options(options());
    if leases {
        builder = builder.redis_leases(Leases::new().lifetime(LIFETIME));
    }
    builder.build().unwrap()
}

fn rule(algorithm: AlgorithmKind, limit: u32, per: u32) -> Rule {
    let mut rule = Rule::new(
        "leased",
        QuotaSource::Fixed(Quota::from_parts(limit, per).unwrap()),
    );
    rule.algorithm = algorithm;
    rule
}

/// A deterministic stream of choices between the two processes.
fn picks(seed: u64) -> impl Iterator<Item = usize> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some((x % 2) as usize)
    })
}

/// Lets the background refills of both processes land.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// `count` requests of `limiter` on `key`, `step` apart on `clock`, each allowed; `settled`:
/// the background refills land between them (a busy key, whose leases grow).
async fn busy(
    limiter: &RateLimiter,
    rule: &Rule,
    clock: &ManualClock,
    (count, step): (u32, Duration),
    settled: bool,
) {
    for _ in 0..count {
        assert!(limiter.check_key(rule, "k", 1).await.is_allowed());
        clock.advance(step);
        if settled {
            settle().await;
        }
    }
}

fn lease_stats(limiter: &RateLimiter) -> ratelimit_runtime::LeaseStats {
    limiter.redis_stats().unwrap().leases.unwrap()
}

#[actix_web::test]
async fn a_fixed_window_fleet_never_passes_its_limit_and_spends_what_it_leases() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let fleet = [
        limiter(&server, "fw", &clock, true),
        limiter(&server, "fw", &clock, true),
    ];
    let rule = rule(AlgorithmKind::FixedWindow, 1_000, 60);
    let mut allowed = 0;
    // 3,000 requests in 60 ms, all in one window, spread over the two processes at random.
    for process in picks(7).take(3_000) {
        if fleet[process].check_key(&rule, "hot", 1).await.is_allowed() {
            allowed += 1;
        }
        clock.advance(Duration::from_micros(20));
        tokio::task::yield_now().await;
    }
    settle().await;
    assert!(allowed <= 1_000, "{allowed} passed a limit of 1,000");
    // A lease's last unit is spent only through Redis, which a process that has seen a denial
    // no longer asks until the window ends: at most one unit per process is left unspent.
    assert!(allowed >= 998, "only {allowed} of 1,000 passed");
    let (a, b) = (lease_stats(&fleet[0]), lease_stats(&fleet[1]));
    let local = a.local_decisions + b.local_decisions;
    // The rest were decided through Redis: the first requests, the last units, and requests
    // that came while a refill was in flight (real time, unlike the manual clock, runs on).
    assert!(
        local >= 650,
        "most of the 1,000 units were spent locally ({local})"
    );
    assert!(
        a.calls + b.calls <= 200,
        "{} lease calls",
        a.calls + b.calls
    );
}

#[actix_web::test]
async fn fixed_window_leases_die_with_their_window() {
    let server = RedisServer::start();
    // The last 60 ms of a window, with leases held at its end, then the next window in full.
    let clock = ManualClock::new(START_SECS * 1_000_000_000 + 940_000_000);
    let fleet = [
        limiter(&server, "fw2", &clock, true),
        limiter(&server, "fw2", &clock, true),
    ];
    let rule = rule(AlgorithmKind::FixedWindow, 500, 1);
    let mut per_window = std::collections::BTreeMap::new();
    for process in picks(11).take(6_000) {
        let window = ratelimit_runtime::Clock::now(&clock) / 1_000_000_000 - START_SECS;
        if fleet[process].check_key(&rule, "hot", 1).await.is_allowed() {
            *per_window.entry(window).or_insert(0) += 1;
        }
        clock.advance(Duration::from_micros(200));
        tokio::task::yield_now().await;
    }
    assert_eq!(
        per_window.get(&0),
        Some(&300),
        "the first window is never full"
    );
    let next = per_window[&1];
    assert!(
        next <= 500,
        "units leased in the first window spent in the next: {next} passed"
    );
    assert!(next >= 498, "only {next} passed");
    assert!(lease_stats(&fleet[0]).leased > 0, "{per_window:?}");
}

#[actix_web::test]
async fn unspent_units_go_back_when_their_lease_ends() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "back", &clock, true);
    let exact = limiter(&server, "back", &clock, false);
    let rule = rule(AlgorithmKind::FixedWindow, 10_000, 60);
    // A busy key: leases grow while it is spent.
    busy(
        &leasing,
        &rule,
        &clock,
        (200, Duration::from_micros(100)),
        true,
    )
    .await;
    let held = lease_stats(&leasing).leased;
    assert!(held > 0, "the busy key was leased");
    // What Redis has left now excludes what the lease holds.
    let before = exact.check_key(&rule, "k", 1).await.remaining();
    assert!(
        before < 10_000 - 201,
        "leased units are counted on Redis ({before})"
    );
    // The lease ends and the key goes quiet: the lease's timer (real time, once the clock has
    // passed the lease's end) hands back what was not spent, and the next request, of a key no
    // longer busy, leases nothing more. 200 + 1 + 1 + 1 units were spent in all.
    clock.advance(Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    // Held: leased, less spent here (one unit a request), handed back and dropped.
    let held =
        |s: ratelimit_runtime::LeaseStats| s.leased - s.local_decisions - s.returned - s.dropped;
    while held(lease_stats(&leasing)) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} units still held",
            held(lease_stats(&leasing))
        );
        settle().await;
    }
    let calls = lease_stats(&leasing).calls;
    assert!(leasing.check_key(&rule, "k", 1).await.is_allowed());
    settle().await;
    assert_eq!(
        lease_stats(&leasing).calls,
        calls,
        "a quiet key is not leased"
    );
    let after = exact.check_key(&rule, "k", 1).await.remaining();
    assert_eq!(after, 10_000 - 203, "every unspent unit came back");
}

#[actix_web::test]
async fn a_late_hand_back_takes_out_only_what_has_not_drained() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "late", &clock, true);
    let exact = limiter(&server, "late", &clock, false);
    for algorithm in [AlgorithmKind::TokenBucket, AlgorithmKind::Gcra] {
        let mut rule = rule(algorithm, 2_000, 1);
        rule.burst = std::num::NonZeroU32::new(1_000);
        // A busy key: the leasing process ends up holding units.
        busy(
            &leasing,
            &rule,
            &clock,
            (300, Duration::from_micros(20)),
            true,
        )
        .await;
        assert!(lease_stats(&leasing).leased > 0, "{algorithm}: leased");
        let returned = lease_stats(&leasing).returned;
        // Long after (the units drained out of the bucket), another process fills it.
        clock.advance(Duration::from_secs(1));
        let mut filled = 0;
        while exact.check_key(&rule, "k", 1).await.is_allowed() {
            filled += 1;
        }
        assert_eq!(filled, 1_000, "{algorithm}: the bucket had drained");
        // The late hand-back of the drained units (by the lease's timer, once the clock passed
        // its end, or with this request) frees nothing: the bucket stays full.
        assert!(
            !leasing.check_key(&rule, "k", 1).await.is_allowed(),
            "{algorithm}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while lease_stats(&leasing).returned == returned {
            assert!(
                std::time::Instant::now() < deadline,
                "{algorithm}: handed back"
            );
            settle().await;
        }
        assert!(
            !exact.check_key(&rule, "k", 1).await.is_allowed(),
            "{algorithm}"
        );
    }
}

#[actix_web::test]
async fn sliding_algorithms_are_never_leased() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "sliding", &clock, true);
    for algorithm in [AlgorithmKind::SlidingWindow, AlgorithmKind::SlidingLog] {
        let rule = rule(algorithm, 100, 1);
        let mut allowed = 0;
        for _ in 0..150 {
            allowed += u32::from(leasing.check_key(&rule, "hot", 1).await.is_allowed());
            clock.advance(Duration::from_micros(50));
        }
        assert_eq!(allowed, 100, "{algorithm}: decided exactly, per request");
    }
    let stats = lease_stats(&leasing);
    assert_eq!((stats.calls, stats.local_decisions), (0, 0));
}

/// Every interval `[a, b]` of request instants (ns) admits at most `capacity + rate × (b - a)`
/// plus `rate × lifetime`, the most a lease can stretch a burst.
fn assert_bucket_bound(admitted: &[u64], capacity: u64, per_sec: u64, algorithm: AlgorithmKind) {
    let lifetime = LIFETIME.as_nanos() as u64;
    for (i, &a) in admitted.iter().enumerate() {
        for (j, &b) in admitted.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u64;
            let bound = capacity + (per_sec * (b - a + lifetime)).div_ceil(1_000_000_000);
            assert!(
                count <= bound,
                "{algorithm}: {count} admitted in {} µs (bound {bound})",
                (b - a) / 1_000
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Buckets and GCRA, leased by two processes: bursts stretch by at most one lifetime's
    /// worth of the rate, whatever the arrival pattern.
    #[test]
    fn leased_buckets_hold_their_bound(
        gaps in prop::collection::vec(0u64..2_000, 150..300),
        seed in any::<u64>(),
        algorithm in prop::sample::select(vec![
            AlgorithmKind::TokenBucket,
            AlgorithmKind::LeakyBucket,
            AlgorithmKind::Gcra,
        ]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let server = RedisServer::start();
            let clock = ManualClock::at_secs(START_SECS);
            let fleet = [
                limiter(&server, "bucket", &clock, true),
                limiter(&server, "bucket", &clock, true),
            ];
            // 2,000 per second, a burst of 200 (the leaky bucket too).
            let mut rule = rule(algorithm, 2_000, 1);
            rule.burst = std::num::NonZeroU32::new(200);
            let mut admitted = Vec::new();
            for (gap, process) in gaps.iter().zip(picks(seed)) {
                clock.advance(Duration::from_micros(*gap));
                if fleet[process].check_key(&rule, "hot", 1).await.is_allowed() {
                    admitted.push(ratelimit_runtime::Clock::now(&clock));
                }
                tokio::task::yield_now().await;
            }
            assert_bucket_bound(&admitted, 200, 2_000, algorithm);
        });
    }
}

#[actix_web::test]
async fn soft_limits_are_never_leased() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "soft", &clock, true);
    let mut rule = rule(AlgorithmKind::FixedWindow, 1_000, 60);
    rule.soft = std::num::NonZeroU32::new(800);
    busy(
        &leasing,
        &rule,
        &clock,
        (300, Duration::from_micros(20)),
        false,
    )
    .await;
    let stats = lease_stats(&leasing);
    assert_eq!((stats.calls, stats.local_decisions), (0, 0));
}

#[actix_web::test]
async fn units_held_are_spent_while_redis_is_down() {
    let mut server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "down", &clock, true);
    let rule = rule(AlgorithmKind::FixedWindow, 100_000, 60);
    busy(
        &leasing,
        &rule,
        &clock,
        (300, Duration::from_micros(20)),
        true,
    )
    .await;
    let before = lease_stats(&leasing).local_decisions;
    server.stop();
    // What the lease holds is this process's to spend (then the failure policy decides).
    busy(
        &leasing,
        &rule,
        &clock,
        (20, Duration::from_micros(20)),
        false,
    )
    .await;
    assert!(lease_stats(&leasing).local_decisions > before);
}

#[actix_web::test]
async fn a_key_of_another_type_fails_only_its_own_lease_call() {
    use ratelimit_runtime::algorithm::Limit;
    use ratelimit_runtime::store::{Check, LeaseAsk, RedisStore};
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), options()).await.unwrap();
    let check = Check {
        key: 7,
        group: 9,
        algorithm: AlgorithmKind::FixedWindow,
        limit: Limit::new(Quota::from_parts(100, 60).unwrap()),
        cost: 1,
        max_wait: 0,
        probe: false,
    };
    server.cli(&["LPUSH", &store.key_of(&check), "not a state"]);
    let ask = LeaseAsk {
        check,
        want: 30,
        back: 0,
        leased_at_us: 0,
        leased_in: 0,
    };
    let now = START_SECS * 1_000_000_000;
    let error = store.lease(&[ask], now).await.unwrap_err();
    assert!(
        error.is_unsupported(),
        "this key's fault, not Redis's: {error}"
    );
    let other = LeaseAsk {
        check: Check { key: 8, ..check },
        ..ask
    };
    let answer = store.lease(&[other], now).await.unwrap();
    assert!(answer.verdict.allowed);
    assert_eq!(
        answer.grants[0].units, 24,
        "a fixed window leases at most a quarter of the 99 left"
    );
}

#[actix_web::test]
async fn remaining_never_shows_more_than_the_fleet_has_left() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(START_SECS);
    let leasing = limiter(&server, "left", &clock, true);
    let exact = limiter(&server, "left", &clock, false);
    let rule = rule(AlgorithmKind::FixedWindow, 10_000, 60);
    busy(
        &leasing,
        &rule,
        &clock,
        (300, Duration::from_micros(20)),
        true,
    )
    .await;
    // Another process spends all Redis has: what is left is what the lease holds.
    while exact.check_key(&rule, "k", 1).await.is_allowed() {}
    settle().await;
    let mut shown = Vec::new();
    loop {
        let info = leasing.check_key(&rule, "k", 1).await;
        if !info.is_allowed() {
            break;
        }
        shown.push(info.remaining());
        settle().await;
    }
    // Whatever may still be left anywhere: in Redis (asked by a process that has not been
    // denied yet) and in the lease (its last unit, spent only through Redis).
    let fresh = limiter(&server, "left", &clock, false);
    let mut after = 1;
    while fresh.check_key(&rule, "k", 1).await.is_allowed() {
        after += 1;
    }
    assert!(shown.len() > 1, "the lease held units: {shown:?}");
    // After the k-th of n requests, n - k - 1 more passed: no header may have promised more
    // than those and what was left after.
    let n = shown.len();
    for (k, remaining) in shown.iter().enumerate() {
        assert!(
            *remaining as usize <= n - k - 1 + after,
            "request {k} of {n} showed {remaining} remaining ({after} left after)"
        );
    }
}
