//! The decision for one request: rules -> keys -> store -> 429 or a [`Pass`] whose hook adds the
//! headers after the handler.

use actix_web::body::MessageBody;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, Responder};
use smallvec::SmallVec;

use crate::backend::Outcome;
use crate::decision::Decision;
use crate::info::RateLimitInfo;
use crate::limiter::RateLimiter;
use crate::response::unavailable;
use crate::response::{add_denied_headers, add_limit_headers, too_many_requests, HeaderStyle};
use crate::rule::Rule;
use crate::store::Check;

/// An allowed request: carries what its headers will say until the response exists.
#[derive(Debug)]
#[must_use = "a Pass adds the rate-limit headers to the response"]
pub struct Pass {
    headers: Option<RateLimitInfo>,
    style: HeaderStyle,
}

/// Where a [`DefaultLimits`](crate::DefaultLimits) middleware collects the handler's decision,
/// so that one hook writes the headers of the most restrictive limit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeferredHeaders(pub(crate) Option<RateLimitInfo>);

impl RateLimiter {
    /// Decides `rules` for `req`: `Ok` with a [`Pass`] when every rule allows (all charged),
    /// `Err` with the response to send when one denies (none charged).
    pub async fn check(&self, req: &HttpRequest, rules: &[Rule]) -> Result<Pass, HttpResponse> {
        let inner = self.inner();
        let now = inner.clock.now();
        let mut active: SmallVec<[&Rule; 4]> = SmallVec::new();
        let mut checks: SmallVec<[Check; 4]> = SmallVec::new();
        for rule in rules {
            if rule.exempt.is_some_and(|exempt| exempt(req)) {
                continue;
            }
            let limit = rule.limit_for(req);
            let identity = rule.scope.identify(req, &inner.client_ip);
            checks.push(inner.check_for(rule, limit, &identity));
            active.push(rule);
        }
        let style = inner.header_style;
        if checks.is_empty() {
            return Ok(Pass {
                headers: None,
                style,
            });
        }
        let verdict = match inner.backend.decide(&inner.store, &checks, now).await {
            Outcome::Decided(verdict) => verdict,
            Outcome::Unlimited => {
                return Ok(Pass {
                    headers: None,
                    style,
                })
            }
            Outcome::Unavailable(secs) => return Err(unavailable(secs)),
        };
        let decided = active.iter().zip(verdict.decisions.iter());
        if verdict.allowed {
            let shown = most_restrictive(decided.clone().map(|(_, d)| d), now);
            if let Some(info) = shown {
                req.extensions_mut().insert(info);
            }
            let headers = most_restrictive(
                decided.filter(|(r, _)| r.send_x_headers).map(|(_, d)| d),
                now,
            );
            return Ok(Pass { headers, style });
        }
        let (rule, decision) = decided
            .filter(|(_, d)| !d.allowed)
            .max_by_key(|(_, d)| d.retry_at)
            .map(|(r, d)| (*r, *d))
            .unwrap_or((active[0], verdict.decisions[0]));
        let info = RateLimitInfo::new(decision, now);
        req.extensions_mut().insert(info);
        let mut response = match rule.over_limit {
            Some(respond) => respond(req, &info),
            None => too_many_requests(&info),
        };
        add_denied_headers(response.headers_mut(), &info, style, rule.send_x_headers);
        Err(response)
    }
}

impl Pass {
    /// The handler's output as a response, with the limit headers added.
    pub fn respond<R: Responder>(self, output: R, req: &HttpRequest) -> HttpResponse
    where
        R::Body: MessageBody + 'static,
    {
        self.finish(output.respond_to(req).map_into_boxed_body(), req)
    }

    /// The after-response hook: adds the limit headers to `response` unless the handler set
    /// them, or hands them to an enclosing [`DefaultLimits`](crate::DefaultLimits) hook.
    pub fn finish(self, mut response: HttpResponse, req: &HttpRequest) -> HttpResponse {
        let Some(info) = self.headers else {
            return response;
        };
        if let Some(deferred) = req.extensions_mut().get_mut::<DeferredHeaders>() {
            deferred.0 = stricter(deferred.0, Some(info));
            return response;
        }
        add_limit_headers(response.headers_mut(), &info, self.style);
        response
    }
}

impl Pass {
    /// The one header hook when a middleware wraps the handler: the most restrictive of the
    /// middleware's and the handler's limits, never over a header the handler set.
    pub(crate) fn finish_deferred(self, headers: &mut HeaderMap, handler: Option<RateLimitInfo>) {
        let shown = stricter(self.headers, handler);
        if let Some(info) = shown {
            add_limit_headers(headers, &info, self.style);
        }
    }
}

/// The more restrictive of two (on a tie, the second).
fn stricter(first: Option<RateLimitInfo>, second: Option<RateLimitInfo>) -> Option<RateLimitInfo> {
    match (first, second) {
        (Some(a), Some(b)) if a.is_more_restrictive_than(&b) => Some(a),
        (a, None) => a,
        (_, b) => b,
    }
}

/// The decision leaving the least room, as an info.
fn most_restrictive<'a>(
    decisions: impl Iterator<Item = &'a Decision>,
    now: u64,
) -> Option<RateLimitInfo> {
    decisions
        .reduce(|a, b| if b.is_more_restrictive_than(a) { b } else { a })
        .map(|d| RateLimitInfo::new(*d, now))
}
