//! A real server on 127.0.0.1 with four workers: a limit counts across all of them, exactly.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;

use actix_web::{get, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::{ratelimit, ManualClock, RateLimiter};
use support::serve;

mod support;

static RAN: AtomicUsize = AtomicUsize::new(0);
static WORKERS: Mutex<Option<HashSet<ThreadId>>> = Mutex::new(None);

#[get("/hot")]
#[ratelimit(limit = 100, per = 60, scope = "ip")]
async fn hot() -> HttpResponse {
    RAN.fetch_add(1, Ordering::SeqCst);
    WORKERS
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(std::thread::current().id());
    // Yield so that requests interleave across workers rather than finishing one by one.
    actix_web::rt::task::yield_now().await;
    HttpResponse::Ok().finish()
}

#[actix_web::test]
async fn exactly_limit_pass_across_four_workers() {
    // A manual clock: the whole test happens inside one window, whatever the wall clock does.
    let limiter = RateLimiter::builder()
        .clock(ManualClock::at_secs(1_800_000_000))
        .build()
        .unwrap();
    let (addr, handle) = serve!(limiter, 4, hot);

    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(200))
        .finish();
    let url = format!("http://{addr}/hot");
    let requests = (0..500).map(|_| {
        let request = client.get(&url).send();
        async move { request.await.map(|res| res.status().as_u16()) }
    });
    let statuses: Vec<u16> = join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("request failed"))
        .collect();
    handle.stop(true).await;

    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let denied = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, denied), (100, 400), "exactly the limit passes");
    assert_eq!(
        RAN.load(Ordering::SeqCst),
        100,
        "the handler ran once per allowed request"
    );
    let workers = WORKERS.lock().unwrap().as_ref().map_or(0, HashSet::len);
    assert!(
        workers > 1,
        "requests were served by {workers} worker(s); the test needs several"
    );
}
