//! The example server: the endpoints of our source material, each limited by one attribute.
//!
//! ```text
//! cargo run --example server                 # serves on 127.0.0.1:8080
//! BIND=0.0.0.0:9000 cargo run --example server
//! cargo run --example server -- --bind 127.0.0.1:9000
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example server      # limits shared on Redis
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run --example server
//! RATELIMIT_HEADERS=ietf cargo run --example server     # RateLimit-Policy / RateLimit (or `ietf-10`, `both`)
//! RATELIMIT_OVERRIDES=overrides.toml cargo run --example server  # limits changed at run time
//! REDIS_URL=redis://127.0.0.1:6379 RATELIMIT_LEASES=1 cargo run --example server  # leased budgets
//! ```
//!
//! Try it:
//!
//! ```text
//! for i in {1..12}; do curl -s -o /dev/null -w "%{http_code}\n" -H "X-API-Key: key1" localhost:8080/data; done
//! ```

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{
    get, middleware, post, route, web, App, HttpRequest, HttpResponse, HttpServer, Responder,
};
use std::sync::atomic::{AtomicU64, Ordering};

use actix_ws::Message;
use ratelimit_runtime::algorithm::AlgorithmKind;
use ratelimit_runtime::{
    metrics_endpoint, quota, ratelimit, HeaderStyle, Priority, Quota, QuotaSource, RateLimitInfo,
    RateLimiter, RedisTarget, Rule, Tier,
};
use serde_json::json;

/// `GET /`: what the endpoints are.
#[get("/")]
async fn endpoints() -> impl Responder {
    web::Json(json!({
        "endpoints": {
            "GET /rate-limited": "300 requests per 30 seconds per client address (fixed window)",
            "GET /data": "needs X-API-Key; 10 requests per 10 seconds per key (sliding log)",
            "GET /tiered": "needs X-API-Key; per hour: free_demo 100, pro_demo 1,000, ent_demo 10,000; a key not issued gets the free 100 of its client address",
            "GET /plan": "needs X-API-Key; the key's plan looked up from a plans service 20 ms away (cached a minute): pro_... keys 20 per minute, down_... keys find the service down (503), others 5 per minute",
            "GET /search": "10 per 10 seconds per client address; past 5 the answer is degraded",
            "GET /shadow": "a dry run of 5 per 10 seconds per client address: never refused, would-be denials counted",
            "GET /slow?ms=N": "at most 2 requests in flight per client address; sleeps N ms (default 1000, at most 10000)",
            "GET /queued": "5 per second per client address (GCRA); a request whose turn comes within 2 s waits for it",
            "GET /feed": "1,000 per minute for every client together, shared by the fleet (leased with RATELIMIT_LEASES=1)",
            "GET /ws": "WebSocket echo, 5 messages per second per connection; over that, an error message instead",
            "GET|POST /items": "needs X-API-Key; reading is unlimited, creating (POST) 3 per minute per key",
            "GET /llm?max_tokens=M&tokens=N": "needs X-API-Key; 1,000 tokens per minute per key: M reserved before the handler, settled to N after",
            "POST /login": "JSON {\"user\", \"password\"} (the demo password is letmein); 5 failed logins per minute per client address, successful ones not counted; refused 3 times within 10 minutes, the address is refused for 10 minutes",
            "GET /demo": "a page showing the limit from a browser, through ratelimit.js (/demo?run=N&key=K sends N requests to /data on load)",
            "GET /busy": "a resource of 4 workers and 50 ms of work a request (more in flight queue inside it), under an adaptive concurrency limit: shed requests get 503; X-Priority: critical|normal|sheddable",
            "GET /metrics": "the limiter's Prometheus metrics",
        }
    }))
}

/// The limit headers a page may read: without `Access-Control-Expose-Headers`, a script of
/// another origin sees only the CORS-safelisted ones, and neither `Retry-After` nor any limit
/// header is among them.
const EXPOSED_HEADERS: &str = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy";

/// `GET /demo`: a page that shows the limit from a browser (`/demo?run=N&key=K` runs N
/// requests to `/data` on load, for the tests).
#[get("/demo")]
async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("demo/index.html"))
}

/// `GET /demo/ratelimit.js`: the browser client, `fetchWithRetry`.
#[get("/demo/ratelimit.js")]
async fn demo_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("demo/ratelimit.js"))
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

/// `GET /data`: 10 requests per 10 seconds per API key, on a sliding log. Any key is taken as
/// given (a demo of a header scope: each value is a budget of its own); `/tiered` shows keys
/// checked before they get one.
#[get("/data")]
#[ratelimit(limit = 10, per = 10, scope = "header:X-API-Key", algorithm = "sliding_log", exempt = no_api_key)]
async fn data(req: HttpRequest, info: Option<RateLimitInfo>) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let remaining = info.map(|i| i.remaining());
    HttpResponse::Ok().json(json!({"data": [1, 2, 3], "remaining": remaining}))
}

