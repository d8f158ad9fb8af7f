use actix_web::{get, App, HttpResponse, HttpServer};
use ratelimit_runtime::ratelimit;

#[get("/denied")]
#[ratelimit(limit = 1, per = 3600)]
async fn denied() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/manual")]
async fn manual() -> HttpResponse {
    HttpResponse::TooManyRequests().insert_header(("retry-after", "3435")).content_type("application/json").body("{\"error\":\"rate_limit_exceeded\",\"message\":\"Too many requests\",\"retry_after\":3435}")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    HttpServer::new(|| App::new().service(denied).service(manual))
        .workers(1)
        .bind("127.0.0.1:18080")?
        .run()
        .await
}
