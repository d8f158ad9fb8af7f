//! The conformance suite: every algorithm on every store answers these cases the same way.
//!
//! Cases talk to a store only through the [`Store`] trait, on explicit instants (a manual
//! clock), with keys of their own: a store that keeps state between cases (Redis) runs the very
//! same cases. `conformance_tests!(make_store)` turns each case into a `#[test]`.

#![allow(dead_code)]

use std::num::NonZeroU32;

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::clock::NANOS_PER_SEC;
use ratelimit_runtime::store::{Check, Store, Verdict};
use ratelimit_runtime::{Decision, Quota, UnixNanos};

/// A multiple of every period the cases use (1 s to 1 h), so windows start exactly here.
pub const T0: UnixNanos = 1_800_000_000 * NANOS_PER_SEC;
pub const SEC: u64 = NANOS_PER_SEC;
pub const MIN: u64 = 60 * SEC;

/// A fresh key per call: unique within the process and across runs sharing a store.
pub fn fresh_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        (nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    base.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// One key under one algorithm and limit, spent through a store.
pub struct Subject<'s, S> {
    store: &'s S,
    check: Check,
}

impl<'s, S: Store> Subject<'s, S> {
    pub fn new(store: &'s S, algorithm: AlgorithmKind, limit: u32, per_secs: u32) -> Self {
        let quota = Quota::from_parts(limit, per_secs).unwrap();
        let check = Check {
            group: fresh_key(),
            key: fresh_key().into(),
            algorithm,
            limit: algorithm.default_limit(quota),
            cost: 1,
            max_wait: 0,
            probe: false,
        };
        Subject { store, check }
    }

    pub fn with_capacity(mut self, capacity: u32) -> Self {
        self.check.limit =
            Limit::with_capacity(self.check.limit.quota, NonZeroU32::new(capacity).unwrap());
        self
    }

    pub fn check(&self) -> Check {
        self.check
    }

    /// Spends `cost` at `now`.
    pub async fn spend(&self, now: UnixNanos, cost: u32) -> Decision {
        let check = Check { cost, ..self.check };
        let verdict = self
            .store
            .decide(&[check], now)
            .await
            .expect("store answers");
        assert_eq!(verdict.allowed, verdict.decisions[0].allowed);
        verdict.decisions[0]
    }

    pub async fn allowed(&self, now: UnixNanos) -> bool {
        self.spend(now, 1).await.allowed
    }

    /// How many single requests pass at `now`, up to `max` tries.
    pub async fn admit_all(&self, now: UnixNanos, max: u32) -> u32 {
        let mut admitted = 0;
        for _ in 0..max {
            if self.allowed(now).await {
                admitted += 1;
            }
        }
        admitted
    }
}

pub async fn decide<S: Store>(store: &S, checks: &[Check], now: UnixNanos) -> Verdict {
    store.decide(checks, now).await.expect("store answers")
}

/// What a fresh key admits at one instant: exactly its capacity, then nothing.
pub async fn exact_limit_and_one_more<S: Store>(store: &S) {
    for algorithm in AlgorithmKind::ALL {
        let subject = Subject::new(store, algorithm, 7, 60);
        let capacity = subject.check().limit.capacity.get();
        for i in 0..capacity {
            let d = subject.spend(T0 + SEC, 1).await;
            assert!(d.allowed, "{algorithm}: request {i} of {capacity}");
            assert_eq!(
                d.remaining,
                capacity - i - 1,
                "{algorithm}: remaining after {i}"
            );
            assert_eq!(d.limit, capacity, "{algorithm}: reported limit");
        }
        let denied = subject.spend(T0 + SEC, 1).await;
        assert!(!denied.allowed, "{algorithm}: one more than the capacity");
        assert_eq!(denied.remaining, 0, "{algorithm}");
        assert!(
            denied.retry_at > T0 + SEC,
            "{algorithm}: a denial names a later instant"
        );
    }
}

