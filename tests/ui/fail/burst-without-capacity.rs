//! `burst` on an algorithm without a capacity is refused, naming those that have one.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 30, burst = 20)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
