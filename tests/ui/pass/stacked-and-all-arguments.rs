//! Stacked attributes and every argument at once.
use actix_web::{post, App, HttpRequest, HttpResponse, Responder};
use ratelimit_runtime::{ratelimit, Quota, RateLimitInfo};

fn key(req: &HttpRequest) -> Option<&str> {
    req.headers().get("x-tenant").and_then(|v| v.to_str().ok())
}

fn quota(_: &HttpRequest) -> Quota {
    "100/hour".parse().unwrap()
}

fn skip(req: &HttpRequest) -> bool {
    req.path() == "/health"
}

fn busy(_: &HttpRequest, info: &RateLimitInfo) -> impl Responder {
    HttpResponse::ServiceUnavailable().body(info.retry_after_secs().to_string())
}

#[post("/all")]
#[ratelimit("100/hour;10/second", scope = "header:X-API-Key", cost = 2, exempt = skip)]
#[ratelimit(limit = quota, key = key, shared = "tenants", over_limit = busy, send_x_headers = false)]
#[ratelimit_runtime::ratelimit(limit = 1000, per = "1d", scope = "global", algorithm = "fixed_window")]
async fn all(info: RateLimitInfo) -> String {
    info.remaining().to_string()
}

fn main() {
    let _ = App::new().service(all);
}
