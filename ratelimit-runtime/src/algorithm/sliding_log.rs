//! Sliding log: one timestamp per admitted unit, exact over any window of length `per`.
//!
//! The log stores when each admitted unit stops counting (its admission time plus the period),
//! oldest first, and never more than the limit of them: memory per key is bounded by the limit,
//! and the limit by [`SlidingLog::MAX_LIMIT`].

use std::collections::VecDeque;

use super::{Algorithm, AlgorithmKind, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;

/// The sliding-log algorithm.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlidingLog;

impl SlidingLog {
    /// The largest `limit` a sliding log takes: 10,000.
    ///
    /// A log holds one instant per unit it counts, so its limit is its size per key: 80 KB in
    /// memory at this bound, about 210 KB as a Redis list (measured with `MEMORY USAGE`), and a
    /// request of that cost pushes as many entries within the decision script, which holds
    /// Redis for the whole fleet meanwhile. Ten thousand covers the quotas a log is chosen for
    /// (exactly N per any window, N per client in the hundreds or thousands) while keeping a
    /// million-key store from being made to hold gigabytes by one rule. Above it,
    /// `sliding_window` (16 bytes, weighted) or `gcra` / `token_bucket` (exact rates) keep a
    /// larger limit in constant space. The attribute refuses a larger limit at compile time; a
    /// limiter refuses one it learns at run time (a tier function, an override, default limits
    /// from a string) as a limit it cannot decide.
    pub const MAX_LIMIT: u32 = 10_000;
}

/// Entries a log keeps room for however few it holds.
const MIN_ROOM: usize = 4;

/// A key's log: the instants at which its admitted units stop counting, ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingLogState {
    expiries: VecDeque<UnixNanos>,
}

impl Algorithm for SlidingLog {
    type State = SlidingLogState;
    const KIND: AlgorithmKind = AlgorithmKind::SlidingLog;

    fn evaluate(state: &mut SlidingLogState, now: UnixNanos, limit: &Limit, cost: u32) -> Decision {
        let log = &mut state.expiries;
        while log.front().is_some_and(|&t| t <= now) {
            log.pop_front();
        }
        // A log that held many entries and now holds few gives the room back (halving, so a
        // log that fills and drains each window does not reallocate every time).
        if log.capacity() >= 4 * log.len().max(MIN_ROOM) {
            log.shrink_to(2 * log.len());
        }
        let max = limit.quota.limit();
        let held = log.len();
        let allowed = held + cost as usize <= max as usize;
        let newest = now.saturating_add(limit.quota.period_nanos());
        if allowed {
            return Decision {
                allowed,
                limit: max,
                remaining: max - (held as u32 + cost),
                reset_at: newest,
                retry_at: now,
            };
        }
        // The request passes once enough of the oldest entries have left the window.
        let must_leave = (held + cost as usize).saturating_sub(max as usize);
        let reset_at = log.back().copied().unwrap_or(now);
        let retry_at = match must_leave.checked_sub(1).and_then(|i| log.get(i)) {
            Some(&t) if cost <= max => t,
            _ => reset_at.max(newest),
        };
        Decision {
            allowed,
            limit: max,
            remaining: max.saturating_sub(held as u32),
            reset_at,
            retry_at,
        }
    }

    fn charge(state: &mut SlidingLogState, now: UnixNanos, limit: &Limit, cost: u32) {
        let log = &mut state.expiries;
        // Keep the log sorted even if the clock stepped back.
        let expiry = now
            .saturating_add(limit.quota.period_nanos())
            .max(log.back().copied().unwrap_or(0));
        log.extend(std::iter::repeat_n(expiry, cost as usize));
    }

    fn expires_at(state: &SlidingLogState) -> UnixNanos {
        state.expiries.back().copied().unwrap_or(0)
    }

    fn refund(
        state: &mut SlidingLogState,
        charged_at: UnixNanos,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) {
        // The request's own entries: `cost` copies of the instant it stops counting, which
        // have not expired yet. (A clock that stepped back at the charge wrote a later instant:
        // those entries stay, stricter.)
        let expiry = charged_at.saturating_add(limit.quota.period_nanos());
        if expiry <= now {
            return;
        }
        let log = &mut state.expiries;
        let first = log.partition_point(|&t| t < expiry);
        let past = log.partition_point(|&t| t <= expiry);
        let take = (past - first).min(cost as usize);
        log.drain(past - take..past);
    }

