//! The findings of the independent review, reproduced from the outside on the example server:
//! a reserved turn on Redis admits what memory admits, and a forged, non-ASCII prefix of a
//! forwarding header neither changes the client nor spends the proxy's budget.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use actix_web::test::{self as actix_test, TestRequest};
use actix_web::{get, App, HttpResponse};
use ratelimit_runtime::store::RedisOptions;
use ratelimit_runtime::{ratelimit, RateLimiter};
use support::{ExampleServer, RedisServer};

/// Sends one HTTP/1.0 request with raw header bytes; the status code.
fn status(server: &ExampleServer, path: &str, headers: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n").into_bytes();
    request.extend_from_slice(headers);
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let line = String::from_utf8_lossy(&reply[..reply.len().min(12)]).into_owned();
    line.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {line:?}"))
}

/// `n` requests to `path` at once; how many were answered 200.
fn spike(server: &ExampleServer, path: &str, n: usize) -> usize {
    std::thread::scope(|scope| {
        let requests: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| status(server, path, b"")))
            .collect();
        requests
            .into_iter()
            .map(|r| r.join().expect("a request"))
            .filter(|&code| code == 200)
            .count()
    })
}

/// `/queued` is GCRA 5 per second with `max_wait = "2s"`: spikes of 15 at 0 s and 1.2 s.
/// The first spike's requests are still waiting for their turns when the second arrives.
fn two_spikes(server: &ExampleServer) -> usize {
    std::thread::scope(|scope| {
        let first = scope.spawn(|| spike(server, "/queued", 15));
        std::thread::sleep(Duration::from_millis(1_200));
        let second = spike(server, "/queued", 15);
        first.join().expect("the first spike") + second
    })
}

#[test]
fn queued_turns_on_redis_admit_what_memory_admits() {
    let redis = RedisServer::start();
    let on_redis = ExampleServer::start_with(&[("REDIS_URL", &redis.url())]);
    let in_memory = ExampleServer::start();
    let (memory, redis) = std::thread::scope(|scope| {
        let memory = scope.spawn(|| two_spikes(&in_memory));
        let redis = scope.spawn(|| two_spikes(&on_redis));
        (memory.join().unwrap(), redis.join().unwrap())
    });
    // 5 at once, 10 turns within 2 s, then 6 turns the second spike can still wait for.
    assert!(
        (20..=22).contains(&memory),
        "memory admitted {memory}, not 21"
    );
    assert!(
        redis.abs_diff(memory) <= 1,
        "Redis admitted {redis} where memory admitted {memory}"
    );
}

#[test]
fn a_forged_prefix_of_the_forwarding_header_changes_nothing() {
    // The example server trusts the loopback proxy from the environment.
    let server = ExampleServer::start_with(&[("RATELIMIT_TRUSTED_PROXIES", "127.0.0.1/32")]);
    let client = b"X-Forwarded-For: 198.51.100.7\r\n";
    // `/search` allows 10 per 10 s per client: this client spends them.
    for i in 0..10 {
        assert_eq!(status(&server, "/search", client), 200, "request {i}");
    }
    assert_eq!(status(&server, "/search", client), 429);
    // What an appending proxy forwards when the client wrote a non-ASCII entry of its own:
    // still that client, refused, in one line or two.
    let forged: [&[u8]; 4] = [
        b"X-Forwarded-For: \xff, 198.51.100.7\r\n",
        b"X-Forwarded-For: \xc3\x28garbage\xfe\xfe, 1.1.1.1, 198.51.100.7\r\n",
        b"X-Forwarded-For: \xff\xff\r\nX-Forwarded-For: 198.51.100.7\r\n",
        b"X-Forwarded-For: 6.6.6.6 \x80, 198.51.100.7\r\n",
    ];
    for headers in forged {
        for _ in 0..3 {
            assert_eq!(
                status(&server, "/search", headers),
                429,
                "{:?} escaped the spent budget",
                String::from_utf8_lossy(headers)
            );
        }
    }
    // And none of it was charged to the proxy itself: its own 10 are whole.
    for i in 0..10 {
        assert_eq!(status(&server, "/search", b""), 200, "proxy request {i}");
    }
    // A client behind a forged prefix of its own is itself, with a budget of its own.
    let other = b"X-Forwarded-For: \xff, 203.0.113.5\r\n";
    assert_eq!(status(&server, "/search", other), 200);
}

