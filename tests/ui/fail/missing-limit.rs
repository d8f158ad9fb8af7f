//! An attribute without a limit says how to write one.
use ratelimit_runtime::ratelimit;

#[ratelimit(scope = "global")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
