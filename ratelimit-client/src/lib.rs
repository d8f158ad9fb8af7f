//! The client side of rate limits: read what the server says, pace requests so that they do not
//! run into a `429`, and retry only what is safe to send twice.
//!
//! The core knows no HTTP library. Headers come in as `(name, value)` pairs of `&str` and
//! `&[u8]`, methods as `&str`, and time is always passed in, so that any client can use it and
//! tests run on a made-up clock:
//!
//! - [`RateLimitStatus::from_headers`] reads `Retry-After` ([`parse_retry_after`]),
//!   `X-RateLimit-Limit/Remaining/Reset` ([`parse_x_ratelimit`]) and the IETF `RateLimit` /
//!   `RateLimit-Policy` fields ([`parse_ietf`]);
//! - a [`Pacer`] remembers, per [`Origin`], what the last responses said, takes a unit of the
//!   budget for each request it lets go, and holds requests once the budget is spent, until the
//!   reset; concurrent requests sharing it never send more than the server will take;
//! - a [`RetryPolicy`] decides whether a refused request is retried and when: after
//!   `Retry-After`, or after an exponential [`Backoff`] with full jitter, only for requests that
//!   [`may_retry`], within a wait budget;
//! - an [`Exchange`] drives one request through both.
//!
//! Adapters, behind features: `reqwest` (a `reqwest-middleware` middleware,
//! `reqwest::RateLimitMiddleware`) and `awc` (a wrapper, `awc::PacedClient`).
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use ratelimit_client::{Admission, Origin, Pacer, RateLimitStatus};
//!
//! let pacer = Pacer::new();
//! let origin = Origin::new("http", "127.0.0.1", Some(8080));
//! let now = Instant::now();
//! let Admission::Go(permit) = pacer.admit(&origin, now) else { unreachable!() };
//! // ... send the request; its response says the budget is spent for 10 s:
//! let headers = [("X-RateLimit-Remaining", &b"0"[..]), ("X-RateLimit-Reset", b"10")];
//! let status = RateLimitStatus::from_headers(headers, SystemTime::now());
//! pacer.observe(permit, now, 200, &status);
//! // The next request is held until the reset instead of being sent into a 429.
//! assert!(matches!(pacer.admit(&origin, now), Admission::Wait(at) if at == now + Duration::from_secs(10)));
//! ```
//!
//! # With reqwest or awc
//!
//! The feature `reqwest` adds a middleware for `reqwest-middleware`; every request through the
//! client is paced and retried as above:
//!
//! ```
//! # #[cfg(feature = "reqwest")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ratelimit_client::reqwest::RateLimitMiddleware;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RateLimitMiddleware::new())
//!     .build();
//! let response = client.get("http://127.0.0.1:8080/data").header("X-API-Key", "key1").send().await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! The feature `awc` wraps an `awc::Client` (Actix's own client) the same way:
//!
//! ```
//! # #[cfg(feature = "awc")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ratelimit_client::awc::PacedClient;
//!
//! let client = PacedClient::new(awc::Client::default());
//! let request = client.client().get("http://127.0.0.1:8080/data").insert_header(("X-API-Key", "key1"));
//! let response = client.send(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! # The load client, and the server side
//!
//! The feature `cli` builds `hungryclient`, a load client whose tasks (`--concurrency N`) share
//! one [`awc::PacedClient`]:
//! `cargo run -p ratelimit-client --features cli -- --url http://127.0.0.1:8080/data -H "X-API-Key: key1" --rpm 600 --requests 30`
//! sends 30 requests, waits as `Retry-After` says on each 429, and prints a summary.
//!
//! The server side that sends these headers is the `ratelimit-runtime` crate and its
//! `#[ratelimit]` attribute. What this crate reads, how it paces and what it retries, measured
//! against the example server, is in docs/clients.md in the repository; the same client for a
//! browser page, `ratelimit.js`, in docs/browser.md.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod budget;
mod exchange;
mod idempotency;
mod ietf;
mod origin;
mod pacer;
mod policy;
mod retry_after;
mod seconds;
mod stats;
mod status;
mod x_ratelimit;

#[cfg(feature = "awc")]
pub mod awc;
#[cfg(feature = "reqwest")]
pub mod reqwest;

pub use backoff::Backoff;
pub use budget::Budget;
pub use exchange::{Exchange, Step, WaitBudgetExceeded};
pub use idempotency::{is_idempotent, may_retry, IDEMPOTENCY_KEY};
pub use ietf::parse_ietf;
pub use origin::Origin;
pub use pacer::{Admission, Pacer, Permit};
pub use policy::{Decision, Delivered, Refusal, RetryPolicy};
pub use retry_after::parse_retry_after;
pub use seconds::MAX_HINT;
pub use stats::Stats;
pub use status::RateLimitStatus;
pub use x_ratelimit::{parse_reset, parse_x_ratelimit};
