//! A `max_wait` that is not a duration is refused with the forms it takes.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 1, algorithm = "gcra", max_wait = "soon")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
