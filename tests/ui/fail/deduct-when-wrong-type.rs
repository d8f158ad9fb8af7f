//! A `deduct_when` function says whether a response counts: it returns `bool`.
use actix_web::HttpResponse;
use ratelimit_runtime::ratelimit;

fn status(res: &HttpResponse) -> u16 {
    res.status().as_u16()
}

#[ratelimit(limit = 5, per = 60, deduct_when = status)]
async fn login() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {}
