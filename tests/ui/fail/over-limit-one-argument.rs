//! An `over_limit` function missing its `&RateLimitInfo` argument is reported at the path,
//! naming `over_limit` and the signature it takes.
use actix_web::{HttpRequest, HttpResponse};
use ratelimit_runtime::ratelimit;

fn too_many(_: &HttpRequest) -> HttpResponse {
    HttpResponse::TooManyRequests().finish()
}

#[ratelimit(limit = 3, per = 30, over_limit = too_many)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