/// A client that waits until `retry_at` is allowed, and not a nanosecond earlier.
pub async fn retry_at_is_exact<S: Store>(store: &S) {
    for algorithm in AlgorithmKind::ALL {
        for cost in [1, 3] {
            let subject = Subject::new(store, algorithm, 6, 10).with_capacity(6);
            let start = T0 + 3 * SEC + 123;
            assert!(subject.spend(start, 6).await.allowed, "{algorithm}");
            let denied = subject.spend(start + SEC / 2, cost).await;
            assert!(!denied.allowed, "{algorithm}");
            assert!(
                !subject.spend(denied.retry_at - 1, cost).await.allowed,
                "{algorithm} cost {cost}: one ns before retry_at"
            );
            assert!(
                subject.spend(denied.retry_at, cost).await.allowed,
                "{algorithm} cost {cost}: at retry_at"
            );
        }
    }
}

/// Denied requests are not charged: a cost that does not fit leaves room for one that does.
pub async fn denied_costs_are_not_charged<S: Store>(store: &S) {
    for algorithm in AlgorithmKind::ALL {
        let subject = Subject::new(store, algorithm, 5, 60).with_capacity(5);
        assert!(subject.spend(T0, 3).await.allowed, "{algorithm}");
        assert!(
            !subject.spend(T0, 3).await.allowed,
            "{algorithm}: 3 more do not fit"
        );
        let exact = subject.spend(T0, 2).await;
        assert!(exact.allowed, "{algorithm}: the remaining 2 fit exactly");
        assert_eq!(exact.remaining, 0, "{algorithm}");
    }
}

/// Fixed window: windows end on clock boundaries; one nanosecond either side of the edge.
pub async fn fixed_window_edges<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::FixedWindow, 3, 30);
    assert_eq!(subject.admit_all(T0 + 10 * SEC, 5).await, 3);
    let denied = subject.spend(T0 + 30 * SEC - 1, 1).await;
    assert_eq!(
        (denied.allowed, denied.reset_at, denied.retry_at),
        (false, T0 + 30 * SEC, T0 + 30 * SEC)
    );
    assert!(
        subject.allowed(T0 + 30 * SEC).await,
        "a new window at the boundary"
    );
}

/// The fixed window's known weakness, kept on purpose: a full budget on each side of a boundary.
pub async fn fixed_window_boundary_burst<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::FixedWindow, 10, 60);
    assert_eq!(subject.admit_all(T0 + MIN - 1, 12).await, 10);
    assert_eq!(
        subject.admit_all(T0 + MIN, 12).await,
        10,
        "20 within two nanoseconds"
    );
}

/// Sliding log: 5 requests per 5 minutes, one a minute; the sixth waits for the first to leave.
pub async fn sliding_log_five_per_five_minutes<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::SlidingLog, 5, 300);
    for minute in 0..5 {
        assert!(subject.allowed(T0 + minute * MIN).await, "minute {minute}");
    }
    let sixth = subject.spend(T0 + 5 * MIN - 1, 1).await;
    assert!(!sixth.allowed);
    assert_eq!(
        (sixth.retry_at, sixth.reset_at),
        (T0 + 5 * MIN, T0 + 9 * MIN)
    );
    assert!(subject.allowed(T0 + 5 * MIN).await);
    assert!(!subject.allowed(T0 + 5 * MIN).await);
}

/// Sliding window: 84 in the previous minute and 36 so far; 15 s in, 84 * 45/60 + 36 = 99.
pub async fn sliding_window_84_36<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::SlidingWindow, 100, 60);
    assert!(subject.spend(T0 - 30 * SEC, 84).await.allowed);
    // 14.9 s in: 84 * 45.1/60 = 63.14, so 36 fit and 37 do not.
    assert!(!subject.spend(T0 + 14_900 * SEC / 1_000, 37).await.allowed);
    assert!(subject.spend(T0 + 14_900 * SEC / 1_000, 36).await.allowed);
    let last = subject.spend(T0 + 15 * SEC, 1).await;
    assert_eq!((last.allowed, last.remaining), (true, 0), "99 + 1 = 100");
    assert!(!subject.allowed(T0 + 15 * SEC).await);
}

