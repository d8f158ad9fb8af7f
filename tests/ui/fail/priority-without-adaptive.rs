//! `priority` orders what an adaptive limit sheds: on a rate limit it is refused.
use actix_web::HttpRequest;
use ratelimit_runtime::{ratelimit, Priority};

fn priority_of(_: &HttpRequest) -> Priority {
    Priority::Normal
}

#[ratelimit(limit = 10, per = 60, priority = priority_of)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
