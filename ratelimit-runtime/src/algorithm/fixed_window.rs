//! Fixed window: a counter per clock-aligned window, as the Flask decorator keeps it.
//!
//! Windows start at multiples of the period since the Unix epoch, so every key and every server
//! agrees on where they begin and `X-RateLimit-Reset` is the next boundary. The known weakness
//! is the boundary burst: a client may spend a whole window's budget just before a boundary and
//! another just after it.

use super::{Algorithm, AlgorithmKind, Limit};
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;

/// The fixed-window algorithm.
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedWindow;

/// A key's window: where it ends and how much was spent in it. Eight bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    /// End of the counted window, in Unix seconds (good until 2106).
    end_secs: u32,
    /// What was spent in it.
    spent: u32,
}

/// End of the clock-aligned window holding `now`, in Unix seconds.
pub(super) fn window_end(now: UnixNanos, period_secs: u32) -> u64 {
    let period = u64::from(period_secs);
    (now / NANOS_PER_SEC / period + 1) * period
}

impl FixedWindowState {
    /// The window and spend that count at `now`. A clock that stepped back into an earlier
    /// window keeps the later window, so it cannot reopen a spent budget.
    fn current(&self, now: UnixNanos, period_secs: u32) -> (u32, u32) {
        let end = u32::try_from(window_end(now, period_secs)).unwrap_or(u32::MAX);
        if end > self.end_secs {
            (end, 0)
        } else {
            (self.end_secs, self.spent)
        }
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;
    const KIND: AlgorithmKind = AlgorithmKind::FixedWindow;

    fn evaluate(
        state: &mut FixedWindowState,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) -> Decision {
        let max = limit.quota.limit();
        let (end, spent) = state.current(now, limit.quota.period_secs());
        let reset_at = u64::from(end) * NANOS_PER_SEC;
        let allowed = u64::from(spent) + u64::from(cost) <= u64::from(max);
        let after = if allowed { spent + cost } else { spent };
        Decision {
            allowed,
            limit: max,
            remaining: max.saturating_sub(after),
            reset_at,
            retry_at: if allowed { now } else { reset_at },
        }
    }

    fn charge(state: &mut FixedWindowState, now: UnixNanos, limit: &Limit, cost: u32) {
        let (end, spent) = state.current(now, limit.quota.period_secs());
        *state = FixedWindowState {
            end_secs: end,
            spent: spent.saturating_add(cost),
        };
    }

    fn expires_at(state: &FixedWindowState) -> UnixNanos {
        u64::from(state.end_secs) * NANOS_PER_SEC
    }

    fn refund(
        state: &mut FixedWindowState,
        charged_at: UnixNanos,
        _now: UnixNanos,
        limit: &Limit,
        cost: u32,
    ) {
        // Only into the window it was charged in: a later one never saw it.
        if u64::from(state.end_secs) == window_end(charged_at, limit.quota.period_secs()) {
            state.spent = state.spent.saturating_sub(cost);
        }
    }

    fn held(state: &FixedWindowState, now: UnixNanos) -> u64 {
        if Self::expires_at(state) > now {
            u64::from(state.spent)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;

    const T0: UnixNanos = 1_700_000_040 * NANOS_PER_SEC; // a multiple of 60 s

    fn limit(n: u32, per: u32) -> Limit {
        Limit::new(Quota::from_parts(n, per).unwrap())
    }

    fn spend(state: &mut FixedWindowState, now: UnixNanos, l: &Limit, cost: u32) -> Decision {
        FixedWindow::step(state, now, l, cost)
    }

    #[test]
    fn exactly_limit_per_window_then_reset_at_the_boundary() {
        let l = limit(3, 30);
        let mut s = FixedWindowState::default();
        for left in [2, 1, 0] {
            let d = spend(&mut s, T0 + 5, &l, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.reset_at, T0 + 30 * NANOS_PER_SEC);
        }
        let denied = spend(&mut s, T0 + 30 * NANOS_PER_SEC - 1, &l, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_at, T0 + 30 * NANOS_PER_SEC);
        assert_eq!(denied.remaining, 0);
        assert!(
            spend(&mut s, T0 + 30 * NANOS_PER_SEC, &l, 1).allowed,
            "new window at the boundary"
        );
    }

    #[test]
    fn boundary_burst_is_the_known_weakness() {
        let l = limit(10, 60);
        let mut s = FixedWindowState::default();
        let before = T0 + 60 * NANOS_PER_SEC - 1;
        let after = T0 + 60 * NANOS_PER_SEC;
        assert!((0..10).all(|_| spend(&mut s, before, &l, 1).allowed));
        assert!((0..10).all(|_| spend(&mut s, after, &l, 1).allowed));
        assert!(!spend(&mut s, after, &l, 1).allowed);
    }

    #[test]
    fn costs_and_denials_do_not_charge() {
        let l = limit(5, 10);
        let mut s = FixedWindowState::default();
        assert!(spend(&mut s, T0, &l, 4).allowed);
        let d = spend(&mut s, T0, &l, 2);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 1, "the denied cost was not charged");
        assert!(spend(&mut s, T0, &l, 1).allowed);
        assert!(!spend(&mut s, T0, &l, 6).allowed);
    }

    #[test]
    fn clock_stepping_back_keeps_the_spent_window() {
        let l = limit(1, 10);
        let mut s = FixedWindowState::default();
        assert!(spend(&mut s, T0 + 15 * NANOS_PER_SEC, &l, 1).allowed);
        assert!(
            !spend(&mut s, T0 + 5 * NANOS_PER_SEC, &l, 1).allowed,
            "earlier window cannot reopen"
        );
        assert_eq!(FixedWindow::expires_at(&s), T0 + 20 * NANOS_PER_SEC);
    }
}
