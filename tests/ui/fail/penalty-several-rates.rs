//! A penalty takes one rate: it is both the refusals counted and how long it lasts.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 5, per = 60, penalty = "3/10 minutes;10/hour")]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
