//! Waiting instead of refusing (`max_wait`), on memory and on Redis: a burst is served in
//! order at the rate, within `max_wait`, never beyond the quota; what does not fit is refused
//! at once. And the engine outside handlers: `check_key` and `until_ready`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::test::{self, TestRequest};
use actix_web::{get, web, App, Responder};
use futures_util::future::join_all;
use ratelimit_runtime::{ratelimit, Quota, RateLimitInfo, RateLimiter};
use support::RedisServer;

/// 10 per second, one at a time (an interval of 100 ms); a turn up to 500 ms away is waited for.
#[get("/queued")]
#[ratelimit(limit = 10, per = 1, algorithm = "gcra", burst = 1, max_wait = "500ms")]
async fn queued(info: RateLimitInfo) -> impl Responder {
    web::Json(serde_json::json!({"waited_ms": info.waited().as_millis() as u64}))
}

/// The same rate and wait with a token bucket of one token, and with a leaky bucket.
#[get("/bucket")]
#[ratelimit(
    limit = 10,
    per = 1,
    algorithm = "token_bucket",
    burst = 1,
    max_wait = "500ms"
)]
async fn bucket(info: RateLimitInfo) -> impl Responder {
    web::Json(serde_json::json!({"waited_ms": info.waited().as_millis() as u64}))
}

#[get("/leaky")]
#[ratelimit(limit = 10, per = 1, algorithm = "leaky_bucket", max_wait = "500ms")]
async fn leaky(info: RateLimitInfo) -> impl Responder {
    web::Json(serde_json::json!({"waited_ms": info.waited().as_millis() as u64}))
}

/// Beside a window, no turn is reserved: a turn in the next window would be counted in this.
#[get("/with-window")]
#[ratelimit(limit = 10, per = 1, algorithm = "gcra", burst = 1, max_wait = "500ms")]
#[ratelimit(limit = 100, per = 60, scope = "global")]
async fn with_window() -> &'static str {
    "ok"
}

const INTERVAL: Duration = Duration::from_millis(100);

async fn burst_is_served_in_order(limiter: RateLimiter) {
    for path in ["/queued", "/bucket", "/leaky"] {
        burst_on(&limiter, path).await;
    }
}

async fn burst_on(limiter: &RateLimiter, path: &str) {
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(queued)
            .service(bucket)
            .service(leaky),
    )
    .await;
    let start = Instant::now();
    let requests = (0..10).map(|i| {
        let req = TestRequest::get()
            .uri(path)
            .peer_addr(SocketAddr::from(([192, 0, 2, 33], 1_000 + i)))
            .to_request();
        let app = &app;
        async move {
            let res = test::call_service(app, req).await;
            let status = res.status().as_u16();
            let waited = res
                .headers()
                .get("x-ratelimit-waited-ms")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (status, waited, start.elapsed())
        }
    });
    // Sent one after another without waiting: each reserves its turn in the order it came.
    let answers = join_all(requests).await;
    let served: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    // The first at once, then one every 100 ms up to 500 ms: six served, four refused.
    assert_eq!(served.len(), 6, "{path}: {answers:?}");
    assert_eq!(refused.len(), 4, "{path}: {answers:?}");
    for (i, (_, waited, done)) in served.iter().enumerate() {
        let expected = INTERVAL * i as u32;
        let waited = Duration::from_millis(waited.unwrap_or(0));
        // Reserved turns: one interval apart (the decision's own time aside), in order.
        assert!(
            waited + Duration::from_millis(30) >= expected && waited <= expected,
            "{path}: request {i} waited {waited:?}, its turn was {expected:?} away"
        );
        assert!(*done >= waited, "served only after its wait");
    }
    // The ones that did not fit were refused at once, not after waiting.
    for (_, _, done) in &refused {
        assert!(*done < Duration::from_millis(100), "refused after {done:?}");
    }
}

#[actix_web::test]
async fn a_burst_waits_its_turns_in_memory() {
    burst_is_served_in_order(RateLimiter::builder().build().unwrap()).await;
}

#[actix_web::test]
async fn a_burst_waits_its_turns_on_redis() {
    let server = RedisServer::start();
    let limiter = RateLimiter::builder().redis(server.url()).build().unwrap();
    // Connected before the timed burst.
    let _ = limiter
        .check_key(&Quota::from_parts(1, 1).unwrap(), "warm-up", 1)
        .await;
    burst_is_served_in_order(limiter).await;
}

#[actix_web::test]
async fn check_key_and_until_ready_outside_handlers() {
    let limiter = RateLimiter::builder().build().unwrap();
    let calls = Quota::from_parts(5, 1).unwrap();
    let mut allowed = 0;
    for _ in 0..7 {
        if limiter
            .check_key(&calls, "partner-api", 1)
            .await
            .is_allowed()
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "the quota holds outside handlers too");
    let refused = limiter.check_key(&calls, "partner-api", 1).await;
    assert!(!refused.is_allowed());
    assert!(refused.retry_after() > Duration::ZERO);
    assert!(refused.retry_after() <= Duration::from_secs(1));
    // Another key has a budget of its own.
    assert!(limiter.check_key(&calls, "other-api", 1).await.is_allowed());

    // until_ready waits for the next turn rather than failing.
    let start = Instant::now();
    let ready = limiter.until_ready(&calls, "partner-api", 1).await.unwrap();
    assert!(ready.is_allowed());
    assert!(start.elapsed() <= Duration::from_millis(1_100));
    // A cost the limit can never hold fails at once.
    let err = limiter
        .until_ready(&calls, "partner-api", 6)
        .await
        .unwrap_err();
    assert_eq!((err.cost, err.capacity), (6, 5));
    // Counted like requests, under the quota's name.
    let text = limiter.metrics();
    assert!(
        text.contains(
            "ratelimit_decisions_total{rule=\"quota:5/1s\",outcome=\"allowed\",store=\"memory\"} 7"
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn no_turn_is_reserved_beside_a_window() {
    let limiter = RateLimiter::builder().build().unwrap();
    let app = test::init_service(App::new().app_data(limiter).service(with_window)).await;
    let get = || {
        TestRequest::get()
            .uri("/with-window")
            .peer_addr(SocketAddr::from(([192, 0, 2, 44], 1_000)))
            .to_request()
    };
    let start = Instant::now();
    assert_eq!(test::call_service(&app, get()).await.status(), 200);
    // Its turn would come within 500 ms, but a window is stacked: refused at once.
    let second = test::call_service(&app, get()).await;
    assert_eq!(second.status(), 429);
    assert!(start.elapsed() < Duration::from_millis(90));
}
