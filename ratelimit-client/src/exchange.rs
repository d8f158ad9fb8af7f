//! One request through the pacer and the retry policy, from the first attempt to the response
//! handed to the caller. The HTTP adapters drive it; it never touches the network or a timer.

use std::fmt;
use std::time::{Duration, Instant};

use crate::pacer::{Admission, Permit};
use crate::policy::{Decision, Refusal};
use crate::{Origin, Pacer, RateLimitStatus, RetryPolicy};

/// The state of one request across its attempts.
///
/// ```text
/// loop {
///     let permit = loop {
///         match exchange.next_step(Instant::now())? {
///             Step::Send(permit) => break permit,
///             Step::Wait(time) => sleep(time).await,
///         }
///     };
///     let response = send(request.clone()).await?;
///     match exchange.on_response(permit, Instant::now(), status, &report) {
///         Decision::Deliver(_) => return Ok(response),
///         Decision::Retry(_) => continue,
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Exchange {
    pacer: Pacer,
    origin: Origin,
    policy: RetryPolicy,
    repeatable: bool,
    retries: u32,
    waited: Duration,
    not_before: Option<Instant>,
    rng: fastrand::Rng,
}

/// What the adapter does next.
#[derive(Debug)]
pub enum Step {
    /// Send the request now.
    Send(Permit),
    /// Sleep this long, then ask again.
    Wait(Duration),
}

/// A request was not sent because the wait before it would overrun the wait budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitBudgetExceeded {
    /// Where the request was going.
    pub origin: Origin,
    /// The wait that was needed.
    pub needed: Duration,
    /// What was left of the budget.
    pub left: Duration,
}

impl fmt::Display for WaitBudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited by {}: the next slot is {:.1} s away, more than the {:.1} s left to wait",
            self.origin,
            self.needed.as_secs_f64(),
            self.left.as_secs_f64()
        )
    }
}

impl std::error::Error for WaitBudgetExceeded {}

impl Exchange {
    /// Starts a request to `origin`; `repeatable` says whether it may be sent twice (see
    /// [`may_retry`](crate::may_retry), and a body that cannot be sent twice makes it false).
    pub fn new(pacer: &Pacer, policy: RetryPolicy, origin: Origin, repeatable: bool) -> Exchange {
        Exchange {
            pacer: pacer.clone(),
            origin,
            policy,
            repeatable,
            retries: 0,
            waited: Duration::ZERO,
            not_before: None,
            rng: fastrand::Rng::new(),
        }
    }

    /// Whether to send at `now` or how long to wait first.
    pub fn next_step(&mut self, now: Instant) -> Result<Step, WaitBudgetExceeded> {
        if let Some(until) = self.not_before.filter(|until| *until > now) {
            return self.wait(until - now);
        }
        match self.pacer.admit(&self.origin, now) {
            Admission::Go(permit) => Ok(Step::Send(permit)),
            Admission::Wait(until) => self.wait(until.saturating_duration_since(now)),
        }
    }

    fn wait(&mut self, time: Duration) -> Result<Step, WaitBudgetExceeded> {
        let left = self.policy.wait_budget.saturating_sub(self.waited);
        if time > left {
            return Err(WaitBudgetExceeded {
                origin: self.origin.clone(),
                needed: time,
                left,
            });
        }
        self.waited += time;
        self.pacer.counters().wait(time);
        Ok(Step::Wait(time))
    }

    /// Records the response to the attempt `permit` let through, received at `now`, and says
    /// whether to hand it over or to retry.
    pub fn on_response(
        &mut self,
        permit: Permit,
        now: Instant,
        status: u16,
        report: &RateLimitStatus,
    ) -> Decision {
        self.pacer.observe(permit, now, status, report);
        let spent_until_reset = report
            .budget
            .filter(|budget| budget.remaining == 0)
            .and_then(|budget| budget.reset);
        let decision = self.policy.decide(&Refusal {
            status,
            hint: report.retry_after.or(spent_until_reset),
            repeatable: self.repeatable,
            retries: self.retries,
            waited: self.waited,
            jitter: self.rng.f64(),
        });
        if let Decision::Retry(wait) = decision {
            self.retries += 1;
            self.not_before = Some(now + wait);
            self.pacer.counters().retry();
        }
        decision
    }

