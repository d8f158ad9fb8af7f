//! The production arguments: a soft limit, a dry run, and a tier function naming its tier.
use actix_web::{get, App, HttpRequest};
use ratelimit_runtime::{ratelimit, Quota, RateLimitInfo, Tier};

fn tier(req: &HttpRequest) -> Tier {
    match req.headers().get("x-api-key") {
        Some(_) => Tier::new("pro", Quota::from_parts(1_000, 3_600).unwrap()),
        None => Tier::new("free", Quota::from_parts(100, 3_600).unwrap()),
    }
}

#[get("/search")]
#[ratelimit(limit = 10, per = 10, soft = 5)]
#[ratelimit(limit = tier, scope = "header:X-API-Key", soft = 80)]
#[ratelimit(limit = 5, per = 10, scope = "global", mode = "shadow")]
async fn search(info: RateLimitInfo) -> String {
    info.degraded().to_string()
}

#[get("/gcra")]
#[ratelimit(limit = 10, per = 1, algorithm = "gcra", burst = 4, soft = 3, mode = "enforce")]
async fn gcra() -> &'static str {
    "ok"
}

fn main() {
    let _ = App::new().service(search).service(gcra);
}
