//! A fixed window cannot reserve a turn in a later window: `max_wait` needs a bucket or GCRA.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 1, max_wait = "2s")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