    /// Time this request has waited so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Budget, Delivered};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn origin() -> Origin {
        Origin::new("http", "localhost", None)
    }

    fn send(exchange: &mut Exchange, now: Instant) -> Permit {
        match exchange.next_step(now) {
            Ok(Step::Send(permit)) => permit,
            other => panic!("expected to send, got {other:?}"),
        }
    }

    fn retry_after(s: u64) -> RateLimitStatus {
        RateLimitStatus {
            budget: None,
            retry_after: Some(secs(s)),
        }
    }

    #[test]
    fn a_429_is_retried_after_retry_after() {
        let pacer = Pacer::new();
        let mut exchange = Exchange::new(&pacer, RetryPolicy::default(), origin(), true);
        let t0 = Instant::now();
        let permit = send(&mut exchange, t0);
        let decision = exchange.on_response(permit, t0, 429, &retry_after(2));
        assert_eq!(decision, Decision::Retry(secs(2)));
        assert!(matches!(exchange.next_step(t0), Ok(Step::Wait(w)) if w == secs(2)));
        let permit = send(&mut exchange, t0 + secs(2));
        let done = exchange.on_response(permit, t0 + secs(2), 200, &RateLimitStatus::default());
        assert_eq!(done, Decision::Deliver(Delivered::Final));
        assert_eq!(exchange.waited(), secs(2));
        let stats = pacer.stats();
        assert_eq!((stats.sent, stats.rate_limited, stats.retries), (2, 1, 1));
    }

    #[test]
    fn a_post_without_an_idempotency_key_is_handed_back() {
        let pacer = Pacer::new();
        let mut exchange = Exchange::new(&pacer, RetryPolicy::default(), origin(), false);
        let t0 = Instant::now();
        let permit = send(&mut exchange, t0);
        assert_eq!(
            exchange.on_response(permit, t0, 429, &retry_after(1)),
            Decision::Deliver(Delivered::NotRepeatable)
        );
        assert_eq!(pacer.stats().retries, 0);
    }

    #[test]
    fn a_spent_budget_says_how_long_without_retry_after() {
        let pacer = Pacer::new();
        let mut exchange = Exchange::new(&pacer, RetryPolicy::default(), origin(), true);
        let t0 = Instant::now();
        let permit = send(&mut exchange, t0);
        let spent = RateLimitStatus {
            budget: Some(Budget {
                whole_at_reset: true,
                limit: Some(10),
                remaining: 0,
                reset: Some(secs(4)),
            }),
            retry_after: None,
        };
        assert_eq!(
            exchange.on_response(permit, t0, 429, &spent),
            Decision::Retry(secs(4))
        );
    }

    #[test]
    fn pacing_beyond_the_budget_fails_before_sending() {
        let pacer = Pacer::new();
        let policy = RetryPolicy {
            wait_budget: secs(5),
            ..RetryPolicy::default()
        };
        let t0 = Instant::now();
        let mut first = Exchange::new(&pacer, policy, origin(), true);
        let permit = send(&mut first, t0);
        first.on_response(permit, t0, 200, &{
            RateLimitStatus {
                budget: Some(Budget {
                    whole_at_reset: true,
                    limit: Some(1),
                    remaining: 0,
                    reset: Some(secs(30)),
                }),
                retry_after: None,
            }
        });
        let mut second = Exchange::new(&pacer, policy, origin(), true);
        let err = second
            .next_step(t0)
            .expect_err("30 s is over the 5 s budget");
        assert_eq!(err.needed, secs(30));
        assert_eq!(err.left, secs(5));
        assert!(err.to_string().contains("http://localhost:80"), "{err}");
    }
}
