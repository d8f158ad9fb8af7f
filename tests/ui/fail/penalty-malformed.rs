//! A penalty is refusals per period, in the rate notation.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 60, penalty = "three strikes")]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
