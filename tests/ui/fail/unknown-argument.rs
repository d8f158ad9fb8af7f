//! A misspelt argument names the valid ones and suggests the nearest.
use ratelimit_runtime::ratelimit;

#[ratelimit(limt = 10, per = 30)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
