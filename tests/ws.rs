//! The example server's `GET /ws`: a WebSocket echo whose messages the limiter counts outside
//! any handler (`check_key`), 5 per second per connection. A message over the limit is answered
//! with `{"error":"rate_limited","retry_after_ms":N}` instead of its echo, and the connection
//! stays open.

mod client_support;

use std::time::Duration;

use awc::ws::{Frame, Message};
use client_support::ExampleServer;
use futures_util::{SinkExt, StreamExt};

async fn next_text<S>(frames: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>> + Unpin,
{
    loop {
        match frames
            .next()
            .await
            .expect("the connection is open")
            .unwrap()
        {
            Frame::Text(bytes) => return String::from_utf8(bytes.to_vec()).unwrap(),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[actix_web::test]
async fn messages_over_the_limit_are_answered_not_echoed() {
    let server = ExampleServer::start();
    let (_, mut socket) = awc::Client::new()
        .ws(server.url("/ws"))
        .connect()
        .await
        .expect("the WebSocket opens");
    let mut answers = Vec::new();
    for i in 0..8 {
        socket
            .send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        answers.push(next_text(&mut socket).await);
    }
    assert_eq!(answers[..5], ["m0", "m1", "m2", "m3", "m4"], "{answers:?}");
    let mut wait = 0;
    for refused in &answers[5..] {
        let body: serde_json::Value = serde_json::from_str(refused).unwrap();
        assert_eq!(body["error"], "rate_limited", "{refused}");
        let ms = body["retry_after_ms"].as_u64().unwrap();
        assert!(ms > 0 && ms <= 200, "{refused}");
        wait = wait.max(ms);
    }
    // Still open: after the wait it says, the next message is echoed.
    actix_web::rt::time::sleep(Duration::from_millis(wait + 20)).await;
    socket.send(Message::Text("again".into())).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "again");

    // Another connection has a budget of its own.
    let (_, mut other) = awc::Client::new()
        .ws(server.url("/ws"))
        .connect()
        .await
        .unwrap();
    other.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(next_text(&mut other).await, "hello");
}
