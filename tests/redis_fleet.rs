//! The limiter on Redis, end to end: a fleet of processes sharing one budget, and what happens
//! when Redis stops, comes back, or answers errors. Every Redis here is started by the test.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::store::RedisOptions;
use ratelimit_runtime::{ratelimit, FailurePolicy, RateLimiter};
use support::{free_port, RedisServer};

/// An example server process of our own, killed (by its id) when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn start(redis_url: &str) -> ServerProcess {
        // The example binary sits beside this test's: target/debug/examples/server.
        let exe = std::env::current_exe().unwrap();
        let server = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join("server");
        let port = free_port();
        let child = Command::new(server)
            .env("REDIS_URL", redis_url)
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            // Five busy processes share two cores here: give Redis time to answer, so that this
            // test measures sharing, not the fallback (the fault tests below measure that).
            .env("RATELIMIT_REDIS_TIMEOUT_MS", "2000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the example server is built: `cargo build --examples` (scripts/test.sh does it)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        ServerProcess { child, port }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn two_processes_share_one_exact_budget() {
    let redis = RedisServer::start();
    let servers = [
        ServerProcess::start(&redis.url()),
        ServerProcess::start(&redis.url()),
    ];
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(200))
        .finish();
    let key = format!("fleet-{}", std::process::id());
    // /data allows 10 per 10 s per API key (sliding log): 400 requests split over both.
    let requests = (0..400).map(|i| {
        let url = format!("http://127.0.0.1:{}/data", servers[i % 2].port);
        let request = client
            .get(url)
            .insert_header(("X-API-Key", key.as_str()))
            .send();
        async move { request.await.map(|r| r.status().as_u16()) }
    });
    let statuses: Vec<u16> = join_all(requests)
        .await
        .into_iter()
        .map(|s| s.expect("answered"))
        .collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let denied = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(
        (ok, denied),
        (10, 390),
        "exactly the limit passes across the fleet"
    );
}

#[get("/work")]
#[ratelimit(limit = 1000, per = 60, scope = "global")]
async fn work() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/tight")]
#[ratelimit(limit = 2, per = 60)]
async fn tight() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn limiter(redis: &RedisServer, policy: FailurePolicy) -> RateLimiter {
    let options = RedisOptions {
        timeout: Duration::from_millis(50),
        ..RedisOptions::default()
    };
    let builder = RateLimiter::builder()
        .redis(redis.url())
        .redis_options(options);
    builder.on_redis_failure(policy).build().unwrap()
}

fn get(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([192, 0, 2, 7], 4_000)))
}

