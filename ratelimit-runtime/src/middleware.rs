//! [`DefaultLimits`]: limits for every route of an app or scope (Flask-Limiter's
//! `default_limits`), through the same engine and the same header hook as the attribute.

use std::borrow::Cow;
use std::future::{ready, Ready};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::algorithm::AlgorithmKind;
use crate::engine::DeferredHeaders;
use crate::key::Scope;
use crate::limiter::RateLimiter;
use crate::quota::Quota;
use crate::rate::RateError;
use crate::rule::{QuotaSource, Rule};

/// Limits every request that passes through it; register with `App::wrap` or `Scope::wrap`.
///
/// They apply in addition to a handler's own `#[ratelimit]`: a request must pass both, and the
/// response's headers describe the most restrictive limit of all. (Flask-Limiter skips its
/// defaults on routes with their own limits; here use [`DefaultLimits::exempt`] for that.)
/// A request denied by the defaults never reaches routing, the handler or its extractors.
///
/// The path of a [`metrics_endpoint`](crate::metrics_endpoint) is never limited by them (one
/// registered at the app's root; inside a `Scope`, exempt it as below): a Prometheus scraping
/// every 15 s would spend `50/hour` in 13 minutes. Exempt health checks and the like with
/// [`exempt`](DefaultLimits::exempt):
///
/// ```
/// use actix_web::HttpRequest;
/// use ratelimit_runtime::DefaultLimits;
///
/// fn is_health_check(req: &HttpRequest) -> bool {
///     matches!(req.path(), "/healthz" | "/readyz")
/// }
///
/// let defaults = DefaultLimits::new("200/day;50/hour")
///     .expect("valid rates")
///     .exempt(is_health_check);
/// ```
///
/// Limits that cannot be decided (a `sliding_log` above
/// [`SlidingLog::MAX_LIMIT`](crate::algorithm::SlidingLog::MAX_LIMIT), or on Redis a limit its
/// script cannot keep exact, once a limiter on Redis was built in the process) keep the app
/// from starting: the middleware fails to start, and logs why, naming the rule.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use ratelimit_runtime::DefaultLimits;
///
/// let defaults = DefaultLimits::new("200/day;50/hour").expect("valid rates");
/// let app = App::new()
///     .wrap(defaults)
///     .route("/", web::get().to(HttpResponse::Ok));
/// ```
#[derive(Clone, Debug)]
pub struct DefaultLimits {
    rules: Arc<[Rule]>,
}

impl DefaultLimits {
    /// Limits from rates in the Flask-Limiter notation: `"200/day;50/hour"`. Per client address,
    /// fixed window, until changed by the other methods.
    pub fn new(rates: &str) -> Result<DefaultLimits, RateError> {
        Ok(DefaultLimits::from_quotas(Quota::parse_many(rates)?))
    }

    /// Limits from quotas.
    pub fn from_quotas(quotas: impl IntoIterator<Item = Quota>) -> DefaultLimits {
        let rules = quotas
            .into_iter()
            .map(|q| Rule::new("default", QuotaSource::Fixed(q)))
            .collect();
        DefaultLimits { rules }
    }

    /// Who each budget is per (default: the client address).
    pub fn scope(self, scope: Scope) -> DefaultLimits {
        // Header names are case-insensitive; the key uses one spelling.
        let scope = match scope {
            Scope::Header(name) => Scope::Header(Cow::Owned(name.to_ascii_lowercase())),
            other => other,
        };
        self.map(|rule| rule.scope = scope.clone())
    }

    /// The algorithm (default: fixed window).
    pub fn algorithm(self, algorithm: AlgorithmKind) -> DefaultLimits {
        self.map(|rule| rule.algorithm = algorithm)
    }

    /// Requests for which `exempt` returns true are not counted.
    pub fn exempt(self, exempt: fn(&HttpRequest) -> bool) -> DefaultLimits {
        self.map(|rule| rule.exempt = Some(exempt))
    }

