//! `#[get]` written above `#[ratelimit]`: actix nests the handler in a service struct.
use actix_web::{get, App, Responder};
use ratelimit_runtime::ratelimit;

/// Docs stay on the handler.
#[get("/")]
#[ratelimit(limit = 300, per = 30, scope = "ip")]
pub async fn index() -> impl Responder {
    "ok"
}

fn main() {
    let _ = App::new().service(index);
}
