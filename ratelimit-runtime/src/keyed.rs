//! Limits outside HTTP handlers: the same engine, store and metrics for background jobs,
//! calls to a third-party API or WebSocket messages, keyed by any string.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::algorithm::Limit;
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;
use crate::engine::{Batch, Decided};
use crate::info::RateLimitInfo;
use crate::key::Identity;
use crate::overrides::Overrides;
use crate::quota::Quota;
use crate::rule::{QuotaSource, Rule};
use crate::store::Check;

/// A limit [`check_key`](crate::RateLimiter::check_key) can decide: a [`Rule`] (its name keeps its
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

/// [`until_ready`](crate::RateLimiter::until_ready) cannot succeed: the cost is more than the limit
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

/// The rules `limit` decides outside a request, its overrides applied and each at `cost` (0
/// counts as 1); a concurrency limit, which counts requests in flight, is left out.
pub(crate) fn rules_of(limit: &impl KeyedLimit, cost: u32, overrides: &Overrides) -> Vec<Rule> {
    let rule = limit.rule();
    let mut rules = overrides.apply(std::slice::from_ref(&*rule)).into_owned();
    rules.retain(|r| !r.quota.is_concurrency());
    let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
    rules.iter_mut().for_each(|r| r.cost = cost);
    rules
}

/// The checks of `rules` for `key`, each named by `key_of` as the limiter names keys. A tier
/// function is asked with a request that carries nothing.
pub(crate) fn batch<'r>(
    rules: &'r [Rule],
    key: &str,
    key_of: impl Fn(&Rule, Limit, &Identity<'_>) -> Check,
) -> Batch<'r> {
    let mut batch = Batch::default();
    for rule in rules {
        // Tiers that lookups choose are looked up before (`State::with_tiers_of`).
        let chosen = match rule.quota.fixed() {
            Some(quota) => Some((rule.limit_of(quota), "")),
            None => rule.tier_for(&actix_web::test::TestRequest::default().to_http_request()),
        };
        let Some((limit, tier)) = chosen else {
            continue;
        };
        batch
            .checks
            .push(key_of(rule, limit, &Identity::Header(key.as_bytes())));
        batch.rules.push((rule, tier));
    }
    batch
}

/// What the decision of `batch` at `now` tells the caller of
/// [`check_key`](crate::RateLimiter::check_key) (`None`: nothing to decide); a turn reserved
/// later than `now` is waited for here.
pub(crate) async fn answer(
    decided: Option<Decided>,
    batch: &Batch<'_>,
    now: UnixNanos,
) -> RateLimitInfo {
    let verdict = match decided {
        Some(Decided::Verdict(verdict)) => verdict,
        None | Some(Decided::Unlimited) => return unlimited(batch, now),
        Some(Decided::Unavailable(secs)) => return unavailable(batch, now, secs),
        Some(Decided::Refused(_)) => return undecidable(now),
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
pub(crate) fn unavailable(batch: &Batch<'_>, now: u64, secs: u64) -> RateLimitInfo {
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
