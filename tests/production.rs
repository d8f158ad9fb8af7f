//! Running limits in production: dry runs, soft limits, overrides (API and file), peek and
//! reset, metrics, the IETF headers and problem bodies, limits decided exactly on Redis or
//! refused loudly. Every scenario runs on the memory store and on a Redis server of the test's
//! own, on a manual clock.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, web, App, HttpRequest, Responder};
use ratelimit_runtime::store::{RedisOptions, TimeSource};
use ratelimit_runtime::{
    ratelimit, DeniedBody, HeaderStyle, InspectError, ManualClock, OverrideError, Quota,
    RateLimitInfo, RateLimiter, RateLimiterBuilder, Tier,
};
use serde_json::Value;
use support::RedisServer;

/// A multiple of 60 s: windows of 1, 10 and 60 s start exactly here.
const T0: u64 = 1_800_000_000;

#[get("/plain")]
#[ratelimit(limit = 2, per = 60)]
async fn plain() -> &'static str {
    "ok"
}

#[get("/shadow")]
#[ratelimit(limit = 2, per = 60, mode = "shadow")]
async fn shadow(info: Option<RateLimitInfo>) -> impl Responder {
    web::Json(serde_json::json!({"would_pass": info.map(|i| i.is_allowed())}))
}

#[get("/mixed")]
#[ratelimit(limit = 3, per = 60)]
#[ratelimit(limit = 1, per = 60, scope = "global", mode = "shadow")]
async fn mixed() -> &'static str {
    "ok"
}

#[get("/soft")]
#[ratelimit(limit = 4, per = 60, soft = 2)]
async fn soft(info: RateLimitInfo) -> impl Responder {
    web::Json(serde_json::json!({"degraded": info.degraded()}))
}

fn tiny(_: &HttpRequest) -> Tier {
    Tier::new("tiny", Quota::from_parts(2, 60).unwrap())
}

#[get("/tiered-soft")]
#[ratelimit(limit = tiny, soft = 5)]
async fn tiered_soft(info: RateLimitInfo) -> impl Responder {
    web::Json(serde_json::json!({"degraded": info.degraded()}))
}

#[get("/keyed")]
#[ratelimit(limit = 3, per = 60, scope = "header:X-API-Key")]
async fn keyed() -> &'static str {
    "ok"
}

#[get("/stacked")]
#[ratelimit("10/minute;3/second")]
async fn stacked() -> &'static str {
    "ok"
}

#[get("/bucket")]
#[ratelimit(limit = 3, per = 60, algorithm = "token_bucket")]
async fn bucket() -> &'static str {
    "ok"
}

#[get("/log")]
#[ratelimit(limit = 3, per = 60, algorithm = "sliding_log")]
async fn log() -> &'static str {
    "ok"
}

#[get("/fast")]
#[ratelimit(limit = 50_000, per = 1, algorithm = "gcra", burst = 5)]
async fn fast() -> &'static str {
    "ok"
}

/// A tier no Redis script decides exactly: two million per 30 days in a token bucket.
fn huge(_: &HttpRequest) -> Tier {
    Tier::new("huge", Quota::from_parts(2_000_000, 30 * 86_400).unwrap())
}

#[get("/huge")]
#[ratelimit(limit = huge, algorithm = "token_bucket")]
async fn huge_tier() -> &'static str {
    "ok"
}

/// A tier no store keeps: a sliding log of 20,000.
fn long_log(_: &HttpRequest) -> Quota {
    Quota::from_parts(20_000, 60).unwrap()
}

#[get("/long-log")]
#[ratelimit(limit = long_log, algorithm = "sliding_log")]
async fn long_log_tier() -> &'static str {
    "ok"
}

const PLAIN: &str = concat!(module_path!(), "::plain");
const BUCKET: &str = concat!(module_path!(), "::bucket");
const LOG: &str = concat!(module_path!(), "::log");
const FAST: &str = concat!(module_path!(), "::fast");
const HUGE: &str = concat!(module_path!(), "::huge_tier");
const LONG_LOG: &str = concat!(module_path!(), "::long_log_tier");
const SHADOW: &str = concat!(module_path!(), "::shadow");
const MIXED: &str = concat!(module_path!(), "::mixed");
const SOFT: &str = concat!(module_path!(), "::soft");
const KEYED: &str = concat!(module_path!(), "::keyed");