/// Token bucket: 10 tokens refilled at 10 per minute, one every six seconds.
pub async fn token_bucket_ten_per_minute<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::TokenBucket, 10, 60);
    assert_eq!(subject.admit_all(T0, 12).await, 10);
    let denied = subject.spend(T0, 1).await;
    assert_eq!((denied.retry_at, denied.reset_at), (T0 + 6 * SEC, T0 + MIN));
    assert_eq!(subject.admit_all(T0 + 30 * SEC, 12).await, 5);
    assert_eq!(
        subject.spend(T0 + 3 * MIN, 1).await.remaining,
        9,
        "never above capacity"
    );
}

/// Buckets take a capacity: a burst twice the rate, then the rate.
pub async fn bursts<S: Store>(store: &S) {
    for algorithm in [
        AlgorithmKind::TokenBucket,
        AlgorithmKind::LeakyBucket,
        AlgorithmKind::Gcra,
    ] {
        let subject = Subject::new(store, algorithm, 10, 10).with_capacity(20);
        assert_eq!(
            subject.admit_all(T0, 25).await,
            20,
            "{algorithm}: the burst"
        );
        assert_eq!(
            subject.admit_all(T0 + SEC, 5).await,
            1,
            "{algorithm}: then one per second"
        );
        assert_eq!(subject.admit_all(T0 + 4 * SEC, 5).await, 3, "{algorithm}");
    }
}

/// A sliding log at its largest limit: units admitted together leave together, the ones
/// admitted later stay, and a peek sees the same without dropping anything.
pub async fn sliding_log_at_its_bound<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::SlidingLog, 10_000, 60);
    assert!(subject.spend(T0, 4_000).await.allowed);
    assert!(subject.spend(T0 + 10 * SEC, 6_000).await.allowed);
    let full = subject.spend(T0 + 60 * SEC - 1_000, 1).await;
    assert!(!full.allowed);
    assert_eq!(full.retry_at, T0 + 60 * SEC, "when the first 4,000 leave");
    let peeked = store.peek(&[subject.check()], T0 + 60 * SEC).await.unwrap();
    assert!(peeked.allowed);
    assert_eq!(
        peeked.decisions[0].remaining, 3_999,
        "after a request of one"
    );
    assert!(!subject.spend(T0 + 60 * SEC, 4_001).await.allowed);
    let refilled = subject.spend(T0 + 60 * SEC, 4_000).await;
    assert!(refilled.allowed);
    assert_eq!(refilled.remaining, 0);
    let early = subject.spend(T0 + 70 * SEC, 6_001).await;
    assert!(!early.allowed);
    assert_eq!(early.remaining, 6_000);
    assert!(subject.spend(T0 + 70 * SEC, 6_000).await.allowed);
}

/// GCRA above 10,000 per second keeps a whole-nanosecond interval on every store (rounded up,
/// as the memory store rounds it), so its rate stays exact where a whole-microsecond interval
/// would round it by more than 1%.
pub async fn gcra_above_ten_thousand_per_second<S: Store>(store: &S) {
    // 50,000 per second, five at once: one every 20 µs.
    let subject = Subject::new(store, AlgorithmKind::Gcra, 50_000, 1).with_capacity(5);
    assert_eq!(subject.admit_all(T0, 6).await, 5);
    let denied = subject.spend(T0, 1).await;
    assert_eq!(denied.retry_at, T0 + 20_000);
    assert_eq!(denied.reset_at, T0 + 100_000);
    assert!(!subject.allowed(T0 + 19_999).await);
    assert!(subject.allowed(T0 + 20_000).await);
    // A whole second refills exactly 50,000, and not a microsecond earlier.
    let second = Subject::new(store, AlgorithmKind::Gcra, 50_000, 1);
    assert!(second.spend(T0, 50_000).await.allowed);
    let early = second.spend(T0 + SEC - 1_000, 50_000).await;
    assert!(!early.allowed);
    assert_eq!(early.retry_at, T0 + SEC);
    let refilled = second.spend(T0 + SEC, 50_000).await;
    assert!(refilled.allowed);
    assert_eq!(refilled.remaining, 0);
    // 30,000 per second: 33,333.3 ns, rounded up to 33,334: a second and 20 µs for 30,000.
    let third = Subject::new(store, AlgorithmKind::Gcra, 30_000, 1);
    assert!(third.spend(T0, 30_000).await.allowed);
    let denied = third.spend(T0 + SEC, 30_000).await;
    assert!(!denied.allowed);
    assert_eq!(denied.retry_at, T0 + SEC + 20_000);
    assert!(third.spend(denied.retry_at, 30_000).await.allowed);
}

