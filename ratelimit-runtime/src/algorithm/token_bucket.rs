//! Token bucket: `capacity` tokens (`burst`, the limit by default), refilled continuously at
//! `limit` per `per`, a request spending `cost` tokens.
//!
//! The tokens missing from a token bucket are exactly the water in a
//! [leaky bucket](super::LeakyBucket) of the same capacity and rate, so this algorithm keeps
//! that one state ([`BucketLevel`]: the exact instant the bucket would be full again) and its
//! exact arithmetic: fractions of a token are never rounded, so refills never drift. What
//! differs is the default capacity: a token bucket starts full, with `limit` tokens to spend at
//! once.

use super::leaky_bucket::BucketLevel;
use super::{Algorithm, AlgorithmKind, LeakyBucket, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;

/// The token-bucket algorithm.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenBucket;

impl Algorithm for TokenBucket {
    type State = BucketLevel;
    const KIND: AlgorithmKind = AlgorithmKind::TokenBucket;

    fn evaluate(state: &mut BucketLevel, now: UnixNanos, limit: &Limit, cost: u32) -> Decision {
        LeakyBucket::evaluate(state, now, limit, cost)
    }

    fn charge(state: &mut BucketLevel, now: UnixNanos, limit: &Limit, cost: u32) {
        LeakyBucket::charge(state, now, limit, cost);
    }

    fn expires_at(state: &BucketLevel) -> UnixNanos {
        LeakyBucket::expires_at(state)
    }

    fn refund(
        state: &mut BucketLevel,
        charged_at: UnixNanos,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) {
        LeakyBucket::refund(state, charged_at, now, limit, cost);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::clock::NANOS_PER_SEC;
    use crate::quota::Quota;

    const MIN: u64 = 60 * NANOS_PER_SEC;
    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;

    fn spend(s: &mut BucketLevel, now: UnixNanos, l: &Limit, cost: u32) -> Decision {
        TokenBucket::step(s, now, l, cost)
    }

    /// The worked example: a bucket of 10 tokens refilled at 10 per minute.
    #[test]
    fn ten_tokens_refilled_each_minute() {
        let l = Limit::new(Quota::from_parts(10, 60).unwrap());
        let mut s = BucketLevel::default();
        assert_eq!(spend(&mut s, T0, &l, 10).remaining, 0);
        let denied = spend(&mut s, T0, &l, 1);
        assert!(!denied.allowed);
        assert_eq!(
            denied.retry_at,
            T0 + 6 * NANOS_PER_SEC,
            "one token every six seconds"
        );
        assert_eq!(denied.reset_at, T0 + MIN);
        assert!(spend(&mut s, T0 + 30 * NANOS_PER_SEC, &l, 5).allowed);
        assert!(!spend(&mut s, T0 + 30 * NANOS_PER_SEC, &l, 1).allowed);
        assert_eq!(
            spend(&mut s, T0 + 2 * MIN, &l, 1).remaining,
            9,
            "never above capacity"
        );
    }

    #[test]
    fn fractional_tokens_do_not_drift() {
        // 3 per second: a token every 333,333,333.3 ns. Empty the bucket of 10, then spend one
        // token at every instant ceil(i / 3 s): each is exactly covered by the refill since the
        // start. Rounding each refill to whole nanoseconds or tokens would refuse most of them.
        let l = Limit::new(Quota::from_parts(3, 1).unwrap());
        let l = Limit::with_capacity(l.quota, NonZeroU32::new(10).unwrap());
        let mut s = BucketLevel::default();
        assert!(spend(&mut s, T0, &l, 10).allowed);
        let at = |i: u64| T0 + (i * NANOS_PER_SEC).div_ceil(3);
        for i in 1..=3_000_000u64 {
            assert!(spend(&mut s, at(i), &l, 1).allowed, "request {i}");
        }
        let last = at(3_000_000);
        assert_eq!(last, T0 + 1_000_000 * NANOS_PER_SEC);
        let denied = spend(&mut s, last, &l, 1);
        assert!(!denied.allowed, "exactly empty after a million seconds");
        assert_eq!(denied.retry_at, last + 333_333_334);
    }

    #[test]
    fn capacity_is_burst() {
        let l = Limit::with_capacity(
            Quota::from_parts(1, 1).unwrap(),
            NonZeroU32::new(5).unwrap(),
        );
        let mut s = BucketLevel::default();
        assert!(spend(&mut s, T0, &l, 5).allowed);
        assert!(!spend(&mut s, T0, &l, 1).allowed);
        assert!(spend(&mut s, T0 + NANOS_PER_SEC, &l, 1).allowed);
    }
}
