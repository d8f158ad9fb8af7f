//! What a server says is left of a client's budget.

use std::time::Duration;

/// The budget a response describes: how many more requests the server will take, and when the
/// budget is whole again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests allowed per window, when the server says (`X-RateLimit-Limit`, or the `q` of the
    /// matching `RateLimit-Policy`).
    pub limit: Option<u64>,
    /// Requests the server will still accept before the reset.
    pub remaining: u64,
    /// Time from the response until the budget holds more than `remaining`, at the latest,
    /// when the server says: when it is whole again (`X-RateLimit-Reset`, draft-10's `t`) or
    /// when more is available (draft-11's `t`).
    pub reset: Option<Duration>,
    /// Whether the whole budget is back at `reset` (`X-RateLimit-Reset`), or only more of it
    /// (the IETF `t`: under draft-11, for a bucket, one unit): after an IETF reset the pacer
    /// sends one request and reads the budget from its answer, rather than the whole `limit`.
    pub whole_at_reset: bool,
}

impl Budget {
    /// The more restrictive of two budgets: fewer remaining, and on a tie the later reset (an
    /// unknown reset counts as the later one, since nothing says it comes soon).
    pub fn most_restrictive(self, other: Budget) -> Budget {
        let reset_key = |b: &Budget| b.reset.unwrap_or(Duration::MAX);
        let self_key = (self.remaining, std::cmp::Reverse(reset_key(&self)));
        let other_key = (other.remaining, std::cmp::Reverse(reset_key(&other)));
        if other_key < self_key {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(remaining: u64, reset: Option<u64>) -> Budget {
        Budget {
            whole_at_reset: true,
            limit: None,
            remaining,
            reset: reset.map(Duration::from_secs),
        }
    }

    #[test]
    fn fewer_remaining_wins() {
        let a = budget(5, Some(1));
        let b = budget(0, Some(30));
        assert_eq!(a.most_restrictive(b), b);
        assert_eq!(b.most_restrictive(a), b);
    }

    #[test]
    fn on_a_tie_the_later_reset_wins() {
        let soon = budget(0, Some(2));
        let late = budget(0, Some(50));
        let unknown = budget(0, None);
        assert_eq!(soon.most_restrictive(late), late);
        assert_eq!(late.most_restrictive(soon), late);
        assert_eq!(late.most_restrictive(unknown), unknown);
    }
}