/// Where a scenario runs.
enum Store<'a> {
    Memory,
    Redis(&'a RedisServer),
}

impl Store<'_> {
    fn builder(&self, clock: &ManualClock) -> RateLimiterBuilder {
        let builder = RateLimiter::builder().clock(clock.clone());
        match self {
            Store::Memory => builder,
            Store::Redis(server) => builder
                .redis(server.url())
                // Each limiter its own keys: scenarios never see each other's state.
                .key_prefix(format!("t{}", unique()))
                .redis_options(RedisOptions {
                    time: TimeSource::Client,
                    timeout: Duration::from_secs(2),
                    ..RedisOptions::default()
                }),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `scenario` on memory, then on a Redis server of its own.
macro_rules! on_every_store {
    ($scenario:ident) => {{
        $scenario(&Store::Memory).await;
        let server = RedisServer::start();
        $scenario(&Store::Redis(&server)).await;
    }};
}

fn get(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 9], 40_000)))
}

macro_rules! app {
    ($limiter:expr, $($service:expr),+ $(,)?) => {
        test::init_service(App::new().app_data($limiter.clone())$(.service($service))+).await
    };
}

async fn call<S, B>(app: &S, req: TestRequest) -> ServiceResponse<B>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    test::call_service(app, req.to_request()).await
}

async fn statuses<S, B>(app: &S, path: &str, n: usize) -> Vec<u16>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(call(app, get(path)).await.status().as_u16());
    }
    out
}

/// A header's value as text.
fn h<B>(res: &ServiceResponse<B>, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of the sample `name{labels...}` in a metrics text; it must be there.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    find(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// The value of the sample `name{labels...}`, if the text has it.
fn find(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse().unwrap())
}

fn decisions(text: &str, rule: &str, outcome: &str, store: &str) -> f64 {
    sample(
        text,
        "ratelimit_decisions_total",
        &[("rule", rule), ("outcome", outcome), ("store", store)],
    )
}

async fn shadow_mode(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, shadow, mixed);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let res = call(&app, get("/shadow")).await;
        assert_eq!(res.status(), StatusCode::OK, "a dry run never refuses");
        // A shadow rule is invisible to clients: no limit headers, no Retry-After.
        for name in ["x-ratelimit-limit", "x-ratelimit-remaining", "retry-after"] {
            assert!(res.headers().get(name).is_none(), "{name} on a dry run");
        }
        let body: Value = test::read_body_json(res).await;
        seen.push(body["would_pass"].as_bool().unwrap());
    }
    assert_eq!(seen, [true, true, false, false, false]);
    // Mixed: the shadow rule (1 per minute, global) would deny from the second request, yet
    // the enforced one (3 per minute) is charged and refuses the fourth.
    assert_eq!(statuses(&app, "/mixed", 4).await, [200, 200, 200, 429]);
    let text = limiter.metrics();
    let on = if matches!(store, Store::Memory) {
        "memory"
    } else {
        "redis"
    };
    assert_eq!(decisions(&text, SHADOW, "shadow_denied", on), 3.0);
    assert_eq!(decisions(&text, SHADOW, "allowed", on), 2.0);
    assert_eq!(decisions(&text, MIXED, "denied", on), 1.0);
    // Both rules of the handler carry its name: 3 allowed by the enforced one, 1 by the dry run.
    assert_eq!(decisions(&text, MIXED, "allowed", on), 4.0);
    // Its shadow rule is decided only for requests the enforced rule let through.
    assert_eq!(
        decisions(&text, MIXED, "shadow_denied", on),
        2.0,
        "{}",
        store.label()
    );

    // Limiter-wide: every rule a dry run.
    let limiter = store.builder(&clock).shadow(true).build().unwrap();
    let app = app!(limiter, plain);
    assert_eq!(statuses(&app, "/plain", 4).await, [200; 4]);
    let text = limiter.metrics();
    assert_eq!(decisions(&text, PLAIN, "shadow_denied", on), 2.0);
    assert_eq!(decisions(&text, PLAIN, "denied", on), 0.0);
}

