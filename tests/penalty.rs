//! `penalty = "3/10 minutes"`: a client the limit refuses 3 times within 10 minutes is refused
//! every request of the rule for the next 10 minutes, with a `Retry-After` that says so; other
//! clients are untouched, `peek` sees the penalty and `reset` lifts it. On memory and on Redis
//! (where concurrent refusals begin exactly one penalty), on a manual clock. The example
//! server's `POST /login` is tested in `deduct_when.rs`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::{ratelimit, ManualClock, RateLimiter};
use support::RedisServer;

/// Aligned to the minute: the fixed window's refusals say 60 s.
const T0: u64 = 1_800_000_000;

#[get("/guess")]
#[ratelimit(limit = 2, per = 60, penalty = "3/10 minutes")]
async fn guess() -> HttpResponse {
    HttpResponse::Ok().finish()
}

const RULE: &str = concat!(module_path!(), "::guess");

fn from(ip: [u8; 4]) -> actix_http::Request {
    TestRequest::get()
        .uri("/guess")
        .peer_addr(SocketAddr::from((ip, 40_000)))
        .to_request()
}

const ADA: [u8; 4] = [203, 0, 113, 1];
const BOB: [u8; 4] = [203, 0, 113, 2];

/// The status and `Retry-After` (0 when absent) of a response.
fn answer<B>(res: &ServiceResponse<B>) -> (u16, u64) {
    (res.status().as_u16(), support::retry_after(res.headers()))
}

async fn ask<S, B>(app: &S, ip: [u8; 4]) -> (u16, u64)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    answer(&test::call_service(app, from(ip)).await)
}

fn penalties(limiter: &RateLimiter) -> f64 {
    penalties_of(limiter, RULE)
}

fn penalties_of(limiter: &RateLimiter, rule: &str) -> f64 {
    support::series(
        limiter,
        &format!("ratelimit_penalties_total{{rule=\"{rule}\"}}"),
    )
}

