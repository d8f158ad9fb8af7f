//! A fractional number is refused, with a hint to scale both numbers.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 1.5)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
