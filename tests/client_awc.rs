//! The awc wrapper of `ratelimit-client` against real servers on 127.0.0.1: the example
//! server's `/data` (pacing), and a scripted server that refuses first (retries).

mod client_support;

use std::time::{Duration, Instant};

use client_support::{api_key, from_tasks, ExampleServer, ScriptedServer};
use ratelimit_client::awc::PacedClient;

#[actix_web::test]
async fn the_eleventh_request_waits_for_the_reset_instead_of_a_429() {
    let server = ExampleServer::start();
    let client = PacedClient::new(awc::Client::default());
    let key = api_key("client-awc");
    let started = Instant::now();
    // 11 requests from 4 tasks: 10 fit the budget of 10 per 10 s, the 11th is held.
    let url = server.url("/data");
    let statuses = from_tasks(4, 11, || async {
        let request = client
            .client()
            .get(&url)
            .insert_header(("X-API-Key", key.as_str()));
        let response = client.send(request).await.expect("answered");
        response.status().as_u16()
    })
    .await;
    let elapsed = started.elapsed();
    let stats = client.pacer().stats();
    println!("awc: 11 requests, 4 tasks: {elapsed:?}, {stats:?}");
    assert_eq!(statuses, vec![200; 11]);
    assert!(stats.rate_limited <= 1, "{stats:?}");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed <= Duration::from_secs(12),
        "the 11th went at the reset, about 10 s in: {elapsed:?}"
    );
}

#[actix_web::test]
async fn a_post_without_an_idempotency_key_is_never_retried() {
    let server = ScriptedServer::start(1);
    let client = PacedClient::new(awc::Client::default());
    let response = client
        .send_body(client.client().post(server.url()), "{\"item\":1}")
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(server.hits(), 1);
}

#[actix_web::test]
async fn a_post_with_an_idempotency_key_is_retried() {
    let server = ScriptedServer::start(1);
    let client = PacedClient::new(awc::Client::default());
    let request = client
        .client()
        .post(server.url())
        .insert_header(("Idempotency-Key", "order-7f3a"));
    let response = client
        .send_body(request, "{\"item\":1}")
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.hits(), 2);
    assert_eq!(client.pacer().stats().retries, 1);
}
