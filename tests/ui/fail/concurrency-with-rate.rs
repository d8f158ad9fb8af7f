//! A concurrency limit is a limit of its own: a rate in the same attribute is refused.
use ratelimit_runtime::ratelimit;

#[ratelimit(concurrency = 2, limit = 5, per = 1)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
