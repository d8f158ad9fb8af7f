//! `methods` in any case, with and without `per_method`, on a route of several methods.
use actix_web::{route, HttpResponse};
use ratelimit_runtime::ratelimit;

#[route("/items", method = "GET", method = "POST", method = "PUT")]
#[ratelimit(limit = 3, per = 60, methods = ["post", "Put"])]
async fn items() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[route("/each", method = "GET", method = "POST")]
#[ratelimit("10/minute;100/hour", methods = ["GET", "POST"], per_method = true)]
async fn each() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {
    let _ = (items, each);
}
