//! The overrides file: reloaded for its own changes only (a log file written beside it on every
//! reload must not reload it again), a ConfigMap's symlink swap included; and entries for rules
//! not known when it was read, checked when their rule appears: one the rule cannot take is
//! refused with an error and the rule's own limit stays in force.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::test::{self, TestRequest};
use actix_web::{get, App};
use ratelimit_runtime::algorithm::AlgorithmKind;
use ratelimit_runtime::{ratelimit, DefaultLimits, RateLimiter};

#[get("/plain")]
#[ratelimit(limit = 2, per = 60)]
async fn plain() -> &'static str {
    "ok"
}

const PLAIN: &str = concat!(module_path!(), "::plain");

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratelimit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Kubernetes ConfigMap's layout: `overrides.toml -> ..data/overrides.toml`, `..data ->
/// ..<version>`; an update writes a new version and swaps `..data` in one rename.
fn publish(dir: &Path, version: &str, text: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("overrides.toml"), text).unwrap();
    let staged = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    let link = dir.join("overrides.toml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/overrides.toml", &link).unwrap();
    }
}

/// The number of reads of the overrides file with `result`, from the metrics.
fn reloads(limiter: &RateLimiter, result: &str) -> u64 {
    let series = format!("ratelimit_override_reloads_total{{result=\"{result}\"}} ");
    limiter
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn get(path: &str) -> actix_http::Request {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 60], 40_000)))
        .to_request()
}

#[actix_web::test]
async fn the_watcher_reloads_for_the_file_only() {
    let dir = fresh_dir("watched");
    publish(&dir, "v1", &format!("\"{PLAIN}\" = \"3/minute\"\n"));
    let limiter = RateLimiter::builder()
        .overrides_file(dir.join("overrides.toml"))
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(limiter.clone()).service(plain)).await;
    let limit = |res: &actix_web::dev::ServiceResponse| {
        res.headers()
            .get("x-ratelimit-limit")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(limit(&test::call_service(&app, get("/plain")).await), "3");
    assert_eq!(reloads(&limiter, "ok"), 1);

    // A log beside the file, written again and again: never a reload.
    let log = dir.join("server.log");
    for i in 0..10 {
        std::fs::write(&log, format!("line {i}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Past the watcher's quiet time (200 ms), nothing was read again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(&limiter, "ok"), 1, "{}", limiter.metrics());

    // A new version through the symlink swap: read once.
    publish(&dir, "v2", &format!("\"{PLAIN}\" = \"5/minute\"\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&limiter, "ok") < 2 {
        assert!(Instant::now() < deadline, "the swap was not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limit(&test::call_service(&app, get("/plain")).await), "5");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(&limiter, "ok"), 2);
    assert_eq!(reloads(&limiter, "error"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_entry_for_a_rule_not_known_yet_is_checked_when_it_appears() {
    let dir = fresh_dir("pending");
    let file = dir.join("overrides.toml");
    // Both rules are default limits made after the limiter read the file; a sliding log of
    // 20,000 is more than a log holds.
    std::fs::write(
        &file,
        "\"late-log\" = \"20000/minute\"\n\"late-fine\" = \"1/minute\"\n",
    )
    .unwrap();
    let limiter = RateLimiter::builder()
        .overrides_file(&file)
        .build()
        .unwrap();
    let statuses = |defaults: DefaultLimits| {
        let limiter = limiter.clone();
        async move {
            let app = test::init_service(
                App::new()
                    .app_data(limiter)
                    .wrap(defaults)
                    .service(actix_web::web::resource("/").to(|| async { "ok" })),
            )
            .await;
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(test::call_service(&app, get("/")).await.status().as_u16());
            }
            statuses
        }
    };
    let log = DefaultLimits::new("3/minute")
        .unwrap()
        .algorithm(AlgorithmKind::SlidingLog)
        .name("late-log");
    // The rule's own 3 per minute, not a 500 for a log it cannot keep.
    assert_eq!(statuses(log).await, [200, 200, 200, 429]);
    let fine = DefaultLimits::new("3/minute").unwrap().name("late-fine");
    assert_eq!(
        statuses(fine).await,
        [200, 429, 429, 429],
        "this one applies"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One limit stated twice would be one budget charged twice a request in memory and once on
/// Redis: refused wherever a rate string comes in at run time, as the attribute refuses it.
#[actix_web::test]
async fn a_rate_stated_twice_is_refused() {
    use ratelimit_runtime::rate::RateError;
    use ratelimit_runtime::OverrideError;

    let limiter = RateLimiter::builder().build().unwrap();
    let refused = limiter.set_override(PLAIN, "10/minute;10 per 60 seconds");
    assert!(
        matches!(
            &refused,
            Err(OverrideError::InvalidRate { error: RateError::Repeated(part), .. })
                if part == "10 per 60 seconds"
        ),
        "{refused:?}"
    );
    assert!(DefaultLimits::new("10/minute;10/minute").is_err());

    let dir = fresh_dir("repeated");
    let file = dir.join("overrides.toml");
    std::fs::write(&file, format!("\"{PLAIN}\" = \"3/minute;3/minute\"\n")).unwrap();
    let limiter = RateLimiter::builder()
        .overrides_file(&file)
        .build()
        .unwrap();
    let err = limiter.reload_overrides().unwrap_err();
    assert!(err.to_string().contains("repeats a rate"), "{err}");
    let app = test::init_service(App::new().app_data(limiter).service(plain)).await;
    let res = test::call_service(&app, get("/plain")).await;
    assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "2");
    let _ = std::fs::remove_dir_all(&dir);
}
