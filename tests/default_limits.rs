//! The `DefaultLimits` middleware: app-wide limits through the same engine and header hook.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, web, App, HttpRequest, HttpResponse};
use ratelimit_runtime::{ratelimit, DefaultLimits, ManualClock, RateLimiter};

const T0: u64 = 1_800_000_000;

fn get(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([192, 0, 2, 10], 5_000)))
}

#[get("/tight")]
#[ratelimit(limit = 2, per = 60)]
async fn tight() -> &'static str {
    "tight"
}

fn is_health(req: &HttpRequest) -> bool {
    req.path() == "/health"
}

#[actix_web::test]
async fn defaults_apply_to_every_route_and_share_the_header_hook() {
    let clock = ManualClock::at_secs(T0);
    let limiter = RateLimiter::builder().clock(clock.clone()).build().unwrap();
    let defaults = DefaultLimits::new("5/minute;100/day")
        .unwrap()
        .exempt(is_health);
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .wrap(defaults)
            .service(tight)
            .route("/plain", web::get().to(HttpResponse::Ok))
            .route("/health", web::get().to(HttpResponse::Ok)),
    )
    .await;
    let call = |path: &'static str| {
        let app = &app;
        async move { test::call_service(app, get(path).to_request()).await }
    };
    // A plain route shows the default minute limit, the most restrictive of the two.
    let res = call("/plain").await;
    assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "5");
    assert_eq!(res.headers().get("x-ratelimit-remaining").unwrap(), "4");
    // The handler's own 2/minute is more restrictive than the defaults' 3 left.
    let res = call("/tight").await;
    assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "2");
    assert_eq!(res.headers().get("x-ratelimit-remaining").unwrap(), "1");
    assert_eq!(call("/tight").await.status(), StatusCode::OK);
    assert_eq!(call("/tight").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Four requests spent the defaults' 5 per minute down to 1; the handler-denied one was
    // charged to the defaults (decided first), so one more passes anywhere, then none.
    assert_eq!(call("/plain").await.status(), StatusCode::OK);
    let denied = call("/nowhere").await;
    assert_eq!(
        denied.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "denied before routing (no 404)"
    );
    assert!(denied.headers().contains_key("retry-after"));
    assert_eq!(call("/health").await.status(), StatusCode::OK, "exempt");
    clock.advance(Duration::from_secs(60));
    let res = call("/plain").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("x-ratelimit-remaining").unwrap(), "4");
}

#[test]
fn bad_rates_are_reported() {
    let err = DefaultLimits::new("10/minuets").unwrap_err();
    assert!(err.to_string().contains("did you mean `minute`"), "{err}");
}

/// Default limits no limiter would decide keep the app from starting (their middleware fails
/// to start, as actix starts it for each worker): a sliding log above its maximum anywhere,
/// and, once a limiter on Redis exists in the process, a limit Redis cannot decide exactly.
#[actix_web::test]
async fn default_limits_no_store_can_decide_keep_the_app_from_starting() {
    use actix_web::dev::Transform;
    use ratelimit_runtime::algorithm::AlgorithmKind;

    let long_log = DefaultLimits::new("20000/minute")
        .unwrap()
        .algorithm(AlgorithmKind::SlidingLog);
    assert!(long_log.new_transform(test::ok_service()).await.is_err());

    // Nothing connects: the Redis limiter is only built.
    let limiter = RateLimiter::builder()
        .redis("redis://127.0.0.1:1")
        .build()
        .unwrap();
    let huge = DefaultLimits::new("2000000 per 30 days")
        .unwrap()
        .algorithm(AlgorithmKind::TokenBucket)
        .name("archive-defaults");
    assert!(huge.new_transform(test::ok_service()).await.is_err());
    // Refused, not registered: no rule of that name is known.
    assert!(!limiter.rules().iter().any(|r| r == "archive-defaults"));
    // Limits Redis decides exactly start as usual.
    let fast = DefaultLimits::new("50000/second")
        .unwrap()
        .algorithm(AlgorithmKind::Gcra)
        .name("fast-defaults");
    assert!(fast.new_transform(test::ok_service()).await.is_ok());
    assert!(limiter.rules().iter().any(|r| r == "fast-defaults"));
}
