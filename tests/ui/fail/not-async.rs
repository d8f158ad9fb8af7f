//! A handler that is not `async` is refused on `fn`.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 10, per = 30)]
fn handler() -> &'static str {
    "never"
}

fn main() {}
