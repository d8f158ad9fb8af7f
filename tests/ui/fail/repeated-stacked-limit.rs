//! Two attributes stating the same limit would count each request twice.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 30)]
#[ratelimit("3 per 30 seconds")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
