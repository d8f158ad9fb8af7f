//! The README's getting-started program, as it is written there (a test checks that the two
//! agree): one per-IP limit, the limiter built once and shared by every worker, `/metrics`.

use actix_web::{get, web, App, HttpServer, Responder};
use ratelimit_runtime::{metrics_endpoint, ratelimit, RateLimiter};
use serde_json::json;

#[get("/rate-limited")]
#[ratelimit(limit = 300, per = 30, scope = "ip")]
async fn index() -> impl Responder {
    web::Json(json!({"response": "This is a rate limited response"}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // Built once, outside the factory: every worker shares its state. It reads REDIS_URL and
    // the other variables of docs/guide.md's *Configuration*, and logs (through `tracing` or
    // `log`, when the app installs a logger) one line saying how it was built.
    let limiter = RateLimiter::builder()
        .build()
        .expect("a valid rate-limiter configuration");
    HttpServer::new(move || {
        App::new()
            .app_data(limiter.clone())
            .service(index)
            .service(metrics_endpoint("/metrics"))
    })
    .bind(("127.0.0.1", 8080))?
    .run()
    .await
}
