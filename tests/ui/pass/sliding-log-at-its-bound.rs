//! A sliding log of exactly the largest limit, written either way, compiles.
use actix_web::{get, App};
use ratelimit_runtime::ratelimit;

#[get("/")]
#[ratelimit(limit = 10_000, per = 60, algorithm = "sliding_log")]
#[ratelimit("100/second;10000/hour", algorithm = "sliding_log", scope = "global")]
async fn bounded() -> &'static str {
    "ok"
}

fn main() {
    let _ = App::new().service(bounded);
}
