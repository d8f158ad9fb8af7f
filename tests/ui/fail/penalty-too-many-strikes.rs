//! The refusals a penalty counts are kept one by one, so their number is bounded.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 60, penalty = "20000/hour")]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
