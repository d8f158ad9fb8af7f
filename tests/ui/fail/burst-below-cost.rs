//! A `burst` smaller than the cost leaves no room for any request.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 1, algorithm = "token_bucket", burst = 2, cost = 3)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
