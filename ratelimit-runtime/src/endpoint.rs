//! [`metrics_endpoint`]: the limiter's metrics served for Prometheus (feature `metrics`).

use crate::limiter::RateLimiter;

/// A resource serving the limiter's [metrics](RateLimiter::metrics) at `path`, for
/// Prometheus to scrape (the limiter of the app, or the process-wide one):
///
/// ```
/// use actix_web::App;
///
/// let app = App::new().service(ratelimit_runtime::metrics_endpoint("/metrics"));
/// ```
///
/// [`DefaultLimits`](crate::DefaultLimits) never limit this path: a Prometheus scraping every
/// 15 s would otherwise spend an app-wide `50/hour` in 13 minutes and then see only 429s.
pub fn metrics_endpoint(path: &str) -> actix_web::Resource {
    crate::middleware::leave_alone(path);
    actix_web::web::resource(path).route(actix_web::web::get().to(serve_metrics))
}

async fn serve_metrics(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(RateLimiter::for_request(&req).metrics())
}
