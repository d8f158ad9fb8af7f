//! The example server: the endpoints of our source material, each limited by one attribute.
//!
//! ```text
//! cargo run --example server                 # serves on 127.0.0.1:8080
//! BIND=0.0.0.0:9000 cargo run --example server
//! cargo run --example server -- --bind 127.0.0.1:9000
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example server      # limits shared on Redis
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run --example server
//! ```
//!
//! Try it:
//!
//! ```text
//! for i in {1..12}; do curl -s -o /dev/null -w "%{http_code}\n" -H "X-API-Key: key1" localhost:8080/data; done
//! ```

use std::num::NonZeroU32;

use actix_web::{get, web, App, HttpRequest, HttpResponse, HttpServer, Responder};
use ratelimit_runtime::{ratelimit, Quota, RateLimitInfo, RateLimiter};
use serde_json::json;

/// `GET /`: what the endpoints are.
#[get("/")]
async fn endpoints() -> impl Responder {
    web::Json(json!({
        "endpoints": {
            "GET /rate-limited": "300 requests per 30 seconds per client address (fixed window)",
            "GET /data": "needs X-API-Key; 10 requests per 10 seconds per key (sliding log)",
            "GET /tiered": "needs X-API-Key; per hour: free 100, pro_* keys 1,000, ent_* keys 10,000",
        }
    }))
}

/// `GET /rate-limited`: the Flask decorator's example, `@ratelimit(limit=300, per=30 * 1)`.
#[get("/rate-limited")]
#[ratelimit(limit = 300, per = 30, scope = "ip")]
async fn rate_limited() -> impl Responder {
    web::Json(json!({"response": "This is a rate limited response"}))
}

/// Answers 401 to requests without an API key, before any limit is spent.
fn missing_key(req: &HttpRequest) -> Option<HttpResponse> {
    let has_key = req
        .headers()
        .get("x-api-key")
        .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
    (!has_key).then(|| HttpResponse::Unauthorized().json(json!({"error": "missing_api_key"})))
}

/// Requests without a key are not counted here: the handler answers them 401.
fn no_api_key(req: &HttpRequest) -> bool {
    missing_key(req).is_some()
}

/// `GET /data`: 10 requests per 10 seconds per API key, on a sliding log.
#[get("/data")]
#[ratelimit(limit = 10, per = 10, scope = "header:X-API-Key", algorithm = "sliding_log", exempt = no_api_key)]
async fn data(req: HttpRequest, info: Option<RateLimitInfo>) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let remaining = info.map(|i| i.remaining());
    HttpResponse::Ok().json(json!({"data": [1, 2, 3], "remaining": remaining}))
}

/// The tier of an API key: `ent_*` enterprise, `pro_*` pro, anything else free.
fn tier_of(key: &str) -> (&'static str, u32) {
    if key.starts_with("ent_") {
        ("enterprise", 10_000)
    } else if key.starts_with("pro_") {
        ("pro", 1_000)
    } else {
        ("free", 100)
    }
}

fn api_key(req: &HttpRequest) -> &str {
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The hourly quota of the request's tier.
fn tier_quota(req: &HttpRequest) -> Quota {
    let (_, per_hour) = tier_of(api_key(req));
    Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN))
}

/// `GET /tiered`: free / pro / enterprise quotas by API key.
#[get("/tiered")]
#[ratelimit(limit = tier_quota, scope = "header:X-API-Key", exempt = no_api_key)]
async fn tiered(req: HttpRequest) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let (tier, per_hour) = tier_of(api_key(&req));
    HttpResponse::Ok().json(json!({"tier": tier, "limit_per_hour": per_hour}))
}

/// The address to serve on: `--bind`, else `BIND`, else `127.0.0.1:8080`.
fn bind_address() -> String {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--bind=") {
            return value.to_string();
        }
        if arg == "--bind" {
            if let Some(value) = args.next() {
                return value;
            }
        }
    }
    std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_string())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    // REDIS_URL (or REDIS_CLUSTER_URLS) puts every limit on Redis; otherwise in memory.
    let limiter = match RateLimiter::builder().from_env().build() {
        Ok(limiter) => limiter,
        Err(e) => {
            eprintln!("invalid rate-limiter configuration: {e}");
            std::process::exit(2);
        }
    };
    let bind = bind_address();
    let store = match (
        std::env::var("REDIS_CLUSTER_URLS"),
        std::env::var("REDIS_URL"),
    ) {
        (Ok(nodes), _) if !nodes.trim().is_empty() => format!("on the Redis Cluster at {nodes}"),
        (_, Ok(url)) if !url.trim().is_empty() => format!("on Redis at {url}"),
        _ => "in process memory".to_string(),
    };
    println!("serving on http://{bind} (limits {store})");
    HttpServer::new(move || {
        App::new()
            .app_data(limiter.clone())
            .service(endpoints)
            .service(rate_limited)
            .service(data)
            .service(tiered)
    })
    .bind(&bind)?
    .run()
    .await
}
