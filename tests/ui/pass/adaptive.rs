//! Adaptive concurrency limits: default bounds, bounds, a priority function, a scope, and
//! stacked with a rate limit.
use actix_web::HttpRequest;
use ratelimit_runtime::{ratelimit, Priority};

fn priority_of(req: &HttpRequest) -> Priority {
    match req.headers().get("x-priority").map(|v| v.as_bytes()) {
        Some(b"critical") => Priority::Critical,
        _ => Priority::Sheddable,
    }
}

#[ratelimit(concurrency = "adaptive")]
async fn a() -> &'static str {
    "a"
}

#[ratelimit(concurrency = "adaptive(4..64)", priority = priority_of)]
#[ratelimit(limit = 100, per = 60)]
async fn b() -> &'static str {
    "b"
}

#[ratelimit(concurrency = "adaptive", scope = "header:X-API-Key")]
async fn c() -> &'static str {
    "c"
}

fn main() {}