/// The leaky bucket smooths: without a burst, one request per `per / limit`.
pub async fn leaky_bucket_smooths<S: Store>(store: &S) {
    let subject = Subject::new(store, AlgorithmKind::LeakyBucket, 4, 1);
    assert_eq!(subject.admit_all(T0, 4).await, 1);
    assert!(!subject.allowed(T0 + SEC / 4 - 1).await);
    assert!(subject.allowed(T0 + SEC / 4).await);
}

/// Several checks in one decision: all charged, or none.
pub async fn stacked_checks_all_or_nothing<S: Store>(store: &S) {
    for algorithm in AlgorithmKind::ALL {
        let tight = Subject::new(store, algorithm, 1, 60)
            .with_capacity(1)
            .check();
        // Checks decided together share a group (one Cluster slot).
        let loose = Check {
            group: tight.group,
            ..Subject::new(store, AlgorithmKind::FixedWindow, 10, 60).check()
        };
        assert!(
            decide(store, &[tight, loose], T0).await.allowed,
            "{algorithm}"
        );
        let denied = decide(store, &[loose, tight], T0).await;
        assert!(!denied.allowed, "{algorithm}");
        assert!(
            denied.decisions[0].allowed && !denied.decisions[1].allowed,
            "{algorithm}"
        );
        let after = decide(store, &[loose], T0).await;
        assert_eq!(
            after.decisions[0].remaining, 8,
            "{algorithm}: the denied decision charged nothing"
        );
    }
}

/// A clock stepping back never hands out budget again.
pub async fn clock_stepping_back<S: Store>(store: &S) {
    for algorithm in AlgorithmKind::ALL {
        let subject = Subject::new(store, algorithm, 2, 10).with_capacity(2);
        assert_eq!(subject.admit_all(T0 + 5 * SEC, 3).await, 2, "{algorithm}");
        assert!(
            !subject.allowed(T0 - 20 * SEC).await,
            "{algorithm}: 25 s back in time"
        );
        assert!(!subject.allowed(T0 + 5 * SEC).await, "{algorithm}");
    }
}

/// Header values: reset is when the budget is whole again.
pub async fn reset_is_when_whole_again<S: Store>(store: &S) {
    let cases = [
        (AlgorithmKind::FixedWindow, T0 + 10 * SEC),
        (AlgorithmKind::SlidingLog, T0 + 2 * SEC + 10 * SEC),
        (AlgorithmKind::TokenBucket, T0 + 2 * SEC + 5 * SEC),
        (AlgorithmKind::Gcra, T0 + 2 * SEC + 5 * SEC),
        (AlgorithmKind::LeakyBucket, T0 + 2 * SEC + 5 * SEC),
        (AlgorithmKind::SlidingWindow, T0 + 20 * SEC),
    ];
    for (algorithm, reset) in cases {
        let subject = Subject::new(store, algorithm, 4, 10).with_capacity(4);
        let d = subject.spend(T0 + 2 * SEC, 2).await;
        assert_eq!(d.reset_at, reset, "{algorithm}");
    }
}

