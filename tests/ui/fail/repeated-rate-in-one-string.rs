//! One rate string naming the same limit twice would charge each request twice.
use ratelimit_runtime::ratelimit;

#[ratelimit("10/second;10 per second")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
