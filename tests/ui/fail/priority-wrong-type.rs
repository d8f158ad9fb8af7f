//! A `priority` function of the wrong type is reported at the path.
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn priority_of(_: &HttpRequest) -> u8 {
    1
}

#[ratelimit(concurrency = "adaptive", priority = priority_of)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
