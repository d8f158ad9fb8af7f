//! `#[ratelimit]` written above `#[get]`.
use actix_web::{get, web, App, Responder};
use ratelimit_runtime::ratelimit;

#[ratelimit("100/minute")]
#[get("/items/{id}")]
async fn item(id: web::Path<u32>, query: web::Query<Vec<(String, String)>>) -> impl Responder {
    format!("{id} {}", query.len())
}

fn main() {
    let _ = App::new().service(item);
}
