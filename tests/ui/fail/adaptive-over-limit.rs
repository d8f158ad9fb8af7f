//! An adaptive limit answers what it sheds itself: `over_limit` on it is refused.
use actix_web::{HttpRequest, HttpResponse};
use ratelimit_runtime::{ratelimit, RateLimitInfo};

fn busy(_: &HttpRequest, _: &RateLimitInfo) -> HttpResponse {
    HttpResponse::ServiceUnavailable().finish()
}

#[ratelimit(concurrency = "adaptive", over_limit = busy)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
