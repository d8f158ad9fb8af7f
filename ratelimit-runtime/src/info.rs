//! [`RateLimitInfo`]: a request's decision, as headers report it and handlers read it.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::ErrorInternalServerError;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::clock::{secs_until_ceil, unix_secs_ceil, UnixNanos};
use crate::decision::Decision;

/// The most restrictive of a request's limits: what the `X-RateLimit-*` headers say.
///
/// A handler reads its own as an extractor (as a Flask view reads `g._view_rate_limit`):
///
/// ```
/// use actix_web::{get, HttpResponse};
/// use ratelimit_runtime::{ratelimit, RateLimitInfo};
///
/// #[get("/quota")]
/// #[ratelimit(limit = 10, per = 60)]
/// async fn quota(info: RateLimitInfo) -> HttpResponse {
///     HttpResponse::Ok().body(format!("{} of {} left", info.remaining(), info.limit()))
/// }
/// ```
///
/// Used on a handler without any limit it fails with a 500; take `Option<RateLimitInfo>` where
/// a limit may be absent.
#[derive(Clone, Debug)]
pub struct RateLimitInfo {
    decision: Decision,
    now: UnixNanos,
    degraded: bool,
    waited: Duration,
    /// Where [`settle`](Self::settle) writes the request's real cost, for rules whose cost a
    /// `cost` function reserved.
    settlement: Option<Settlement>,
}

impl PartialEq for RateLimitInfo {
    fn eq(&self, other: &RateLimitInfo) -> bool {
        (self.decision, self.now, self.degraded, self.waited)
            == (other.decision, other.now, other.degraded, other.waited)
    }
}

impl Eq for RateLimitInfo {}

/// The real cost of a request, as its handler settled it: `u64::MAX` until it does.
#[derive(Clone, Debug)]
pub(crate) struct Settlement(Arc<AtomicU64>);

impl Settlement {
    pub(crate) fn new() -> Settlement {
        Settlement(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// The units the handler settled for, if it did.
    pub(crate) fn settled(&self) -> Option<u32> {
        u32::try_from(self.0.load(Ordering::Relaxed)).ok()
    }
}

impl RateLimitInfo {
    pub(crate) fn new(decision: Decision, now: UnixNanos) -> RateLimitInfo {
        RateLimitInfo {
            decision,
            now,
            degraded: false,
            waited: Duration::ZERO,
            settlement: None,
        }
    }

    pub(crate) fn settled_through(mut self, settlement: Option<Settlement>) -> RateLimitInfo {
        self.settlement = settlement;
        self
    }

    /// Says what the request really cost, for the limits whose cost a `cost` function reserved
    /// before the handler: the difference goes back to their budgets once the response is
    /// sent (at most what was reserved comes back; a request cannot be charged more than it
    /// reserved). The last call wins; without one, the request keeps what it reserved. Limits
    /// of a fixed `cost` are not changed.
    ///
    /// ```
    /// use actix_web::{get, web, HttpRequest, HttpResponse};
    /// use ratelimit_runtime::{ratelimit, RateLimitInfo};
    ///
    /// /// Reserves `max_tokens` (100 when absent) of the budget before the handler runs.
    /// fn max_tokens(req: &HttpRequest) -> u32 {
    ///     web::Query::<std::collections::HashMap<String, u32>>::from_query(req.query_string())
    ///         .ok()
    ///         .and_then(|q| q.get("max_tokens").copied())
    ///         .unwrap_or(100)
    /// }
    ///
    /// #[get("/complete")]
    /// #[ratelimit(limit = 1000, per = 60, scope = "header:X-API-Key", cost = max_tokens)]
    /// async fn complete(info: RateLimitInfo) -> HttpResponse {
    ///     let used = 42; // what the model really produced
    ///     info.settle(used);
    ///     HttpResponse::Ok().json(serde_json::json!({ "tokens": used }))
    /// }
    /// ```
    pub fn settle(&self, units: u32) {
        if let Some(settlement) = &self.settlement {
            settlement.0.store(u64::from(units), Ordering::Relaxed);
        }
    }

    pub(crate) fn waited_for(mut self, waited: Duration) -> RateLimitInfo {
        self.waited = waited;
        self
    }

    /// How long the request waited for its turn before it was served (`max_wait`); zero for
    /// a request served at once. Responses carry it as `X-RateLimit-Waited-Ms`.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    pub(crate) fn degraded_if(mut self, degraded: bool) -> RateLimitInfo {
        self.degraded = degraded;
        self
    }

    /// Whether the request passed above a soft limit (`soft = N`): the handler may serve a
    /// cheaper answer, as a service under pressure would (allow, throttle, reject).
    ///
    /// ```
    /// use actix_web::{get, web, Responder};
    /// use ratelimit_runtime::{ratelimit, RateLimitInfo};
    ///
    /// #[get("/search")]
    /// #[ratelimit(limit = 10, per = 10, soft = 5)]
    /// async fn search(info: RateLimitInfo) -> impl Responder {
    ///     web::Json(serde_json::json!({ "degraded": info.degraded() }))
    /// }
    /// ```
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Whether the request was allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision.allowed
    }

    /// The limit (`X-RateLimit-Limit`).
    pub fn limit(&self) -> u32 {
        self.decision.limit
    }

    /// What remains after this request (`X-RateLimit-Remaining`); 0 when denied.
    pub fn remaining(&self) -> u32 {
        if self.decision.allowed {
            self.decision.remaining
        } else {
            0
        }
    }

    /// Unix time, in whole seconds rounded up, when the budget is whole again
    /// (`X-RateLimit-Reset`).
    pub fn reset_unix_secs(&self) -> u64 {
        unix_secs_ceil(self.decision.reset_at)
    }

    /// Time until the budget is whole again.
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.decision.reset_at.saturating_sub(self.now))
    }

    /// Time until a denied request would pass (zero for an allowed one): what
    /// [`RateLimiter::until_ready`](crate::RateLimiter::until_ready) waits.
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.decision.retry_at.saturating_sub(self.now))
    }

    /// Whole seconds, rounded up and at least 1, until a denied request would pass
    /// (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        secs_until_ceil(self.now, self.decision.retry_at)
    }

    /// The decision behind it.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

impl FromRequest for RateLimitInfo {
    type Error = actix_web::Error;
    type Future = Ready<Result<RateLimitInfo, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<RateLimitInfo>()
                .cloned()
                .ok_or_else(|| {
                    ErrorInternalServerError(
                        "RateLimitInfo is extracted on a handler without #[ratelimit]",
                    )
                }),
        )
    }
}
