//! A `limit` function of the wrong type is reported at the path, naming `limit`.
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn per_minute(_: &HttpRequest) -> u32 {
    100
}

#[ratelimit(limit = per_minute)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
