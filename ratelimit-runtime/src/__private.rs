//! What `#[ratelimit]` expands to. Not a stable API: only the macro of the same version may use
//! it, and it changes without notice.

use std::fmt;
use std::future::{ready, Future, Ready};

use actix_web::dev::Payload;
use actix_web::FromRequest;

pub use crate::adaptive::{AdaptiveBounds, Priority};
pub use crate::algorithm::AlgorithmKind;
pub use crate::catalogue::HandlerRules;
pub use crate::engine::Pass;
pub use crate::info::RateLimitInfo;
pub use crate::key::Scope;
pub use crate::limiter::RateLimiter;
pub use crate::lookup::{Choice, Chooser};
pub use crate::quota::Quota;
pub use crate::rule::LimiterCache;
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
#[diagnostic::on_unimplemented(
    message = "a `key` function returns the client's key, not `{Self}`",
    label = "this `key` function returns `{Self}`",
    note = "expected `fn(&HttpRequest) -> K`, `K` one of `String`, `&str`, `Option<String>`, `Option<&str>` (`None` counts the request per client address)"
)]
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

/// What a `priority` function returns.
#[diagnostic::on_unimplemented(
    message = "a `priority` function returns a `Priority`, not `{Self}`",
    label = "this `priority` function returns `{Self}`",
    note = "expected `fn(&HttpRequest) -> Priority`: `Priority::Critical`, `Priority::Normal` or `Priority::Sheddable`"
)]
pub trait IntoPriority {
    /// The priority.
    fn into_priority(self) -> Priority;
}

impl IntoPriority for Priority {
    fn into_priority(self) -> Priority {
        self
    }
}

/// What an `exempt` function returns.
#[diagnostic::on_unimplemented(
    message = "an `exempt` function returns `bool`, not `{Self}`",
    label = "this `exempt` function returns `{Self}`",
    note = "expected `fn(&HttpRequest) -> bool`: true lets the request past the limit, uncounted"
)]
pub trait IsExempt {
    /// Whether the request is exempt.
    fn into_exempt(self) -> bool;
}

impl IsExempt for bool {
    fn into_exempt(self) -> bool {
        self
    }
}

/// What a `deduct_when` function returns.
#[diagnostic::on_unimplemented(
    message = "a `deduct_when` function returns `bool`, not `{Self}`",
    label = "this `deduct_when` function returns `{Self}`",
    note = "expected `fn(&HttpResponse) -> bool`: true keeps the request charged (a failed login), false gives its units back"
)]
pub trait Deducts {
    /// Whether the response keeps its charge.
    fn deducts(self) -> bool;
}

impl Deducts for bool {
    fn deducts(self) -> bool {
        self
    }
}

/// What a `cost = fn` function returns: the units the request reserves.
#[diagnostic::on_unimplemented(
    message = "a `cost` function returns the units a request reserves, a `u32`, not `{Self}`",
    label = "this `cost` function returns `{Self}`",
    note = "expected `fn(&HttpRequest) -> u32`, read from the URI or headers (the body is not read yet); the handler settles the real cost with `RateLimitInfo::settle`"
)]
pub trait IntoCost {
    /// The units.
    fn into_cost(self) -> u32;
}

impl IntoCost for u32 {
    fn into_cost(self) -> u32 {
        self
    }
}

/// What a `limit = fn` function returns: a quota for this request.
#[diagnostic::on_unimplemented(
    message = "a `limit` function returns a `Tier` or a `Quota`, not `{Self}`",
    label = "this `limit` function returns `{Self}`",
    note = "expected `fn(&HttpRequest) -> Tier` (a named tier, the metrics' `tier` label) or `fn(&HttpRequest) -> Quota`; `quota!(\"100/hour\")` makes a `Quota`"
)]
pub trait IntoTier {
    /// The tier.
    fn into_tier(self) -> Tier;
}

impl IntoTier for Tier {
    fn into_tier(self) -> Tier {
        self
    }
}

impl IntoTier for Quota {
    fn into_tier(self) -> Tier {
        self.into()
    }
}

/// A `limit = fn` function read from the request (`fn(&HttpRequest) -> Tier`).
pub struct OfRequest;

