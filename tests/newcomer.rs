//! What a new user meets first: `/metrics` is never refused by app-wide defaults, and one
//! request under `"200/day;50/hour"` is one decision. (The environment: `tests/environment.rs`.)

use std::net::SocketAddr;

use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use ratelimit_runtime::{metrics_endpoint, DefaultLimits, RateLimiter};

fn get(path: &str) -> actix_http::Request {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 80], 40_000)))
        .to_request()
}

#[actix_web::test]
async fn the_metrics_endpoint_is_never_refused_by_default_limits() {
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(limiter)
            .wrap(DefaultLimits::new("200/day;50/hour").unwrap())
            .service(metrics_endpoint("/metrics"))
            .route("/", web::get().to(HttpResponse::Ok)),
    )
    .await;
    // An hour of scrapes every 15 s, and more: never limited.
    for scrape in 0..300 {
        let res = test::call_service(&app, get("/metrics")).await;
        assert_eq!(res.status(), 200, "scrape {scrape}");
        assert!(res.headers().get("x-ratelimit-limit").is_none());
    }
    // Everything else still is.
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..51 {
            statuses.push(test::call_service(&app, get("/")).await.status().as_u16());
        }
        statuses
    };
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 50);
    assert_eq!(statuses.last(), Some(&429));
}

/// `n` requests to an app under `defaults` (and nothing else), and their statuses.
async fn statuses_under(limiter: &RateLimiter, defaults: DefaultLimits, n: usize) -> Vec<u16> {
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .wrap(defaults)
            .route("/", web::get().to(HttpResponse::Ok)),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(test::call_service(&app, get("/")).await.status().as_u16());
    }
    statuses
}

/// The value of `ratelimit_decisions_total` for `rule` and `outcome`, in memory.
fn decisions(limiter: &RateLimiter, rule: &str, outcome: &str) -> String {
    let series = format!(
        "ratelimit_decisions_total{{rule=\"{rule}\",outcome=\"{outcome}\",store=\"memory\"}} "
    );
    let metrics = limiter.metrics();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[actix_web::test]
async fn one_request_under_two_limits_is_one_decision() {
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let defaults = DefaultLimits::new("200/day;50/hour")
        .unwrap()
        .name("two-limits");
    assert_eq!(statuses_under(&limiter, defaults, 3).await, [200, 200, 200]);
    assert_eq!(decisions(&limiter, "two-limits", "allowed"), "3");
    // Units are what the limits were charged: a unit each, two limits.
    let units = "ratelimit_units_spent_total{rule=\"two-limits\",store=\"memory\"} 6";
    assert!(limiter.metrics().contains(units), "{}", limiter.metrics());
}

#[actix_web::test]
async fn a_request_one_of_two_limits_refuses_is_one_denial() {
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let defaults = DefaultLimits::new("3/minute;100/day")
        .unwrap()
        .name("one-refuses");
    let statuses = statuses_under(&limiter, defaults, 5).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(decisions(&limiter, "one-refuses", "allowed"), "3");
    assert_eq!(decisions(&limiter, "one-refuses", "denied"), "2");
}
