//! The conformance suite on Redis: a standalone server and a three-master cluster, both
//! started (and stopped) by the tests, deciding on the limiter's manual clock.

mod conformance;
mod support;

use std::time::Duration;

use ratelimit_runtime::store::{RedisOptions, RedisStore, TimeSource};
use support::{RedisCluster, RedisServer};

fn options() -> RedisOptions {
    RedisOptions {
        time: TimeSource::Client,
        timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    }
}

#[actix_web::test]
async fn standalone_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), options())
        .await
        .expect("connects");
    conformance::run_all(&store).await;
    // Every key the suite wrote expires.
    let keys = server.cli(&["--scan", "--pattern", "ratelimit:*"]);
    assert!(
        !keys.trim().is_empty(),
        "the suite wrote its state to Redis"
    );
    for key in keys.lines().take(50) {
        let ttl: i64 = server.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(ttl > 0 || ttl == -2, "{key} has no expiry ({ttl})");
    }
}

#[actix_web::test]
async fn redis_cluster_of_three_masters() {
    let cluster = RedisCluster::start();
    let store = RedisStore::connect_cluster(&cluster.urls(), options())
        .await
        .expect("connects");
    conformance::run_all(&store).await;
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).trim() != "0")
        .count();
    assert!(
        holding >= 2,
        "keys spread over the masters ({holding} of 3 hold some)"
    );
}

#[actix_web::test]
async fn a_corrupt_key_fails_its_own_decision_only() {
    use futures_util::future::join_all;
    use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
    use ratelimit_runtime::store::{Check, Store};
    use ratelimit_runtime::Quota;

    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), options())
        .await
        .expect("connects");
    let limit = Limit::new(Quota::from_parts(10, 60).unwrap());
    let checks: Vec<Check> = (0..40u64)
        .map(|i| Check {
            key: 1_000 + i,
            group: 1_000 + i,
            algorithm: AlgorithmKind::FixedWindow,
            limit,
            cost: 1,
            max_wait: 0,
        })
        .collect();
    server.cli(&["SET", &store.key_of(&checks[7]), "not a state"]);
    // Decided concurrently, so that the store's thread batches them into shared script calls.
    let answers = join_all(
        checks
            .iter()
            .map(|c| store.decide(std::slice::from_ref(c), conformance::T0)),
    )
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.is_err(), i == 7, "decision {i}: {answer:?}");
    }
}
