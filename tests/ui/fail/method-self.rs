//! A method taking `self` is refused on `self`.
use ratelimit_runtime::ratelimit;

struct Api;

impl Api {
    #[ratelimit(limit = 10, per = 30)]
    async fn handler(&self) -> &'static str {
        "never"
    }
}

fn main() {}
