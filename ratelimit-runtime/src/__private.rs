//! What `#[ratelimit]` expands to. Not a stable API: only the macro of the same version may use
//! it, and it changes without notice.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::FromRequest;

pub use crate::algorithm::AlgorithmKind;
pub use crate::catalogue::HandlerRules;
pub use crate::engine::Pass;
pub use crate::info::RateLimitInfo;
pub use crate::key::Scope;
pub use crate::limiter::RateLimiter;
pub use crate::metrics::RuleMetricsCache;
pub use crate::quota::Quota;
pub use crate::rule::{Mode, QuotaSource, Rule, Tier};
pub use actix_web::{HttpRequest, HttpResponse, Responder};
pub use inventory;
pub use std::borrow::Cow;
pub use std::num::NonZeroU32;
pub use std::time::Duration;

/// The request and its body, taken before any extractor runs.
pub struct RawRequest {
    req: HttpRequest,
    payload: Payload,
}

impl RawRequest {
    /// The request and its untouched payload.
    pub fn into_parts(self) -> (HttpRequest, Payload) {
        (self.req, self.payload)
    }
}

impl FromRequest for RawRequest {
    type Error = actix_web::Error;
    type Future = Ready<Result<RawRequest, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(Ok(RawRequest {
            req: req.clone(),
            payload: payload.take(),
        }))
    }
}

/// Decides a handler's rules before its extractors run.
pub async fn check(req: &HttpRequest, rules: &'static [Rule]) -> Result<Pass, HttpResponse> {
    RateLimiter::for_request(req).check(req, rules).await
}

/// Runs one of the handler's extractors; an error becomes its response.
pub async fn extract<T: FromRequest>(
    req: &HttpRequest,
    payload: &mut Payload,
) -> Result<T, HttpResponse> {
    T::from_request(req, payload)
        .await
        .map_err(|e| HttpResponse::from_error(e.into()))
}

/// A custom key function's result as a key.
pub trait IntoKey {
    /// The key; `None` counts the request per client address.
    fn into_key(self) -> Option<String>;
}

impl IntoKey for String {
    fn into_key(self) -> Option<String> {
        Some(self)
    }
}

impl IntoKey for &str {
    fn into_key(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl<K: IntoKey> IntoKey for Option<K> {
    fn into_key(self) -> Option<String> {
        self.and_then(IntoKey::into_key)
    }
}

/// A custom `over_limit` response as an `HttpResponse`.
pub fn over_limit_response<R: Responder>(output: R, req: &HttpRequest) -> HttpResponse
where
    R::Body: actix_web::body::MessageBody + 'static,
{
    output.respond_to(req).map_into_boxed_body()
}

/// A quota the macro checked at compile time.
pub const fn quota(limit: u32, period_secs: u32) -> Quota {
    match Quota::from_parts(limit, period_secs) {
        Some(quota) => quota,
        None => panic!("the macro only emits non-zero quotas"),
    }
}

/// A non-zero number the macro checked at compile time.
pub const fn non_zero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("the macro only emits non-zero numbers"),
    }
}
