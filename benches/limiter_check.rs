//! The whole in-process check of a request (`RateLimiter::check`: rules, client address, key,
//! memory store, the info a handler reads), with metrics on and off, in one run: what counting
//! every decision costs. Also the allowed decision with IETF headers, for their serialisation.
//!
//! `cargo bench --bench limiter_check`, then `scripts/bench_table.py metrics_off`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::test::TestRequest;
use actix_web::{HttpRequest, HttpResponse};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::FutureExt;
use ratelimit_runtime::algorithm::AlgorithmKind;
use ratelimit_runtime::{HeaderStyle, Quota, QuotaSource, RateLimiter, Rule};

/// Every check passes: the steady-state cost of an allowed request.
const QUOTA: Quota = match Quota::from_parts(u32::MAX, 1) {
    Some(quota) => quota,
    None => panic!("a valid quota"),
};

static FIXED_WINDOW: [Rule; 1] = [Rule::new("bench::handler", QuotaSource::Fixed(QUOTA))];
static GCRA: [Rule; 1] = [gcra()];

const fn gcra() -> Rule {
    let mut rule = Rule::new("bench::handler", QuotaSource::Fixed(QUOTA));
    rule.algorithm = AlgorithmKind::Gcra;
    rule
}

fn request() -> HttpRequest {
    TestRequest::get()
        .uri("/bench")
        .peer_addr(SocketAddr::from(([203, 0, 113, 7], 40_000)))
        .to_http_request()
}

/// One check; the memory backend answers on the first poll.
fn check(limiter: &RateLimiter, req: &HttpRequest, rules: &[Rule]) -> bool {
    match limiter.check(req, rules).now_or_never() {
        Some(Ok(pass)) => {
            black_box(pass.finish(HttpResponse::Ok().finish(), req));
            true
        }
        _ => false,
    }
}

fn metrics_on_and_off(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter_check");
    for (label, rules) in [("fixed_window", &FIXED_WINDOW), ("gcra", &GCRA)] {
        for (metrics, name) in [(false, "metrics_off"), (true, "metrics_on")] {
            let limiter = RateLimiter::builder().metrics(metrics).build().unwrap();
            let req = request();
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| check(&limiter, &req, &rules[..]))
            });
        }
    }
    for (style, name) in [
        (HeaderStyle::XRateLimit, "metrics_off/x_headers"),
        (HeaderStyle::Ietf, "metrics_off/ietf_headers"),
    ] {
        let limiter = RateLimiter::builder()
            .metrics(false)
            .header_style(style)
            .build()
            .unwrap();
        let req = request();
        group.bench_function(name, |b| b.iter(|| check(&limiter, &req, &FIXED_WINDOW)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(40).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = metrics_on_and_off
}
criterion_main!(benches);