    /// The capacity of algorithms that have one.
    pub fn burst(self, burst: NonZeroU32) -> DefaultLimits {
        self.map(|rule| rule.burst = Some(burst))
    }

    /// The name whose budget these limits spend (default `"default"`); middlewares with the
    /// same name, quota and scope share one budget.
    pub fn name(self, name: impl Into<String>) -> DefaultLimits {
        let name: String = name.into();
        self.map(|rule| rule.name = Cow::Owned(name.clone()))
    }

    /// Whether allowed responses carry the limit headers (default true).
    pub fn send_x_headers(self, send: bool) -> DefaultLimits {
        self.map(|rule| rule.send_x_headers = send)
    }

    fn map(self, mut change: impl FnMut(&mut Rule)) -> DefaultLimits {
        let mut rules = self.rules.to_vec();
        rules.iter_mut().for_each(&mut change);
        DefaultLimits {
            rules: rules.into(),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for DefaultLimits
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = DefaultLimitsService<S>;
    type InitError = ();
    type Future = Ready<Result<DefaultLimitsService<S>, ()>>;

    /// Fails (the app does not start) for a limit no limiter would decide: a `sliding_log`
    /// above its maximum, or, once a limiter on Redis was built in this process, a limit Redis
    /// cannot decide exactly. Actix takes no error value from a middleware, so the reason,
    /// naming the rule, is logged at error level.
    fn new_transform(&self, service: S) -> Self::Future {
        // Registered as the app uses them (not as the builder goes), known by name to
        // operators' overrides, peeks and resets.
        if let Err(refused) = crate::catalogue::register(&self.rules) {
            tracing::error!(
                "rate limiter: {refused}; the app cannot start with these default limits"
            );
            return ready(Err(()));
        }
        ready(Ok(DefaultLimitsService {
            service: Rc::new(service),
            rules: self.rules.clone(),
        }))
    }
}

/// The service [`DefaultLimits`] wraps around an app or scope.
pub struct DefaultLimitsService<S> {
    service: Rc<S>,
    rules: Arc<[Rule]>,
}

impl<S, B> Service<ServiceRequest> for DefaultLimitsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let rules = Arc::clone(&self.rules);
        Box::pin(async move {
            // Our own metrics endpoint is never limited by our own defaults.
            if is_left_alone(req.path()) {
                return Ok(service.call(req).await?.map_into_left_body());
            }
            // Borrowed, not cloned: routing below needs the request to be the only owner.
            let limiter = RateLimiter::for_request(req.request());
            let outcome = limiter.check(req.request(), &rules).await;
            let pass = match outcome {
                Ok(pass) => pass,
                Err(denied) => return Ok(req.into_response(denied).map_into_right_body()),
            };
            req.extensions_mut().insert(DeferredHeaders::default());
            let mut response = service.call(req).await?;
            let deferred = response
                .request()
                .extensions_mut()
                .remove::<DeferredHeaders>();
            // A response the handler's own limit refused already says what it must; a
            // looser default's numbers on it would contradict its Remaining: 0.
            if response.status() != actix_web::http::StatusCode::TOO_MANY_REQUESTS {
                pass.finish_deferred(response.headers_mut(), deferred.and_then(|d| d.0));
            }
            Ok(response.map_into_left_body())
        })
    }
}

/// The paths app-wide default limits leave alone: those of every metrics endpoint made.
static LEFT_ALONE: std::sync::OnceLock<arc_swap::ArcSwap<Vec<String>>> = std::sync::OnceLock::new();

/// Makes default limits leave `path` alone (a metrics endpoint's).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn leave_alone(path: &str) {
    let paths = LEFT_ALONE.get_or_init(Default::default);
    paths.rcu(|known| {
        let mut known = Vec::clone(known);
        if !known.iter().any(|p| p == path) {
            known.push(path.to_owned());
        }
        known
    });
}

fn is_left_alone(path: &str) -> bool {
    LEFT_ALONE
        .get()
        .is_some_and(|paths| paths.load().iter().any(|p| p == path))
}
