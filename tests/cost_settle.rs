//! `cost = fn` and `RateLimitInfo::settle`: a request reserves what a function reads from its
//! URI before the handler, and the handler settles for what it really spent; the rest goes
//! back. Through the example server's `/llm` (1,000 tokens a minute per API key), in memory
//! and across two processes on Redis.

mod support;

use std::time::{Duration, Instant};

use support::{count, send, ExampleServer, RedisServer};

/// Reserve 500, spend 100, five times in turn: all pass within 1,000 (without the settlement
/// the third would be refused); then 20 at once of 100 each: exactly 10 fit a fresh budget.
async fn reserve_and_settle(servers: &[&ExampleServer]) {
    for i in 0..5 {
        let before = support::fleet_metric(servers, "ratelimit_units_refunded_total");
        let server = servers[i % servers.len()];
        let statuses = send(
            &[server],
            "/llm?max_tokens=500&tokens=100",
            Some("settling"),
            1,
        )
        .await;
        assert_eq!(statuses, [200], "request {i}");
        // On Redis the 400 unspent come back in a round trip after the response.
        let deadline = Instant::now() + Duration::from_secs(10);
        while support::fleet_metric(servers, "ratelimit_units_refunded_total") < before + 400.0 {
            assert!(
                Instant::now() < deadline,
                "request {i}: the rest never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let statuses = send(servers, "/llm?max_tokens=100&tokens=100", Some("exact"), 20).await;
    assert_eq!(
        (count(&statuses, 200), count(&statuses, 429)),
        (10, 10),
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn tokens_reserved_then_settled_in_memory() {
    let server = ExampleServer::start();
    reserve_and_settle(&[&server]).await;
}

#[actix_web::test]
async fn tokens_reserved_then_settled_across_processes_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_KEY_SECRET", "llm-fleet"),
    ];
    let (a, b) = support::fleet_on(&redis, &env).await;
    reserve_and_settle(&[&a, &b]).await;
}
