//! `deduct_when`: only the responses it accepts stay charged. Exact under concurrency: each
//! request is charged before its handler, and a response that does not count gives its units
//! back afterwards. Through the example server's `POST /login` (failed logins count,
//! successful ones never, and a client still guessing past the limit serves a penalty), in
//! memory and across two processes on Redis; and in one process on Redis's own clock for the
//! algorithms whose give-back reads it.

mod support;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::{ratelimit, RateLimiter};
use serde_json::json;
use support::{count, ExampleServer, RedisServer};

/// The client address the logins come from (the servers trust the local proxy).
const ADA: &str = "198.51.100.7";

/// `count` logins from `client` with `password` at once, spread over `servers`; their
/// statuses and `Retry-After` values (0 when absent).
async fn logins_from(
    servers: &[&ExampleServer],
    client: &str,
    password: &str,
    count: usize,
) -> Vec<(u16, u64)> {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let requests = (0..count).map(|i| {
        let request = http
            .post(servers[i % servers.len()].url("/login"))
            .insert_header(("X-Forwarded-For", client))
            .send_json(&json!({"user": "ada", "password": password}));
        async move {
            let res = request.await.expect("answered");
            (res.status().as_u16(), support::retry_after(res.headers()))
        }
    });
    join_all(requests).await
}

/// `count` logins from `ADA` with `password` at once; their statuses.
async fn logins(servers: &[&ExampleServer], password: &str, count: usize) -> Vec<u16> {
    let answers = logins_from(servers, ADA, password, count).await;
    answers.into_iter().map(|(status, _)| status).collect()
}

/// The environment of the example servers: local proxies trusted, so that `X-Forwarded-For`
/// names the client.
const TRUST_LOCAL: (&str, &str) = ("RATELIMIT_TRUSTED_PROXIES", "127.0.0.1/32");

/// Successful logins one after another, then 20 failed ones at once.
async fn successes_then_a_burst_of_failures(servers: &[&ExampleServer]) {
    for _ in 0..10 {
        assert_eq!(logins(servers, "letmein", 1).await, [200]);
    }
    // On Redis the units come back in a round trip after each response: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::fleet_metric(servers, "ratelimit_units_refunded_total") < 10.0 {
        assert!(Instant::now() < deadline, "the successes never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses = logins(servers, "wrong", 20).await;
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (5, 15),
        "exactly the limit of failed logins, none of the successes: {statuses:?}"
    );
    // The 15 refusals began a penalty (3 within 10 minutes do), once for the whole fleet: a
    // correct password is refused too, for 10 minutes rather than the minute of the limit.
    let [(status, retry)] = logins_from(servers, ADA, "letmein", 1).await[..] else {
        unreachable!()
    };
    assert_eq!(status, 429);
    assert!((590..=600).contains(&retry), "Retry-After: {retry}");
    assert_eq!(
        support::fleet_metric(servers, "ratelimit_penalties_total"),
        1.0
    );
    // Another client is unaffected.
    let other = logins_from(servers, "198.51.100.8", "letmein", 1).await;
    assert_eq!(other, [(200, 0)]);
}

#[actix_web::test]
async fn failed_logins_count_and_successful_ones_never_in_memory() {
    let server = ExampleServer::start_with(&[TRUST_LOCAL]);
    successes_then_a_burst_of_failures(&[&server]).await;
    // The 10 successes and the other client's.
    assert_eq!(
        server.metric_where("ratelimit_decisions_total", "outcome=\"refunded\""),
        11.0
    );
}

#[actix_web::test]
async fn failed_logins_count_and_successful_ones_never_across_processes_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_KEY_SECRET", "login-fleet"),
        TRUST_LOCAL,
    ];
    let (a, b) = support::fleet_on(&redis, &env).await;
    successes_then_a_burst_of_failures(&[&a, &b]).await;
}

fn kept(res: &HttpResponse) -> bool {
    res.status() == StatusCode::UNAUTHORIZED
}

#[get("/log")]
#[ratelimit(limit = 3, per = 60, algorithm = "sliding_log", deduct_when = kept)]
async fn log() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/window")]
#[ratelimit(limit = 3, per = 60, deduct_when = kept)]
async fn window() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/gcra")]
#[ratelimit(limit = 3, per = 3600, algorithm = "gcra", deduct_when = kept)]
async fn gcra() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/bucket")]
#[ratelimit(limit = 3, per = 3600, algorithm = "token_bucket", deduct_when = kept)]
async fn bucket() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// On Redis's own clock (the default), the limiter's instant of the charge is moved onto
/// Redis's: every response here is a success, so each of 12 requests gets its unit back before
/// the next, and a limit of 3 never refuses.
#[actix_web::test]
async fn units_come_back_on_redis_time_for_every_algorithm() {
    let redis = RedisServer::start();
    let limiter = RateLimiter::builder()
        .ignore_env()
        .redis(redis.url())
        .redis_options(ratelimit_runtime::store::RedisOptions {
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(log)
            .service(window)
            .service(gcra)
            .service(bucket),
    )
    .await;
    // Connected first (the connection is made on first use, in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.script_calls() == 0 {
        assert!(Instant::now() < deadline, "never on Redis");
        let warm_up = ratelimit_runtime::Quota::from_parts(100, 60).unwrap();
        let _ = limiter.check_key(&warm_up, "warm-up", 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refunded = |limiter: &RateLimiter| {
        let metrics = limiter.metrics();
        metrics
            .lines()
            .filter(|l| l.starts_with("ratelimit_units_refunded_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    for path in ["/log", "/window", "/gcra", "/bucket"] {
        for i in 0..12 {
            let want = refunded(&limiter) + 1;
            let req = TestRequest::get()
                .uri(path)
                .peer_addr("203.0.113.5:4000".parse().unwrap())
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}: request {i}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while refunded(&limiter) < want {
                assert!(
                    Instant::now() < deadline,
                    "{path}: request {i} never came back"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert_eq!(limiter.redis_stats().unwrap().degraded_decisions, 0);
}
