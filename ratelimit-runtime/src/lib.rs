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
//! The attribute is described in [`ratelimit`]. Behind it:
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
