//! Leaky bucket, in its meter form: each request pours `cost` units into a bucket of `capacity`
//! units (`burst`) that leaks at `limit` per `per`; a request that would overflow it is refused.
//!
//! As nginx's `limit_req`, the capacity defaults to one request: without `burst`, requests must
//! come at most one per `per / limit`, never in a burst; `burst = N` lets N arrive at once.
//!
//! How it differs from the [token bucket](super::TokenBucket): the two are duals (the water in
//! this bucket is exactly the tokens missing from that one), so with the same capacity they
//! admit exactly the same requests. They differ in their defaults: the token bucket starts with
//! `limit` tokens and lets a fresh client spend them at once; the leaky bucket smooths traffic
//! to the rate unless given a `burst`. (The queue form, which delays requests instead of
//! refusing them, is a traffic shaper rather than a limiter, and is not offered.)
//!
//! The level is kept exactly, in units of 1 / (period in ns) of a request, so leaking never
//! drifts from rounding however long a key lives.

use super::{Algorithm, AlgorithmKind, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;

/// The leaky-bucket algorithm (meter form).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeakyBucket;

/// A key's bucket, as the instant it will be empty: `empty_at + frac / limit` nanoseconds.
///
/// The level at `t` is the time left until then, times the rate: `(empty_at - t) × limit +
/// frac`, in units of 1 / (period in ns) of a request. Twelve bytes, exact, and it knows when it
/// expires without being told the rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketLevel {
    /// The whole nanosecond at which the bucket is empty (0 for a key never seen).
    empty_at: UnixNanos,
    /// The fraction of a nanosecond beyond it, in units of 1 / limit (below the limit).
    frac: u32,
}

/// The level at `now`: what has not leaked out yet (never below zero).
fn level_at(state: &BucketLevel, now: UnixNanos, limit: &Limit) -> u128 {
    let rate = u128::from(limit.quota.limit());
    let empty = u128::from(state.empty_at) * rate + u128::from(state.frac);
    empty.saturating_sub(u128::from(now) * rate)
}

impl Algorithm for LeakyBucket {
    type State = BucketLevel;
    const KIND: AlgorithmKind = AlgorithmKind::LeakyBucket;

    fn evaluate(state: &mut BucketLevel, now: UnixNanos, limit: &Limit, cost: u32) -> Decision {
        let per = u128::from(limit.quota.period_nanos());
        let rate = u128::from(limit.quota.limit());
        let capacity = u128::from(limit.capacity.get()) * per;
        let level = level_at(state, now, limit);
        let spend = u128::from(cost) * per;
        let allowed = level + spend <= capacity;
        let after = if allowed { level + spend } else { level };
        let at = |scaled: u128| {
            now.saturating_add(u64::try_from(scaled.div_ceil(rate)).unwrap_or(u64::MAX))
        };
        Decision {
            allowed,
            limit: limit.capacity.get(),
            remaining: u32::try_from((capacity - after.min(capacity)) / per).unwrap_or(u32::MAX),
            reset_at: at(after),
            // Denied: it passes once enough has leaked out to make room for the cost.
            retry_at: if allowed {
                now
            } else {
                at((level + spend).saturating_sub(capacity))
            },
        }
    }

    fn charge(state: &mut BucketLevel, now: UnixNanos, limit: &Limit, cost: u32) {
        let rate = u128::from(limit.quota.limit());
        let level =
            level_at(state, now, limit) + u128::from(cost) * u128::from(limit.quota.period_nanos());
        // A clock that stepped back reads a fuller bucket (stricter), never an emptier one.
        let empty = u128::from(now) * rate + level;
        *state = BucketLevel {
            empty_at: u64::try_from(empty / rate).unwrap_or(u64::MAX),
            frac: (empty % rate) as u32,
        };
    }

    fn refund(
        state: &mut BucketLevel,
        _charged_at: UnixNanos,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) {
        // What has leaked since the charge is gone: the level drops by at most what it holds.
        let rate = u128::from(limit.quota.limit());
        let level = level_at(state, now, limit)
            .saturating_sub(u128::from(cost) * u128::from(limit.quota.period_nanos()));
        let empty = u128::from(now) * rate + level;
        *state = BucketLevel {
            empty_at: u64::try_from(empty / rate).unwrap_or(u64::MAX),
            frac: (empty % rate) as u32,
        };
    }

    fn expires_at(state: &BucketLevel) -> UnixNanos {
        state.empty_at.saturating_add(u64::from(state.frac > 0))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::clock::NANOS_PER_SEC;
    use crate::quota::Quota;

    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;

    fn pour(s: &mut BucketLevel, now: UnixNanos, l: &Limit, cost: u32) -> Decision {
        LeakyBucket::step(s, now, l, cost)
    }

    #[test]
    fn smooths_to_the_rate_without_burst() {
        // 10 per 10 s, capacity 1: one per second, never two at once.
        let l = Limit::with_capacity(Quota::from_parts(10, 10).unwrap(), NonZeroU32::MIN);
        let mut s = BucketLevel::default();
        assert!(pour(&mut s, T0, &l, 1).allowed);
        let denied = pour(&mut s, T0 + 1, &l, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_at, T0 + NANOS_PER_SEC);
        assert!(pour(&mut s, T0 + NANOS_PER_SEC, &l, 1).allowed);
    }

    #[test]
    fn burst_is_room_in_the_bucket() {
        let l = Limit::with_capacity(
            Quota::from_parts(2, 1).unwrap(),
            NonZeroU32::new(4).unwrap(),
        );
        let mut s = BucketLevel::default();
        assert_eq!(pour(&mut s, T0, &l, 4).remaining, 0);
        let d = pour(&mut s, T0, &l, 1);
        assert_eq!(
            (d.allowed, d.retry_at, d.reset_at),
            (false, T0 + NANOS_PER_SEC / 2, T0 + 2 * NANOS_PER_SEC)
        );
        assert!(pour(&mut s, T0 + NANOS_PER_SEC, &l, 2).allowed);
        assert!(!pour(&mut s, T0 + NANOS_PER_SEC, &l, 1).allowed);
        assert!(LeakyBucket::expires_at(&s) >= T0 + 3 * NANOS_PER_SEC);
    }
}
