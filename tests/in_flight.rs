//! Concurrency limits in one process: exactly the limit in flight under hundreds of concurrent
//! requests on a real server, and every slot back after completion, a streamed body, a handler
//! panic, a dropped future and a client gone mid-request.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BodyStream, MessageBody};
use actix_web::dev::Service;
use actix_web::test::{self, TestRequest};
use actix_web::web::Bytes;
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use futures_util::FutureExt;
use ratelimit_runtime::{ratelimit, RateLimiter};
use support::serve;

mod support;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// Counts the requests inside it and remembers the most at once.
#[get("/busy")]
#[ratelimit(concurrency = 3, scope = "global")]
async fn busy() -> HttpResponse {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    actix_web::rt::time::sleep(Duration::from_millis(30)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    HttpResponse::Ok().finish()
}

#[actix_web::test]
async fn exactly_the_limit_in_flight_across_workers() {
    let limiter = RateLimiter::builder().build().unwrap();
    let (addr, handle) = serve!(limiter, 2, busy);

    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(300))
        .timeout(Duration::from_secs(20))
        .finish();
    let url = format!("http://{addr}/busy");
    let mut ok = 0;
    for _round in 0..3 {
        let requests = (0..300).map(|_| {
            let request = client.get(&url).send();
            async move {
                let res = request.await.expect("the server answers");
                let retry_after = res.headers().get("retry-after").cloned();
                (res.status().as_u16(), retry_after)
            }
        });
        for (status, retry_after) in join_all(requests).await {
            match status {
                200 => ok += 1,
                429 => assert_eq!(retry_after.unwrap(), "1"),
                other => panic!("status {other}"),
            }
        }
    }
    handle.stop(true).await;
    assert_eq!(
        MOST.load(Ordering::SeqCst),
        3,
        "never more than the limit in flight"
    );
    assert!(ok >= 3, "{ok} requests passed");
    // Every slot came back: the store holds no in-flight key.
    assert_eq!(limiter.memory_store().stats().keys, 0);
}

#[get("/one")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn one() -> HttpResponse {
    HttpResponse::Ok().body("done")
}

#[get("/stream")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn stream() -> HttpResponse {
    let chunks = futures_util::stream::iter(
        ["a", "b", "c"].map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes()))),
    );
    HttpResponse::Ok().body(BodyStream::new(chunks))
}

#[get("/panics")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn panics() -> HttpResponse {
    panic!("the handler fails")
}

#[get("/sleeps")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn sleeps() -> HttpResponse {
    actix_web::rt::time::sleep(Duration::from_secs(60)).await;
    HttpResponse::Ok().finish()
}

fn get(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([198, 51, 100, 4], 50_000)))
}

#[actix_web::test]
async fn slots_come_back_however_a_request_ends() {
    let limiter = RateLimiter::builder().build().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(one)
            .service(stream)
            .service(panics)
            .service(sleeps),
    )
    .await;
    let in_flight = || limiter.memory_store().stats().keys;

    // Completion: the slot is held until the body has been sent.
    let res = test::call_service(&app, get("/one").to_request()).await;
    assert_eq!(res.headers().get("x-concurrency-limit").unwrap(), "1");
    assert_eq!(res.headers().get("x-concurrency-remaining").unwrap(), "0");
    assert_eq!(in_flight(), 1, "held while the body waits to be sent");
    let gauge = concat!("ratelimit_in_flight{rule=\"", module_path!(), "::one\"} ");
    assert!(limiter.metrics().contains(&format!("{gauge}1")));
    let second = test::call_service(&app, get("/one").to_request()).await;
    assert_eq!(second.status(), 429);
    drop(second);
    assert_eq!(test::read_body(res).await, "done");
    assert_eq!(in_flight(), 0, "back once the body is sent");
    assert!(limiter.metrics().contains(&format!("{gauge}0")));

    // A streamed body: held until its last chunk.
    let res = test::call_service(&app, get("/stream").to_request()).await;
    assert_eq!(in_flight(), 1);
    let mut body = res.into_body();
    let first = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx)).await;
    assert_eq!(first.unwrap().unwrap(), "a");
    assert_eq!(in_flight(), 1, "held mid-stream");
    assert_eq!(actix_web::body::to_bytes(body).await.ok().unwrap(), "bc");
    assert_eq!(in_flight(), 0, "back after the last chunk");

    // A handler that panics.
    let call = std::panic::AssertUnwindSafe(app.call(get("/panics").to_request()));
    assert!(call.catch_unwind().await.is_err(), "the handler panicked");
    assert_eq!(in_flight(), 0, "back after a panic");

    // A future dropped before it ends (a cancelled request).
    let pending = app.call(get("/sleeps").to_request());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), pending)
            .await
            .is_err(),
        "still sleeping when dropped"
    );
    assert_eq!(in_flight(), 0, "back when the future is dropped");
    assert_eq!(
        test::call_service(&app, get("/one").to_request())
            .await
            .status(),
        200
    );
}

