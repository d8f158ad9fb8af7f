//! Request-level tests of `#[ratelimit]`: each app gets its own limiter on a manual clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, post, web, App, HttpRequest, HttpResponse, Responder};
use ratelimit_runtime::{ratelimit, ManualClock, Quota, RateLimitInfo, RateLimiter};
use serde::Deserialize;

/// A multiple of 60 s, so windows of 10, 30 and 60 s start exactly here.
const T0: u64 = 1_800_000_000;

fn clock() -> ManualClock {
    ManualClock::at_secs(T0)
}

fn limiter(clock: &ManualClock) -> RateLimiter {
    RateLimiter::builder().clock(clock.clone()).build().unwrap()
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

fn get(path: &str) -> TestRequest {
    TestRequest::get().uri(path).peer_addr(peer("203.0.113.1"))
}

fn header<B>(res: &ServiceResponse<B>, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn limit_headers<B>(res: &ServiceResponse<B>) -> (String, String, String) {
    let h = |n| header(res, n).unwrap_or_else(|| panic!("missing {n}"));
    (
        h("x-ratelimit-limit"),
        h("x-ratelimit-remaining"),
        h("x-ratelimit-reset"),
    )
}

macro_rules! app {
    ($limiter:expr, $($service:expr),+ $(,)?) => {
        test::init_service(App::new().app_data($limiter.clone())$(.service($service))+).await
    };
}

async fn status<S, B>(app: &S, req: TestRequest) -> StatusCode
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    test::call_service(app, req.to_request()).await.status()
}

static ORDERS_RUN: AtomicUsize = AtomicUsize::new(0);

#[derive(Deserialize)]
struct Order {
    #[allow(dead_code)]
    item: String,
}

#[post("/orders")]
#[ratelimit(limit = 2, per = 60)]
async fn create_order(order: web::Json<Order>) -> impl Responder {
    let _ = order;
    ORDERS_RUN.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Created().finish()
}

#[actix_web::test]
async fn denied_requests_never_reach_extractors_or_the_handler() {
    let clock = clock();
    let app = app!(limiter(&clock), create_order);
    let order = || {
        TestRequest::post()
            .uri("/orders")
            .peer_addr(peer("198.51.100.4"))
    };
    let valid = || order().set_json(serde_json::json!({"item": "tea"}));
    assert_eq!(status(&app, valid()).await, StatusCode::CREATED);
    // A bad body that is allowed is parsed, fails, and still carries the headers.
    let bad = test::call_service(
        &app,
        order()
            .set_payload("{not json")
            .insert_header(("content-type", "application/json"))
            .to_request(),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(limit_headers(&bad).1, "0");
    // Spent: an invalid body is now refused by the limit, not by the JSON extractor.
    let denied = order()
        .set_payload("{not json")
        .insert_header(("content-type", "application/json"));
    assert_eq!(status(&app, denied).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status(&app, valid()).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        ORDERS_RUN.load(Ordering::SeqCst),
        1,
        "only the first request ran the handler"
    );
}

#[get("/limited")]
#[ratelimit(limit = 3, per = 30)]
async fn limited() -> impl Responder {
    "ok"
}

#[actix_web::test]
async fn headers_on_allowed_and_denied_responses() {
    let clock = clock();
    let app = app!(limiter(&clock), limited);
    clock.advance(Duration::from_millis(200));
    let reset = (T0 + 30).to_string();
    for remaining in ["2", "1", "0"] {
        let res = test::call_service(&app, get("/limited").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            limit_headers(&res),
            ("3".into(), remaining.into(), reset.clone())
        );
        assert_eq!(header(&res, "retry-after"), None);
    }
    let res = test::call_service(&app, get("/limited").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limit_headers(&res), ("3".into(), "0".into(), reset));
    assert_eq!(
        header(&res, "retry-after").as_deref(),
        Some("30"),
        "29.8 s rounds up to 30"
    );
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["error"], "rate_limit_exceeded");
    assert_eq!(body["retry_after"], 30);
    // Half a second before the boundary: Retry-After is 1, never 0.
    clock.set((T0 + 30) * 1_000_000_000 - 500_000_000);
    let res = test::call_service(&app, get("/limited").to_request()).await;
    assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
    // At the boundary the budget is whole again.
    clock.advance(Duration::from_millis(500));
    let res = test::call_service(&app, get("/limited").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(limit_headers(&res).1, "2");
}

#[get("/own-headers")]
#[ratelimit(limit = 5, per = 60)]
async fn own_headers() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("X-RateLimit-Limit", "custom"))
        .finish()
}

