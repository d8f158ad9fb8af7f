//! A plain handler registered with `.to(...)`, keeping its extractors and `Result` output.
use actix_web::{web, App, HttpResponse};
use ratelimit_runtime::ratelimit;

#[derive(serde::Deserialize)]
struct Body {
    name: String,
}

#[ratelimit(limit = 5, per = "1m", algorithm = "sliding_log")]
async fn create(web::Json(body): web::Json<Body>, path: web::Path<(u32, u32)>) -> actix_web::Result<HttpResponse> {
    let (a, b) = path.into_inner();
    Ok(HttpResponse::Ok().body(format!("{} {a} {b}", body.name)))
}

fn main() {
    let _ = App::new().service(web::resource("/create/{a}/{b}").route(web::post().to(create)));
}
