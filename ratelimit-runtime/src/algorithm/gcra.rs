//! GCRA, the generic cell rate algorithm: one theoretical arrival time (TAT) per key, as
//! redis-cell and governor keep it.
//!
//! Each admitted unit pushes the TAT one emission interval `T = per / limit` further; a request
//! passes while the TAT stays within `capacity * T` of now. It admits what a token bucket of the
//! same rate and capacity admits, with eight bytes of state. `T` is rounded up to a whole
//! nanosecond, which can only make it stricter: at most one nanosecond per admitted unit.

use super::step::saturate;
use super::{Algorithm, AlgorithmKind, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;

/// The GCRA algorithm.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gcra;

/// A key's theoretical arrival time; 0 for a key never seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcraState {
    tat: UnixNanos,
}

/// The emission interval, rounded up to a whole nanosecond.
fn interval(limit: &Limit) -> u64 {
    limit
        .quota
        .period_nanos()
        .div_ceil(u64::from(limit.quota.limit()))
}

impl Algorithm for Gcra {
    type State = GcraState;
    const KIND: AlgorithmKind = AlgorithmKind::Gcra;

    fn evaluate(state: &mut GcraState, now: UnixNanos, limit: &Limit, cost: u32) -> Decision {
        let t = u128::from(interval(limit));
        let capacity = limit.capacity.get();
        let window = u128::from(capacity) * t;
        let tat = u128::from(state.tat.max(now));
        let now128 = u128::from(now);
        let new_tat = tat + u128::from(cost) * t;
        let allowed = new_tat - now128 <= window;
        let held = if allowed { new_tat } else { tat } - now128;
        let remaining = ((window - held.min(window)) / t) as u32;
        // Denied: it passes once the TAT has come within `window - cost * T` of the instant.
        let retry_at = if allowed {
            now128
        } else {
            new_tat.saturating_sub(window).max(now128)
        };
        Decision {
            allowed,
            limit: capacity,
            remaining,
            reset_at: saturate(if allowed { new_tat } else { tat }),
            retry_at: saturate(retry_at),
        }
    }

    fn charge(state: &mut GcraState, now: UnixNanos, limit: &Limit, cost: u32) {
        let step = interval(limit).saturating_mul(u64::from(cost));
        state.tat = state.tat.max(now).saturating_add(step);
    }

    fn expires_at(state: &GcraState) -> UnixNanos {
        state.tat
    }

    fn refund(
        state: &mut GcraState,
        _charged_at: UnixNanos,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) {
        // The arrival time moves back by the units' intervals, never before now: what has
        // drained since the charge is gone.
        let step = interval(limit).saturating_mul(u64::from(cost));
        if state.tat > now {
            state.tat = state.tat.saturating_sub(step).max(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::clock::NANOS_PER_SEC;
    use crate::quota::Quota;

    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;

    fn spend(s: &mut GcraState, now: UnixNanos, l: &Limit, cost: u32) -> Decision {
        Gcra::step(s, now, l, cost)
    }

    #[test]
    fn burst_then_one_per_interval() {
        // 10 per 10 s, capacity 3: three at once, then one per second.
        let l = Limit::with_capacity(
            Quota::from_parts(10, 10).unwrap(),
            NonZeroU32::new(3).unwrap(),
        );
        let mut s = GcraState::default();
        for left in [2, 1, 0] {
            assert_eq!(spend(&mut s, T0, &l, 1).remaining, left);
        }
        let denied = spend(&mut s, T0, &l, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_at, T0 + NANOS_PER_SEC);
        assert_eq!(denied.reset_at, T0 + 3 * NANOS_PER_SEC);
        assert!(!spend(&mut s, T0 + NANOS_PER_SEC - 1, &l, 1).allowed);
        assert!(spend(&mut s, T0 + NANOS_PER_SEC, &l, 1).allowed);
    }

    #[test]
    fn costs_and_rounding_never_exceed_the_rate() {
        // 3 per second: T rounds up to 333,333,334 ns.
        let l = Limit::new(Quota::from_parts(3, 1).unwrap());
        let mut s = GcraState::default();
        assert!(spend(&mut s, T0, &l, 3).allowed);
        let d = spend(&mut s, T0, &l, 2);
        assert_eq!(d.retry_at, T0 + 2 * 333_333_334);
        assert!(spend(&mut s, d.retry_at, &l, 2).allowed);
        assert!(!spend(&mut s, T0 + NANOS_PER_SEC, &l, 2).allowed);
    }

    #[test]
    fn a_clock_stepping_back_does_not_refill() {
        let l = Limit::new(Quota::from_parts(1, 10).unwrap());
        let mut s = GcraState::default();
        assert!(spend(&mut s, T0, &l, 1).allowed);
        assert!(!spend(&mut s, T0 - 100 * NANOS_PER_SEC, &l, 1).allowed);
        assert_eq!(Gcra::expires_at(&s), T0 + 10 * NANOS_PER_SEC);
    }
}