#[actix_web::test]
async fn shadow_mode_decides_and_counts_but_never_refuses() {
    on_every_store!(shadow_mode);
}

async fn soft_limits(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, soft, tiered_soft);
    let mut degraded = Vec::new();
    for _ in 0..4 {
        let res = call(&app, get("/soft")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = test::read_body_json(res).await;
        degraded.push(body["degraded"].as_bool().unwrap());
    }
    // Limit 4, soft 2: two plain answers, two degraded, then refused.
    assert_eq!(degraded, [false, false, true, true]);
    assert_eq!(statuses(&app, "/soft", 1).await, [429]);
    let text = limiter.metrics();
    let on = store.label();
    assert_eq!(decisions(&text, SOFT, "allowed", on), 2.0);
    assert_eq!(decisions(&text, SOFT, "degraded", on), 2.0);
    assert_eq!(decisions(&text, SOFT, "denied", on), 1.0);
    // A soft limit of 5 over a tier of 2: ignored (never degraded), the limit still holds.
    for _ in 0..2 {
        let body: Value = test::read_body_json(call(&app, get("/tiered-soft")).await).await;
        assert_eq!(body["degraded"], false);
    }
    assert_eq!(statuses(&app, "/tiered-soft", 1).await, [429]);
    let tiered = concat!(module_path!(), "::tiered_soft");
    assert_eq!(
        sample(
            &limiter.metrics(),
            "ratelimit_decisions_total",
            &[("rule", tiered), ("tier", "tiny"), ("outcome", "allowed")]
        ),
        2.0
    );
}

#[actix_web::test]
async fn soft_limits_degrade_between_soft_and_hard() {
    on_every_store!(soft_limits);
}

async fn overrides_api(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, plain);
    assert_eq!(statuses(&app, "/plain", 1).await, [200]);
    limiter.set_override(PLAIN, "4/minute").unwrap();
    // A budget of its own under the new limit: four more.
    assert_eq!(statuses(&app, "/plain", 5).await, [200, 200, 200, 200, 429]);
    let res = call(&app, get("/plain")).await;
    assert_eq!(h(&res, "x-ratelimit-limit"), "4");

    // A bad rate or an unknown rule is refused; the override in force stays.
    let bad = limiter.set_override(PLAIN, "4/fortnight").unwrap_err();
    assert!(matches!(bad, OverrideError::InvalidRate { .. }), "{bad}");
    assert!(bad.to_string().contains(PLAIN), "{bad}");
    let unknown = limiter
        .set_override("production::nope", "1/second")
        .unwrap_err();
    assert!(
        matches!(&unknown, OverrideError::UnknownRule { known, .. } if known.iter().any(|k| k == PLAIN)),
        "{unknown}"
    );
    assert_eq!(statuses(&app, "/plain", 1).await, [429]);

    // Cleared: back to the original limit and the state counted under it (one of two spent).
    assert!(limiter.clear_override(PLAIN));
    assert!(!limiter.clear_override(PLAIN));
    assert_eq!(statuses(&app, "/plain", 2).await, [200, 429]);
}

#[actix_web::test]
async fn overrides_change_a_limit_at_run_time() {
    on_every_store!(overrides_api);
}

