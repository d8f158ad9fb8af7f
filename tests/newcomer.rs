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

#[actix_web::test]
async fn one_request_under_two_limits_is_one_decision() {
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let defaults = DefaultLimits::new("200/day;50/hour")
        .unwrap()
        .name("two-limits");
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .wrap(defaults)
            .route("/", web::get().to(HttpResponse::Ok)),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(test::call_service(&app, get("/")).await.status(), 200);
    }
    let sample = |outcome: &str| {
        let series = format!(
            "ratelimit_decisions_total{{rule=\"two-limits\",outcome=\"{outcome}\",store=\"memory\"}} "
        );
        let metrics = limiter.metrics();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_eq!(sample("allowed"), "3");
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
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .wrap(defaults)
            .route("/", web::get().to(HttpResponse::Ok)),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(test::call_service(&app, get("/")).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let metrics = limiter.metrics();
    for (outcome, count) in [("allowed", 3), ("denied", 2)] {
        let series = format!(
            "ratelimit_decisions_total{{rule=\"one-refuses\",outcome=\"{outcome}\",store=\"memory\"}} {count}\n"
        );
        assert!(metrics.contains(&series), "{series} not in\n{metrics}");
    }
}