/// `GET|POST /items`: one handler for both methods, per API key: reading is unlimited, creating
/// is limited to 3 a minute (`methods = ["POST"]`: a GET neither counts nor is refused).
#[route("/items", method = "GET", method = "POST")]
#[ratelimit(limit = 3, per = 60, scope = "header:X-API-Key", methods = ["POST"], exempt = no_api_key)]
async fn items(req: HttpRequest) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    if req.method() == Method::POST {
        HttpResponse::Created().json(json!({"created": true}))
    } else {
        HttpResponse::Ok().json(json!({"items": []}))
    }
}

/// `POST /login`: JSON `{"user", "password"}`, `letmein` the demo password. Only failed
/// attempts count, 5 a minute per client address: each is charged before the handler, as
/// always, and a response `failed_login` does not accept (a success) gives its unit back, so
/// concurrent guesses cannot slip past the limit. A client refused 3 times within 10 minutes
/// (still guessing past the limit) serves a penalty: every login is refused for 10 minutes,
/// even one with the right password.
#[post("/login")]
#[ratelimit(limit = 5, per = 60, deduct_when = failed_login, penalty = "3/10 minutes")]
async fn login(body: web::Json<serde_json::Value>) -> HttpResponse {
    match body.get("password").and_then(|p| p.as_str()) {
        Some("letmein") => HttpResponse::Ok().json(json!({"login": "ok"})),
        _ => HttpResponse::Unauthorized().json(json!({"error": "invalid_credentials"})),
    }
}

/// A number of the query string, if given and valid.
fn query_number(req: &HttpRequest, name: &str) -> Option<u32> {
    web::Query::<std::collections::HashMap<String, u32>>::from_query(req.query_string())
        .ok()?
        .get(name)
        .copied()
}

/// What `/llm` reserves before the handler: `max_tokens` (100 when absent).
fn max_tokens(req: &HttpRequest) -> u32 {
    query_number(req, "max_tokens").unwrap_or(100)
}

/// `GET /llm?max_tokens=M&tokens=N`: an API priced in tokens, 1,000 a minute per API key. `M`
/// is reserved before the handler runs; the handler settles for the `N` it "produced" (at most
/// `M`), and the rest goes back to the budget.
#[get("/llm")]
#[ratelimit(limit = 1000, per = 60, scope = "header:X-API-Key", cost = max_tokens, exempt = no_api_key)]
async fn llm(req: HttpRequest, info: Option<RateLimitInfo>) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let reserved = max_tokens(&req);
    let tokens = query_number(&req, "tokens")
        .unwrap_or(reserved)
        .min(reserved);
    if let Some(info) = info {
        info.settle(tokens);
    }
    HttpResponse::Ok().json(json!({ "tokens": tokens }))
}

/// A failed login: the response `/login` counts.
fn failed_login(res: &HttpResponse) -> bool {
    res.status() == StatusCode::UNAUTHORIZED
}

/// The API keys this demo has issued, and their tiers (hourly quotas). A real service looks
/// its keys up in its own store; what matters is the order: a key is checked before it gets a
/// budget of its own, for a header value is what the client says, not who it is. Unchecked,
/// every made-up `ent_...` key would be a fresh 10,000-per-hour budget.
const ISSUED_KEYS: [(&str, &str, u32); 3] = [
    ("free_demo", "free", 100),
    ("pro_demo", "pro", 1_000),
    ("ent_demo", "enterprise", 10_000),
];

/// The tier of the request's API key when it was issued.
fn issued(req: &HttpRequest) -> Option<(&'static str, &'static str, u32)> {
    let key = req.headers().get("x-api-key")?.as_bytes();
    ISSUED_KEYS
        .into_iter()
        .find(|(issued, _, _)| issued.as_bytes() == key)
}

/// The budget of an issued key; any other key is counted per client address (`None`), so
/// guessing keys is limited like everything else.
fn issued_key(req: &HttpRequest) -> Option<&'static str> {
    issued(req).map(|(key, _, _)| key)
}

/// The request's tier and its hourly quota (free for a key not issued); the name labels the
/// tier's metrics.
fn tier_quota(req: &HttpRequest) -> Tier {
    let (_, tier, per_hour) = issued(req).unwrap_or(ISSUED_KEYS[0]);
    Tier::new(
        tier,
        Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN)),
    )
}

/// `GET /tiered`: free / pro / enterprise quotas by issued API key; a key not issued is served
/// at the free tier, in the budget of its client address.
#[get("/tiered")]
#[ratelimit(limit = tier_quota, key = issued_key, exempt = no_api_key)]
async fn tiered(req: HttpRequest) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let (key, tier, per_hour) = match issued(&req) {
        Some((_, tier, per_hour)) => ("issued", tier, per_hour),
        None => ("not issued: counted per address", "free", ISSUED_KEYS[0].2),
    };
    HttpResponse::Ok().json(json!({"tier": tier, "limit_per_hour": per_hour, "key": key}))
}

