//! A limiter on Redis refuses to be built while the program holds a rule Redis cannot decide
//! exactly, naming it: never a limit that quietly becomes per process.
//!
//! A test binary of its own: the handler below keeps every limiter on Redis in this binary
//! from being built, which is the point.

use std::net::SocketAddr;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, App};
use ratelimit_runtime::algorithm::AlgorithmKind;
use ratelimit_runtime::{ratelimit, ConfigError, Quota, RateLimiter};

/// Two million per 30 days in a token bucket: the bucket's level, scaled by the period in µs,
/// passes 2^53.
#[get("/archive")]
#[ratelimit(limit = 2_000_000, per = "30d", algorithm = "token_bucket")]
async fn archive() -> &'static str {
    "ok"
}

const ARCHIVE: &str = concat!(module_path!(), "::archive");

#[actix_web::test]
async fn building_on_redis_names_the_rule_redis_cannot_decide() {
    let refused = RateLimiter::builder()
        .redis("redis://127.0.0.1:1")
        .build()
        .unwrap_err();
    let ConfigError::UnsupportedLimit(limit) = &refused else {
        panic!("not an unsupported limit: {refused}");
    };
    assert_eq!(limit.rule, ARCHIVE);
    assert_eq!(
        limit.quota,
        Quota::from_parts(2_000_000, 30 * 86_400).unwrap()
    );
    assert_eq!(limit.algorithm, AlgorithmKind::TokenBucket);
    let message = refused.to_string();
    assert!(message.contains(ARCHIVE), "{message}");
    assert!(message.contains("2000000 per 2592000 s"), "{message}");
    assert!(message.contains("2^53"), "says why: {message}");

    // In memory the arithmetic is exact: the same program builds and serves it.
    let limiter = RateLimiter::builder().build().unwrap();
    let app = test::init_service(App::new().app_data(limiter).service(archive)).await;
    let req = TestRequest::get()
        .uri("/archive")
        .peer_addr(SocketAddr::from(([198, 51, 100, 7], 9_000)))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get("x-ratelimit-remaining").unwrap(),
        "1999999"
    );
}
