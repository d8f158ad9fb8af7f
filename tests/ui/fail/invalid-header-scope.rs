//! A header scope must name a valid header.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 30, scope = "header:X Api Key")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
