//! A method listed twice (in any case) is refused.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 60, methods = ["post", "POST"])]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
