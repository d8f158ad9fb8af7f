//! Leases end to end: two example-server processes with `RATELIMIT_LEASES=1` on one Redis
//! share `/feed`'s 1,000 per minute (fixed window, one key for every client). 3,000 requests
//! at once, split over both: at most 1,000 pass, nearly all of them, with few Redis calls; and
//! the same with one process killed (SIGKILL) between two waves of requests, which strands at
//! most the one lease it held. (Killed while serving, it would also lose the requests it had
//! admitted and not yet answered: those units were spent, their answers never arrive.)

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::{ExampleServer, RedisServer};

const LIMIT: usize = 1_000;
/// The most one process can hold: one lease, at most 1/32 of what was left after a request.
const ONE_LEASE: usize = (LIMIT - 1) / 32;

fn leasing_member(redis: &RedisServer) -> ExampleServer {
    let url = redis.url();
    ExampleServer::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_LEASES", "1"),
    ])
}

/// Waits, if need be, until Redis's minute has at least 10 s left: each test (2 s or less)
/// stays in one window.
async fn away_from_a_window_end(redis: &RedisServer) {
    let second = redis.time_secs() % 60;
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
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
    away_from_a_window_end(&redis).await;
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
    away_from_a_window_end(&redis).await;
    // 900 requests, then the first process is killed (SIGKILL, holding its lease), then 2,100
    // more: those sent to the dead process are refused, the other process takes the rest.
    let before = run(ports, 900).await;
    assert_eq!(before.ok, 900, "{before:?}");
    servers[0].kill();
    let tally = before.and(run(ports, 2 * LIMIT + 100).await);
    eprintln!("{tally:?}");
    assert_eq!(tally.refused, LIMIT + 50, "{tally:?}");
    assert!(tally.ok <= LIMIT, "{tally:?}");
    // Lost: the lease the dead process held, and the last unit the live one keeps.
    assert!(
        tally.ok + ONE_LEASE + 1 >= LIMIT,
        "{tally:?}: more than one lease stranded"
    );
}
