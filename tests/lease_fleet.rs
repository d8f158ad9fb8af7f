//! Leases end to end: two example-server processes with `RATELIMIT_LEASES=1` on one Redis
//! share `/feed`'s 1,000 per minute (fixed window, one key for every client). 3,000 requests
//! at once, split over both: at most 1,000 pass, nearly all of them, with few Redis calls; and
//! the same with one process killed (SIGKILL) between two waves of requests, which strands at
//! most the one lease it held. (Killed while serving, it would also lose the requests it had
//! admitted and not yet answered: those units were spent, their answers never arrive.) A small
//! budget leases too: `/rate-limited`'s 300 per 30 s, 600 requests one after another over both
//! processes, take a few dozen Redis calls; and a lease nobody spends goes back when its
//! lifetime is over, without another request.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::{ExampleServer, RedisServer};

const LIMIT: usize = 1_000;

fn leasing_member(redis: &RedisServer) -> ExampleServer {
    let url = redis.url();
    ExampleServer::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_LEASES", "1"),
    ])
}

/// Waits, if need be, until Redis's window of `period` seconds has at least 12 s left: each
/// test (a few seconds) stays in one window.
async fn away_from_a_window_end(redis: &RedisServer, period: u64) {
    let second = redis.time_secs() % period;
    if second + 12 >= period {
        tokio::time::sleep(Duration::from_secs(period + 1 - second)).await;
    }
}

/// The units a process holds in leases now, from its `/metrics`: those leased, less those
/// spent on requests (one unit each), handed back and dropped.
fn units_held(server: &ExampleServer) -> f64 {
    server.metric("ratelimit_leased_units_total")
        - server.metric("ratelimit_lease_decisions_total")
        - server.metric("ratelimit_lease_returned_units_total")
        - server.metric("ratelimit_lease_dropped_units_total")
}

/// What 3,000 requests came to.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    denied: usize,
    /// Refused connections: the process was gone before the request.
    refused: usize,
    /// Requests cut off in flight: the process died while serving them.
    cut: usize,
}

/// `count` requests at once on `/feed`, alternating between the two servers.
async fn run(ports: [u16; 2], count: usize) -> Tally {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(256))
        .timeout(Duration::from_secs(20))
        .finish();
    let requests = (0..count).map(|i| {
        let request = client
            .get(format!("http://127.0.0.1:{}/feed", ports[i % 2]))
            .send();
        async move {
            // The body is read, so that the connection goes back to the pool.
            match request.await {
                Ok(mut response) => response
                    .body()
                    .await
                    .map(|_| response.status().as_u16())
                    .map_err(|_| None),
                Err(awc::error::SendRequestError::Connect(_)) => Err(Some("refused")),
                Err(_) => Err(None),
            }
        }
    });
    let mut tally = Tally::default();
    for result in join_all(requests).await {
        match result {
            Ok(200) => tally.ok += 1,
            Ok(429) => tally.denied += 1,
            Ok(status) => panic!("unexpected status {status}"),
            Err(Some(_)) => tally.refused += 1,
            Err(None) => tally.cut += 1,
        }
    }
    tally
}

impl Tally {
    fn and(self, other: Tally) -> Tally {
        Tally {
            ok: self.ok + other.ok,
            denied: self.denied + other.denied,
            refused: self.refused + other.refused,
            cut: self.cut + other.cut,
        }
    }
}

#[actix_web::test]
async fn two_leasing_processes_share_one_budget() {
    let redis = RedisServer::start();
    let servers = [leasing_member(&redis), leasing_member(&redis)];
    away_from_a_window_end(&redis, 60).await;
    let calls = redis.script_calls();
    let tally = run([servers[0].port, servers[1].port], 3 * LIMIT).await;
    let calls = redis.script_calls() - calls;
    eprintln!("{tally:?}, {calls} Redis script calls");
    assert!(tally.ok <= LIMIT, "{tally:?}");
    // Each process may keep the last unit of its lease (spent only through Redis).
    assert!(tally.ok >= LIMIT - 2, "{tally:?}");
    assert_eq!(tally.ok + tally.denied, 3 * LIMIT, "{tally:?}");
    // Without leases every allowed request is a script call (or a share of a batched one).
    assert!(
        calls < 400,
        "{calls} Redis script calls for {} allowed requests",
        tally.ok
    );
}

