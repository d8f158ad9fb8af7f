//! What the limiter logs, captured through `tracing`: a denial is one debug event naming the
//! rule and the wait, a dry-run denial at most one info line a second per rule, a switch to
//! or from the Redis fallback one warning per transition, and a rule the limiter cannot decide
//! one error naming it.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{get, App};
use ratelimit_runtime::store::{RedisOptions, TimeSource};
use ratelimit_runtime::{ratelimit, DefaultLimits, ManualClock, Quota, RateLimiter};
use support::RedisServer;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event: its level and its fields as text.
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    text: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = String::new();
        event.record(&mut Fields(&mut text));
        let level = *event.metadata().level();
        self.0.lock().unwrap().push(Captured { level, text });
    }
}

impl Capture {
    /// The events at `level` whose text contains `needle`.
    fn count(&self, level: Level, needle: &str) -> usize {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|e| e.level == level && e.text.contains(needle))
            .count()
    }

    fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

#[get("/two")]
#[ratelimit(limit = 2, per = 60)]
async fn two() -> &'static str {
    "ok"
}

#[get("/trial")]
#[ratelimit(limit = 1, per = 60, mode = "shadow")]
async fn trial() -> &'static str {
    "ok"
}

/// A quota no store keeps: a sliding log of 20,000.
fn long_log(_: &actix_web::HttpRequest) -> Quota {
    Quota::from_parts(20_000, 60).unwrap()
}

#[get("/long-log")]
#[ratelimit(limit = long_log, algorithm = "sliding_log")]
async fn long_log_tier() -> &'static str {
    "ok"
}

fn get(path: &str) -> actix_http::Request {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 50], 40_000)))
        .to_request()
}

#[actix_web::test]
async fn denials_dry_runs_and_fallback_switches_are_logged_as_promised() {
    let capture = Capture::default();
    let _events =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let clock = ManualClock::at_secs(1_800_000_000);
    let limiter = RateLimiter::builder().clock(clock.clone()).build().unwrap();
    let app = test::init_service(App::new().app_data(limiter).service(two).service(trial)).await;

    for _ in 0..3 {
        test::call_service(&app, get("/two")).await;
    }
    let denied = capture.count(Level::DEBUG, "rate limit exceeded");
    assert_eq!(denied, 1, "{:?}", capture.all());
    assert_eq!(
        capture.count(Level::DEBUG, "events::two"),
        1,
        "names the rule"
    );
    assert_eq!(capture.count(Level::DEBUG, "retry_after_secs=60"), 1);

    // Four would-be denials in the same second: one line; a second later, another.
    for _ in 0..5 {
        test::call_service(&app, get("/trial")).await;
    }
    assert_eq!(
        capture.count(Level::INFO, "shadow mode"),
        1,
        "{:?}",
        capture.all()
    );
    clock.advance(Duration::from_secs(1));
    test::call_service(&app, get("/trial")).await;
    assert_eq!(capture.count(Level::INFO, "shadow mode"), 2);

    // Redis down, then back: one warning each way, however many requests meanwhile.
    let mut redis = RedisServer::start();
    let limiter = RateLimiter::builder()
        .clock(clock.clone())
        .redis(redis.url())
        .redis_options(RedisOptions {
            time: TimeSource::Client,
            timeout: Duration::from_millis(300),
            ..RedisOptions::default()
        })
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(limiter).service(two)).await;
    test::call_service(&app, get("/two")).await;
    redis.stop();
    for _ in 0..3 {
        test::call_service(&app, get("/two")).await;
        clock.advance(Duration::from_secs(2));
    }
    let to_fallback = capture.count(Level::WARN, "in process memory");
    assert_eq!(to_fallback, 1, "{:?}", capture.all());
    redis.restart();
    clock.advance(Duration::from_secs(2));
    for _ in 0..3 {
        test::call_service(&app, get("/two")).await;
    }
    assert_eq!(
        capture.count(Level::WARN, "back on Redis"),
        1,
        "{:?}",
        capture.all()
    );
}

#[actix_web::test]
async fn a_rule_the_limiter_cannot_decide_is_one_error_naming_it() {
    use actix_web::dev::Transform;
    use ratelimit_runtime::algorithm::AlgorithmKind;

    let capture = Capture::default();
    let _events =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let limiter = RateLimiter::builder().build().unwrap();
    let app = test::init_service(App::new().app_data(limiter).service(long_log_tier)).await;
    for _ in 0..3 {
        let res = test::call_service(&app, get("/long-log")).await;
        assert_eq!(res.status(), 500);
    }
    let rule = concat!(module_path!(), "::long_log_tier");
    assert_eq!(capture.count(Level::ERROR, rule), 1, "{:?}", capture.all());
    assert_eq!(capture.count(Level::ERROR, "at most 10000"), 1);

    let defaults = DefaultLimits::new("20000/minute")
        .unwrap()
        .algorithm(AlgorithmKind::SlidingLog)
        .name("long-log-defaults");
    assert!(defaults.new_transform(test::ok_service()).await.is_err());
    assert_eq!(
        capture.count(Level::ERROR, "`long-log-defaults`"),
        1,
        "{:?}",
        capture.all()
    );
}

#[actix_web::test]
async fn a_process_with_another_key_secret_is_one_error_and_no_secret_a_warning() {
    let capture = Capture::default();
    let _events =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let redis = RedisServer::start();
    let on_redis = |secret: Option<&str>| {
        let builder = RateLimiter::builder()
            .redis(redis.url())
            .redis_options(RedisOptions {
                timeout: Duration::from_secs(2),
                ..RedisOptions::default()
            });
        match secret {
            Some(secret) => builder.key_secret(secret),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let mut answers = Vec::new();
    for secret in ["fleet secret", "fleet secret", "another secret"] {
        let app = test::init_service(App::new().app_data(on_redis(Some(secret))).service(two));
        let res = test::call_service(&app.await, get("/two")).await;
        answers.push(res.status().as_u16());
    }
    // The second process shares the first one's secret, and so its budget; the third does not.
    assert_eq!(answers, [200, 200, 200]);
    assert_eq!(
        capture.count(Level::ERROR, "different RATELIMIT_KEY_SECRET"),
        1,
        "{:?}",
        capture.all()
    );
    let app = test::init_service(
        App::new()
            .app_data(on_redis(Some("fleet secret")))
            .service(two),
    );
    let res = test::call_service(&app.await, get("/two")).await;
    assert_eq!(res.status(), 429, "the fleet's budget of 2 is spent");
    assert_eq!(capture.count(Level::WARN, "public key"), 0);
    on_redis(None);
    assert_eq!(capture.count(Level::WARN, "public key"), 1);
}
