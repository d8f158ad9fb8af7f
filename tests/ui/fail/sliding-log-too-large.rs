//! A sliding log keeps one timestamp per request it counts: a limit above 10,000 is refused
//! on the limit, with the algorithms that hold a larger one in constant space.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 20_000, per = 60, algorithm = "sliding_log")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
