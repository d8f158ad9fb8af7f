//! A `key` function of the wrong type is reported at the path, naming `key` and what it takes.
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn numeric_key(_: &HttpRequest) -> u64 {
    7
}

#[ratelimit(limit = 3, per = 30, key = numeric_key)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