/// The whole story on `limiter`, whose clock is `clock`.
async fn penalty_story(limiter: RateLimiter, clock: ManualClock) {
    let app = test::init_service(App::new().app_data(limiter.clone()).service(guess)).await;
    assert_eq!(ask(&app, ADA).await, (200, 0));
    assert_eq!(ask(&app, ADA).await, (200, 0));
    // Two refusals of the limit itself: its window ends within the minute.
    assert_eq!(ask(&app, ADA).await, (429, 60));
    clock.advance(Duration::from_secs(10));
    assert_eq!(ask(&app, ADA).await, (429, 50));
    // The third within 10 minutes begins the penalty: 10 minutes from now.
    assert_eq!(ask(&app, ADA).await, (429, 600));
    assert_eq!(penalties(&limiter), 1.0);
    // Another client is untouched.
    assert_eq!(ask(&app, BOB).await, (200, 0));

    // Past the limit's window, the penalty still refuses, and says until when.
    clock.advance(Duration::from_secs(61));
    assert_eq!(ask(&app, ADA).await, (429, 539));
    let info = limiter.peek(RULE, "203.0.113.1").await.unwrap();
    assert_eq!((info.remaining(), info.retry_after_secs()), (0, 539));
    assert_eq!(penalties(&limiter), 1.0, "a penalty is begun once");

    // Lifted: the client starts again with a whole budget and no strikes.
    limiter.reset(RULE, "203.0.113.1").await.unwrap();
    assert_eq!(
        limiter.peek(RULE, "203.0.113.1").await.unwrap().remaining(),
        2
    );
    assert_eq!(ask(&app, ADA).await, (200, 0));
    assert_eq!(ask(&app, ADA).await, (200, 0));
    assert_eq!(ask(&app, ADA).await.0, 429);
    assert_eq!(ask(&app, ADA).await.0, 429);
    // Strikes spread over more than 10 minutes never add up to a penalty.
    clock.advance(Duration::from_secs(601));
    assert_eq!(ask(&app, ADA).await, (200, 0));
    assert_eq!(ask(&app, ADA).await, (200, 0));
    assert_eq!(ask(&app, ADA).await.0, 429);
    assert_ne!(ask(&app, ADA).await.1, 600);
    assert_eq!(penalties(&limiter), 1.0);

    // Served to its end, it is over: a new window, a whole budget.
    assert_eq!(ask(&app, ADA).await, (429, 600));
    assert_eq!(penalties(&limiter), 2.0);
    clock.advance(Duration::from_secs(599));
    assert_eq!(ask(&app, ADA).await, (429, 1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(ask(&app, ADA).await, (200, 0));
}

#[actix_web::test]
async fn a_client_refused_too_often_serves_a_penalty_in_memory() {
    let clock = ManualClock::at_secs(T0);
    let limiter = RateLimiter::builder()
        .ignore_env()
        .clock(clock.clone())
        .build()
        .unwrap();
    penalty_story(limiter, clock).await;
}

/// On Redis on the limiter's (manual) clock; connected before the story begins.
async fn on_redis(redis: &RedisServer, clock: &ManualClock) -> RateLimiter {
    support::limiter_on_redis(redis, clock, RateLimiter::builder()).await
}

#[actix_web::test]
async fn a_client_refused_too_often_serves_a_penalty_on_redis() {
    let redis = RedisServer::start();
    let clock = ManualClock::at_secs(T0);
    let limiter = on_redis(&redis, &clock).await;
    penalty_story(limiter.clone(), clock).await;
    assert_eq!(limiter.redis_stats().unwrap().degraded_decisions, 0);
}

#[get("/daily")]
#[ratelimit(limit = 2, per = 86400, penalty = "3/10 minutes")]
async fn daily() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// On Redis Cluster: the penalty's keys share the rule's slot, decided with its limit.
#[actix_web::test]
async fn a_client_refused_too_often_serves_a_penalty_on_redis_cluster() {
    let cluster = support::RedisCluster::start();
    let clock = ManualClock::at_secs(T0);
    let limiter = RateLimiter::builder()
        .ignore_env()
        .clock(clock.clone())
        .redis_cluster(cluster.urls())
        .redis_options(ratelimit_runtime::store::RedisOptions {
            time: ratelimit_runtime::store::TimeSource::Client,
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .unwrap();
    let calls = || cluster.nodes.iter().map(|n| n.script_calls()).sum::<u64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while limiter.redis_stats().unwrap().degraded || calls() == 0 {
        assert!(std::time::Instant::now() < deadline, "never on the cluster");
        let warm_up = ratelimit_runtime::Quota::from_parts(100, 60).unwrap();
        let _ = limiter.check_key(&warm_up, "warm-up", 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    penalty_story(limiter.clone(), clock).await;
    assert_eq!(limiter.redis_stats().unwrap().degraded_decisions, 0);
}

/// A limit whose refusal outlasts its penalty (the later of the two is what `Retry-After`
/// says): while the penalty runs, its refusals are answered from the cache of refused keys (no
/// round trip) and count no strikes, so once it ends it takes 3 more refusals to begin the next.
#[actix_web::test]
async fn a_running_penalty_costs_no_round_trip_and_counts_no_strikes() {
    let redis = RedisServer::start();
    let clock = ManualClock::at_secs(T0);
    let limiter = on_redis(&redis, &clock).await;
    let app = test::init_service(App::new().app_data(limiter.clone()).service(daily)).await;
    let daily_from = || {
        TestRequest::get()
            .uri("/daily")
            .peer_addr(SocketAddr::from((ADA, 40_000)))
            .to_request()
    };
    let ask = || async { answer(&test::call_service(&app, daily_from()).await) };
    let begun = || penalties_of(&limiter, concat!(module_path!(), "::daily"));
    // T0 is 8 hours into its day: the day's window ends in 57,600 s.
    assert_eq!([ask().await, ask().await], [(200, 0), (200, 0)]);
    // Strikes 100 s apart: the penalty begins at the third, T0 + 200, until T0 + 800.
    for _ in 0..3 {
        assert_eq!(ask().await.0, 429);
        clock.advance(Duration::from_secs(100));
    }
    assert_eq!(begun(), 1.0);
    let calls = redis.script_calls();
    // Past the first strike's 10 minutes, within the penalty: no strike is counted.
    clock.advance(Duration::from_secs(400));
    for _ in 0..10 {
        assert_eq!(ask().await, (429, 57_600 - 700));
    }
    assert_eq!(redis.script_calls(), calls, "answered from the cache");
    clock.advance(Duration::from_secs(100));
    assert_eq!([ask().await.0, ask().await.0], [429, 429]);
    assert_eq!(begun(), 1.0, "a fresh count after the penalty");
    assert_eq!(ask().await.0, 429);
    assert_eq!(begun(), 2.0);
}

/// 30 requests at once, two processes' worth of limiters on one Redis: 2 pass, 28 are
/// refused, and the refusals begin exactly one penalty, which both limiters then enforce.
#[actix_web::test]
async fn concurrent_refusals_begin_one_penalty_fleet_wide() {
    let redis = RedisServer::start();
    let clock = ManualClock::at_secs(T0);
    let (a, b) = (
        on_redis(&redis, &clock).await,
        on_redis(&redis, &clock).await,
    );
    let app_a = test::init_service(App::new().app_data(a.clone()).service(guess)).await;
    let app_b = test::init_service(App::new().app_data(b.clone()).service(guess)).await;
    let answers = join_all((0..30).map(|i| {
        let (app_a, app_b) = (&app_a, &app_b);
        async move {
            if i % 2 == 0 {
                ask(app_a, ADA).await
            } else {
                ask(app_b, ADA).await
            }
        }
    }))
    .await;
    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(passed, 2, "{answers:?}");
    assert_eq!(
        penalties(&a) + penalties(&b),
        1.0,
        "one penalty however many refusals raced: {answers:?}"
    );
    clock.advance(Duration::from_secs(61));
    for app in [&app_a, &app_b] {
        let (status, retry) = ask(app, ADA).await;
        assert_eq!(status, 429);
        assert!((530..=540).contains(&retry), "the penalty's end: {retry}");
        assert_eq!(ask(app, BOB).await.0, 200);
    }
}
