//! `per = 0` is an empty period: refused on the zero.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 0)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