#[test]
fn key_names_are_keyed_by_the_fleet_secret_from_the_environment() {
    let redis = RedisServer::start();
    let url = redis.url();
    let with_secret = |secret| {
        ExampleServer::start_with(&[("REDIS_URL", &url), ("RATELIMIT_KEY_SECRET", secret)])
    };
    let (a, b, stranger) = (
        with_secret("fleet secret"),
        with_secret("fleet secret"),
        with_secret("another secret"),
    );
    // `/search`: 10 per 10 s per address, spent across the two processes that share a secret.
    let admitted = (0..12)
        .filter(|i| status(if i % 2 == 0 { &a } else { &b }, "/search", b"") == 200)
        .count();
    assert_eq!(admitted, 10);
    // A process with another secret names the same client's key differently: its own budget.
    assert_eq!(status(&stranger, "/search", b""), 200);
    let keys = redis.cli(&["--scan", "--pattern", "ratelimit:{*}:*"]);
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        let name = key.rsplit(':').next().unwrap();
        assert_eq!(name.len(), 32, "{key} is not named by 128 bits");
    }
}

#[get("/one-at-a-time")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn one_at_a_time() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// A request dropped while its slot take is in flight on Redis (a client gone, a timeout
/// around the service) gives the slot back: connecting and aborting cannot keep a fleet's
/// concurrency limit full for a whole lease each.
#[actix_web::test]
async fn a_slot_take_dropped_in_flight_gives_the_slot_back() {
    use actix_web::dev::Service;

    let redis = RedisServer::start();
    let limiter = RateLimiter::builder()
        .redis(redis.url())
        .redis_options(RedisOptions {
            timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            ..RedisOptions::default()
        })
        .build()
        .unwrap();
    let app = actix_test::init_service(App::new().app_data(limiter).service(one_at_a_time)).await;
    let get = || {
        TestRequest::get()
            .uri("/one-at-a-time")
            .peer_addr("203.0.113.7:4000".parse().unwrap())
            .to_request()
    };
    // Connected, and the slot free again.
    assert_eq!(actix_test::call_service(&app, get()).await.status(), 200);
    // Redis holds every command for a while: the take is sent, and its request dropped.
    redis.cli(&["CLIENT", "PAUSE", "700", "ALL"]);
    let dropped = tokio::time::timeout(Duration::from_millis(200), app.call(get())).await;
    assert!(dropped.is_err(), "the request was still waiting for Redis");
    // Once Redis answers again, the take lands and the give-back after it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let slots = loop {
        let keys = redis.cli(&["--scan", "--pattern", "ratelimit:*:slots"]);
        let held: u32 = keys
            .lines()
            .map(|key| redis.cli(&["ZCARD", key]).trim().parse::<u32>().unwrap())
            .sum();
        if held == 0 || std::time::Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(slots, 0, "the dropped take kept its slot");
    assert_eq!(actix_test::call_service(&app, get()).await.status(), 200);
}

/// A header value is what the client says, not who it is: the example server checks API keys
/// before they get a budget, so made-up keys share their address's free quota.
#[test]
fn made_up_api_keys_share_one_budget() {
    let server = ExampleServer::start();
    for i in 0..100 {
        let key = format!("X-API-Key: ent_made_up_{i}\r\n");
        assert_eq!(status(&server, "/tiered", key.as_bytes()), 200, "key {i}");
    }
    // The address's free 100 per hour are spent, whatever key comes next.
    assert_eq!(
        status(&server, "/tiered", b"X-API-Key: ent_made_up_100\r\n"),
        429
    );
    // An issued key has its own budget.
    assert_eq!(status(&server, "/tiered", b"X-API-Key: ent_demo\r\n"), 200);
}

/// `RATELIMIT_SHADOW=1`: every limit a dry run, from the environment, without a rebuild.
#[test]
fn the_kill_switch_makes_every_limit_a_dry_run() {
    let server = ExampleServer::start_with(&[("RATELIMIT_SHADOW", "1")]);
    // `/search` refuses past 10 per 10 s; a dry run refuses nothing.
    for i in 0..15 {
        assert_eq!(status(&server, "/search", b""), 200, "request {i}");
    }
    let mut metrics = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    metrics
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    metrics.read_to_string(&mut text).unwrap();
    let series = r#"ratelimit_decisions_total{rule="server::search",outcome="shadow_denied",store="memory"} "#;
    let would_be = text.lines().find_map(|l| l.strip_prefix(series));
    assert_eq!(would_be.map(str::trim), Some("5"), "{text}");
}

/// A trusted proxy that is no address stops the example server with the reason.
#[test]
fn an_invalid_trusted_proxy_is_a_clear_error() {
    let output = std::process::Command::new(support::example_binary("server"))
        .env("BIND", "127.0.0.1:0")
        .env("RATELIMIT_TRUSTED_PROXIES", "10.0.0.0/8, ten")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`ten` is not an IP address"), "{stderr}");
}