async fn unsupported_overrides(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, bucket, log);
    // A sliding log above 10,000 is refused on every store; the compiled limit stays.
    let long = limiter.set_override(LOG, "20000/minute").unwrap_err();
    assert!(
        matches!(&long, OverrideError::UnsupportedLimit(e) if e.rule == LOG && e.quota.limit() == 20_000),
        "{long}"
    );
    assert!(long.to_string().contains("at most 10000"), "{long}");
    assert_eq!(statuses(&app, "/log", 4).await, [200, 200, 200, 429]);

    // Two million per 30 days in a bucket: exact in memory, beyond Redis's doubles.
    let huge = limiter.set_override(BUCKET, "2000000 per 30 days");
    match store {
        Store::Memory => assert_eq!(huge, Ok(())),
        Store::Redis(_) => {
            let err = huge.unwrap_err();
            assert!(
                matches!(&err, OverrideError::UnsupportedLimit(e) if e.rule == BUCKET),
                "{err}"
            );
            assert!(
                err.to_string().contains("2000000 per 2592000 s")
                    && err.to_string().contains("2^53"),
                "names the quota and why: {err}"
            );
            assert_eq!(statuses(&app, "/bucket", 4).await, [200, 200, 200, 429]);
            // From the file too: refused whole, the file's other entries with it.
            let path = std::env::temp_dir().join(format!(
                "ratelimit-unsupported-{}-{}.toml",
                std::process::id(),
                unique()
            ));
            write(
                &path,
                &format!("\"{LOG}\" = \"2/minute\"\n\"{BUCKET}\" = \"2000000 per 30 days\"\n"),
            );
            let from_file = store.builder(&clock).overrides_file(&path).build().unwrap();
            let err = from_file.reload_overrides().unwrap_err();
            assert!(err.to_string().contains(BUCKET), "{err}");
            let app = app!(from_file, log);
            assert_eq!(statuses(&app, "/log", 4).await, [200, 200, 200, 429]);
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[actix_web::test]
async fn overrides_no_store_can_decide_are_refused() {
    on_every_store!(unsupported_overrides);
}

async fn unsupported_tiers(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, huge_tier, long_log_tier, plain);
    // Never decided, on any store: 500 naming the rule.
    for _ in 0..2 {
        let res = call(&app, get("/long-log")).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: Value = test::read_body_json(res).await;
        assert_eq!(body["error"], "rate_limit_unsupported");
        assert_eq!(body["rule"], LONG_LOG);
    }
    let huge = statuses(&app, "/huge", 2).await;
    match store {
        Store::Memory => assert_eq!(huge, [200, 200]),
        Store::Redis(_) => {
            assert_eq!(huge, [500, 500], "never decided in process memory instead");
            let res = call(&app, get("/huge")).await;
            let body: Value = test::read_body_json(res).await;
            assert_eq!(body["rule"], HUGE);
            assert!(body["message"].as_str().unwrap().contains("2^53"), "{body}");
            let stats = limiter.redis_stats().unwrap();
            assert_eq!(
                (stats.refused, stats.degraded_decisions),
                (5, 0),
                "{stats:?}"
            );
            let text = limiter.metrics();
            let refused = sample(
                &text,
                "ratelimit_redis_errors_total",
                &[("kind", "refused")],
            );
            assert_eq!(refused, 5.0);
            let decided: f64 = text
                .lines()
                .filter(|l| l.starts_with("ratelimit_decisions_total{"))
                .filter(|l| l.contains(&format!("rule=\"{HUGE}\"")))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
                .sum();
            assert_eq!(decided, 0.0, "no decision of any store or outcome");
        }
    }
    // Other rules are decided as usual meanwhile.
    assert_eq!(statuses(&app, "/plain", 3).await, [200, 200, 429]);
}

#[actix_web::test]
async fn tiers_no_store_can_decide_answer_500_naming_the_rule() {
    on_every_store!(unsupported_tiers);
}

async fn fast_gcra(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, fast);
    // 50,000 per second, five at once: one every 20 µs.
    assert_eq!(
        statuses(&app, "/fast", 6).await,
        [200, 200, 200, 200, 200, 429]
    );
    clock.advance(Duration::from_nanos(19_999));
    assert_eq!(statuses(&app, "/fast", 1).await, [429]);
    clock.advance(Duration::from_nanos(1));
    assert_eq!(statuses(&app, "/fast", 2).await, [200, 429]);
    clock.advance(Duration::from_micros(100));
    assert_eq!(
        statuses(&app, "/fast", 6).await,
        [200, 200, 200, 200, 200, 429]
    );
    let text = limiter.metrics();
    let label = store.label();
    assert_eq!(decisions(&text, FAST, "allowed", label), 11.0);
    if let Store::Redis(server) = store {
        let stats = limiter.redis_stats().unwrap();
        assert_eq!(
            (stats.errors, stats.degraded_decisions),
            (0, 0),
            "{stats:?}"
        );
        // Its state is on Redis, to the nanosecond: "<µs> <ns>".
        let keys = server.cli(&["--scan", "--pattern", "*"]);
        let states: Vec<String> = keys
            .lines()
            .map(|key| server.cli(&["GET", key]).trim().to_owned())
            .collect();
        assert!(
            states.iter().any(|s| {
                let parts: Vec<&str> = s.split(' ').collect();
                parts.len() == 2 && parts[1].parse::<u32>().is_ok_and(|ns| ns < 1_000)
            }),
            "{states:?}"
        );
    }
}