    fn heap_bytes(state: &SlidingLogState) -> usize {
        state.expiries.capacity() * std::mem::size_of::<UnixNanos>()
    }

    fn held(state: &SlidingLogState, now: UnixNanos) -> u64 {
        let expired = state.expiries.partition_point(|&t| t <= now);
        (state.expiries.len() - expired) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NANOS_PER_SEC;
    use crate::quota::Quota;

    const MIN: u64 = 60 * NANOS_PER_SEC;
    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;

    fn spend(state: &mut SlidingLogState, now: UnixNanos, l: &Limit, cost: u32) -> Decision {
        SlidingLog::step(state, now, l, cost)
    }

    /// The worked example: 5 requests per 5 minutes, one a minute, then the sixth.
    #[test]
    fn five_per_five_minutes() {
        let l = Limit::new(Quota::from_parts(5, 300).unwrap());
        let mut s = SlidingLogState::default();
        for i in 0..5 {
            let d = spend(&mut s, T0 + i * MIN, &l, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i as u32);
        }
        let sixth = spend(&mut s, T0 + 5 * MIN - 1, &l, 1);
        assert!(!sixth.allowed);
        assert_eq!(sixth.retry_at, T0 + 5 * MIN, "when the first entry leaves");
        assert_eq!(sixth.reset_at, T0 + 9 * MIN, "when the last entry leaves");
        assert!(spend(&mut s, T0 + 5 * MIN, &l, 1).allowed);
        assert!(!spend(&mut s, T0 + 5 * MIN, &l, 1).allowed);
    }

    #[test]
    fn never_more_than_limit_in_any_window() {
        let l = Limit::new(Quota::from_parts(3, 10).unwrap());
        let mut s = SlidingLogState::default();
        let mut admitted = Vec::new();
        for step in 0..400u64 {
            let now = T0 + step * NANOS_PER_SEC / 7;
            if spend(&mut s, now, &l, 1).allowed {
                admitted.push(now);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&u| u < t + 10 * NANOS_PER_SEC)
                .count();
            assert!(in_window <= 3);
        }
        assert!(s.expiries.len() <= 3, "memory bounded by the limit");
    }

    #[test]
    fn costs_wait_for_enough_room() {
        let l = Limit::new(Quota::from_parts(4, 10).unwrap());
        let mut s = SlidingLogState::default();
        assert!(spend(&mut s, T0, &l, 1).allowed);
        assert!(spend(&mut s, T0 + NANOS_PER_SEC, &l, 2).allowed);
        let d = spend(&mut s, T0 + 2 * NANOS_PER_SEC, &l, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(
            d.retry_at,
            T0 + 11 * NANOS_PER_SEC,
            "two units must leave: both admitted at 1 s"
        );
        assert!(spend(&mut s, d.retry_at, &l, 3).allowed);
    }

    #[test]
    fn clock_stepping_back_keeps_order() {
        let l = Limit::new(Quota::from_parts(2, 10).unwrap());
        let mut s = SlidingLogState::default();
        assert!(spend(&mut s, T0 + 5 * NANOS_PER_SEC, &l, 1).allowed);
        assert!(spend(&mut s, T0, &l, 1).allowed);
        assert!(!spend(&mut s, T0 + NANOS_PER_SEC, &l, 1).allowed);
        assert_eq!(SlidingLog::expires_at(&s), T0 + 15 * NANOS_PER_SEC);
    }

    #[test]
    fn a_drained_log_gives_its_room_back() {
        let limit = Limit::new(Quota::from_parts(10_000, 1).unwrap());
        let mut state = SlidingLogState::default();
        let t0 = 1_800_000_000 * NANOS_PER_SEC;
        assert!(SlidingLog::step(&mut state, t0, &limit, 10_000).allowed);
        assert!(SlidingLog::heap_bytes(&state) >= 80_000);
        // A second later every entry has expired: the next decision drops them and the room.
        assert!(SlidingLog::step(&mut state, t0 + NANOS_PER_SEC, &limit, 1).allowed);
        assert!(SlidingLog::heap_bytes(&state) <= 8 * 8, "{state:?}");
        assert_eq!(SlidingLog::held(&state, t0 + NANOS_PER_SEC), 1);
    }
}
