//! A cost no window can hold would refuse every request: refused on the cost.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 30, cost = 5)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
