//! `methods` and `per_method`: a limit that applies to some methods of a handler only, and
//! methods with budgets of their own; on memory and on Redis, and through the example server's
//! `/items`.

mod support;

use std::net::SocketAddr;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{route, App, HttpResponse};
use ratelimit_runtime::store::{RedisOptions, TimeSource};
use ratelimit_runtime::{ratelimit, ManualClock, RateLimiter};
use support::{statuses, ExampleServer, RedisServer};

const T0: u64 = 1_800_000_000;

#[route("/items", method = "GET", method = "POST", method = "PUT")]
#[ratelimit(limit = 3, per = 60, methods = ["POST", "put"])]
async fn items() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[route("/each", method = "GET", method = "POST")]
#[ratelimit(limit = 2, per = 60, methods = ["GET", "POST"], per_method = true)]
async fn each() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn request(method: Method, path: &str) -> actix_http::Request {
    TestRequest::default()
        .method(method)
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 9], 40_000)))
        .to_request()
}

/// Both handlers under `limiter`: POST and PUT share 3, GET is never counted; GET and POST
/// of `/each` have 2 each.
async fn exercise(limiter: RateLimiter) {
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(items)
            .service(each),
    )
    .await;
    assert_eq!(
        statuses(&app, 10, || request(Method::GET, "/items")).await,
        [200; 10]
    );
    assert_eq!(
        statuses(&app, 2, || request(Method::POST, "/items")).await,
        [200, 200],
        "POST counts"
    );
    assert_eq!(
        statuses(&app, 2, || request(Method::PUT, "/items")).await,
        [200, 429],
        "PUT shares POST's budget"
    );
    let res = test::call_service(&app, request(Method::GET, "/items")).await;
    assert_eq!(res.status(), StatusCode::OK, "GET is never refused");
    assert!(
        res.headers().get("x-ratelimit-limit").is_none(),
        "nor told of a limit that does not apply to it"
    );

    assert_eq!(
        statuses(&app, 3, || request(Method::GET, "/each")).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(&app, 3, || request(Method::POST, "/each")).await,
        [200, 200, 429],
        "POST has its own 2"
    );
    // Each method's budget is a rule of its own, named after it.
    let metrics = limiter.metrics();
    for method in ["GET", "POST"] {
        let series = format!(
            "ratelimit_decisions_total{{rule=\"{}::each#method={method}\",outcome=\"denied\"",
            module_path!()
        );
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
}

#[actix_web::test]
async fn methods_and_per_method_in_memory() {
    let limiter = RateLimiter::builder()
        .ignore_env()
        .clock(ManualClock::at_secs(T0))
        .build()
        .unwrap();
    exercise(limiter).await;
}

#[actix_web::test]
async fn methods_and_per_method_on_redis() {
    let redis = RedisServer::start();
    let limiter = RateLimiter::builder()
        .ignore_env()
        .clock(ManualClock::at_secs(T0))
        .redis(redis.url())
        .redis_options(RedisOptions {
            time: TimeSource::Client,
            timeout: std::time::Duration::from_secs(2),
            ..RedisOptions::default()
        })
        .build()
        .unwrap();
    // Connected before the counts start (the connection is made on first use).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while limiter.redis_stats().unwrap().degraded || redis.script_calls() == 0 {
        assert!(std::time::Instant::now() < deadline, "never on Redis");
        let _ = limiter
            .check_key(
                &ratelimit_runtime::Quota::from_parts(100, 60).unwrap(),
                "warm-up",
                1,
            )
            .await;
    }
    exercise(limiter.clone()).await;
    assert_eq!(limiter.redis_stats().unwrap().degraded_decisions, 0);
}

/// The example server's `/items`: POST 3 a minute per API key, GET unlimited.
#[actix_web::test]
async fn the_example_servers_items_limit_posts_only() {
    let server = ExampleServer::start();
    let client = awc::Client::default();
    let send = |method: Method| {
        client
            .request(method, server.url("/items"))
            .insert_header(("X-API-Key", "items-key"))
            .send()
    };
    let mut posts = Vec::new();
    for _ in 0..5 {
        posts.push(send(Method::POST).await.unwrap().status().as_u16());
        let get = send(Method::GET).await.unwrap();
        assert_eq!(get.status(), StatusCode::OK, "GET is unlimited");
    }
    assert_eq!(posts, [201, 201, 201, 429, 429]);
}