#[actix_web::test]
async fn the_hook_never_overwrites_a_header_the_handler_set() {
    let clock = clock();
    let app = app!(limiter(&clock), own_headers);
    let res = test::call_service(&app, get("/own-headers").to_request()).await;
    assert_eq!(header(&res, "x-ratelimit-limit").as_deref(), Some("custom"));
    assert_eq!(header(&res, "x-ratelimit-remaining").as_deref(), Some("4"));
}

#[ratelimit(limit = 1, per = 60)]
#[get("/below")]
async fn attribute_above_get() -> &'static str {
    "above"
}

#[ratelimit(limit = 1, per = 60)]
async fn registered_with_to(path: web::Path<u32>) -> String {
    format!("item {path}")
}

#[actix_web::test]
async fn works_above_get_and_with_to() {
    let clock = clock();
    let app = test::init_service(
        App::new()
            .app_data(limiter(&clock))
            .service(attribute_above_get)
            .service(web::resource("/items/{id}").route(web::get().to(registered_with_to))),
    )
    .await;
    assert_eq!(status(&app, get("/below")).await, StatusCode::OK);
    assert_eq!(
        status(&app, get("/below")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let res = test::call_service(&app, get("/items/7").to_request()).await;
    assert_eq!(test::read_body(res).await, "item 7");
    assert_eq!(
        status(&app, get("/items/8")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[get("/stacked")]
#[ratelimit(limit = 5, per = 60, scope = "ip")]
#[ratelimit(limit = 3, per = 10, scope = "global")]
async fn stacked(info: RateLimitInfo) -> String {
    format!("{} left", info.remaining())
}

#[actix_web::test]
async fn stacked_limits_all_apply_and_charge_none_when_denied() {
    let clock = clock();
    let app = app!(limiter(&clock), stacked);
    let from = |ip: &str| TestRequest::get().uri("/stacked").peer_addr(peer(ip));
    // The global limit (3 per 10 s) is the most restrictive: headers describe it.
    let first = test::call_service(&app, from("192.0.2.1").to_request()).await;
    assert_eq!(
        limit_headers(&first),
        ("3".into(), "2".into(), (T0 + 10).to_string())
    );
    assert_eq!(test::read_body(first).await, "2 left");
    assert_eq!(status(&app, from("192.0.2.1")).await, StatusCode::OK);
    assert_eq!(status(&app, from("192.0.2.2")).await, StatusCode::OK);
    // Global spent: denied for everyone, and the per-IP limit is not charged.
    let denied = test::call_service(&app, from("192.0.2.1").to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "x-ratelimit-limit").as_deref(), Some("3"));
    for _ in 0..5 {
        assert_eq!(
            status(&app, from("192.0.2.1")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    clock.advance(Duration::from_secs(10));
    // 192.0.2.1 spent 2 of its 5: three more pass (the global allows three again). Both have
    // 2 left after this one; the later reset (the per-IP minute) is the more restrictive.
    let res = test::call_service(&app, from("192.0.2.1").to_request()).await;
    assert_eq!(
        limit_headers(&res),
        ("5".into(), "2".into(), (T0 + 60).to_string())
    );
    assert_eq!(status(&app, from("192.0.2.1")).await, StatusCode::OK);
    let res = test::call_service(&app, from("192.0.2.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    clock.advance(Duration::from_secs(10));
    let res = test::call_service(&app, from("192.0.2.1").to_request()).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "five per minute for this address"
    );
    assert_eq!(
        limit_headers(&res),
        ("5".into(), "0".into(), (T0 + 60).to_string())
    );
    assert_eq!(header(&res, "retry-after").as_deref(), Some("40"));
}

#[get("/per-ip")]
#[ratelimit(limit = 1, per = 60)]
async fn per_ip() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn clients_are_their_tcp_peers_and_cannot_spoof() {
    let clock = clock();
    let app = app!(limiter(&clock), per_ip);
    let from = |ip: &str| TestRequest::get().uri("/per-ip").peer_addr(peer(ip));
    assert_eq!(status(&app, from("198.51.100.1")).await, StatusCode::OK);
    assert_eq!(status(&app, from("198.51.100.2")).await, StatusCode::OK);
    let spoofed = from("198.51.100.1").insert_header(("x-forwarded-for", "1.2.3.4"));
    assert_eq!(status(&app, spoofed).await, StatusCode::TOO_MANY_REQUESTS);
    let forwarded = from("198.51.100.1").insert_header(("forwarded", "for=1.2.3.5"));
    assert_eq!(status(&app, forwarded).await, StatusCode::TOO_MANY_REQUESTS);
    // IPv6 clients are grouped by /64.
    assert_eq!(status(&app, from("2001:db8:1:2::1")).await, StatusCode::OK);
    assert_eq!(
        status(&app, from("2001:db8:1:2:ffff::9")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, from("2001:db8:1:3::1")).await, StatusCode::OK);
    // A request without a peer address shares one "unknown" budget; it is not unlimited.
    let no_peer = || TestRequest::get().uri("/per-ip");
    assert_eq!(status(&app, no_peer()).await, StatusCode::OK);
    assert_eq!(status(&app, no_peer()).await, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn trusted_proxies_name_the_client() {
    let clock = clock();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let app = app!(limiter, per_ip);
    let via_proxy = |xff: &str| {
        TestRequest::get()
            .uri("/per-ip")
            .peer_addr(peer("10.0.0.3"))
            .insert_header(("x-forwarded-for", xff))
    };
    assert_eq!(status(&app, via_proxy("203.0.113.7")).await, StatusCode::OK);
    assert_eq!(status(&app, via_proxy("203.0.113.8")).await, StatusCode::OK);
    // A client prepending a fake address does not get a fresh budget.
    assert_eq!(
        status(&app, via_proxy("9.9.9.9, 203.0.113.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&app, via_proxy("203.0.113.7, 10.0.0.9")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[get("/keyed")]
#[ratelimit(limit = 2, per = 60, scope = "header:X-API-Key")]
async fn keyed() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn a_missing_or_odd_header_key_never_escapes_the_limit() {
    let clock = clock();
    let app = app!(limiter(&clock), keyed);
    let with_key = |key: &[u8]| {
        let value = actix_web::http::header::HeaderValue::from_bytes(key).unwrap();
        get("/keyed").insert_header(("x-api-key", value))
    };
    for _ in 0..2 {
        assert_eq!(status(&app, with_key(b"alpha")).await, StatusCode::OK);
    }
    assert_eq!(
        status(&app, with_key(b"alpha")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, with_key(b"beta")).await, StatusCode::OK);
    // Without the header: counted per address, in a budget of its own.
    assert_eq!(status(&app, get("/keyed")).await, StatusCode::OK);
    assert_eq!(status(&app, with_key(b"")).await, StatusCode::OK);
    assert_eq!(
        status(&app, get("/keyed")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Non-UTF-8 and huge values are keys like any other.
    let odd = b"\xff\xfe\x80key";
    assert_eq!(status(&app, with_key(odd)).await, StatusCode::OK);
    assert_eq!(status(&app, with_key(odd)).await, StatusCode::OK);
    assert_eq!(
        status(&app, with_key(odd)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let huge = vec![b'k'; 6_000];
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(status(&app, with_key(&huge)).await, expected);
    }
}

fn account(req: &HttpRequest) -> Option<String> {
    req.query_string()
        .strip_prefix("account=")
        .map(str::to_owned)
}

fn plan(req: &HttpRequest) -> Quota {
    let pro = account(req).is_some_and(|a| a.starts_with("pro"));
    Quota::from_parts(if pro { 4 } else { 2 }, 3_600).unwrap()
}

#[get("/tiers")]
#[ratelimit(limit = plan, key = account)]
async fn tiers() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn custom_keys_and_per_request_quotas() {
    let clock = clock();
    let app = app!(limiter(&clock), tiers);
    let count_ok = |account: &'static str| {
        let app = &app;
        async move {
            let mut ok = 0;
            for _ in 0..6 {
                let req = get(&format!("/tiers?account={account}"));
                if status(app, req).await == StatusCode::OK {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(count_ok("free1").await, 2);
    assert_eq!(count_ok("pro1").await, 4);
    assert_eq!(count_ok("free2").await, 2);
    let res = test::call_service(&app, get("/tiers?account=pro2").to_request()).await;
    assert_eq!(
        limit_headers(&res),
        ("4".into(), "3".into(), (T0 + 3_600).to_string())
    );
}

#[get("/a")]
#[ratelimit(limit = 3, per = 60, shared = "pair")]
async fn shared_a() -> &'static str {
    "a"
}

#[get("/b")]
#[ratelimit(limit = 3, per = 60, shared = "pair")]
async fn shared_b() -> &'static str {
    "b"
}

#[actix_web::test]
async fn shared_budgets_span_handlers() {
    let clock = clock();
    let app = app!(limiter(&clock), shared_a, shared_b);
    assert_eq!(status(&app, get("/a")).await, StatusCode::OK);
    assert_eq!(status(&app, get("/b")).await, StatusCode::OK);
    assert_eq!(status(&app, get("/a")).await, StatusCode::OK);
    assert_eq!(status(&app, get("/b")).await, StatusCode::TOO_MANY_REQUESTS);
}

fn is_health_probe(req: &HttpRequest) -> bool {
    req.headers().contains_key("x-probe")
}

fn teapot(_: &HttpRequest, info: &RateLimitInfo) -> impl Responder {
    HttpResponse::build(StatusCode::IM_A_TEAPOT).body(format!("wait {}", info.retry_after_secs()))
}

#[get("/options")]
#[ratelimit(limit = 1, per = 10, exempt = is_health_probe, send_x_headers = false, over_limit = teapot, cost = 1)]
async fn options() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn exempt_quiet_and_custom_over_limit() {
    let clock = clock();
    let app = app!(limiter(&clock), options);
    for _ in 0..3 {
        let probe = test::call_service(
            &app,
            get("/options").insert_header(("x-probe", "1")).to_request(),
        )
        .await;
        assert_eq!(probe.status(), StatusCode::OK);
    }
    let first = test::call_service(&app, get("/options").to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "x-ratelimit-limit"),
        None,
        "send_x_headers = false"
    );
    let denied = test::call_service(&app, get("/options").to_request()).await;
    assert_eq!(denied.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("10"));
    assert_eq!(header(&denied, "x-ratelimit-remaining"), None);
    assert_eq!(test::read_body(denied).await, "wait 10");
}

#[get("/expensive")]
#[ratelimit(limit = 10, per = 60, cost = 4, algorithm = "sliding_log")]
async fn expensive(info: RateLimitInfo) -> String {
    info.remaining().to_string()
}

#[actix_web::test]
async fn costs_spend_more_than_one() {
    let clock = clock();
    let app = app!(limiter(&clock), expensive);
    let body = |res| async { String::from_utf8(test::read_body(res).await.to_vec()).unwrap() };
    assert_eq!(
        body(test::call_service(&app, get("/expensive").to_request()).await).await,
        "6"
    );
    assert_eq!(
        body(test::call_service(&app, get("/expensive").to_request()).await).await,
        "2"
    );
    let denied = test::call_service(&app, get("/expensive").to_request()).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("60"));
}

#[get("/no-config")]
#[ratelimit(limit = 2, per = 86400, scope = "global")]
async fn no_config() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn works_without_any_configuration() {
    // No limiter in the app: the process-wide default (system clock, memory store) applies.
    let app = test::init_service(App::new().service(no_config)).await;
    let first = test::call_service(&app, get("/no-config").to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-ratelimit-limit").as_deref(), Some("2"));
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(status(&app, get("/no-config")).await);
    }
    // Two per day: unless this ran across midnight UTC, the third request is refused.
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn a_flood_of_distinct_clients_stays_under_the_key_cap() {
    let clock = clock();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .max_keys(640)
        .build()
        .unwrap();
    let app = app!(limiter, per_ip);
    for i in 0..5_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let req = TestRequest::get()
            .uri("/per-ip")
            .peer_addr(SocketAddr::new(ip.into(), 1));
        assert_eq!(status(&app, req).await, StatusCode::OK);
    }
    let stats = limiter.memory_store().stats();
    assert!(stats.keys <= 640, "{stats:?}");
    assert_eq!(stats.evictions, 5_000 - stats.keys as u64);
}
