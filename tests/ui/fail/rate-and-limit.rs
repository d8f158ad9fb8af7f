//! The rate string and `limit` are two ways to say one thing: refused together.
use ratelimit_runtime::ratelimit;

#[ratelimit("10/minute", limit = 10)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
