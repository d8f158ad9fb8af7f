//! The limit headers: `X-RateLimit-*` (the default), the IETF `RateLimit-Policy` and
//! `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10, or both.

use std::borrow::Cow;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, RETRY_AFTER};
use sfv::{KeyRef, ListSerializer, StringRef};
use smallvec::SmallVec;

use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;
use crate::info::RateLimitInfo;

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
    /// draft-ietf-httpapi-ratelimit-headers-10: one policy per limit of the request, named
    /// after its rule, with its quota `q` and window `w` in seconds; and per policy what
    /// remains (`r`) and the seconds until the budget is whole again (`t`):
    ///
    /// ```text
    /// RateLimit-Policy: "data";q=10;w=10
    /// RateLimit: "data";r=7;t=10
    /// ```
    Ietf,
    /// Both [`XRateLimit`](HeaderStyle::XRateLimit) and [`Ietf`](HeaderStyle::Ietf), for a
    /// migration period.
    Both,
    /// No limit headers; denied responses still carry `Retry-After`.
    None,
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const DRAFT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const DRAFT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const DRAFT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
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
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        add_ietf(headers, shown);
    }
    let Some(info) = shown.most_restrictive() else {
        return;
    };
    let (limit, remaining, reset, reset_value) = match style {
        HeaderStyle::XRateLimit | HeaderStyle::Both => {
            (X_LIMIT, X_REMAINING, X_RESET, info.reset_unix_secs())
        }
        HeaderStyle::Draft => (
            DRAFT_LIMIT,
            DRAFT_REMAINING,
            DRAFT_RESET,
            info.reset_after().as_secs_f64().ceil() as u64,
        ),
        HeaderStyle::Ietf | HeaderStyle::None => return,
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

/// `RateLimit-Policy` and `RateLimit`, one list member per limit, serialised by `sfv`.
fn add_ietf(headers: &mut HeaderMap, shown: &Shown) {
    let mut policies = ListSerializer::new();
    let mut states = ListSerializer::new();
    for (i, policy) in shown.policies.iter().enumerate() {
        let name = policy_name(&shown.policies, i);
        // A name that is not printable ASCII (a `shared` budget may have any name) is left
        // out rather than sent mangled.
        let Ok(name) = StringRef::from_str(&name) else {
            continue;
        };
        let decision = &policy.decision;
        let remaining = if decision.allowed {
            decision.remaining
        } else {
            0
        };
        let reset = decision
            .reset_at
            .saturating_sub(shown.now)
            .div_ceil(NANOS_PER_SEC);
        // Parameters are written as they are added; the serializer they return is done.
        let _ = policies
            .bare_item(name)
            .parameter(KeyRef::constant("q"), policy.quota)
            .parameter(KeyRef::constant("w"), policy.window_secs);
        let _ = states
            .bare_item(name)
            .parameter(KeyRef::constant("r"), remaining)
            .parameter(
                KeyRef::constant("t"),
                u32::try_from(reset).unwrap_or(u32::MAX),
            );
    }
    for (header, value) in [(POLICY, policies.finish()), (RATELIMIT, states.finish())] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            insert_absent(headers, header, value);
        }
    }
}

/// The public name of the `i`-th policy: its rule's name without the module path (a handler)
/// or the `shared:` mark (a shared budget), and with the window when two policies of the
/// response would otherwise share a name (stacked limits of one handler).
/// A rule's name without the module path or the `shared:` mark.
fn short(policy: &Policy) -> &str {
    let name = policy.rule.split('#').next().unwrap_or_default();
    let name = name.strip_prefix("shared:").unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

fn policy_name(policies: &[Policy], i: usize) -> Cow<'_, str> {
    let name = short(&policies[i]);
    let clash = policies
        .iter()
        .enumerate()
        .any(|(j, p)| j != i && short(p) == name);
    if clash {
        Cow::Owned(format!("{name}-{}s", policies[i].window_secs))
    } else {
        Cow::Borrowed(name)
    }
}

fn insert_absent(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn policy(rule: &'static str, window_secs: u32, remaining: u32, reset_in: u64) -> Policy {
        Policy {
            rule: Cow::Borrowed(rule),
            quota: 10,
            window_secs,
            decision: Decision {
                allowed: true,
                limit: 10,
                remaining,
                reset_at: T0 + reset_in,
                retry_at: T0,
            },
        }
    }

    fn headers(shown: &Shown, style: HeaderStyle) -> HeaderMap {
        let mut headers = HeaderMap::new();
        add_limit_headers(&mut headers, shown, style);
        headers
    }

    #[test]
    fn policies_are_named_after_their_rules() {
        let shown = Shown {
            now: T0,
            policies: [
                policy("server::data", 10, 7, 9 * SEC + 1),
                policy("shared:search#key=k", 60, 3, 0),
            ]
            .into_iter()
            .collect(),
        };
        let h = headers(&shown, HeaderStyle::Ietf);
        assert_eq!(
            h.get("ratelimit-policy").unwrap(),
            r#""data";q=10;w=10, "search";q=10;w=60"#
        );
        assert_eq!(
            h.get("ratelimit").unwrap(),
            r#""data";r=7;t=10, "search";r=3;t=0"#
        );
        assert!(h.get("x-ratelimit-limit").is_none());
        let both = headers(&shown, HeaderStyle::Both);
        assert_eq!(both.get("x-ratelimit-remaining").unwrap(), "3");
        assert!(both.get("ratelimit").is_some());
    }

    #[test]
    fn stacked_limits_of_one_rule_are_told_apart_by_window() {
        let shown = Shown {
            now: T0,
            policies: [policy("m::h", 3_600, 99, SEC), policy("m::h", 1, 9, SEC)]
                .into_iter()
                .collect(),
        };
        let h = headers(&shown, HeaderStyle::Ietf);
        assert_eq!(
            h.get("ratelimit-policy").unwrap(),
            r#""h-3600s";q=10;w=3600, "h-1s";q=10;w=1"#
        );
    }
}
