//! The limit headers: `X-RateLimit-*` (the default), the IETF `RateLimit-Policy` and
//! `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11 (or -10), or both.

use std::borrow::Cow;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, RETRY_AFTER};
use smallvec::SmallVec;

use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::info::RateLimitInfo;

#[cfg(feature = "ietf-headers")]
mod ietf;

/// Which headers describe the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds), as the
    /// Flask decorator, Flask-Limiter and GitHub send them. The default.
    #[default]
    XRateLimit,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds from now), as the
    /// IETF `RateLimit` header drafts up to draft 06.
    Draft,
    /// `RateLimit-Policy` and `RateLimit`, Structured Fields as in
    /// draft-ietf-httpapi-ratelimit-headers-11: one policy per limit of the request, named
    /// after its rule, with its quota `q` and window `w` in seconds; and per policy the quota
    /// available now (`r`) and its effective window (`t`): the seconds until more than `r` is
    /// available. A refused request's problem body (see
    /// [`DeniedBody::Problem`](crate::DeniedBody::Problem)) names the policy it broke in
    /// `violated-policies`.
    ///
    /// ```text
    /// RateLimit-Policy: "data";q=10;w=10
    /// RateLimit: "data";r=7;t=10
    /// ```
    ///
    /// `t` is when more is available, not when the budget is whole again (draft-10's
    /// meaning, [`IetfDraft10`](HeaderStyle::IetfDraft10)): the same for a fixed window (its
    /// end), for a refused request (when it would pass) and for a whole budget (0); sooner for
    /// a token or leaky bucket and GCRA, whose units come back one at a time (one every
    /// `w / q` seconds), so that a client waits for one unit rather than for all. A sliding
    /// window or log reports when it is whole, as under draft-10 (some units may come back
    /// earlier).
    #[cfg(feature = "ietf-headers")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ietf-headers")))]
    Ietf,
    /// The same fields as [`Ietf`](HeaderStyle::Ietf), with `t` as
    /// draft-ietf-httpapi-ratelimit-headers-10 defines it: the seconds until the budget is
    /// whole again. For clients written against draft-10.
    #[cfg(feature = "ietf-headers")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ietf-headers")))]
    IetfDraft10,
    /// Both [`XRateLimit`](HeaderStyle::XRateLimit) and [`Ietf`](HeaderStyle::Ietf), for a
    /// migration period.
    #[cfg(feature = "ietf-headers")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ietf-headers")))]
    Both,
    /// No limit headers; denied responses still carry `Retry-After`.
    None,
}

/// Without the `ietf-headers` feature, `HeaderStyle::Ietf` and `HeaderStyle::Both` are not header
/// styles: using one is a compile error naming the feature.
#[cfg(not(feature = "ietf-headers"))]
#[doc(hidden)]
#[allow(non_upper_case_globals)]
impl HeaderStyle {
    pub const Ietf: crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature =
        crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature;
    pub const IetfDraft10: crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature =
        crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature;
    pub const Both: crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature =
        crate::feature_off::IetfHeadersNeedTheIetfHeadersFeature;
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const DRAFT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const DRAFT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const DRAFT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
#[cfg(feature = "ietf-headers")]
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
#[cfg(feature = "ietf-headers")]
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What a response's limit headers describe: every limit that applied, at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) now: UnixNanos,
    pub(crate) policies: SmallVec<[Policy; 2]>,
}

/// One limit as the headers show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The rule's name.
    pub(crate) rule: Cow<'static, str>,
    /// The quota: so many units (`q`) per so many seconds (`w`).
    pub(crate) quota: u32,
    pub(crate) window_secs: u32,
    pub(crate) decision: Decision,
    /// When more than the decision left is available (draft-11's `t`).
    pub(crate) more_at: UnixNanos,
    /// Whether another limit of the request goes by the same public name (stacked limits of
    /// one handler): the policy's name then carries its window.
    pub(crate) stacked: bool,
}

impl Policy {
    /// The policy's public name, as `RateLimit-Policy` and a problem body's `violated-policies`
    /// give it: [`public_name`], with the window when the limit is stacked (`"search-60s"`).
    pub(crate) fn name(&self) -> Cow<'_, str> {
        let name = public_name(&self.rule);
        if self.stacked {
            Cow::Owned(format!("{name}-{}s", self.window_secs))
        } else {
            Cow::Borrowed(name)
        }
    }
}

