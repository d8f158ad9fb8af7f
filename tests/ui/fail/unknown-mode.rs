//! A misspelt mode is refused with the valid choices and the nearest one.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 10, mode = "shadwo")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
