//! `limit = 0` would let nothing through: refused on the zero.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 0, per = 30)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
