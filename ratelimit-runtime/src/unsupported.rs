//! Limits a limiter will not decide, refused as early as they are known.
//!
//! Two kinds of limit cannot be kept as promised:
//!
//! - a `sliding_log` above [`SlidingLog::MAX_LIMIT`]: its memory grows with its limit;
//! - on Redis, a limit whose arithmetic the script cannot keep exact in Lua's doubles (a long
//!   period times a large limit or burst: see `store/exact.rs`).
//!
//! Deciding the second kind in process memory instead, as the failure policy does while Redis
//! is down, would quietly turn a fleet's limit into a per-process one, for as long as the
//! program runs. So neither is ever decided; each is refused where it is first known:
//!
//! | where the limit comes from | refused |
//! |---|---|
//! | `#[ratelimit]` with a fixed quota | a sliding log: at compile time; on Redis: by [`RateLimiterBuilder::build`] ([`ConfigError::UnsupportedLimit`]) |
//! | [`DefaultLimits`] | when the app is made (the middleware fails to start; logged), on Redis once a limiter on Redis was built in the process, which also refuses default limits made before it |
//! | an override, by the API or the file | [`OverrideError::UnsupportedLimit`]; the limit in force stays |
//! | a tier function (`limit = fn`), `check_key` | per request: `500 Internal Server Error` naming the rule, logged once per rule and tier at error level, counted as a refused Redis decision; `check_key` answers not allowed with a limit of 0 |
//!
//! A dry-run rule (`mode = "shadow"`) the limiter cannot decide is skipped (logged as above):
//! a dry run never refuses a request.
//!
//! [`SlidingLog::MAX_LIMIT`]: crate::algorithm::SlidingLog::MAX_LIMIT
//! [`RateLimiterBuilder::build`]: crate::RateLimiterBuilder::build
//! [`ConfigError::UnsupportedLimit`]: crate::ConfigError::UnsupportedLimit
//! [`DefaultLimits`]: crate::DefaultLimits
//! [`OverrideError::UnsupportedLimit`]: crate::OverrideError::UnsupportedLimit

use std::fmt;

use crate::algorithm::{AlgorithmKind, Limit, SlidingLog};
use crate::quota::Quota;
use crate::rule::{QuotaSource, Rule};
use crate::store::exact_in_redis;

/// A rule's limit a limiter will not decide, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnsupportedLimit {
    /// The rule's name.
    pub rule: String,
    /// The quota refused.
    pub quota: Quota,
    /// The rule's algorithm.
    pub algorithm: AlgorithmKind,
    /// The most it would hold at once (`burst`, or its algorithm's default).
    pub capacity: u32,
    /// Why it cannot be decided, and what to do instead.
    pub reason: String,
}

impl fmt::Display for UnsupportedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate-limit rule `{}` ({} per {} s, `{}`, capacity {}) cannot be decided: {}",
            self.rule,
            self.quota.limit(),
            self.quota.period_secs(),
            self.algorithm,
            self.capacity,
            self.reason
        )
    }
}

impl std::error::Error for UnsupportedLimit {}

/// `Ok` when a limiter (on Redis when `on_redis`) decides `rule` under `limit` as promised.
/// Cheap when it does: it runs on every decision.
pub(crate) fn check(rule: &Rule, limit: &Limit, on_redis: bool) -> Result<(), UnsupportedLimit> {
    let refuse = |reason: String| UnsupportedLimit {
        rule: rule.name.to_string(),
        quota: limit.quota,
        algorithm: rule.algorithm,
        capacity: limit.capacity.get(),
        reason,
    };
    if rule.algorithm == AlgorithmKind::SlidingLog && limit.quota.limit() > SlidingLog::MAX_LIMIT {
        return Err(refuse(format!(
            "a `sliding_log` keeps one timestamp per unit it counts, so its limit is at most {}; \
             use `sliding_window` or `gcra`, or a shorter period with a smaller limit",
            SlidingLog::MAX_LIMIT
        )));
    }
    if on_redis {
        exact_in_redis(rule.algorithm, limit, rule.cost.get()).map_err(refuse)?;
    }
    Ok(())
}

/// [`check`] for a rule whose quota is known before any request; `Ok` for the others (tier
/// functions, concurrency limits), which are checked per request if at all.
pub(crate) fn check_fixed(rule: &Rule, on_redis: bool) -> Result<(), UnsupportedLimit> {
    match rule.quota {
        QuotaSource::Fixed(quota) => check(rule, &rule.limit_of(quota), on_redis),
        QuotaSource::PerRequest(_)
        | QuotaSource::Chosen(_)
        | QuotaSource::InFlight(_)
        | QuotaSource::Adaptive(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(algorithm: AlgorithmKind, limit: u32, per: u32) -> Rule {
        let mut rule = Rule::new(
            "app::handler",
            QuotaSource::Fixed(Quota::from_parts(limit, per).unwrap()),
        );
        rule.algorithm = algorithm;
        rule
    }

    #[test]
    fn a_sliding_log_is_bounded_on_every_store() {
        let at_bound = rule(AlgorithmKind::SlidingLog, SlidingLog::MAX_LIMIT, 60);
        assert!(check_fixed(&at_bound, false).is_ok());
        assert!(check_fixed(&at_bound, true).is_ok());
        let above = rule(AlgorithmKind::SlidingLog, SlidingLog::MAX_LIMIT + 1, 60);
        for on_redis in [false, true] {
            let refused = check_fixed(&above, on_redis).unwrap_err();
            assert_eq!(refused.rule, "app::handler");
            assert!(refused.to_string().contains("10001 per 60 s"), "{refused}");
            assert!(refused.reason.contains("10000"), "{refused}");
        }
    }

    #[test]
    fn inexact_on_redis_is_refused_on_redis_only() {
        let huge = rule(AlgorithmKind::TokenBucket, 2_000_000, 86_400 * 30);
        assert!(check_fixed(&huge, false).is_ok());
        let refused = check_fixed(&huge, true).unwrap_err();
        assert_eq!(
            (refused.quota, refused.capacity),
            (
                Quota::from_parts(2_000_000, 86_400 * 30).unwrap(),
                2_000_000
            )
        );
        assert!(refused.to_string().contains("`app::handler`"), "{refused}");
        assert!(refused.reason.contains("2^53"), "{refused}");
        assert!(check_fixed(&rule(AlgorithmKind::Gcra, 50_000, 1), true).is_ok());
    }

    #[test]
    fn quotas_chosen_per_request_are_left_to_the_request() {
        let tiered = Rule::new(
            "app::tiered",
            QuotaSource::PerRequest(|_| Quota::from_parts(u32::MAX, u32::MAX).unwrap().into()),
        );
        assert!(check_fixed(&tiered, true).is_ok());
    }
}
