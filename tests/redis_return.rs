//! How soon a limiter is back on Redis once Redis answers again: docs/redis.md says about a
//! second. Measured on a real server, stopped and started again under steady traffic.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::test::{self, TestRequest};
use actix_web::{get, App};
use ratelimit_runtime::{ratelimit, RateLimiter};
use support::RedisServer;

#[get("/steady")]
#[ratelimit(limit = 100_000, per = 60)]
async fn steady() -> &'static str {
    "ok"
}

fn get() -> actix_http::Request {
    TestRequest::get()
        .uri("/steady")
        .peer_addr(SocketAddr::from(([203, 0, 113, 90], 40_000)))
        .to_request()
}

#[actix_web::test]
async fn back_on_redis_within_about_a_second_of_its_return() {
    let mut redis = RedisServer::start();
    let limiter = RateLimiter::builder()
        .ignore_env()
        .redis(redis.url())
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(limiter.clone()).service(steady)).await;
    let degraded = || limiter.redis_stats().unwrap().degraded;
    // On Redis first.
    assert_eq!(test::call_service(&app, get()).await.status(), 200);
    assert!(!degraded() && limiter.redis_stats().unwrap().errors == 0);
    // Then down: a request every 20 ms, answered by the fallback.
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !degraded() {
        assert!(Instant::now() < deadline, "the outage was never noticed");
        assert_eq!(test::call_service(&app, get()).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..50 {
        assert_eq!(test::call_service(&app, get()).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back: how long until decisions are Redis's again.
    redis.restart();
    let back = Instant::now();
    while degraded() {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "never back on Redis"
        );
        assert_eq!(test::call_service(&app, get()).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = back.elapsed();
    eprintln!("back on Redis {took:?} after it answered again");
    assert!(
        took <= Duration::from_millis(1_500),
        "back on Redis only after {took:?}"
    );
}
