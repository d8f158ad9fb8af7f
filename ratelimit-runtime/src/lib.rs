//! Rate limits for Actix-web handlers, one attribute each.
//!
//! ```
//! use actix_web::{get, web, Responder};
//! use ratelimit_runtime::ratelimit;
//!
//! #[get("/rate-limited")]
//! #[ratelimit(limit = 300, per = 30, scope = "ip")]
//! async fn index() -> impl Responder {
//!     web::Json(serde_json::json!({"response": "This is a rate limited response"}))
//! }
//! ```
//!
//! That is the whole setup: no middleware to register, no store to configure. The limit is exact
//! under any concurrency, counted across every Actix worker of the process, decided before the
//! handler's extractors read the request, and reported in `X-RateLimit-*` and `Retry-After`
//! headers. A mistake in the attribute is a compile error on the token at fault. This page walks
//! from that first attribute to Redis, leases, operations and the client side; the manual is the
//! `docs/` directory of the repository (`docs/README.md` is its index).
//!
//! # A first limit, and what a client sees
//!
//! An allowed response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (Unix seconds); a denied request gets `429 Too Many Requests` with
//! `Retry-After` and a JSON body, and its handler never runs. Without a [`RateLimiter`] in the
//! app, a process-wide default (in memory, or on the Redis `REDIS_URL` names) decides:
//!
//! ```
//! use actix_web::{get, test, App, Responder};
//! use ratelimit_runtime::{ratelimit, RateLimiter};
//!
//! #[get("/search")]
//! #[ratelimit("3/minute")]                          // per client address
//! async fn search() -> impl Responder {
//!     "results"
//! }
//!
//! actix_web::rt::System::new().block_on(async {
//!     // A limiter that reads no environment, for the test; the app may as well have none.
//!     let limiter = RateLimiter::builder().ignore_env().build().unwrap();
//!     let app = test::init_service(App::new().app_data(limiter).service(search)).await;
//!     let client = "203.0.113.7:40000".parse().unwrap();
//!     for expected in [200, 200, 200, 429] {
//!         let req = test::TestRequest::get().uri("/search").peer_addr(client).to_request();
//!         let res = test::call_service(&app, req).await;
//!         assert_eq!(res.status(), expected);
//!     }
//! });
//! ```
//!
//! The arguments (rate strings, `scope`, `key`, the six algorithms, `burst`, `cost`, tiers,
//! `shared`, `exempt`, `soft`, `mode = "shadow"`, `methods`, `deduct_when`, `penalty`,
//! `concurrency`, `max_wait`) are in [`ratelimit`]'s documentation and in docs/guide.md of the
//! repository, with what each function named in the attribute must take and return.
//!
//! # Several limits on one handler
//!
//! Every `#[ratelimit]` on a handler applies: a request passes only if all allow it, a denied
//! request is charged to none of them, and the headers describe the most restrictive.
//!
//! ```
//! use actix_web::{get, Responder};
//! use ratelimit_runtime::ratelimit;
//!
//! #[get("/report")]
//! #[ratelimit("100/hour;10/second", scope = "header:X-API-Key")]   // two rates, one attribute
//! #[ratelimit(concurrency = 5, scope = "header:X-API-Key")]        // at most 5 in flight per key
//! async fn report() -> impl Responder {
//!     "the report"
//! }
//! ```
//!
//! # A limiter of your own
//!
//! To configure, build one [`RateLimiter`] outside the `HttpServer::new` factory and clone it into
//! each worker's app: clones share one state, so the limits count across workers. [`build`]
//! reads the environment for what the code leaves unset (`REDIS_URL`, `RATELIMIT_TRUSTED_PROXIES`,
//! `RATELIMIT_SHADOW`, ...: the table is in docs/guide.md, *Configuration*).
//!
//! ```no_run
//! use actix_web::{get, App, HttpServer, Responder};
//! use ratelimit_runtime::{ratelimit, RateLimiter};
//!
//! #[get("/rate-limited")]
//! #[ratelimit(limit = 300, per = 30)]
//! async fn index() -> impl Responder {
//!     "This is a rate limited response"
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let limiter = RateLimiter::builder()
//!         .trusted_proxies(["10.0.0.0/8"])   // forwarding headers read only from these
//!         .build()
//!         .expect("a valid rate-limiter configuration");
//!     HttpServer::new(move || App::new().app_data(limiter.clone()).service(index))
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//! }
//! ```
//!
//! App-wide default limits are a middleware, [`DefaultLimits`], through the same engine.
//!
//! # Redis: one limit for a fleet
//!
//! With the `redis` feature (on by default), `REDIS_URL=redis://host:6379` in the environment, or
//! [`RateLimiterBuilder::redis`] in code, moves every limit of the app onto Redis: any number of
//! processes share one exact budget, decided in one round trip on Redis's clock. Redis Cluster
//! (`REDIS_CLUSTER_URLS`), Sentinel (`REDIS_SENTINEL_URLS`), TLS and ACL users (`rediss://`) work
//! the same way. When Redis fails, the [`FailurePolicy`] decides: by default each process falls
//! back to its own memory, and charges what it admitted to Redis once Redis answers again.
//!
//! **Leases** take a busy key's Redis budget in batches and spend them in memory, so that a fleet
//! limit costs a fraction of a round trip per request:
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ratelimit_runtime::{Leases, RateLimiter};
//!
//! let limiter = RateLimiter::builder()
//!     .redis("redis://10.0.0.5:6379")
//!     .redis_leases(Leases::new())          // lifetime 100 ms; `.lifetime(..)` to change it
//!     .build()?;
//! # let _ = limiter;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```
//!
//! What a fleet admits under leases, during an outage and across a failover, and which limits
//! Redis refuses to decide: docs/redis.md in the repository.
//!
//! # Operations
//!
//! While the service runs, an operator reads and changes its limits without a rebuild:
//!
//! ```
//! use ratelimit_runtime::RateLimiter;
//!
//! async fn operate(limiter: &RateLimiter) -> Result<(), Box<dyn std::error::Error>> {
//!     limiter.set_override("server::data", "20/minute")?;       // a rule's new limit
//!     let info = limiter.peek("server::data", "key1").await?;    // spends nothing
//!     println!("{} left", info.remaining());
//!     limiter.reset("server::data", "key1").await?;              // unblock a customer
//!     Ok(())
//! }
//! ```
//!
//! Besides: Prometheus metrics of every decision ([`RateLimiter::metrics`], `metrics_endpoint`),
//! dry runs (`mode = "shadow"`, [`RateLimiterBuilder::shadow`], `RATELIMIT_SHADOW=1`), soft
//! limits ([`RateLimitInfo::degraded`]), per-client overrides, an overrides file, the IETF
//! headers ([`HeaderStyle`]), and limits outside handlers ([`RateLimiter::check_key`]). All of it
//! is in docs/operations.md of the repository.
//!
//! # The client side
//!
//! The `ratelimit-client` crate is the other end: it reads `Retry-After`, `X-RateLimit-*` and the
//! IETF fields, paces requests so that they do not run into a `429`, and retries only what is safe
//! to send twice, as a `reqwest-middleware` middleware or around `awc`; its `hungryclient` binary
//! is a load client. See docs/clients.md in the repository, and docs/browser.md for the same
//! client in a browser page.
//!
//! # What is inside
//!
//! - [`RateLimiter`]: the store, clock, client-address rules and header style an app's limits
//!   share (a process-wide default works without any setup);
//! - [`algorithm`]: the algorithms, pure functions over explicit time;
//! - [`store`]: the sharded, bounded in-memory store and the Redis store a fleet shares;
//! - [`key`]: who a limit counts (client address behind trusted proxies, header, custom);
//! - [`lookup`]: tier and key functions that look the client up (async), their answers cached;
//! - [`adaptive`]: concurrency limits that follow the latency they see, shedding by priority;
//! - [`DefaultLimits`]: a middleware for app-wide limits through the same engine;
//! - [`RateLimitInfo`]: the decision, as headers report it and handlers read it;
//! - [`RateLimiter::metrics`] and [`metrics_endpoint`]: Prometheus metrics of every decision;
//! - [`RateLimiter::set_override`], [`RateLimiter::peek`], [`RateLimiter::reset`]: what an
//!   operator changes and looks at while the service runs.
//!
//! # Cargo features
//!
//! - `redis` (default): the Redis store a fleet shares, over TLS or not, Redis Cluster, Redis
//!   behind Sentinel, leases, the failure policies and the resync after an outage (`REDIS_URL`,
//!   `REDIS_CLUSTER_URLS`, `REDIS_SENTINEL_URLS`);
//! - `metrics` (default): Prometheus metrics, [`metrics_endpoint`] and [`LimiterCollector`];
//! - `overrides-file`: an overrides file, watched and reloaded (`RATELIMIT_OVERRIDES`);
//! - `ietf-headers`: the IETF `RateLimit` and `RateLimit-Policy` fields ([`HeaderStyle`]).
//!
//! With a feature off, its items are gone and its methods are compile errors that name it; an
//! environment variable that needs it makes [`RateLimiterBuilder::build`] fail with
//! [`ConfigError::FeatureOff`].
//!
//! [`build`]: RateLimiterBuilder::build
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod adaptive;
pub mod algorithm;
mod backend;
mod catalogue;
pub mod clock;
mod decision;
#[cfg(feature = "metrics")]
mod endpoint;
mod engine;
mod environment;
#[cfg(feature = "metrics")]
mod exposition;
mod headers;
mod info;
mod inspect;
pub mod key;
mod keyed;
#[cfg(feature = "redis")]
mod leases;
mod limiter;
pub mod lookup;
mod metrics;
mod middleware;
mod overrides;
mod quota;
/// Rate strings (`"100/minute"`, `"10 per second"`): the parser the attribute checks its
/// strings with at compile time, re-exported from `ratelimit-rate`.
pub use ratelimit_rate as rate;
mod response;
mod rule;
mod slots;
mod state;
pub mod store;
mod unsupported;