/// The public name of a rule's policy (IETF fields, problem bodies): its name without the
/// module path (a handler) or the `shared:` mark and key (a shared budget).
pub(crate) fn public_name(rule: &str) -> &str {
    let name = rule.split('#').next().unwrap_or_default();
    let name = name.strip_prefix("shared:").unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

impl Shown {
    /// The most restrictive limit, as `X-RateLimit-*` and [`RateLimitInfo`] show it.
    pub(crate) fn most_restrictive(&self) -> Option<RateLimitInfo> {
        self.policies
            .iter()
            .map(|p| &p.decision)
            .reduce(|a, b| if b.is_more_restrictive_than(a) { b } else { a })
            .map(|d| RateLimitInfo::new(*d, self.now))
    }

    /// `self` and `other` together, as one response shows them.
    pub(crate) fn merge(self, other: Option<Shown>) -> Shown {
        match other {
            Some(mut other) => {
                other.policies.extend(self.policies);
                other
            }
            None => self,
        }
    }
}

/// Adds the limit headers of `shown` to `headers`, keeping any the handler set itself.
pub(crate) fn add_limit_headers(headers: &mut HeaderMap, shown: &Shown, style: HeaderStyle) {
    #[cfg(feature = "ietf-headers")]
    match style {
        HeaderStyle::Ietf | HeaderStyle::Both => {
            ietf::add_ietf(headers, shown, ietf::Draft::Eleven)
        }
        HeaderStyle::IetfDraft10 => ietf::add_ietf(headers, shown, ietf::Draft::Ten),
        _ => {}
    }
    let Some(info) = shown.most_restrictive() else {
        return;
    };
    let (limit, remaining, reset, reset_value) = match style {
        HeaderStyle::XRateLimit => (X_LIMIT, X_REMAINING, X_RESET, info.reset_unix_secs()),
        #[cfg(feature = "ietf-headers")]
        HeaderStyle::Both => (X_LIMIT, X_REMAINING, X_RESET, info.reset_unix_secs()),
        HeaderStyle::Draft => (
            DRAFT_LIMIT,
            DRAFT_REMAINING,
            DRAFT_RESET,
            info.reset_after().as_secs_f64().ceil() as u64,
        ),
        HeaderStyle::None => return,
        #[cfg(feature = "ietf-headers")]
        HeaderStyle::Ietf | HeaderStyle::IetfDraft10 => return,
    };
    insert_absent(headers, limit, HeaderValue::from(u64::from(info.limit())));
    insert_absent(
        headers,
        remaining,
        HeaderValue::from(u64::from(info.remaining())),
    );
    insert_absent(headers, reset, HeaderValue::from(reset_value));
}

/// Adds what a denied response carries: `Retry-After`, `Cache-Control: no-store`, and the limit
/// headers of `shown` (the refusing limit) when `send_x_headers` is on.
pub(crate) fn add_denied_headers(
    headers: &mut HeaderMap,
    info: &RateLimitInfo,
    shown: &Shown,
    style: HeaderStyle,
    send_x_headers: bool,
) {
    insert_absent(
        headers,
        RETRY_AFTER,
        HeaderValue::from(info.retry_after_secs()),
    );
    insert_absent(headers, CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if send_x_headers {
        add_limit_headers(headers, shown, style);
    }
}

const CONCURRENCY_LIMIT: HeaderName = HeaderName::from_static("x-concurrency-limit");
const CONCURRENCY_REMAINING: HeaderName = HeaderName::from_static("x-concurrency-remaining");
const WAITED: HeaderName = HeaderName::from_static("x-ratelimit-waited-ms");

/// `X-Concurrency-Limit` and `X-Concurrency-Remaining` (slots left, this request's taken).
pub(crate) fn add_concurrency_headers(headers: &mut HeaderMap, limit: u32, left: u32) {
    insert_absent(headers, CONCURRENCY_LIMIT, HeaderValue::from(limit));
    insert_absent(headers, CONCURRENCY_REMAINING, HeaderValue::from(left));
}

/// `X-RateLimit-Waited-Ms`: how long the request waited for its turn.
pub(crate) fn add_waited_header(headers: &mut HeaderMap, waited: std::time::Duration) {
    let millis = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
    insert_absent(headers, WAITED, HeaderValue::from(millis));
}

pub(crate) fn insert_absent(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
    }
}