/// The plans a key may be on.
const FREE_PLAN: Tier = Tier::new("free", quota!("5/minute"));
const PRO_PLAN: Tier = Tier::new("pro", quota!("20/minute"));

/// Lookups the plans "service" answered (`X-Plan-Lookups` on `/plan`'s answers).
static PLAN_LOOKUPS: AtomicU64 = AtomicU64::new(0);

/// The plan of an API key, as a plans service 20 ms away answers it: keys starting `pro_` are
/// on the pro plan, keys starting `down_` find the service down, the others are free. The
/// limiter asks it once per key and minute, and a burst of a new key once.
async fn plan_of(api_key: String) -> Result<Tier, String> {
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    PLAN_LOOKUPS.fetch_add(1, Ordering::Relaxed);
    if api_key.starts_with("down_") {
        return Err("the plans service is down".to_owned());
    }
    Ok(match api_key.starts_with("pro_") {
        true => PRO_PLAN,
        false => FREE_PLAN,
    })
}

/// `GET /plan`: a limit whose tier an async lookup chooses (`limit = plan_of`).
#[get("/plan")]
#[ratelimit(limit = plan_of, scope = "header:X-API-Key", exempt = no_api_key)]
async fn plan(req: HttpRequest, info: Option<RateLimitInfo>) -> HttpResponse {
    if let Some(unauthorized) = missing_key(&req) {
        return unauthorized;
    }
    let limit = info.map_or(0, |info| info.limit());
    HttpResponse::Ok()
        .insert_header(("X-Plan-Lookups", PLAN_LOOKUPS.load(Ordering::Relaxed)))
        .json(json!({ "limit_per_minute": limit }))
}

/// The resource behind `/busy`: 4 workers. A request holds one for 50 ms of work; with all
/// four busy it waits for one, so latency grows with what is in flight.
static BUSY_WORKERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// `X-Priority: critical|normal|sheddable` (normal when absent or anything else).
fn priority_of(req: &HttpRequest) -> Priority {
    match req.headers().get("x-priority").map(|v| v.as_bytes()) {
        Some(b"critical") => Priority::Critical,
        Some(b"sheddable") => Priority::Sheddable,
        _ => Priority::Normal,
    }
}

/// `GET /busy`: a resource of 4 workers and 50 ms of work a request under an adaptive
/// concurrency limit, which follows the latency and sheds (503) what would only queue,
/// sheddable requests first and critical ones last.
#[get("/busy")]
#[ratelimit(concurrency = "adaptive", priority = priority_of)]
async fn busy() -> HttpResponse {
    let started = std::time::Instant::now();
    let Ok(_worker) = BUSY_WORKERS.acquire().await else {
        return HttpResponse::InternalServerError().finish();
    };
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    let ms = started.elapsed().as_millis() as u64;
    HttpResponse::Ok().json(json!({ "served_in_ms": ms }))
}

/// `GET /search`: past a soft limit of 5 in 10 seconds the answer is degraded (a cheaper
/// search), and past 10 it is refused.
#[get("/search")]
#[ratelimit(limit = 10, per = 10, soft = 5)]
async fn search(info: RateLimitInfo) -> impl Responder {
    web::Json(json!({"degraded": info.degraded()}))
}

/// `GET /shadow`: a limit being rolled out. Decided and counted, never enforced.
#[get("/shadow")]
#[ratelimit(limit = 5, per = 10, mode = "shadow")]
async fn shadow() -> impl Responder {
    web::Json(json!({"response": "never refused"}))
}

#[derive(serde::Deserialize)]
struct Sleep {
    ms: Option<u64>,
}

/// `GET /slow?ms=N`: at most two requests of a client in flight at once.
#[get("/slow")]
#[ratelimit(concurrency = 2, scope = "ip")]
async fn slow(query: web::Query<Sleep>) -> impl Responder {
    let ms = query.ms.unwrap_or(1_000).min(10_000);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(ms)).await;
    web::Json(json!({"slept_ms": ms}))
}

/// `GET /queued`: a spike is smoothed rather than refused: a request whose turn comes within
/// two seconds waits for it (`X-RateLimit-Waited-Ms` says how long).
#[get("/queued")]
#[ratelimit(limit = 5, per = 1, algorithm = "gcra", max_wait = "2s")]
async fn queued(info: RateLimitInfo) -> impl Responder {
    web::Json(json!({"waited_ms": info.waited().as_millis() as u64}))
}

