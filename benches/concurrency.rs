//! Concurrency limits: taking and giving back a slot beside `tokio::sync::Semaphore`, in one run;
//! then HTTP on loopback with a concurrency limit beside the same handler with no limiter.
//!
//! `cargo bench --bench concurrency`. The HTTP part drives each single-worker server from a
//! client of its own (awc, 32 connections, 3 s, alternating twice), so it needs nothing
//! installed; compare the ratio, not the absolute numbers.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use actix_web::{get, App, HttpResponse, HttpServer};
use criterion::{criterion_group, Criterion};
use futures_util::FutureExt;
use ratelimit_runtime::store::MemoryStore;
use ratelimit_runtime::{ratelimit, QuotaSource, RateLimiter, Rule};

static SLOTS: [Rule; 1] = [Rule::new(
    "bench::slots",
    QuotaSource::InFlight(match std::num::NonZeroU32::new(1_000) {
        Some(n) => n,
        None => panic!("non-zero"),
    }),
)];

fn take_and_give_back(c: &mut Criterion) {
    let mut group = c.benchmark_group("concurrency");
    let semaphore = tokio::sync::Semaphore::new(1_000);
    group.bench_function("tokio_semaphore", |b| {
        b.iter(|| drop(black_box(semaphore.try_acquire())))
    });
    let store = MemoryStore::default();
    let hasher = ahash::RandomState::new();
    group.bench_function("ours/store", |b| {
        b.iter(|| {
            let key = hasher.hash_one(("bench::slots", 1_000u32, [203u8, 0, 113, 7]));
            if store.take_slot(key, 1_000).is_ok() {
                store.give_slot(key);
            }
        })
    });
    let limiter = RateLimiter::builder().metrics(false).build().unwrap();
    let req = TestRequest::get()
        .peer_addr(SocketAddr::from(([203, 0, 113, 7], 40_000)))
        .to_http_request();
    group.bench_function("ours/limiter_check", |b| {
        b.iter(|| drop(black_box(limiter.check(&req, &SLOTS).now_or_never())))
    });
    group.finish();
}

#[get("/")]
async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[get("/")]
#[ratelimit(concurrency = 1000, scope = "global")]
async fn limited() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

const CONNECTIONS: usize = 32;
const RUN: Duration = Duration::from_secs(3);

/// Serves `limited` or `plain` on one worker in a thread of its own; returns its address.
fn serve(with_limit: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let app = App::new();
                if with_limit {
                    app.service(limited)
                } else {
                    app.service(plain)
                }
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        })
    });
    rx.recv().unwrap()
}

/// Requests per second answered 200 over `RUN`, from `CONNECTIONS` loops on one thread.
fn load(addr: SocketAddr) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&done);
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(CONNECTIONS))
            .finish();
        let url = format!("http://{addr}/");
        let deadline = Instant::now() + RUN;
        let loops = (0..CONNECTIONS).map(|_| {
            let (client, url, counted) = (client.clone(), url.clone(), Arc::clone(&counted));
            async move {
                while Instant::now() < deadline {
                    if let Ok(mut res) = client.get(&url).send().await {
                        let _ = res.body().await;
                        if res.status().is_success() {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        futures_util::future::join_all(loops).await;
    });
    done.load(Ordering::Relaxed) as f64 / RUN.as_secs_f64()
}

fn http() {
    let (base, ours) = (serve(false), serve(true));
    load(base);
    load(ours);
    let (mut base_rates, mut ours_rates) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        base_rates.push(load(base));
        ours_rates.push(load(ours));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (b, o) = (best(&base_rates), best(&ours_rates));
    println!(
        "\nHTTP on loopback, 1 worker, {CONNECTIONS} connections, {} s, best of 2\n",
        RUN.as_secs()
    );
    println!("| configuration | req/s | ratio to no limiter |");
    println!("|---|---|---|");
    println!("| no limiter | {b:.0} | 1.00 |");
    println!("| concurrency = 1000, allowed | {o:.0} | {:.2} |", o / b);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = take_and_give_back
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        http();
    }
}
