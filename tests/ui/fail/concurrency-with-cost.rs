//! Arguments of rate limits have no meaning for a concurrency limit.
use ratelimit_runtime::ratelimit;

#[ratelimit(concurrency = 2, cost = 2)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