/// `GET /feed`: one budget for every client together, 1,000 per minute across the fleet. With
/// `RATELIMIT_LEASES=1` each process spends units of it leased from Redis, asking Redis about
/// once per lease rather than once per request.
#[get("/feed")]
#[ratelimit(limit = 1000, per = 60, scope = "global")]
async fn feed() -> impl Responder {
    web::Json(json!({"items": []}))
}

/// Messages of one WebSocket connection: 5 per second (GCRA, a burst of 5).
static WS_MESSAGES: Rule = {
    let mut rule = Rule::new(
        "server::ws_messages",
        QuotaSource::Fixed(match Quota::from_parts(5, 1) {
            Some(quota) => quota,
            None => panic!("a valid quota"),
        }),
    );
    rule.algorithm = AlgorithmKind::Gcra;
    rule
};

/// `GET /ws`: an echo whose messages are limited per connection, with the limiter used outside
/// a handler (`check_key`). A message over the limit is answered with an error, and the
/// connection stays open.
#[get("/ws")]
async fn ws(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
    let (response, mut session, mut messages) = actix_ws::handle(&req, body)?;
    let limiter = RateLimiter::for_request(&req).clone();
    // Unique across a fleet sharing Redis: this process's tag and a counter.
    let connection = format!(
        "ws-{:x}-{}",
        process_tag(),
        CONNECTIONS.fetch_add(1, Ordering::Relaxed)
    );
    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = messages.recv().await {
            let sent = match message {
                Message::Text(_) | Message::Binary(_) => {
                    let info = limiter.check_key(&WS_MESSAGES, &connection, 1).await;
                    if !info.is_allowed() {
                        let retry_after_ms = info.retry_after().as_millis() as u64;
                        let refusal =
                            json!({"error": "rate_limited", "retry_after_ms": retry_after_ms});
                        session.text(refusal.to_string()).await
                    } else if let Message::Text(text) = message {
                        session.text(text).await
                    } else if let Message::Binary(bytes) = message {
                        session.binary(bytes).await
                    } else {
                        Ok(())
                    }
                }
                Message::Ping(bytes) => session.pong(&bytes).await,
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

/// A random tag of this process.
fn process_tag() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| RandomState::new().hash_one(std::process::id()))
}

/// `RATELIMIT_HEADERS`: `x` (the default), `ietf` (draft-11), `ietf-10` (draft-10's `t`) or
/// `both` (`x` and `ietf`).
fn header_style() -> Result<HeaderStyle, String> {
    match std::env::var("RATELIMIT_HEADERS").as_deref().map(str::trim) {
        Err(_) | Ok("" | "x") => Ok(HeaderStyle::XRateLimit),
        Ok("ietf") => Ok(HeaderStyle::Ietf),
        Ok("ietf-10") => Ok(HeaderStyle::IetfDraft10),
        Ok("both") => Ok(HeaderStyle::Both),
        Ok(other) => Err(format!(
            "RATELIMIT_HEADERS={other:?}: expected `x`, `ietf`, `ietf-10` or `both`"
        )),
    }
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
    let style = header_style().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    // `build()` reads REDIS_URL, RATELIMIT_TRUSTED_PROXIES and the rest of the environment.
    let limiter = match RateLimiter::builder().header_style(style).build() {
        Ok(limiter) => limiter,
        Err(e) => {
            eprintln!("invalid rate-limiter configuration: {e}");
            std::process::exit(2);
        }
    };
    let bind = bind_address();
    // Shown as the limiter shows it: any password as `***`.
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let list = |text: String| text.split(',').map(|n| n.trim().to_string()).collect();
    let store = match (
        var("REDIS_CLUSTER_URLS"),
        var("REDIS_SENTINEL_URLS"),
        var("REDIS_SENTINEL_MASTER"),
        var("REDIS_URL"),
    ) {
        (Some(nodes), ..) => format!("on {}", RedisTarget::Cluster(list(nodes))),
        (None, Some(sentinels), Some(master), _) => format!(
            "on {}",
            RedisTarget::Sentinel {
                master,
                sentinels: list(sentinels)
            }
        ),
        (None, None, None, Some(url)) => format!("on {}", RedisTarget::Single(url)),
        _ => "in process memory".to_string(),
    };
    println!("serving on http://{bind} (limits {store})");
    HttpServer::new(move || {
        App::new()
            .app_data(limiter.clone())
            // A page of another origin reads only the response headers listed here.
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("Access-Control-Expose-Headers", EXPOSED_HEADERS)),
            )
            .service(endpoints)
            .service(demo)
            .service(demo_script)
            .service(rate_limited)
            .service(data)
            .service(items)
            .service(login)
            .service(llm)
            .service(tiered)
            .service(plan)
            .service(busy)
            .service(search)
            .service(shadow)
            .service(slow)
            .service(queued)
            .service(feed)
            .service(ws)
            .service(metrics_endpoint("/metrics"))
    })
    .bind(&bind)?
    .run()
    .await
}
