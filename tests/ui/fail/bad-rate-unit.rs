//! A misspelt unit in a rate string suggests the nearest unit.
use ratelimit_runtime::ratelimit;

#[ratelimit("10/minuets")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