/// A `limit = fn` or `key = fn` function that looks the client's key up
/// (`async fn(String) -> ..`).
pub struct LookedUp;

/// A `limit = fn` function: of the request, or an async lookup of the client's key.
#[diagnostic::on_unimplemented(
    message = "a `limit` function is `fn(&HttpRequest) -> Tier` or an async lookup `async fn(String) -> Tier`",
    label = "this is not a `limit` function",
    note = "`Quota` works in place of `Tier`; an async lookup takes the client's key as a `String` (not `&str`, not the request), is `Send`, and may return `Option<Tier>` or `Result<Tier, E>` (`None` and `Err` are failed lookups)"
)]
pub trait TierFn<M> {
    /// Whether it looks the key up.
    const LOOKS_UP: bool;
    /// The tier of `req`, or the lookup of `key`.
    fn choose(&self, req: &HttpRequest, key: Option<String>) -> Choice<Tier>;
}

impl<F, R> TierFn<OfRequest> for F
where
    F: Fn(&HttpRequest) -> R,
    R: IntoTier,
{
    const LOOKS_UP: bool = false;
    fn choose(&self, req: &HttpRequest, _: Option<String>) -> Choice<Tier> {
        Choice::Now(self(req).into_tier())
    }
}

impl<F, Fut> TierFn<LookedUp> for F
where
    F: Fn(String) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: TierAnswer,
{
    const LOOKS_UP: bool = true;
    fn choose(&self, _: &HttpRequest, key: Option<String>) -> Choice<Tier> {
        let lookup = self(key.unwrap_or_default());
        Choice::Later(Box::pin(async move { lookup.await.into_answer() }))
    }
}

/// The identity of the function `f` (its type): what names its answers in the cache.
pub fn function_id<F: 'static>(_: &F) -> std::any::TypeId {
    std::any::TypeId::of::<F>()
}

/// Whether the `limit` function `f` looks the key up.
pub const fn tier_looks_up<M, F: TierFn<M>>(_: &F) -> bool {
    F::LOOKS_UP
}

/// What an async `limit` lookup returns.
#[diagnostic::on_unimplemented(
    message = "an async `limit` lookup returns a `Tier` or a `Quota` (or an `Option` or `Result` of one), not `{Self}`",
    label = "this lookup returns `{Self}`"
)]
pub trait TierAnswer {
    /// The tier, or why there is none.
    fn into_answer(self) -> Result<Tier, String>;
}

impl TierAnswer for Tier {
    fn into_answer(self) -> Result<Tier, String> {
        Ok(self)
    }
}

impl TierAnswer for Quota {
    fn into_answer(self) -> Result<Tier, String> {
        Ok(self.into())
    }
}

impl<T: IntoTier> TierAnswer for Option<T> {
    fn into_answer(self) -> Result<Tier, String> {
        self.map(IntoTier::into_tier)
            .ok_or_else(|| "the lookup found no tier".to_owned())
    }
}

impl<T: IntoTier, E: fmt::Display> TierAnswer for Result<T, E> {
    fn into_answer(self) -> Result<Tier, String> {
        self.map(IntoTier::into_tier).map_err(|e| e.to_string())
    }
}

/// A `key = fn` function: of the request, or an async lookup of the key its scope gives.
#[diagnostic::on_unimplemented(
    message = "a `key` function is `fn(&HttpRequest) -> K` or an async lookup `async fn(String) -> K`",
    label = "this is not a `key` function",
    note = "`K` is one of `String`, `&str`, `Option<String>`, `Option<&str>` (`None` counts the request per client address); an async lookup takes the key its `scope` gives as a `String`, is `Send`, and may return `Result<K, E>` (`Err` is a failed lookup)"
)]
pub trait KeyFn<M> {
    /// Whether it looks the key up.
    const LOOKS_UP: bool;
    /// The key of `req`, or the lookup of `key`.
    fn choose(&self, req: &HttpRequest, key: Option<String>) -> Choice<Option<String>>;
}