/// Refunds: units charged earlier come back where they still count, the same on every store.
pub async fn refunds_give_back_what_still_counts<S: Store>(store: &S) {
    let refund = |subject: &Subject<'_, S>, charged_at: UnixNanos, now: UnixNanos, units: u32| {
        let check = Check {
            cost: units,
            ..subject.check()
        };
        async move { store.refund(&[check], charged_at, now).await.unwrap() }
    };
    for algorithm in AlgorithmKind::ALL {
        // 3 of 10 spent, 2 given back at once: as if 1 had been spent.
        let subject = Subject::new(store, algorithm, 10, 60).with_capacity(10);
        assert!(subject.spend(T0, 3).await.allowed, "{algorithm}");
        refund(&subject, T0, T0, 2).await;
        assert_eq!(subject.spend(T0, 1).await.remaining, 8, "{algorithm}");
        // Never more than was charged: the budget is whole at most.
        refund(&subject, T0, T0, 50).await;
        assert_eq!(subject.spend(T0, 1).await.remaining, 9, "{algorithm}");
    }
    // A window that has ended keeps its units: the current one is not refunded for them.
    let window = Subject::new(store, AlgorithmKind::FixedWindow, 10, 60);
    assert!(window.spend(T0, 3).await.allowed);
    assert!(window.spend(T0 + MIN, 4).await.allowed);
    refund(&window, T0, T0 + MIN, 2).await;
    assert_eq!(window.spend(T0 + MIN, 1).await.remaining, 5);
    // The log gives back the request's own entries, which expire when its units would have.
    let log = Subject::new(store, AlgorithmKind::SlidingLog, 10, 60);
    assert!(log.spend(T0, 3).await.allowed);
    assert!(log.spend(T0 + 30 * SEC, 4).await.allowed);
    refund(&log, T0, T0 + 30 * SEC, 2).await;
    // At T0 + 60 s the one left of the first request expires: 4 held.
    assert_eq!(log.spend(T0 + MIN, 1).await.remaining, 5);
    // A bucket gives back at most what it still holds: 12 s on, 2 of the 3 units drained.
    let bucket = Subject::new(store, AlgorithmKind::TokenBucket, 10, 60);
    assert!(bucket.spend(T0, 3).await.allowed);
    refund(&bucket, T0, T0 + 12 * SEC, 3).await;
    assert_eq!(
        bucket.spend(T0 + 12 * SEC, 10).await.remaining,
        0,
        "whole again"
    );
}

/// Calls `$callback!` with the name of every case, after `$arg;` when given.
#[macro_export]
macro_rules! with_cases {
    ($callback:ident $(, $arg:expr)?) => {
        $crate::$callback! {
            $($arg;)?
            exact_limit_and_one_more, retry_at_is_exact, denied_costs_are_not_charged,
            fixed_window_edges, fixed_window_boundary_burst, sliding_log_five_per_five_minutes,
            sliding_window_84_36, token_bucket_ten_per_minute, bursts, sliding_log_at_its_bound,
            gcra_above_ten_thousand_per_second, leaky_bucket_smooths,
            stacked_checks_all_or_nothing, clock_stepping_back, reset_is_when_whole_again,
            refunds_give_back_what_still_counts
        }
    };
}

#[macro_export]
macro_rules! define_run_all {
    ($($case:ident),*) => {
        /// Runs every case in turn on one store, naming each as it starts.
        pub async fn run_all<S: Store>(store: &S) {
            $(
                eprintln!("conformance case: {}", stringify!($case));
                $case(store).await;
            )*
        }
    };
}

with_cases!(define_run_all);

#[macro_export]
macro_rules! one_test_per_case {
    ($make:expr; $($case:ident),*) => {$(
        #[actix_web::test]
        async fn $case() {
            let store = $make;
            $crate::conformance::$case(&store).await;
        }
    )*};
}

/// Declares one `#[actix_web::test]` per case, each on a fresh store from `$make` (an
/// expression, evaluated inside the async test).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::with_cases!(one_test_per_case, $make);
    };
}
