//! [`Decision`]: what an algorithm answers.

use crate::clock::UnixNanos;

/// The answer to one request against one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The limit to report (`X-RateLimit-Limit`).
    pub limit: u32,
    /// What is left after this request if it passes, or now if it does not.
    pub remaining: u32,
    /// When the budget is whole again, had nothing more been spent (`X-RateLimit-Reset`).
    pub reset_at: UnixNanos,
    /// The earliest instant at which the same request would pass; `now` when it passes now.
    pub retry_at: UnixNanos,
}

impl Decision {
    /// Whether `self` leaves the client less room than `other`: fewer requests remaining, or as
    /// few but a later reset. Headers describe the most restrictive of a handler's limits.
    pub fn is_more_restrictive_than(&self, other: &Decision) -> bool {
        (self.remaining, std::cmp::Reverse(self.reset_at))
            < (other.remaining, std::cmp::Reverse(other.reset_at))
    }
}