#[get("/nap")]
#[ratelimit(concurrency = 1, scope = "global")]
async fn nap() -> HttpResponse {
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    HttpResponse::Ok().finish()
}

#[actix_web::test]
async fn a_client_gone_mid_request_gives_its_slot_back_when_the_handler_ends() {
    let limiter = RateLimiter::builder().build().unwrap();
    let (addr, handle) = serve!(limiter, 1, nap);

    // A raw client that sends the request and hangs up before the answer.
    let started = Instant::now();
    let mut gone = TcpStream::connect(addr).unwrap();
    gone.write_all(b"GET /nap HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let client = awc::Client::default();
    let url = format!("http://{addr}/nap");
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.memory_store().stats().keys == 0 {
        assert!(Instant::now() < deadline, "the request never started");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    drop(gone);
    // Actix-web runs the handler to its end after the client has gone: the slot is held
    // until then, and only then given back.
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(started.elapsed() < Duration::from_millis(400));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client.get(&url).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    handle.stop(true).await;
    assert_eq!(limiter.memory_store().stats().keys, 0);
}

#[get("/both")]
#[ratelimit(concurrency = 2, scope = "global")]
#[ratelimit(limit = 1, per = 60)]
async fn both() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/counted")]
#[ratelimit(concurrency = 2, scope = "global")]
async fn counted(info: ratelimit_runtime::RateLimitInfo) -> String {
    format!("{} of {}", info.remaining(), info.limit())
}

#[actix_web::test]
async fn with_rates_dry_runs_overrides_and_the_info() {
    let limiter = RateLimiter::builder().build().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(both)
            .service(counted)
            .service(one),
    )
    .await;
    let in_flight = || limiter.memory_store().stats().keys;
    // A request its rate refuses gives its slot back at once.
    let first = test::call_service(&app, get("/both").to_request()).await;
    assert_eq!(first.status(), 200);
    drop(test::read_body(first).await);
    let keys_before = in_flight();
    let refused = test::call_service(&app, get("/both").to_request()).await;
    assert_eq!(refused.status(), 429);
    assert!(
        refused.headers().get("x-ratelimit-remaining").is_some(),
        "the rate refused it"
    );
    assert_eq!(
        in_flight(),
        keys_before,
        "no slot kept by a refused request"
    );

    // An override changes the rate and leaves the concurrency limit alone.
    let both_rule = concat!(module_path!(), "::both");
    limiter.set_override(both_rule, "5/minute").unwrap();
    let a = test::call_service(&app, get("/both").to_request()).await;
    let b = test::call_service(&app, get("/both").to_request()).await;
    let c = test::call_service(&app, get("/both").to_request()).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(c.status(), 429, "still two in flight at most");
    assert_eq!(c.headers().get("x-concurrency-remaining").unwrap(), "0");
    drop((a, b, c));

    // A handler with only a concurrency limit reads it as its info.
    let res = test::call_service(&app, get("/counted").to_request()).await;
    assert_eq!(test::read_body(res).await, "1 of 2");

    // A limiter-wide dry run lets a request through without a slot, and counts it.
    let dry = RateLimiter::builder().shadow(true).build().unwrap();
    let app = test::init_service(App::new().app_data(dry.clone()).service(one)).await;
    let held = test::call_service(&app, get("/one").to_request()).await;
    let over = test::call_service(&app, get("/one").to_request()).await;
    assert_eq!((held.status().as_u16(), over.status().as_u16()), (200, 200));
    let shadow = concat!(
        "ratelimit_decisions_total{rule=\"",
        module_path!(),
        "::one\",outcome=\"shadow_denied\",store=\"memory\"} 1"
    );
    assert!(dry.metrics().contains(shadow), "{}", dry.metrics());
}
