//! Property tests: whatever the arrival times and costs, no algorithm admits more than its
//! stated bound in any interval, and a denied client is admitted at the `retry_at` it was given.

use std::num::NonZeroU32;

use proptest::prelude::*;
use ratelimit_runtime::algorithm::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, Limit, SlidingLog, SlidingWindow, TokenBucket,
};
use ratelimit_runtime::clock::NANOS_PER_SEC;
use ratelimit_runtime::Quota;

const T0: u64 = 1_800_000_000 * NANOS_PER_SEC;

/// A quota, a capacity and a run of (gap before the request, cost).
fn scenario() -> impl Strategy<Value = (u32, u32, u32, Vec<(u64, u32)>)> {
    (1u32..=8, 1u32..=5, 1u32..=12).prop_flat_map(|(limit, per, capacity)| {
        let period = u64::from(per) * NANOS_PER_SEC;
        let gaps = prop_oneof![Just(0u64), 0..period / 4, 0..3 * period];
        (
            Just(limit),
            Just(per),
            Just(capacity),
            prop::collection::vec((gaps, 1u32..=3), 1..120),
        )
    })
}

/// Runs the requests; returns every admitted (instant, cost), and checks retry_at on the way.
fn run<A: Algorithm>(limit: &Limit, requests: &[(u64, u32)]) -> Vec<(u64, u32)>
where
    A::State: Clone,
{
    let mut state = A::State::default();
    let mut now = T0;
    let mut admitted = Vec::new();
    for &(gap, cost) in requests {
        now += gap;
        let decision = A::step(&mut state, now, limit, cost);
        if decision.allowed {
            admitted.push((now, cost));
        } else if cost <= limit.capacity.get() {
            // Waiting as told is enough: evaluated (not charged) at retry_at, it passes.
            let later = A::evaluate(&mut state.clone(), decision.retry_at, limit, cost);
            assert!(
                later.allowed,
                "retry_at {} did not admit cost {cost}",
                decision.retry_at
            );
            assert!(decision.retry_at > now);
        }
    }
    admitted
}

/// The most admitted (by cost) in any half-open interval of length `span` starting at an
/// admission.
fn max_in_any(admitted: &[(u64, u32)], span: u64) -> u64 {
    (0..admitted.len())
        .map(|i| {
            let start = admitted[i].0;
            admitted[i..]
                .iter()
                .take_while(|(t, _)| *t < start + span)
                .map(|(_, c)| u64::from(*c))
                .sum()
        })
        .max()
        .unwrap_or(0)
}

/// The most admitted in one clock-aligned window of length `span`.
fn max_in_aligned(admitted: &[(u64, u32)], span: u64) -> u64 {
    let mut totals = std::collections::HashMap::new();
    for &(t, c) in admitted {
        *totals.entry(t / span).or_insert(0u64) += u64::from(c);
    }
    totals.into_values().max().unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sliding_log_is_exact((limit, per, _, requests) in scenario()) {
        let l = Limit::new(Quota::from_parts(limit, per).unwrap());
        let admitted = run::<SlidingLog>(&l, &requests);
        prop_assert!(max_in_any(&admitted, l.quota.period_nanos()) <= u64::from(limit));
    }

    #[test]
    fn fixed_window_bounds((limit, per, _, requests) in scenario()) {
        let l = Limit::new(Quota::from_parts(limit, per).unwrap());
        let admitted = run::<FixedWindow>(&l, &requests);
        let period = l.quota.period_nanos();
        prop_assert!(max_in_aligned(&admitted, period) <= u64::from(limit));
        prop_assert!(max_in_any(&admitted, period) <= 2 * u64::from(limit));
    }

    #[test]
    fn sliding_window_bounds((limit, per, _, requests) in scenario()) {
        let l = Limit::new(Quota::from_parts(limit, per).unwrap());
        let admitted = run::<SlidingWindow>(&l, &requests);
        let period = l.quota.period_nanos();
        prop_assert!(max_in_aligned(&admitted, period) <= u64::from(limit));
        prop_assert!(max_in_any(&admitted, period) < 2 * u64::from(limit));
    }

    #[test]
    fn buckets_never_exceed_capacity_plus_rate((limit, per, capacity, requests) in scenario()) {
        let quota = Quota::from_parts(limit, per).unwrap();
        let l = Limit::with_capacity(quota, NonZeroU32::new(capacity).unwrap());
        let period = quota.period_nanos();
        for (name, admitted) in [
            ("token_bucket", run::<TokenBucket>(&l, &requests)),
            ("leaky_bucket", run::<LeakyBucket>(&l, &requests)),
            ("gcra", run::<Gcra>(&l, &requests)),
        ] {
            // In any interval of length d: at most capacity + d * limit / per.
            for span in [1, period / 3, period, 3 * period] {
                let bound = u64::from(capacity) + span * u64::from(limit) / period;
                prop_assert!(max_in_any(&admitted, span) <= bound, "{} over {} ns", name, span);
            }
        }
    }

    #[test]
    fn gcra_admits_what_a_token_bucket_admits((limit, per, capacity, requests) in scenario()) {
        // With a period a whole multiple of the limit, GCRA's interval is exact and the two agree.
        let quota = Quota::from_parts(limit, per * limit).unwrap();
        let l = Limit::with_capacity(quota, NonZeroU32::new(capacity).unwrap());
        prop_assert_eq!(run::<Gcra>(&l, &requests), run::<TokenBucket>(&l, &requests));
    }
}
