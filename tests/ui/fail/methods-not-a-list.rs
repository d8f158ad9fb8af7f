//! `methods` takes a list of strings, not one string.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 60, methods = "POST")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