impl<F, K> KeyFn<OfRequest> for F
where
    F: Fn(&HttpRequest) -> K,
    K: IntoKey,
{
    const LOOKS_UP: bool = false;
    fn choose(&self, req: &HttpRequest, _: Option<String>) -> Choice<Option<String>> {
        Choice::Now(self(req).into_key())
    }
}

/// A `key = fn` function returning a key borrowed from the request (`&str`).
pub struct OfRequestBorrowed;

/// A `key = fn` function returning a key borrowed from the request, or none.
pub struct OfRequestMaybeBorrowed;

impl<F> KeyFn<OfRequestBorrowed> for F
where
    F: for<'r> Fn(&'r HttpRequest) -> &'r str,
{
    const LOOKS_UP: bool = false;
    fn choose(&self, req: &HttpRequest, _: Option<String>) -> Choice<Option<String>> {
        Choice::Now(self(req).into_key())
    }
}

impl<F> KeyFn<OfRequestMaybeBorrowed> for F
where
    F: for<'r> Fn(&'r HttpRequest) -> Option<&'r str>,
{
    const LOOKS_UP: bool = false;
    fn choose(&self, req: &HttpRequest, _: Option<String>) -> Choice<Option<String>> {
        Choice::Now(self(req).into_key())
    }
}

impl<F, Fut> KeyFn<LookedUp> for F
where
    F: Fn(String) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: KeyAnswer,
{
    const LOOKS_UP: bool = true;
    fn choose(&self, _: &HttpRequest, key: Option<String>) -> Choice<Option<String>> {
        let lookup = self(key.unwrap_or_default());
        Choice::Later(Box::pin(async move { lookup.await.into_answer() }))
    }
}

/// Whether the `key` function `f` looks the key up.
pub const fn key_looks_up<M, F: KeyFn<M>>(_: &F) -> bool {
    F::LOOKS_UP
}

/// A `key` function next to a `scope`: only an async lookup, asked the scope's key.
pub const fn key_with_scope(looks_up: bool) {
    assert!(
        looks_up,
        "`key` with `scope` takes an async lookup (`async fn(String) -> ..`), asked the key the scope gives; a key function of the request replaces `scope`: keep one of them"
    );
}

/// What an async `key` lookup returns.
#[diagnostic::on_unimplemented(
    message = "an async `key` lookup returns the client's key (`String`, `Option<String>`, or a `Result` of one), not `{Self}`",
    label = "this lookup returns `{Self}`"
)]
pub trait KeyAnswer {
    /// The key (`None`: per client address), or why there is none.
    fn into_answer(self) -> Result<Option<String>, String>;
}

impl KeyAnswer for String {
    fn into_answer(self) -> Result<Option<String>, String> {
        Ok(Some(self))
    }
}

impl KeyAnswer for Option<String> {
    fn into_answer(self) -> Result<Option<String>, String> {
        Ok(self)
    }
}

impl<E: fmt::Display> KeyAnswer for Result<String, E> {
    fn into_answer(self) -> Result<Option<String>, String> {
        self.map(Some).map_err(|e| e.to_string())
    }
}

impl<E: fmt::Display> KeyAnswer for Result<Option<String>, E> {
    fn into_answer(self) -> Result<Option<String>, String> {
        self.map_err(|e| e.to_string())
    }
}

/// An `over_limit` function: answers a denied request.
#[diagnostic::on_unimplemented(
    message = "an `over_limit` function takes `(&HttpRequest, &RateLimitInfo)` and returns a responder",
    label = "this is not `fn(&HttpRequest, &RateLimitInfo) -> impl Responder`",
    note = "expected `fn(req: &HttpRequest, info: &RateLimitInfo) -> impl Responder`, e.g. returning `HttpResponse`"
)]
pub trait OverLimit {
    /// The response to a denied request.
    fn respond(&self, req: &HttpRequest, info: &RateLimitInfo) -> HttpResponse;
}

impl<F, R> OverLimit for F
where
    F: Fn(&HttpRequest, &RateLimitInfo) -> R,
    R: Responder,
    R::Body: actix_web::body::MessageBody + 'static,
{
    fn respond(&self, req: &HttpRequest, info: &RateLimitInfo) -> HttpResponse {
        self(req, info).respond_to(req).map_into_boxed_body()
    }
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
