//! A numeric limit needs a period.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
