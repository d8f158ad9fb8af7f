//! The after-response header hook and the 429 response.

use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

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
    /// No limit headers; denied responses still carry `Retry-After`.
    None,
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const DRAFT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const DRAFT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const DRAFT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Adds the limit headers of `info` to `headers`, keeping any the handler set itself.
pub(crate) fn add_limit_headers(headers: &mut HeaderMap, info: &RateLimitInfo, style: HeaderStyle) {
    let (limit, remaining, reset, reset_value) = match style {
        HeaderStyle::XRateLimit => (X_LIMIT, X_REMAINING, X_RESET, info.reset_unix_secs()),
        HeaderStyle::Draft => (
            DRAFT_LIMIT,
            DRAFT_REMAINING,
            DRAFT_RESET,
            info.reset_after().as_secs_f64().ceil() as u64,
        ),
        HeaderStyle::None => return,
    };
    insert_absent(headers, limit, u64::from(info.limit()));
    insert_absent(headers, remaining, u64::from(info.remaining()));
    insert_absent(headers, reset, reset_value);
}

/// Adds what a denied response carries: `Retry-After`, `Cache-Control: no-store`, and the limit
/// headers when `send_x_headers` is on.
pub(crate) fn add_denied_headers(
    headers: &mut HeaderMap,
    info: &RateLimitInfo,
    style: HeaderStyle,
    send_x_headers: bool,
) {
    insert_absent(headers, RETRY_AFTER, info.retry_after_secs());
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if send_x_headers {
        add_limit_headers(headers, info, style);
    }
}

/// The default answer to a denied request: 429 with a JSON body naming the wait.
pub(crate) fn too_many_requests(info: &RateLimitInfo) -> HttpResponse {
    let body = format!(
        r#"{{"error":"rate_limit_exceeded","message":"Too many requests","retry_after":{}}}"#,
        info.retry_after_secs()
    );
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(body)
}

fn insert_absent(headers: &mut HeaderMap, name: HeaderName, value: u64) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// The answer of a fail-closed limiter while its store is down: 503 with `Retry-After`.
pub(crate) fn unavailable(retry_after_secs: u64) -> HttpResponse {
    let body =
        format!(r#"{{"error":"rate_limiter_unavailable","retry_after":{retry_after_secs}}}"#);
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((RETRY_AFTER, HeaderValue::from(retry_after_secs)))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body)
}
