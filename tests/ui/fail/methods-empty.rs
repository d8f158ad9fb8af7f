//! An empty `methods` list would never apply.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 60, methods = [])]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
