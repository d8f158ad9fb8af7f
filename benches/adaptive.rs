//! Adaptive concurrency against fixed limits and none, side by side in one run:
//! `cargo bench --bench adaptive`.
//!
//! The resource is the example server's `/busy`: 4 workers and 50 ms of work a request, more in
//! flight queue inside it (capacity 80 a second, 50 ms unloaded). Four servers on loopback, one
//! worker each, differ only in what guards the handler: nothing, `concurrency = 4` (the ideal
//! fixed limit, known only because the resource is ours), `concurrency = 16` (a stale one), and
//! `concurrency = "adaptive"` with priorities. Each is driven by closed-loop clients, 1x, 2x and
//! 4x the resource's parallelism (4, 8 and 16 clients; 2 of them critical, the rest half normal,
//! half sheddable), for 5 s after 1 s of warm-up. A shed client (503) waits one service time
//! (50 ms) before its next request.
//!
//! Printed: goodput (served a second, and as a share of the capacity), p50 and p99 latency of
//! the served requests, the share shed, and the share of critical requests served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::{get, App, HttpRequest, HttpResponse, HttpServer};
use ratelimit_runtime::{ratelimit, Priority, RateLimiter};
use tokio::sync::Semaphore;

const SERVICE: Duration = Duration::from_millis(50);
const CAPACITY_PER_SEC: f64 = 80.0;

/// 50 ms of work on one of `workers`' 4 permits.
async fn work(workers: &Semaphore) -> HttpResponse {
    let Ok(_worker) = workers.acquire().await else {
        return HttpResponse::InternalServerError().finish();
    };
    actix_web::rt::time::sleep(SERVICE).await;
    HttpResponse::Ok().finish()
}

fn priority_of(req: &HttpRequest) -> Priority {
    match req.headers().get("x-priority").map(|v| v.as_bytes()) {
        Some(b"critical") => Priority::Critical,
        Some(b"sheddable") => Priority::Sheddable,
        _ => Priority::Normal,
    }
}

static NONE: Semaphore = Semaphore::const_new(4);
static FIXED_4: Semaphore = Semaphore::const_new(4);
static FIXED_16: Semaphore = Semaphore::const_new(4);
static ADAPTIVE: Semaphore = Semaphore::const_new(4);

#[get("/busy")]
async fn unguarded() -> HttpResponse {
    work(&NONE).await
}

#[get("/busy")]
#[ratelimit(concurrency = 4, scope = "global")]
async fn fixed_4() -> HttpResponse {
    work(&FIXED_4).await
}

#[get("/busy")]
#[ratelimit(concurrency = 16, scope = "global")]
async fn fixed_16() -> HttpResponse {
    work(&FIXED_16).await
}

#[get("/busy")]
#[ratelimit(concurrency = "adaptive", priority = priority_of)]
async fn adaptive() -> HttpResponse {
    work(&ADAPTIVE).await
}

/// What one run measured.
#[derive(Default)]
struct Run {
    served: Vec<Duration>,
    shed: u64,
    refused_429: u64,
    critical: u64,
    critical_served: u64,
}

/// One closed-loop client until `stop`.
async fn client(url: String, priority: &'static str, measuring: &AtomicBool, stop: Instant) -> Run {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut run = Run::default();
    while Instant::now() < stop {
        let started = Instant::now();
        let Ok(res) = http
            .get(&url)
            .insert_header(("X-Priority", priority))
            .send()
            .await
        else {
            continue;
        };
        let latency = started.elapsed();
        let status = res.status().as_u16();
        if measuring.load(Ordering::Relaxed) {
            match status {
                200 => run.served.push(latency),
                503 => run.shed += 1,
                _ => run.refused_429 += 1,
            }
            if priority == "critical" {
                run.critical += 1;
                run.critical_served += u64::from(status == 200);
            }
        }
        if status != 200 {
            actix_web::rt::time::sleep(SERVICE).await;
        }
    }
    run
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Registers one guard's handler.
type Configure = fn(&mut actix_web::web::ServiceConfig);

fn main() {
    let configs: [(&str, Configure); 4] = [
        ("no limiter", |c| {
            c.service(unguarded);
        }),
        ("concurrency = 4 (ideal)", |c| {
            c.service(fixed_4);
        }),
        ("concurrency = 16 (stale)", |c| {
            c.service(fixed_16);
        }),
        ("concurrency = \"adaptive\"", |c| {
            c.service(adaptive);
        }),
    ];
    println!("| guard | load | goodput/s | of capacity | p50 served | p99 served | shed | critical served |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, configure) in configs {
        actix_web::rt::System::new().block_on(async move {
            let limiter = RateLimiter::builder().ignore_env().build().unwrap();
            let server = HttpServer::new(move || {
                App::new().app_data(limiter.clone()).configure(configure)
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("a free port");
            let addr = server.addrs()[0];
            let running = server.run();
            let handle = running.handle();
            actix_web::rt::spawn(running);
            let url = format!("http://{addr}/busy");
            for load in [1, 2, 4] {
                let clients = 4 * load;
                let measuring = AtomicBool::new(false);
                let stop = Instant::now() + Duration::from_secs(6);
                let runs = futures_util::future::join_all((0..clients).map(|i| {
                    let priority = match i {
                        0 | 1 => "critical",
                        i if i % 2 == 0 => "normal",
                        _ => "sheddable",
                    };
                    client(url.clone(), priority, &measuring, stop)
                }));
                let warm_up = async {
                    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
                    measuring.store(true, Ordering::Relaxed);
                };
                let (runs, ()) = futures_util::join!(runs, warm_up);
                let mut served: Vec<Duration> = runs.iter().flat_map(|r| r.served.clone()).collect();
                served.sort_unstable();
                let shed: u64 = runs.iter().map(|r| r.shed + r.refused_429).sum();
                let total = served.len() as u64 + shed;
                let critical: u64 = runs.iter().map(|r| r.critical).sum();
                let critical_served: u64 = runs.iter().map(|r| r.critical_served).sum();
                let goodput = served.len() as f64 / 5.0;
                println!(
                    "| {name} | {load}x ({clients} clients) | {goodput:.1} | {:.0}% | {} ms | {} ms | {:.1}% | {:.1}% |",
                    100.0 * goodput / CAPACITY_PER_SEC,
                    percentile(&served, 50).as_millis(),
                    percentile(&served, 99).as_millis(),
                    100.0 * shed as f64 / total.max(1) as f64,
                    100.0 * critical_served as f64 / critical.max(1) as f64,
                );
            }
            handle.stop(true).await;
        });
    }
}
