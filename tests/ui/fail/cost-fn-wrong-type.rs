//! A `cost` function returns the units a request reserves, a `u32`.
use actix_web::{HttpRequest, HttpResponse};
use ratelimit_runtime::ratelimit;

fn cost(_: &HttpRequest) -> i64 {
    5
}

#[ratelimit(limit = 1000, per = 60, cost = cost)]
async fn complete() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
