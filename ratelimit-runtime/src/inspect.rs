//! One client's state under one rule, for operators: [`RateLimiter::peek`] reads it without
//! spending, [`RateLimiter::reset`] clears it (a customer support "unblock").

use std::fmt;
use std::net::IpAddr;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::test::TestRequest;
use actix_web::HttpRequest;
use smallvec::SmallVec;

use crate::algorithm::Limit;
use crate::backend::Backend;
use crate::catalogue;
use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::info::RateLimitInfo;
use crate::key::{ClientIp, Identity, Scope};
use crate::rule::Rule;
use crate::store::{Check, MemoryStore, StoreError};

/// Why a peek or a reset could not be done.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum InspectError {
    /// No rule has this name.
    UnknownRule {
        /// The name given.
        rule: String,
    },
    /// The rule counts per client address and the key is not one.
    InvalidKey {
        /// The rule.
        rule: String,
        /// The key given.
        key: String,
    },
    /// A per-client override makes the key `"unlimited"` or `"blocked"` under the rule: it has
    /// no budget to read.
    KeyOverridden {
        /// The rule.
        rule: String,
        /// The key given.
        key: String,
        /// `"unlimited"` or `"blocked"`.
        setting: &'static str,
    },
    /// The rule's tier is looked up (an async `limit` function), and the lookup failed with no
    /// earlier answer to stand in.
    Lookup {
        /// The rule.
        rule: String,
        /// The key given.
        key: String,
        /// Why the lookup failed.
        reason: String,
    },
    /// The store failed (Redis unreachable, too slow, an error).
    Store(StoreError),
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::UnknownRule { rule } => {
                write!(f, "no rate-limit rule is called `{rule}`")
            }
            InspectError::InvalidKey { rule, key } => write!(
                f,
                "rule `{rule}` counts per client address, and `{key}` is not an IP address"
            ),
            InspectError::KeyOverridden { rule, key, setting } => write!(
                f,
                "client `{key}` of rule `{rule}` is {setting} by a per-client override: it has no budget"
            ),
            InspectError::Lookup { rule, key, reason } => write!(
                f,
                "the tier of client `{key}` of rule `{rule}` could not be looked up: {reason}"
            ),
            InspectError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InspectError {}

/// The program's rules named `rule`: every limit of one handler, shared budget or default.
pub(crate) fn rules_named(rule: &str) -> Result<Vec<Rule>, InspectError> {
    let rules = catalogue::rules_named(rule);
    if rules.is_empty() {
        return Err(InspectError::UnknownRule {
            rule: rule.to_owned(),
        });
    }
    Ok(rules)
}

/// The checks of `key` under `rules` (the limits of the rule `rule`): the key is what each
/// scope counts, an address grouped by `client_ip`, and `key_of` names each check's key as the
/// limiter does.
pub(crate) fn checks_of(
    rules: &[Rule],
    rule: &str,
    key: &str,
    client_ip: &ClientIp,
    key_of: impl Fn(&Rule, Limit, &Identity<'_>) -> Check,
) -> Result<SmallVec<[Check; 4]>, InspectError> {
    let ip = key.parse::<IpAddr>().ok();
    rules
        .iter()
        // A concurrency limit has no state to read or clear: its slots are requests.
        .filter(|r| !r.quota.is_concurrency())
        .map(|r| {
            let identity = match &r.scope {
                Scope::Ip => match ip {
                    Some(ip) => Identity::Ip(client_ip.group(ip.to_canonical())),
                    None => {
                        return Err(InspectError::InvalidKey {
                            rule: rule.to_owned(),
                            key: key.to_owned(),
                        })
                    }
                },
                Scope::Global => Identity::Global,
                Scope::Header(_) => Identity::Header(key.as_bytes()),
                Scope::Custom(_) | Scope::Chosen { .. } => Identity::Custom(key.to_owned()),
            };
            // Tiers that lookups choose are looked up before (`State::with_tiers_of`).
            let limit = match r.quota.fixed() {
                Some(quota) => r.limit_of(quota),
                None => r
                    .limit_for(&stand_in(r, key, ip))
                    .ok_or_else(|| InspectError::Lookup {
                        rule: rule.to_owned(),
                        key: key.to_owned(),
                        reason: "not looked up".to_owned(),
                    })?,
            };
            Ok(key_of(r, limit, &identity))
        })
        .collect()
}

/// What `checks` (the limits of the rule `rule`, then from `own` on its penalty probes) have
/// left at `now`, without spending: the most restrictive of them, or nothing left until a
/// penalty the client serves ends.
pub(crate) async fn peek(
    backend: &Backend,
    memory: &MemoryStore,
    checks: &[Check],
    own: usize,
    now: UnixNanos,
    rule: &str,
) -> Result<RateLimitInfo, InspectError> {
    let verdict = backend
        .peek(memory, checks, now)
        .await
        .map_err(InspectError::Store)?;
    let (limits, penalties) = verdict.decisions.split_at(own.min(verdict.decisions.len()));
    let penalty_ends = penalties
        .iter()
        .filter(|d| !d.allowed)
        .map(|d| d.retry_at)
        .max();
    let now_left = checks.iter().zip(limits).map(|(check, d)| {
        // A passing evaluation reports what would remain after the request: add it back.
        let mut left = *d;
        if d.allowed {
            left.remaining = left.remaining.saturating_add(check.cost).min(left.limit);
        }
        left
    });
    let decision = now_left
        .reduce(|a, b| if b.is_more_restrictive_than(&a) { b } else { a })
        .ok_or_else(|| InspectError::UnknownRule {
            rule: rule.to_owned(),
        })?;
    let decision = match penalty_ends {
        Some(ends) => Decision {
            allowed: false,
            remaining: 0,
            reset_at: decision.reset_at.max(ends),
            retry_at: decision.retry_at.max(ends),
            ..decision
        },
        None => decision,
    };
    Ok(RateLimitInfo::new(decision, now))
}

/// Clears the state of `checks` on `backend`.
pub(crate) async fn reset(
    backend: &Backend,
    memory: &MemoryStore,
    checks: &[Check],
) -> Result<(), InspectError> {
    backend
        .reset(memory, checks)
        .await
        .map_err(InspectError::Store)
}

/// A request carrying `key` where `rule`'s scope reads it, for its tier function.
fn stand_in(rule: &Rule, key: &str, ip: Option<IpAddr>) -> HttpRequest {
    let mut req = TestRequest::default();
    if let Some(ip) = ip {
        req = req.peer_addr((ip, 0).into());
    }
    if let Scope::Header(name) = &rule.scope {
        // A key no header could carry is left out rather than panicking the builder.
        let name = HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(key)) {
            req = req.insert_header((name, value));
        }
    }
    req.to_http_request()
}
