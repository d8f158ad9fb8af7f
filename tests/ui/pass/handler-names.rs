//! Handlers may take any name, including the names the expansion works with inside: actix's
//! `#[get]` makes a unit struct of each handler's name, which a pattern would match instead of
//! binding.
use actix_web::{get, web, App, Responder};
use ratelimit_runtime::ratelimit;

#[get("/denied")]
#[ratelimit("1/hour")]
async fn denied() -> impl Responder {
    "denied"
}

#[get("/pass/{id}")]
#[ratelimit("10/minute")]
async fn pass(id: web::Path<u32>) -> impl Responder {
    format!("{id}")
}

#[get("/value")]
#[ratelimit("10/minute")]
async fn value(query: web::Query<Vec<(String, String)>>) -> impl Responder {
    format!("{}", query.len())
}

#[get("/error")]
#[ratelimit("10/minute")]
async fn error() -> impl Responder {
    "error"
}

fn main() {
    let _ = App::new()
        .service(denied)
        .service(pass)
        .service(value)
        .service(error);
}
