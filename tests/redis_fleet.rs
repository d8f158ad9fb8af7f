//! The limiter on Redis, end to end: a fleet of processes sharing one budget, and what happens
//! when Redis stops, comes back, or answers errors. Every Redis here is started by the test.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::store::RedisOptions;
use ratelimit_runtime::{ratelimit, FailurePolicy, RateLimiter};
use support::{free_port, ExampleServer, RedisServer};

/// The example server on `redis`, as a process of our own. Five busy processes share two cores
/// here: Redis gets time to answer, so that these tests measure sharing, not the fallback (the
/// fault tests below measure that).
fn fleet_member(redis: &RedisServer, env: &[(&str, &str)]) -> ExampleServer {
    let url = redis.url();
    let mut all = vec![
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
    ];
    all.extend_from_slice(env);
    ExampleServer::start_with(&all)
}

#[actix_web::test]
async fn two_processes_share_one_exact_budget() {
    let redis = RedisServer::start();
    let servers = [fleet_member(&redis, &[]), fleet_member(&redis, &[])];
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
    let calls = redis.script_calls();
    assert_eq!(calls, 3, "one round trip per decision");
    let hammering = statuses(50).await;
    assert!(hammering.iter().all(|&s| s == 429));
    assert_eq!(
        redis.script_calls(),
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

/// `GET /slow?ms=N` of a server, its status.
async fn slow(client: &awc::Client, port: u16, ms: u64) -> u16 {
    let url = format!("http://127.0.0.1:{port}/slow?ms={ms}");
    client
        .get(url)
        .send()
        .await
        .map_or(0, |res| res.status().as_u16())
}

/// Slots held on Redis for the example server's `/slow` (one client, one key).
fn slots_held(redis: &RedisServer) -> u32 {
    let keys = redis.cli(&["--scan", "--pattern", "*:slots"]);
    keys.lines()
        .filter(|k| !k.trim().is_empty())
        .map(|key| {
            redis
                .cli(&["ZCARD", key.trim()])
                .trim()
                .parse::<u32>()
                .unwrap_or(0)
        })
        .sum()
}

#[actix_web::test]
async fn a_concurrency_limit_holds_across_processes_and_outlives_none() {
    let redis = RedisServer::start();
    let lease = [("RATELIMIT_REDIS_LEASE_MS", "1000")];
    let mut servers = vec![fleet_member(&redis, &lease), fleet_member(&redis, &lease)];
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(250))
        .timeout(Duration::from_secs(20))
        .finish();
    // Warm both processes' Redis connections.
    for server in &servers {
        assert_eq!(slow(&client, server.port, 0).await, 200);
    }
    // 200 concurrent slow requests from one client, split over both processes: `/slow`
    // allows two in flight per client address, fleet-wide.
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let requests = (0..200).map(|i| slow(&client, ports[i % 2], 1_500));
    let watch = async {
        let mut most = 0;
        let deadline = Instant::now() + Duration::from_millis(1_200);
        while Instant::now() < deadline {
            most = most.max(slots_held(&redis));
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (statuses, most) = futures_util::join!(join_all(requests), watch);
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, refused), (2, 198), "two in flight for the whole fleet");
    assert_eq!(most, 2, "never more than two leases held");
    // Given back when the responses were sent: free at once, not after the lease.
    assert_eq!(slots_held(&redis), 0);
    assert_eq!(slow(&client, ports[1], 0).await, 200);

    // A process killed mid-request: its leases expire within the lease time (1 s here).
    let in_flight = futures_util::future::join(
        slow(&client, ports[0], 5_000),
        slow(&client, ports[0], 5_000),
    );
    let kill = async {
        let deadline = Instant::now() + Duration::from_secs(3);
        while slots_held(&redis) < 2 {
            assert!(
                Instant::now() < deadline,
                "the requests never took their slots"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(slow(&client, ports[1], 0).await, 429, "the fleet is full");
        // Past the lease, the running requests still hold their slots: renewed.
        actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(
            slots_held(&redis),
            2,
            "leases renewed while the requests run"
        );
        assert_eq!(slow(&client, ports[1], 0).await, 429);
        servers.remove(0); // killed, by its id
        let killed = Instant::now();
        loop {
            if slow(&client, ports[1], 0).await == 200 {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(4),
                "the dead process's slots never came back"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (_, back_after) = futures_util::join!(in_flight, kill);
    assert!(
        back_after <= Duration::from_millis(1_500),
        "slots back {back_after:?} after the process died; the lease is 1 s"
    );
}
