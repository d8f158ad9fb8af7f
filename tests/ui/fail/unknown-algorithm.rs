//! An unknown algorithm names the valid ones and suggests the nearest.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 30, algorithm = "sliding_logs")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
