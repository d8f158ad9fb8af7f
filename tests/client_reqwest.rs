//! The reqwest middleware of `ratelimit-client` against real servers on 127.0.0.1: the example
//! server's `/data` (pacing), and a scripted server that refuses first (retries).

mod client_support;

use std::time::{Duration, Instant};

use client_support::{
    api_key, from_tasks, start_at_phase, within_ten_percent, ExampleServer, ScriptedServer,
    MAX_429S, REQUESTS, TASKS,
};
use ratelimit_client::reqwest::RateLimitMiddleware;
use ratelimit_client::Stats;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn paced_client(middleware: RateLimitMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_requests_from_four_tasks_keep_to_the_ideal_schedule() {
    let server = ExampleServer::start();
    let middleware = RateLimitMiddleware::new();
    let pacer = middleware.pacer().clone();
    let client = paced_client(middleware);
    let url = server.url("/data");
    let key = api_key("client-reqwest");

    start_at_phase(Duration::from_millis(500));
    let started = Instant::now();
    let statuses = from_tasks(TASKS, REQUESTS, || async {
        let response = client.get(&url).header("X-API-Key", &key).send().await;
        response.expect("answered").status().as_u16()
    })
    .await;
    let elapsed = started.elapsed();

    let Stats {
        sent, rate_limited, ..
    } = pacer.stats();
    println!("reqwest: {REQUESTS} requests, {TASKS} tasks: {elapsed:?}, {sent} sent, {rate_limited} refused");
    assert_eq!(statuses.len(), REQUESTS);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(
        rate_limited <= MAX_429S,
        "the server refused {rate_limited}"
    );
    assert_eq!(
        server.data_refusals(),
        rate_limited,
        "as the server counted them"
    );
    assert_eq!(
        sent,
        REQUESTS as u64 + rate_limited,
        "one attempt per refusal"
    );
    assert!(within_ten_percent(elapsed), "took {elapsed:?}, ideal 20 s");
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_never_retried() {
    let server = ScriptedServer::start(1);
    let client = paced_client(RateLimitMiddleware::new());
    let response = client
        .post(server.url())
        .body("{\"item\":1}")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 429, "handed back as it came");
    assert_eq!(server.hits(), 1, "sent once");
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_after_retry_after() {
    let server = ScriptedServer::start(1);
    let client = paced_client(RateLimitMiddleware::new());
    let started = Instant::now();
    let response = client
        .post(server.url())
        .header("Idempotency-Key", "order-7f3a")
        .body("{\"item\":1}")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.hits(), 2, "sent twice");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited Retry-After: 1"
    );
}

#[tokio::test]
async fn a_get_is_retried() {
    let server = ScriptedServer::start(2);
    let client = paced_client(RateLimitMiddleware::new());
    let response = client.get(server.url()).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.hits(), 3);
}
