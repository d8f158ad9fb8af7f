//! When to retry a refused request, and how long to wait first.

use std::time::Duration;

use crate::Backoff;

/// How a client retries requests the server refused for their rate.
///
/// A `429 Too Many Requests` is retried, and so is a `503 Service Unavailable` that carries
/// `Retry-After` (the server says when it will be back); other answers are handed over as they
/// are. Only requests that may be repeated are retried (see [`may_retry`](crate::may_retry)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of one request at most.
    pub max_retries: u32,
    /// All the waiting one request may do, pacing and retries together. A wait that would
    /// overrun it is not started: a refused request is handed over as it is, and one not yet
    /// sent fails with [`WaitBudgetExceeded`](crate::WaitBudgetExceeded).
    pub wait_budget: Duration,
    /// Waits before retries the server gave no time for.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// Up to five retries, a minute of waiting per request, [`Backoff::default`].
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            wait_budget: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Hand the response to the caller.
    Deliver(Delivered),
    /// Send the request again after this wait.
    Retry(Duration),
}

/// Why a response is handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Not a refusal for rate: there is nothing to retry.
    Final,
    /// Refused, but the request may not be sent twice.
    NotRepeatable,
    /// Refused again after [`RetryPolicy::max_retries`] retries.
    OutOfRetries,
    /// Refused, and the wait before a retry would overrun [`RetryPolicy::wait_budget`].
    OutOfTime,
}

/// One refused attempt, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    /// The response status.
    pub status: u16,
    /// How long the server asked to wait (`Retry-After`, else the reset of a spent budget).
    pub hint: Option<Duration>,
    /// Whether the request may be sent twice.
    pub repeatable: bool,
    /// Retries of this request so far.
    pub retries: u32,
    /// Time this request has waited so far.
    pub waited: Duration,
    /// A draw in `[0, 1)` for the jitter of the backoff.
    pub jitter: f64,
}

impl RetryPolicy {
    /// Whether to retry after a response, and after how long.
    pub fn decide(&self, attempt: &Refusal) -> Decision {
        let refused = attempt.status == 429 || (attempt.status == 503 && attempt.hint.is_some());
        if !refused {
            return Decision::Deliver(Delivered::Final);
        }
        if !attempt.repeatable {
            return Decision::Deliver(Delivered::NotRepeatable);
        }
        if attempt.retries >= self.max_retries {
            return Decision::Deliver(Delivered::OutOfRetries);
        }
        let wait = attempt
            .hint
            .unwrap_or_else(|| self.backoff.delay(attempt.retries, attempt.jitter));
        if attempt.waited.saturating_add(wait) > self.wait_budget {
            return Decision::Deliver(Delivered::OutOfTime);
        }
        Decision::Retry(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn refusal(status: u16, hint: Option<u64>) -> Refusal {
        Refusal {
            status,
            hint: hint.map(secs),
            repeatable: true,
            retries: 0,
            waited: Duration::ZERO,
            jitter: 0.5,
        }
    }

    #[test]
    fn the_servers_word_first_then_backoff() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(&refusal(429, Some(7))),
            Decision::Retry(secs(7))
        );
        let third = Refusal {
            retries: 2,
            ..refusal(429, None)
        };
        assert_eq!(
            policy.decide(&third),
            Decision::Retry(secs(2)),
            "half of 4 s"
        );
    }

    #[test]
    fn only_refusals_for_rate_are_retried() {
        let policy = RetryPolicy::default();
        for status in [200, 201, 404, 500, 502] {
            assert_eq!(
                policy.decide(&refusal(status, Some(1))),
                Decision::Deliver(Delivered::Final),
                "{status}"
            );
        }
        assert_eq!(
            policy.decide(&refusal(503, None)),
            Decision::Deliver(Delivered::Final)
        );
        assert_eq!(
            policy.decide(&refusal(503, Some(2))),
            Decision::Retry(secs(2))
        );
    }

    #[test]
    fn never_repeats_what_may_not_be_repeated() {
        let post = Refusal {
            repeatable: false,
            ..refusal(429, Some(1))
        };
        assert_eq!(
            RetryPolicy::default().decide(&post),
            Decision::Deliver(Delivered::NotRepeatable)
        );
    }

    #[test]
    fn retries_and_waiting_are_bounded() {
        let policy = RetryPolicy {
            max_retries: 2,
            wait_budget: secs(10),
            backoff: Backoff::default(),
        };
        let tired = Refusal {
            retries: 2,
            ..refusal(429, Some(1))
        };
        assert_eq!(
            policy.decide(&tired),
            Decision::Deliver(Delivered::OutOfRetries)
        );
        let late = Refusal {
            waited: secs(8),
            ..refusal(429, Some(3))
        };
        assert_eq!(
            policy.decide(&late),
            Decision::Deliver(Delivered::OutOfTime)
        );
        let just = Refusal {
            waited: secs(7),
            ..refusal(429, Some(3))
        };
        assert_eq!(policy.decide(&just), Decision::Retry(secs(3)));
        assert_eq!(
            policy.decide(&refusal(429, Some(86_400))),
            Decision::Deliver(Delivered::OutOfTime)
        );
    }
}
