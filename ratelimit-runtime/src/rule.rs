//! [`Rule`]: one limit as the attribute or the middleware states it.

use std::borrow::Cow;
use std::num::NonZeroU32;

use actix_web::{HttpRequest, HttpResponse};

use crate::algorithm::{AlgorithmKind, Limit};
use crate::info::RateLimitInfo;
use crate::key::Scope;
use crate::quota::Quota;

/// Where a rule's quota comes from.
#[derive(Clone, Copy, Debug)]
pub enum QuotaSource {
    /// The same quota for every request.
    Fixed(Quota),
    /// A quota chosen per request (tiers: free, pro, enterprise).
    PerRequest(fn(&HttpRequest) -> Quota),
}

/// Builds the response to a denied request (the decorator's `over_limit`).
pub type OverLimitFn = fn(&HttpRequest, &RateLimitInfo) -> HttpResponse;

/// One limit: a quota, an algorithm, a scope and the options around them.
///
/// The `#[ratelimit]` attribute builds these at compile time; [`DefaultLimits`] builds them at
/// start-up.
///
/// [`DefaultLimits`]: crate::DefaultLimits
#[derive(Clone, Debug)]
pub struct Rule {
    /// The name whose budget the rule spends: the handler's path, or a `shared` name.
    pub name: Cow<'static, str>,
    /// The quota.
    pub quota: QuotaSource,
    /// The algorithm.
    pub algorithm: AlgorithmKind,
    /// Capacity for algorithms that have one; the quota's limit when `None`.
    pub burst: Option<NonZeroU32>,
    /// Who the budget is per.
    pub scope: Scope,
    /// What one request spends.
    pub cost: NonZeroU32,
    /// Requests for which it returns true skip this rule.
    pub exempt: Option<fn(&HttpRequest) -> bool>,
    /// Whether allowed responses carry `X-RateLimit-*` headers for this rule.
    pub send_x_headers: bool,
    /// The response to a request this rule denies; a JSON 429 when `None`.
    pub over_limit: Option<OverLimitFn>,
}

impl Rule {
    /// A rule with the defaults of the attribute: per client address, fixed window, cost 1,
    /// headers on.
    pub const fn new(name: &'static str, quota: QuotaSource) -> Rule {
        Rule {
            name: Cow::Borrowed(name),
            quota,
            algorithm: AlgorithmKind::FixedWindow,
            burst: None,
            scope: Scope::Ip,
            cost: NonZeroU32::MIN,
            exempt: None,
            send_x_headers: true,
            over_limit: None,
        }
    }

    /// The limit that applies to `req`.
    pub fn limit_for(&self, req: &HttpRequest) -> Limit {
        let quota = match self.quota {
            QuotaSource::Fixed(quota) => quota,
            QuotaSource::PerRequest(choose) => choose(req),
        };
        match self.burst {
            Some(capacity) => Limit::with_capacity(quota, capacity),
            None => self.algorithm.default_limit(quota),
        }
    }
}