#[doc(hidden)]
pub mod __private;
#[cfg(not(all(
    feature = "redis",
    feature = "metrics",
    feature = "overrides-file",
    feature = "ietf-headers"
)))]
#[doc(hidden)]
pub mod feature_off;

pub use adaptive::{AdaptiveBounds, Priority};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use backend::{FailurePolicy, RedisStats, RedisTarget};
pub use clock::{Clock, ManualClock, SystemClock, UnixNanos};
pub use decision::Decision;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use endpoint::metrics_endpoint;
pub use engine::Pass;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use exposition::LimiterCollector;
pub use headers::HeaderStyle;
pub use info::RateLimitInfo;
pub use inspect::InspectError;
pub use keyed::{InsufficientCapacity, KeyedLimit};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use leases::{LeaseStats, Leases};
pub use limiter::{ConfigError, RateLimiter, RateLimiterBuilder};
pub use lookup::Lookups;
pub use middleware::{DefaultLimits, DefaultLimitsService};
pub use overrides::{OverrideError, MAX_KEY_OVERRIDES};
pub use quota::Quota;
pub use ratelimit_macros::{quota, ratelimit};
pub use response::DeniedBody;
pub use rule::{Mode, OverLimitFn, QuotaSource, Rule, Tier};
pub use unsupported::UnsupportedLimit;
