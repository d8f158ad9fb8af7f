//! A soft limit at or above the limit never degrades anything: refused on the soft value.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 100, per = 60, soft = 100)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