#[actix_web::test]
async fn gcra_above_ten_thousand_per_second_is_decided_exactly_on_redis() {
    on_every_store!(fast_gcra);
}

/// Writes `path` as config tools do: a temporary file renamed over it, so that a reader never
/// sees it half written.
fn write(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

async fn overrides_file(store: &Store<'_>) {
    let dir = std::env::temp_dir().join(format!(
        "ratelimit-overrides-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("overrides.toml");
    write(&toml, &format!("\"{PLAIN}\" = \"3/minute\"\n"));
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).overrides_file(&toml).build().unwrap();
    let app = app!(limiter, plain);
    assert_eq!(statuses(&app, "/plain", 4).await, [200, 200, 200, 429]);

    // A bad entry refuses the whole file; what was in force stays.
    write(
        &toml,
        &format!("\"{PLAIN}\" = \"5/minute\"\n\"{KEYED}\" = \"often\"\n"),
    );
    let err = limiter.reload_overrides().unwrap_err();
    assert!(err.to_string().contains(KEYED), "{err}");
    assert_eq!(statuses(&app, "/plain", 1).await, [429]);

    // Changed on disk: the watcher reloads it by itself (bounded wait, polled).
    write(&toml, &format!("\"{PLAIN}\" = \"5/minute\"\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut limit = String::new();
    while Instant::now() < deadline {
        let res = call(&app, get("/plain")).await;
        limit = h(&res, "x-ratelimit-limit");
        if limit == "5" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(limit, "5", "the watcher reloaded the file");

    // JSON, on demand.
    let json = dir.join("overrides.json");
    write(&json, &format!("{{\"{PLAIN}\": \"1/hour\"}}"));
    let limiter = store.builder(&clock).overrides_file(&json).build().unwrap();
    let app = app!(limiter, plain);
    assert_eq!(statuses(&app, "/plain", 2).await, [200, 429]);
    write(&json, "{}");
    assert_eq!(limiter.reload_overrides().unwrap(), 0);
    // Back to the compiled 2 per minute, in a budget untouched so far.
    assert_eq!(statuses(&app, "/plain", 3).await, [200, 200, 429]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn overrides_come_from_a_watched_file() {
    on_every_store!(overrides_file);
}

async fn peek_and_reset(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let limiter = store.builder(&clock).build().unwrap();
    let app = app!(limiter, plain, keyed);
    let fresh = limiter.peek(PLAIN, "203.0.113.9").await.unwrap();
    assert_eq!((fresh.remaining(), fresh.is_allowed()), (2, true));
    assert_eq!(statuses(&app, "/plain", 1).await, [200]);
    // Peeking spends nothing.
    for _ in 0..3 {
        let info = limiter.peek(PLAIN, "203.0.113.9").await.unwrap();
        assert_eq!((info.remaining(), info.is_allowed()), (1, true));
    }
    assert_eq!(statuses(&app, "/plain", 2).await, [200, 429]);
    let spent = limiter.peek(PLAIN, "203.0.113.9").await.unwrap();
    assert_eq!((spent.remaining(), spent.is_allowed()), (0, false));
    assert_eq!(spent.retry_after_secs(), 60);
    // Reset: the client starts again (on Redis, past the local cache of blocked keys too).
    limiter.reset(PLAIN, "203.0.113.9").await.unwrap();
    assert_eq!(statuses(&app, "/plain", 3).await, [200, 200, 429]);

    // Header keys, and another client untouched by a reset.
    let with_key = |k: &str| get("/keyed").insert_header(("X-API-Key", k.to_owned()));
    for _ in 0..3 {
        call(&app, with_key("alice")).await;
    }
    call(&app, with_key("bob")).await;
    assert_eq!(limiter.peek(KEYED, "alice").await.unwrap().remaining(), 0);
    limiter.reset(KEYED, "alice").await.unwrap();
    assert_eq!(limiter.peek(KEYED, "alice").await.unwrap().remaining(), 3);
    assert_eq!(limiter.peek(KEYED, "bob").await.unwrap().remaining(), 2);

    // A reset under an override clears the client's state under both limits: clearing the
    // override afterwards does not bring a blocked state back.
    limiter.set_override(KEYED, "1/minute").unwrap();
    call(&app, with_key("carol")).await;
    limiter.clear_override(KEYED);
    for _ in 0..3 {
        call(&app, with_key("carol")).await;
    }
    limiter.set_override(KEYED, "1/minute").unwrap();
    assert_eq!(limiter.peek(KEYED, "carol").await.unwrap().remaining(), 0);
    limiter.reset(KEYED, "carol").await.unwrap();
    assert_eq!(limiter.peek(KEYED, "carol").await.unwrap().remaining(), 1);
    limiter.clear_override(KEYED);
    assert_eq!(limiter.peek(KEYED, "carol").await.unwrap().remaining(), 3);

    assert!(matches!(
        limiter.peek("production::nope", "x").await,
        Err(InspectError::UnknownRule { .. })
    ));
    assert!(matches!(
        limiter.peek(PLAIN, "not-an-address").await,
        Err(InspectError::InvalidKey { .. })
    ));
}

#[actix_web::test]
async fn peek_reads_and_reset_clears_one_client() {
    on_every_store!(peek_and_reset);
}

#[actix_web::test]
async fn ietf_headers_are_structured_fields() {
    let clock = ManualClock::at_secs(T0);
    let limiter = Store::Memory
        .builder(&clock)
        .header_style(HeaderStyle::Ietf)
        .build()
        .unwrap();
    let app = app!(limiter, stacked, plain);
    let res = call(&app, get("/stacked")).await;
    assert!(res.headers().get("x-ratelimit-limit").is_none());
    let policy: sfv::List = sfv::Parser::new(h(&res, "ratelimit-policy").as_str())
        .parse()
        .unwrap();
    let state: sfv::List = sfv::Parser::new(h(&res, "ratelimit").as_str())
        .parse()
        .unwrap();
    // One policy per limit, named after the handler and told apart by window.
    let items = |list: &sfv::List| -> Vec<(String, Vec<(String, i64)>)> {
        list.iter()
            .map(|entry| match entry {
                sfv::ListEntry::Item(item) => (
                    item.bare_item.as_string().unwrap().as_str().to_owned(),
                    item.params
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), i64::from(v.as_integer().unwrap())))
                        .collect(),
                ),
                sfv::ListEntry::InnerList(_) => panic!("an inner list"),
            })
            .collect()
    };
    let p = |name: &str, params: &[(&str, i64)]| {
        (
            name.to_owned(),
            params
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        items(&policy),
        [
            p("stacked-60s", &[("q", 10), ("w", 60)]),
            p("stacked-1s", &[("q", 3), ("w", 1)])
        ]
    );
    assert_eq!(
        items(&state),
        [
            p("stacked-60s", &[("r", 9), ("t", 60)]),
            p("stacked-1s", &[("r", 2), ("t", 1)])
        ]
    );

    // A refusal of a stacked limit names its policy as the allowed responses did, in the
    // header and in the problem body.
    let limiter = Store::Memory
        .builder(&clock)
        .header_style(HeaderStyle::Ietf)
        .denied_body(DeniedBody::Problem)
        .build()
        .unwrap();
    let app = app!(limiter, stacked);
    statuses(&app, "/stacked", 3).await;
    let denied = call(&app, get("/stacked")).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(&denied, "ratelimit-policy"), "\"stacked-1s\";q=3;w=1");
    assert!(h(&denied, "ratelimit").starts_with("\"stacked-1s\";r=0;"));
    let body: Value = test::read_body_json(denied).await;
    assert_eq!(body["violated-policies"], serde_json::json!(["stacked-1s"]));

    // Both, for a migration; denied responses carry the refusing policy with r=0.
    let limiter = Store::Memory
        .builder(&clock)
        .header_style(HeaderStyle::Both)
        .build()
        .unwrap();
    let app = app!(limiter, plain);
    statuses(&app, "/plain", 2).await;
    let denied = call(&app, get("/plain")).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(&denied, "x-ratelimit-remaining"), "0");
    assert_eq!(h(&denied, "ratelimit"), "\"plain\";r=0;t=60");
    assert_eq!(h(&denied, "ratelimit-policy"), "\"plain\";q=2;w=60");
}

/// draft-11's `t` is when more is available, draft-10's when the budget is whole: a token
/// bucket of 3 per 60 s (a unit back every 20 s) tells them apart from its second request on.
async fn draft_11_and_draft_10(store: &Store<'_>) {
    let clock = ManualClock::at_secs(T0);
    let t = |style| {
        let limiter = store.builder(&clock).header_style(style).build().unwrap();
        async move {
            let app = app!(limiter, bucket);
            let mut seen = Vec::new();
            for _ in 0..4 {
                let res = call(&app, get("/bucket")).await;
                seen.push(h(&res, "ratelimit"));
            }
            assert_eq!(
                h(&call(&app, get("/bucket")).await, "ratelimit-policy"),
                "\"bucket\";q=3;w=60"
            );
            seen
        }
    };
    assert_eq!(
        t(HeaderStyle::Ietf).await,
        [
            "\"bucket\";r=2;t=20",
            "\"bucket\";r=1;t=20",
            "\"bucket\";r=0;t=20",
            // Refused: when one unit is back, the request's cost.
            "\"bucket\";r=0;t=20",
        ]
    );
    assert_eq!(
        t(HeaderStyle::IetfDraft10).await,
        [
            "\"bucket\";r=2;t=20",
            "\"bucket\";r=1;t=40",
            "\"bucket\";r=0;t=60",
            "\"bucket\";r=0;t=60",
        ]
    );
    // A fixed window: the window's end under both.
    for style in [HeaderStyle::Ietf, HeaderStyle::IetfDraft10] {
        let limiter = store.builder(&clock).header_style(style).build().unwrap();
        let app = app!(limiter, plain);
        assert_eq!(
            h(&call(&app, get("/plain")).await, "ratelimit"),
            "\"plain\";r=1;t=60"
        );
    }
}

#[actix_web::test]
async fn ietf_t_is_draft_11_s_effective_window_or_draft_10_s_reset() {
    on_every_store!(draft_11_and_draft_10);
}

#[actix_web::test]
async fn problem_json_bodies_on_request() {
    let clock = ManualClock::at_secs(T0);
    let limiter = Store::Memory
        .builder(&clock)
        .denied_body(DeniedBody::Problem)
        .build()
        .unwrap();
    let app = app!(limiter, plain);
    statuses(&app, "/plain", 2).await;
    let res = call(&app, get("/plain")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(&res, "content-type"), "application/problem+json");
    let body: Value = test::read_body_json(res).await;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["retry_after"], 60);
    assert!(body["detail"].as_str().unwrap().contains("2 per 60 s"));
    // draft-11: the policy that refused, named as `RateLimit-Policy` names it.
    assert_eq!(body["violated-policies"], serde_json::json!(["plain"]));
}

#[actix_web::test]
async fn metrics_count_decisions_latency_and_store_health() {
    let clock = ManualClock::at_secs(T0);
    let limiter = Store::Memory.builder(&clock).build().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(plain)
            .service(ratelimit_runtime::metrics_endpoint("/metrics")),
    )
    .await;
    statuses(&app, "/plain", 5).await;
    let res = call(&app, get("/metrics")).await;
    assert!(h(&res, "content-type").starts_with("application/openmetrics-text"));
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert_eq!(decisions(&text, PLAIN, "allowed", "memory"), 2.0);
    assert_eq!(decisions(&text, PLAIN, "denied", "memory"), 3.0);
    let units = [("rule", PLAIN), ("store", "memory")];
    assert_eq!(sample(&text, "ratelimit_units_spent_total", &units), 2.0);
    let latency = [("store", "memory")];
    assert_eq!(
        sample(&text, "ratelimit_decision_duration_seconds_count", &latency),
        5.0
    );
    assert_eq!(sample(&text, "ratelimit_tracked_keys", &[]), 1.0);
    assert!(text.ends_with("# EOF\n"));
    // Off: nothing counted, the store's health still there.
    let quiet = Store::Memory
        .builder(&clock)
        .metrics(false)
        .build()
        .unwrap();
    let app = app!(quiet, plain);
    statuses(&app, "/plain", 2).await;
    let text = quiet.metrics();
    assert_eq!(
        find(&text, "ratelimit_decisions_total", &[("rule", PLAIN)]),
        None
    );
    assert_eq!(sample(&text, "ratelimit_tracked_keys", &[]), 1.0);

    // A registry of the application's own takes ours beside its metrics.
    let mut registry = prometheus_client::registry::Registry::default();
    limiter.register_metrics(&mut registry);
    let mut own = String::new();
    prometheus_client::encoding::text::encode(&mut own, &registry).unwrap();
    assert_eq!(decisions(&own, PLAIN, "denied", "memory"), 3.0);
}

#[actix_web::test]
async fn redis_metrics_name_the_store_and_its_health() {
    let server = RedisServer::start();
    let clock = ManualClock::at_secs(T0);
    let limiter = Store::Redis(&server).builder(&clock).build().unwrap();
    let app = app!(limiter, plain);
    statuses(&app, "/plain", 4).await;
    let text = limiter.metrics();
    assert_eq!(decisions(&text, PLAIN, "allowed", "redis"), 2.0);
    assert_eq!(decisions(&text, PLAIN, "denied", "redis"), 2.0);
    // The second denial came from the local cache of blocked keys.
    assert_eq!(
        sample(&text, "ratelimit_blocked_cache_hits_total", &[]),
        1.0
    );
    assert_eq!(sample(&text, "ratelimit_redis_fallback", &[]), 0.0);
    for kind in ["error", "timeout", "refused"] {
        assert_eq!(
            sample(&text, "ratelimit_redis_errors_total", &[("kind", kind)]),
            0.0
        );
    }
    assert!(text.contains("ratelimit_redis_errors_total{kind=\"timeout\"} 0"));
}

#[actix_web::test]
async fn a_redis_outage_shows_in_the_metrics() {
    let mut server = RedisServer::start();
    let clock = ManualClock::at_secs(T0);
    let limiter = Store::Redis(&server)
        .builder(&clock)
        .redis_options(RedisOptions {
            time: TimeSource::Client,
            timeout: Duration::from_millis(200),
            ..RedisOptions::default()
        })
        .build()
        .unwrap();
    let app = app!(limiter, plain);
    assert_eq!(statuses(&app, "/plain", 1).await, [200]);
    server.stop();
    // Decided by the in-memory fallback meanwhile, and counted as such.
    assert_eq!(statuses(&app, "/plain", 3).await, [200, 200, 429]);
    let text = limiter.metrics();
    assert_eq!(sample(&text, "ratelimit_redis_fallback", &[]), 1.0);
    assert_eq!(decisions(&text, PLAIN, "allowed", "fallback"), 2.0);
    assert_eq!(decisions(&text, PLAIN, "denied", "fallback"), 1.0);
    assert_eq!(decisions(&text, PLAIN, "allowed", "redis"), 1.0);
    let failed: f64 = ["error", "timeout"]
        .iter()
        .map(|kind| sample(&text, "ratelimit_redis_errors_total", &[("kind", kind)]))
        .sum();
    assert_eq!(
        failed, 1.0,
        "one failed call; Redis is left alone for a second after it"
    );
    let stats = limiter.redis_stats().unwrap();
    assert_eq!((stats.errors, stats.degraded), (1, true));
}
