//! A concurrency slot comes back by itself when the request ends: nothing to deduct.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

fn failed(res: &HttpResponse) -> bool {
    res.status().is_client_error()
}

#[ratelimit(concurrency = 2, deduct_when = failed)]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
