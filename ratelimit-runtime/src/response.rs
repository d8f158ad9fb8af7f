//! The answers the limiter gives itself: 429 for a denied request, 503 for a fail-closed
//! limiter whose store is down, 500 for a rule it cannot decide.

use crate::lookup::LookupFailed;
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

use crate::info::RateLimitInfo;
use crate::unsupported::UnsupportedLimit;

/// The body of the default 429 response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeniedBody {
    /// `{"error":"rate_limit_exceeded","message":"Too many requests","retry_after":N}` as
    /// `application/json`. The default.
    #[default]
    Json,
    /// An RFC 9457 problem, as `application/problem+json`:
    ///
    /// ```json
    /// {"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",
    ///  "title":"Too Many Requests","status":429,
    ///  "detail":"Too many requests: 10 per 10 s allowed; retry in 7 s","retry_after":7,
    ///  "violated-policies":["data"]}
    /// ```
    ///
    /// The type is the "quota exceeded" problem type of draft-ietf-httpapi-ratelimit-headers,
    /// and `violated-policies` (draft-11) names the policy that refused the request as the
    /// `RateLimit-Policy` field names it (the rule's name without its module path). A refusal
    /// by a concurrency limit, no quota policy, has no `violated-policies`.
    Problem,
}

/// The problem type of a request refused for its quota.
const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The default answer to a denied request: 429 with a body naming the wait; `detail` is only
/// written into a problem body (a denial must stay cheap).
pub(crate) fn too_many_requests(
    info: &RateLimitInfo,
    detail: impl FnOnce() -> String,
    violated: Option<&str>,
    body: DeniedBody,
) -> HttpResponse {
    let retry_after = info.retry_after_secs();
    let (content_type, body) = match body {
        DeniedBody::Json => (
            "application/json",
            json!({
                "error": "rate_limit_exceeded",
                "message": "Too many requests",
                "retry_after": retry_after,
            }),
        ),
        DeniedBody::Problem => {
            let mut problem = json!({
                "type": QUOTA_EXCEEDED,
                "title": "Too Many Requests",
                "status": 429,
                "detail": detail(),
                "retry_after": retry_after,
            });
            if let Some(policy) = violated {
                problem["violated-policies"] = json!([policy]);
            }
            ("application/problem+json", problem)
        }
    };
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(body.to_string())
}

/// The answer of a fail-closed limiter while its store is down: 503 with `Retry-After`.
pub(crate) fn unavailable(retry_after_secs: u64) -> HttpResponse {
    service_unavailable("rate_limiter_unavailable", retry_after_secs)
}

/// The response to a request whose tier or key lookup failed, with no earlier answer to stand
/// in: 503, `Retry-After` when the lookup is asked again (1 s by default).
pub(crate) fn lookup_failed(failed: &LookupFailed) -> HttpResponse {
    service_unavailable("rate_limit_lookup_failed", failed.retry_after_secs())
}

/// The response to a request an adaptive concurrency limit sheds: 503, `Retry-After: 1`
/// (slots come back as requests end, within moments).
pub(crate) fn shed() -> HttpResponse {
    service_unavailable("overloaded", 1)
}

fn service_unavailable(error: &str, retry_after_secs: u64) -> HttpResponse {
    let body = json!({"error": error, "retry_after": retry_after_secs});
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((RETRY_AFTER, HeaderValue::from(retry_after_secs)))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body.to_string())
}

/// The answer to a client a per-client override blocks: `403`, no `Retry-After` (an
/// operator's decision; retrying will not help).
pub(crate) fn blocked(rule: &str) -> HttpResponse {
    let body = json!({
        "error": "blocked",
        "rule": rule,
        "message": "This client is blocked",
    });
    HttpResponse::build(StatusCode::FORBIDDEN)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body.to_string())
}

/// The answer to a request under a rule the limiter cannot decide (see `unsupported.rs`):
/// `500`, the server's configuration being at fault, with a body naming the rule and why. No
/// `Retry-After`: retrying will not help until the rule changes.
pub(crate) fn unsupported_limit(refused: &UnsupportedLimit) -> HttpResponse {
    let body = json!({
        "error": "rate_limit_unsupported",
        "rule": refused.rule,
        "message": refused.to_string(),
    });
    HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body.to_string())
}
