//! `soft = 0` would degrade every request: refused on the zero.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 100, per = 60, soft = 0)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