#[actix_web::test]
async fn a_killed_process_strands_at_most_its_lease() {
    let redis = RedisServer::start();
    let mut servers = [leasing_member(&redis), leasing_member(&redis)];
    let ports = [servers[0].port, servers[1].port];
    away_from_a_window_end(&redis, 60).await;
    // 900 requests, then the first process is killed (SIGKILL, holding its lease), then 2,100
    // more: those sent to the dead process are refused, the other process takes the rest.
    let before = run(ports, 900).await;
    assert_eq!(before.ok, 900, "{before:?}");
    // What it holds just before it dies (a lease ending in between only lowers the loss).
    let held = units_held(&servers[0]) as usize;
    servers[0].kill();
    let tally = before.and(run(ports, 2 * LIMIT + 100).await);
    eprintln!("{tally:?}, {held} units held by the killed process");
    assert_eq!(tally.refused, LIMIT + 50, "{tally:?}");
    assert!(tally.ok <= LIMIT, "{tally:?}");
    // Lost: the lease the dead process held, and the last unit the live one keeps.
    assert!(
        tally.ok + held + 1 >= LIMIT,
        "{tally:?}: more than the {held} units of the killed process's lease stranded"
    );
}

#[actix_web::test]
async fn a_small_budget_spent_one_request_at_a_time_takes_few_calls() {
    let redis = RedisServer::start();
    let servers = [leasing_member(&redis), leasing_member(&redis)];
    away_from_a_window_end(&redis, 30).await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let calls = redis.script_calls();
    let started = std::time::Instant::now();
    let (mut ok, mut denied) = (0, 0);
    // One after another, alternating: each process sees half, at a few hundred a second.
    for i in 0..600 {
        let mut response = client
            .get(servers[i % 2].url("/rate-limited"))
            .send()
            .await
            .unwrap();
        response.body().await.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            429 => denied += 1,
            status => panic!("unexpected status {status}"),
        }
    }
    let calls = redis.script_calls() - calls;
    eprintln!(
        "{ok} allowed, {denied} denied, {calls} Redis script calls in {:?}",
        started.elapsed()
    );
    for server in &servers {
        eprintln!(
            "lease calls {}, leased {}, returned {}, local {}, blocked hits {}",
            server.metric("ratelimit_lease_calls_total"),
            server.metric("ratelimit_leased_units_total"),
            server.metric("ratelimit_lease_returned_units_total"),
            server.metric("ratelimit_lease_decisions_total"),
            server.metric("ratelimit_blocked_cache_hits_total"),
        );
    }
    assert!(ok <= 300, "{ok} passed a limit of 300");
    assert!(ok >= 285, "only {ok} of 300 passed");
    assert_eq!(ok + denied, 600);
    // Without leases, each of the 300 allowed requests is a call; with a lease capped at 1/32
    // of what is left, about 140.
    assert!(calls <= 60, "{calls} Redis script calls");
}

#[actix_web::test]
async fn a_lease_nobody_spends_goes_back_when_its_lifetime_ends() {
    let redis = RedisServer::start();
    let server = leasing_member(&redis);
    away_from_a_window_end(&redis, 60).await;
    // A busy burst on `/feed` leaves the process holding a lease; then the key goes quiet.
    let tally = run([server.port, server.port], 400).await;
    assert_eq!(tally.ok, 400, "{tally:?}");
    // The lease ends 100 ms after it was taken and goes back without another request: what
    // the process holds drops to nothing, and Redis has all but the 400 spent units left.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while units_held(&server) > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} units still held after 5 s",
            units_held(&server)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.metric("ratelimit_lease_returned_units_total") > 0.0);
    // The next request is decided on Redis (nothing held): 401 spent, every other unit there.
    let response = awc::Client::default()
        .get(server.url("/feed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("x-ratelimit-remaining").unwrap(),
        "599",
        "every unspent unit went back to Redis"
    );
}
