//! With several limits in one string, the soft limit must be below each of them.
use ratelimit_runtime::ratelimit;

#[ratelimit("100/hour;10/second", soft = 50)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
