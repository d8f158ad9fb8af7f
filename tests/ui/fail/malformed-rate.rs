//! A rate string that is not a rate shows the forms that are.
use ratelimit_runtime::ratelimit;

#[ratelimit("ten a minute")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
