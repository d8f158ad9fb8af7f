//! `scope = "header:"` without a name asks for one.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 30, scope = "header:")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
