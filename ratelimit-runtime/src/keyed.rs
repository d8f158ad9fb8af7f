//! Limits outside HTTP handlers: the same engine, store and metrics for background jobs,
//! calls to a third-party API or WebSocket messages, keyed by any string.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::clock::NANOS_PER_SEC;
use crate::decision::Decision;
use crate::engine::{Batch, Decided};
use crate::info::RateLimitInfo;
use crate::key::Identity;
use crate::quota::Quota;
use crate::rule::{Mode, QuotaSource, Rule};
use crate::state::State;

/// A limit [`check_key`](RateLimiter::check_key) can decide: a [`Rule`] (its name keeps its
/// budgets apart from other rules'), or a bare [`Quota`] (named after itself: two uses of the
/// same quota with the same keys share budgets).
pub trait KeyedLimit {
    /// The rule to decide.
    fn rule(&self) -> Cow<'_, Rule>;
}

impl KeyedLimit for Rule {
    fn rule(&self) -> Cow<'_, Rule> {
        Cow::Borrowed(self)
    }
}

impl KeyedLimit for Quota {
    fn rule(&self) -> Cow<'_, Rule> {
        let mut rule = Rule::new("", QuotaSource::Fixed(*self));
        rule.name = Cow::Owned(format!("quota:{}/{}s", self.limit(), self.period_secs()));
        Cow::Owned(rule)
    }
}

/// [`until_ready`](RateLimiter::until_ready) cannot succeed: the cost is more than the limit
/// can ever hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsufficientCapacity {
    /// What was asked.
    pub cost: u32,
    /// The most the limit holds at once.
    pub capacity: u32,
}

impl fmt::Display for InsufficientCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a cost of {} can never pass a limit holding {}",
            self.cost, self.capacity
        )
    }
}

impl std::error::Error for InsufficientCapacity {}

impl State {
    /// See [`RateLimiter::check_key`](crate::RateLimiter::check_key).
    pub(crate) async fn check_key(
        &self,
        limit: &impl KeyedLimit,
        key: &str,
        cost: u32,
    ) -> RateLimitInfo {
        let now = self.clock.now();
        let rule = limit.rule();
        let mut rule = self
            .overrides
            .apply(std::slice::from_ref(&*rule))
            .into_owned();
        // A concurrency limit counts requests in flight; outside a request it has none.
        rule.retain(|r| !matches!(r.quota, QuotaSource::InFlight(_)));
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        rule.iter_mut().for_each(|r| r.cost = cost);
        let mut batch = Batch::default();
        for rule in &rule {
            let (limit, tier) = match rule.quota.fixed() {
                Ok(quota) => (rule.limit_of(quota), ""),
                // A tier function is asked with a request that carries nothing.
                Err(_) => rule.tier_for(&actix_web::test::TestRequest::default().to_http_request()),
            };
            let identity = Identity::Header(key.as_bytes());
            batch.checks.push(self.check_for(rule, limit, &identity));
            batch.rules.push((rule, tier));
        }
        if batch.checks.is_empty() {
            return unlimited(&batch, now);
        }
        let decided = self.decide(&batch, now, now, Mode::Enforce).await;
        let verdict = match decided {
            Decided::Verdict(verdict) => verdict,
            Decided::Unlimited => return unlimited(&batch, now),
            Decided::Unavailable(secs) => return unavailable(&batch, now, secs),
            Decided::Refused(_) => return undecidable(now),
        };
        let pick = if verdict.allowed {
            verdict.decisions.iter().max_by_key(|d| d.retry_at)
        } else {
            verdict
                .decisions
                .iter()
                .filter(|d| !d.allowed)
                .max_by_key(|d| d.retry_at)
        };
        let decision = *pick.unwrap_or(&verdict.decisions[0]);
        let turn = if verdict.allowed {
            decision.retry_at.max(now)
        } else {
            now
        };
        let waited = Duration::from_nanos(turn - now);
        if !waited.is_zero() {
            tokio::time::sleep(waited).await;
        }
        RateLimitInfo::new(decision, turn).waited_for(waited)
    }

    /// See [`RateLimiter::until_ready`](crate::RateLimiter::until_ready).
    pub(crate) async fn until_ready(
        &self,
        limit: &impl KeyedLimit,
        key: &str,
        cost: u32,
    ) -> Result<RateLimitInfo, InsufficientCapacity> {
        loop {
            let info = self.check_key(limit, key, cost).await;
            if info.is_allowed() {
                return Ok(info);
            }
            if cost > info.limit() {
                return Err(InsufficientCapacity {
                    cost,
                    capacity: info.limit(),
                });
            }
            tokio::time::sleep(info.retry_after().max(Duration::from_millis(1))).await;
        }
    }
}

/// Fail-open: allowed, nothing known.
fn unlimited(batch: &Batch<'_>, now: u64) -> RateLimitInfo {
    let limit = batch.checks.first().map_or(0, |c| c.limit.capacity.get());
    let decision = Decision {
        allowed: true,
        limit,
        remaining: limit,
        reset_at: now,
        retry_at: now,
    };
    RateLimitInfo::new(decision, now)
}

/// Fail-closed: refused for `secs`.
fn unavailable(batch: &Batch<'_>, now: u64, secs: u64) -> RateLimitInfo {
    let later = now.saturating_add(secs.saturating_mul(NANOS_PER_SEC));
    let decision = Decision {
        allowed: false,
        limit: batch.checks.first().map_or(0, |c| c.limit.capacity.get()),
        remaining: 0,
        reset_at: later,
        retry_at: later,
    };
    RateLimitInfo::new(decision, now)
}

/// A limit the limiter cannot decide: refused, and nothing can ever pass it.
fn undecidable(now: u64) -> RateLimitInfo {
    let decision = Decision {
        allowed: false,
        limit: 0,
        remaining: 0,
        reset_at: now,
        retry_at: now,
    };
    RateLimitInfo::new(decision, now)
}
