//! A negative limit is refused on the value.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = -5, per = 30)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
