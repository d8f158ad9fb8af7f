//! A concurrency limit refuses while requests are in flight, not a client's spent budget: it
//! takes no penalty.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

#[ratelimit(concurrency = 2, penalty = "3/10 minutes")]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
