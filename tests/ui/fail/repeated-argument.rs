//! An argument given twice is refused on the second.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 30, limit = 20)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
