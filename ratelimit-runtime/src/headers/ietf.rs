//! The IETF `RateLimit-Policy` and `RateLimit` fields (feature `ietf-headers`), Structured
//! Fields serialised by `sfv`.

use std::borrow::Cow;

use actix_web::http::header::{HeaderMap, HeaderValue};
use sfv::{KeyRef, ListSerializer, StringRef};

use super::{insert_absent, public_name, Policy, Shown, POLICY, RATELIMIT};
use crate::clock::NANOS_PER_SEC;

/// Which draft's `t` the `RateLimit` field carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Draft {
    /// draft-10: the seconds until the budget is whole again.
    Ten,
    /// draft-11: the effective window, the seconds until more than `r` is available.
    Eleven,
}

/// `RateLimit-Policy` and `RateLimit`, one list member per limit, serialised by `sfv`.
pub(super) fn add_ietf(headers: &mut HeaderMap, shown: &Shown, draft: Draft) {
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
        let until = match draft {
            Draft::Ten => decision.reset_at,
            Draft::Eleven => policy.more_at,
        };
        let t = until.saturating_sub(shown.now).div_ceil(NANOS_PER_SEC);
        // Parameters are written as they are added; the serializer they return is done.
        let _ = policies
            .bare_item(name)
            .parameter(KeyRef::constant("q"), policy.quota)
            .parameter(KeyRef::constant("w"), policy.window_secs);
        let _ = states
            .bare_item(name)
            .parameter(KeyRef::constant("r"), remaining)
            .parameter(KeyRef::constant("t"), u32::try_from(t).unwrap_or(u32::MAX));
    }
    for (header, value) in [(POLICY, policies.finish()), (RATELIMIT, states.finish())] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            insert_absent(headers, header, value);
        }
    }
}

fn short(policy: &Policy) -> &str {
    public_name(&policy.rule)
}

/// The public name of the `i`-th policy ([`Policy::name`]), also with the window when two
/// policies of the response would otherwise share a name.
fn policy_name(policies: &[Policy], i: usize) -> Cow<'_, str> {
    let name = short(&policies[i]);
    let clash = policies
        .iter()
        .enumerate()
        .any(|(j, p)| j != i && short(p) == name);
    if clash && !policies[i].stacked {
        Cow::Owned(format!("{name}-{}s", policies[i].window_secs))
    } else {
        policies[i].name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::headers::{add_limit_headers, HeaderStyle};

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
            more_at: T0 + reset_in,
            stacked: false,
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
