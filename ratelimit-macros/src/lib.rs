//! The `#[ratelimit]` attribute for Actix-web handlers, and the `quota!` macro.
//!
//! Use them through the `ratelimit-runtime` crate, which re-exports both and holds everything
//! they expand to; this crate only parses, validates and expands. It shares the rate-string parser
//! of the runtime (`ratelimit-rate`), so the attribute accepts exactly the strings the runtime
//! does, with the same messages.
//!
//! ```
//! use actix_web::{get, test, App, Responder};
//! use ratelimit_runtime::{ratelimit, RateLimiter};
//!
//! #[get("/rate-limited")]
//! #[ratelimit(limit = 2, per = 30, scope = "ip")]
//! async fn index() -> impl Responder {
//!     "This is a rate limited response"
//! }
//!
//! actix_web::rt::System::new().block_on(async {
//!     // A limiter that reads no environment; without one, a process-wide default decides.
//!     let limiter = RateLimiter::builder().ignore_env().build().unwrap();
//!     let app = test::init_service(App::new().app_data(limiter).service(index)).await;
//!     let client = "203.0.113.7:40000".parse().unwrap();
//!     for expected in [200, 200, 429] {
//!         let req = test::TestRequest::get().uri("/rate-limited").peer_addr(client).to_request();
//!         assert_eq!(test::call_service(&app, req).await.status(), expected);
//!     }
//! });
//! ```
//!
//! # From the first attribute to a fleet
//!
//! - [`ratelimit`] lists the arguments (rate strings, `scope`, `key`, the algorithms, costs,
//!   tiers, soft limits, dry runs, `deduct_when`, penalties, concurrency, `max_wait`), the
//!   signatures of the functions they name, and the mistakes that are compile errors; [`quota!`]
//!   checks one rate string at compile time for a `const`. Several attributes on one handler all
//!   apply. The manual is docs/guide.md in the repository.
//! - Where the counts live is not the attribute's business: the same handler counts in process
//!   memory, or on Redis for a whole fleet (leases included) once the app's limiter is built on
//!   Redis or `REDIS_URL` is set. See docs/redis.md in the repository.
//! - The attribute records each handler's rules by name (the handler's path, or its `shared`
//!   budget), so that an operator can override, peek at and reset them while the service runs,
//!   and read their metrics. See docs/operations.md in the repository.
//! - The client side of a limit, which reads the headers the attribute sends, is the
//!   `ratelimit-client` crate. See docs/clients.md in the repository.
//!
//! # Equivalent code without the macro
//!
//! The attribute is thin: it keeps the handler as written (name, visibility, docs, attributes,
//! extractors) and wraps its body in a few lines that call `ratelimit_runtime::__private`, a
//! hidden module that only the macro of the same version may use. In terms of the runtime's
//! public API, `#[ratelimit(limit = 300, per = 30)]` on a handler becomes:
//!
//! 1. a static table of the handler's rules (`Rule`, with its quota), recorded by name;
//! 2. the decision, before anything reads the request:
//!    `RateLimiter::for_request(&req).check(&req, &RULES)`, whose refusal is the 429 response;
//! 3. only then the extractors and the handler, and the hook that adds the `X-RateLimit-*`
//!    headers to the response (`Pass::respond`, or `Pass::finish` for an extractor's error).
//!
//! The same written out by hand, compiled as a doctest, is the section
//! [*Equivalent code without the macro*](ratelimit#equivalent-code-without-the-macro) of
//! [`ratelimit`].

mod args;
mod config;
mod expand;
// The rate-string parser the runtime uses too, so that the attribute accepts exactly the strings
// the runtime does.
use ratelimit_rate as rate;

use proc_macro::TokenStream;

