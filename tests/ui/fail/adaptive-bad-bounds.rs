//! An adaptive limit's bounds are checked: `MIN..MAX` with 1 <= MIN <= MAX.
use ratelimit_runtime::ratelimit;

#[ratelimit(concurrency = "adaptive(8..2)")]
async fn backwards() -> &'static str {
    "never"
}

#[ratelimit(concurrency = "adaptiv")]
async fn misspelt() -> &'static str {
    "never"
}

fn main() {}
