//! A concurrency limit stacked on a rate limit that waits for its turn.
use actix_web::{get, App};
use ratelimit_runtime::{ratelimit, RateLimitInfo};

#[get("/report")]
#[ratelimit(concurrency = 2, scope = "header:X-API-Key")]
#[ratelimit(limit = 5, per = 1, algorithm = "token_bucket", max_wait = "500ms")]
async fn report(info: RateLimitInfo) -> String {
    info.waited().as_millis().to_string()
}

#[get("/export")]
#[ratelimit(concurrency = 1, scope = "global", send_x_headers = false)]
async fn export() -> &'static str {
    "ok"
}

fn main() {
    let _ = App::new().service(report).service(export);
}
