//! An `exempt` function returning `Option<bool>` is reported at the path, naming `exempt`.
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn maybe(_: &HttpRequest) -> Option<bool> {
    Some(true)
}

#[ratelimit(limit = 3, per = 30, exempt = maybe)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
