//! An algorithm this version does not implement yet is a clear error, never a silent fallback.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 30, algorithm = "gcra")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