/// Rate-limits an Actix-web handler.
///
/// ```
/// use actix_web::{get, web, Responder};
/// use ratelimit_runtime::ratelimit;
///
/// #[get("/rate-limited")]
/// #[ratelimit(limit = 300, per = 30, scope = "ip")]
/// async fn index() -> impl Responder {
///     web::Json(serde_json::json!({"response": "This is a rate limited response"}))
/// }
/// ```
///
/// The limit is decided before the handler's extractors run: a denied request never reads its
/// body and never reaches the handler. It gets `429 Too Many Requests` with `Retry-After`
/// (whole seconds, rounded up), `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`,
/// `X-RateLimit-Reset` (Unix seconds), `Cache-Control: no-store` and a JSON body
/// `{"error":"rate_limit_exceeded","message":"Too many requests","retry_after":N}`. An allowed
/// response gets the three `X-RateLimit-*` headers, added after the handler, never over a header
/// the handler set itself.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | `limit = N, per = S` | N requests per S seconds; `per` also takes `"30s"`, `"5m"`, `"1h"`, `"1d"` |
/// | `"100/minute"` | the Flask-Limiter notation, first and without a key: `"10 per second"`, `"5/5 minutes"`, `"100/hour;10/second"` (several limits) |
/// | `scope = "ip"` | per client address (the default); `"global"`: one budget for all; `"header:X-API-Key"`: per header value |
/// | `key = path::to::fn` | per value of `fn(&HttpRequest) -> K`, `K` a `String`, `&str` or `Option` of them; or of an async lookup `async fn(String) -> K` asked the key its `scope` gives, its answers cached (`ratelimit_runtime::lookup`) |
/// | `algorithm = "fixed_window"` | the default, clock-aligned windows; or `"sliding_window"`, `"sliding_log"`, `"token_bucket"`, `"leaky_bucket"`, `"gcra"` |
/// | `burst = N` | the capacity of algorithms that have one |
/// | `cost = N` | what one request spends (default 1) |
/// | `cost = path::to::fn` | `fn(&HttpRequest) -> u32`: the units a request reserves, read before its extractors; the handler settles the real cost with `RateLimitInfo::settle` |
/// | `limit = path::to::fn` | a quota per request, `fn(&HttpRequest) -> Tier` (a named tier: the metrics' `tier` label) or `-> Quota`; or an async lookup of the client's key, `async fn(String) -> Tier`, its answers cached (`ratelimit_runtime::lookup`) |
/// | `shared = "name"` | handlers naming the same budget spend it together |
/// | `exempt = path::to::fn` | `fn(&HttpRequest) -> bool`; true skips the limit |
/// | `send_x_headers = false` | no `X-RateLimit-*` headers (denied responses keep `Retry-After`) |
/// | `over_limit = path::to::fn` | `fn(&HttpRequest, &RateLimitInfo) -> impl Responder` answers denied requests |
/// | `soft = N` | a soft limit below the limit: past `N` spent, requests pass but `RateLimitInfo::degraded()` is true |
/// | `mode = "shadow"` | a dry run: decided and charged, never refused; would-be denials logged and counted (`"enforce"` is the default) |
/// | `methods = ["POST", "PUT"]` | the limit applies to requests of these methods only; the others skip it, uncounted |
/// | `per_method = true` | with `methods`: each method its own budget (rules named `<handler>#method=POST`, ...) |
/// | `deduct_when = path::to::fn` | `fn(&HttpResponse) -> bool`: only responses it accepts stay charged (failed logins); the others' units are given back after the response |
/// | `penalty = "3/10 minutes"` | a client the limit refuses 3 times within 10 minutes is refused every request of the rule for the next 10 minutes (`Retry-After` says so) |
///
/// A request without the header its scope names (or whose custom key is `None`) is counted per
/// client address, in a budget of its own: a missing key never escapes the limit.
///
/// Several `#[ratelimit]` on one handler all apply: a request passes only if all allow it, a
/// denied request is charged to none of them, and the headers describe the most restrictive.
///
/// ```
/// use actix_web::{post, web, HttpRequest, HttpResponse, Responder};
/// use ratelimit_runtime::{ratelimit, Quota, RateLimitInfo};
/// use std::num::NonZeroU32;
///
/// fn api_key(req: &HttpRequest) -> Option<String> {
///     req.headers().get("x-api-key")?.to_str().ok().map(str::to_owned)
/// }
///
/// fn tier(req: &HttpRequest) -> Quota {
///     let pro = api_key(req).is_some_and(|k| k.starts_with("pro_"));
///     Quota::per_hour(NonZeroU32::new(if pro { 1_000 } else { 100 }).unwrap())
/// }
///
/// fn polite(_: &HttpRequest, info: &RateLimitInfo) -> impl Responder {
///     HttpResponse::TooManyRequests().body(format!("slow down for {}s", info.retry_after_secs()))
/// }
///
/// #[post("/search")]
/// #[ratelimit("10/second", key = api_key, over_limit = polite)]
/// #[ratelimit(limit = tier, key = api_key, cost = 2, shared = "search")]
/// async fn search(query: web::Json<serde_json::Value>) -> impl Responder {
///     web::Json(query.into_inner())
/// }
/// ```
///
/// Every mistake is a compile error on the token at fault: a zero, negative or fractional
/// number, an unknown argument, scope or algorithm, a repeated argument, a bad rate string
/// (`"10/minuets"` suggests `minute`), `burst` on an algorithm without a capacity, a cost no
/// limit can hold, a `soft` limit not below the limit, a `sliding_log` above 10,000 (it keeps
/// one timestamp per request it counts), a function that is not `async` or takes `self`.
/// (With `limit = fn`, a soft limit is checked per request: where it is not below the quota
/// the function chose, it is ignored and a warning logged once.)
///
/// The attribute also records the handler's rules by name, so that an operator can override,
/// peek at and reset them at run time (`RateLimiter::set_override`, `peek`, `reset`), and so
/// that building a limiter on Redis refuses, naming it, a rule Redis cannot decide exactly
/// (`ConfigError::UnsupportedLimit`).
///
/// # Equivalent code without the macro
///
/// The attribute keeps the handler's name, visibility, attributes and extractors, and turns it
/// into roughly this:
///
/// ```
/// use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, Responder};
/// use ratelimit_runtime::{Quota, QuotaSource, RateLimiter, Rule};
///
/// async fn index(req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
///     async fn handler(name: web::Query<String>) -> impl Responder {
///         format!("hello {}", name.into_inner())
///     }
///     static RULES: [Rule; 1] = [Rule::new(
///         concat!(module_path!(), "::index"),
///         QuotaSource::Fixed(Quota::from_parts(300, 30).unwrap()),
///     )];
///     // 1. Decide before anything reads the request.
///     let pass = match RateLimiter::for_request(&req).check(&req, &RULES).await {
///         Ok(pass) => pass,
///         Err(too_many) => return too_many,
///     };
///     // 2. Only then run the extractors, and the handler.
///     let mut payload: Payload = payload.into_inner();
///     let name = match web::Query::<String>::from_request(&req, &mut payload).await {
///         Ok(name) => name,
///         Err(e) => return pass.finish(HttpResponse::from_error(e), &req),
///     };
///     // 3. The hook adds the X-RateLimit-* headers to the response.
///     pass.respond(handler(name).await, &req)
/// }
/// ```
#[proc_macro_attribute]
pub fn ratelimit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::ratelimit(args.into(), item.into()).into()
}

/// A [`Quota`] from one rate string, checked at compile time and usable in a `const`:
///
/// ```
/// use ratelimit_runtime::{quota, Quota, Tier};
///
/// const PRO: Quota = quota!("1000/hour");
/// assert_eq!((PRO.limit(), PRO.period_secs()), (1_000, 3_600));
/// let tier = Tier::new("trial", quota!("6 per 10 seconds"));
/// # let _ = tier;
/// ```
///
/// The notation is the attribute's (`"100/minute"`, `"10 per second"`, `"5/5 minutes"`); a
/// string it refuses, or one of several rates, is a compile error on the string.
///
/// [`Quota`]: https://docs.rs/ratelimit-runtime/latest/ratelimit_runtime/struct.Quota.html
#[proc_macro]
pub fn quota(input: TokenStream) -> TokenStream {
    expand::quota(input.into()).into()
}
