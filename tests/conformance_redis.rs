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
            key: u128::from(1_000 + i),
            group: 1_000 + i,
            algorithm: AlgorithmKind::FixedWindow,
            limit,
            cost: 1,
            max_wait: 0,
            probe: false,
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

/// A turn reserved ahead (`max_wait`) must not shorten the key's life: Redis counts an expiry
/// from its present, not from the reserved instant. Two spikes of 15 requests at 0 s and 1.2 s
/// against 5 per second (room for 5, then a 2 s wait): every algorithm that reserves admits 15,
/// then 6 more (the turns up to 2 s ahead), 21 in all, as in memory. A key that died a wait too
/// early would start the second spike from a whole bucket and admit 30. On Redis's own clock,
/// with real time passing, since the bug only shows when a TTL runs out.
#[actix_web::test]
async fn reserved_turns_keep_their_keys_alive_on_redis_time() {
    use futures_util::future::join_all;
    use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
    use ratelimit_runtime::store::{Check, Store};
    use ratelimit_runtime::Quota;

    let server = RedisServer::start();
    let options = RedisOptions {
        time: TimeSource::Server,
        timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), options)
        .await
        .expect("connects");
    // (algorithm, units per second): costs of a fifth of a second each. 25,000 per second is
    // GCRA's nanosecond form, above 10,000 per second.
    let cases = [
        (AlgorithmKind::TokenBucket, 5),
        (AlgorithmKind::LeakyBucket, 5),
        (AlgorithmKind::Gcra, 5),
        (AlgorithmKind::Gcra, 25_000),
    ];
    let checks: Vec<Check> = cases
        .iter()
        .enumerate()
        .map(|(i, &(algorithm, per_second))| Check {
            key: 7_000 + i as u128,
            group: 7_000 + i as u64,
            algorithm,
            limit: Limit::new(Quota::from_parts(per_second, 1).unwrap()),
            cost: per_second / 5,
            max_wait: 2_000_000_000,
            probe: false,
        })
        .collect();
    let spike = |check: Check| {
        let store = &store;
        async move {
            let batch = [check];
            let answers = join_all((0..15).map(|_| store.decide(&batch, 0))).await;
            answers
                .into_iter()
                .filter(|a| a.as_ref().expect("decided").allowed)
                .count()
        }
    };
    let first = join_all(checks.iter().map(|&c| spike(c))).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = join_all(checks.iter().map(|&c| spike(c))).await;
    for (i, (algorithm, per_second)) in cases.iter().enumerate() {
        let admitted = first[i] + second[i];
        assert!(
            (20..=22).contains(&admitted),
            "{algorithm:?} at {per_second}/s admitted {} + {} = {admitted}, not 21 (within a turn)",
            first[i],
            second[i],
        );
    }
}