#[actix_web::test]
async fn redis_stopped_under_load_falls_back_and_returns_by_itself() {
    let mut redis = RedisServer::start();
    let limiter = limiter(&redis, FailurePolicy::Fallback);
    let app = test::init_service(App::new().app_data(limiter.clone()).service(work)).await;
    for _ in 0..20 {
        assert_eq!(
            test::call_service(&app, get("/work").to_request())
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(limiter.redis_stats().unwrap().errors, 0);
    assert!(
        !redis.cli(&["DBSIZE"]).trim().starts_with('0'),
        "the state is on Redis"
    );

    redis.stop();
    for _ in 0..50 {
        let started = Instant::now();
        let res = test::call_service(&app, get("/work").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "no 5xx from the fallback");
        assert!(
            res.headers().contains_key("x-ratelimit-remaining"),
            "limited in memory meanwhile"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a dead Redis never hangs a request"
        );
    }
    let stats = limiter.redis_stats().unwrap();
    assert!(
        stats.degraded && stats.errors >= 1 && stats.degraded_decisions >= 50,
        "{stats:?}"
    );

    // Back on the same port, empty (the script must be loaded again): back on Redis by itself.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.redis_stats().unwrap().degraded {
        assert!(
            Instant::now() < deadline,
            "still degraded 5 s after Redis came back"
        );
        let res = test::call_service(&app, get("/work").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !redis.cli(&["DBSIZE"]).trim().starts_with('0'),
        "deciding on Redis again"
    );
}

/// Replaces every limiter key with a list: the script's GET then fails with WRONGTYPE.
fn corrupt_keys(redis: &RedisServer) {
    for key in redis.cli(&["--scan", "--pattern", "ratelimit:*"]).lines() {
        redis.cli(&["DEL", key]);
        redis.cli(&["RPUSH", key, "not-a-state"]);
    }
}

#[actix_web::test]
async fn an_error_reply_follows_the_policy() {
    for policy in [
        FailurePolicy::Fallback,
        FailurePolicy::FailOpen,
        FailurePolicy::FailClosed,
    ] {
        let redis = RedisServer::start();
        let limiter = limiter(&redis, policy);
        let app = test::init_service(App::new().app_data(limiter.clone()).service(work)).await;
        assert_eq!(
            test::call_service(&app, get("/work").to_request())
                .await
                .status(),
            StatusCode::OK
        );
        corrupt_keys(&redis);
        let res = test::call_service(&app, get("/work").to_request()).await;
        let headers = res.headers().clone();
        match policy {
            FailurePolicy::Fallback => {
                assert_eq!(res.status(), StatusCode::OK, "{policy:?}");
                assert!(
                    headers.contains_key("x-ratelimit-remaining"),
                    "limited in memory"
                );
            }
            FailurePolicy::FailOpen => {
                assert_eq!(res.status(), StatusCode::OK, "{policy:?}");
                assert!(
                    !headers.contains_key("x-ratelimit-remaining"),
                    "unlimited: no limit to show"
                );
            }
            _ => {
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{policy:?}");
                assert_eq!(headers.get("retry-after").unwrap(), "1");
                let body: serde_json::Value = test::read_body_json(res).await;
                assert_eq!(body["error"], "rate_limiter_unavailable");
            }
        }
        let stats = limiter.redis_stats().unwrap();
        assert_eq!(stats.errors, 1, "{policy:?}");
        assert!(
            !stats.degraded,
            "{policy:?}: one bad key does not take Redis away from the rest"
        );
    }
}

/// Script calls Redis has served so far.
fn script_calls(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[actix_web::test]
async fn a_spent_budget_is_answered_without_redis() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, FailurePolicy::Fallback);
    let app = test::init_service(App::new().app_data(limiter.clone()).service(tight)).await;
    let statuses = |n| {
        let app = &app;
        async move {
            let mut all = Vec::new();
            for _ in 0..n {
                all.push(
                    test::call_service(app, get("/tight").to_request())
                        .await
                        .status()
                        .as_u16(),
                );
            }
            all
        }
    };
    assert_eq!(statuses(3).await, [200, 200, 429]);
    let calls = script_calls(&redis);
    assert_eq!(calls, 3, "one round trip per decision");
    let hammering = statuses(50).await;
    assert!(hammering.iter().all(|&s| s == 429));
    assert_eq!(
        script_calls(&redis),
        calls,
        "blocked keys cost Redis nothing"
    );
    assert_eq!(limiter.redis_stats().unwrap().blocked_cache_hits, 50);
}

#[actix_web::test]
async fn an_unreachable_redis_at_start_never_holds_a_request() {
    // Nobody listens on this port: connecting fails, in the background.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let options = RedisOptions {
        timeout: Duration::from_millis(50),
        ..RedisOptions::default()
    };
    let limiter = RateLimiter::builder()
        .redis(url)
        .redis_options(options)
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(limiter.clone()).service(tight)).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let res = test::call_service(&app, get("/tight").to_request()).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "waited {:?}",
            started.elapsed()
        );
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "limited in memory meanwhile, never unlimited"
    );
    let stats = limiter.redis_stats().unwrap();
    assert!(stats.degraded && stats.errors >= 1, "{stats:?}");
}
