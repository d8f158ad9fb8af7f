//! `per_method` gives each listed method its own budget: without `methods` there is no list.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 60, per_method = true)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
