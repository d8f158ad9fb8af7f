//! Tier and key functions that look things up (`limit = plan_of`, `key = account_of` with
//! `async fn(String) -> ..`): asked once per key and time to live, once for requests that miss
//! together, their last answer standing in when they fail, 503 without one; exact on memory and
//! on Redis; `peek` and `reset` look the tier up too. On a manual clock.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use futures_util::future::join_all;
use ratelimit_runtime::{quota, ratelimit, Lookups, ManualClock, RateLimiter, Tier};
use support::RedisServer;

const T0: u64 = 1_800_000_000;

const FREE: Tier = Tier::new("free", quota!("2/minute"));
const PRO: Tier = Tier::new("pro", quota!("5/minute"));

/// The plans "database": a key's plan, how often each key was looked up, and keys whose
/// lookups fail (`down`) or never answer (`slow`).
#[derive(Default)]
struct Plans {
    plans: HashMap<String, &'static str>,
    asked: HashMap<String, u32>,
    down: Vec<String>,
}

static PLANS: LazyLock<Mutex<Plans>> = LazyLock::new(Mutex::default);

fn set_plan(key: &str, plan: &'static str) {
    PLANS.lock().unwrap().plans.insert(key.to_owned(), plan);
}

fn set_down(key: &str, down: bool) {
    let mut plans = PLANS.lock().unwrap();
    plans.down.retain(|k| k != key);
    if down {
        plans.down.push(key.to_owned());
    }
}

fn asked(key: &str) -> u32 {
    PLANS.lock().unwrap().asked.get(key).copied().unwrap_or(0)
}

/// The tier of an API key, from the plans database.
async fn plan_of(api_key: String) -> Result<Tier, String> {
    *PLANS
        .lock()
        .unwrap()
        .asked
        .entry(api_key.clone())
        .or_default() += 1;
    // A lookup takes a while: requests arriving meanwhile wait for it.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    if api_key.starts_with("slow") {
        std::future::pending::<()>().await;
    }
    let plans = PLANS.lock().unwrap();
    if plans.down.contains(&api_key) {
        return Err("the plans database is down".to_owned());
    }
    Ok(match plans.plans.get(&api_key) {
        Some(&"pro") => PRO,
        _ => FREE,
    })
}

#[get("/report")]
#[ratelimit(limit = plan_of, scope = "header:X-API-Key")]
async fn report() -> HttpResponse {
    HttpResponse::Ok().finish()
}

const REPORT: &str = concat!(module_path!(), "::report");

/// The account an API key belongs to: its keys share the account's budget.
async fn account_of(api_key: String) -> Result<Option<String>, String> {
    *PLANS
        .lock()
        .unwrap()
        .asked
        .entry(api_key.clone())
        .or_default() += 1;
    match api_key.as_str() {
        "acme-1" | "acme-2" => Ok(Some("acme".to_owned())),
        "bulk-1" | "bulk-2" => Ok(Some("bulk".to_owned())),
        "broken" => Err("the accounts service is down".to_owned()),
        _ => Ok(None),
    }
}

#[get("/export")]
#[ratelimit(limit = 3, per = 60, scope = "header:X-API-Key", key = account_of)]
async fn export() -> HttpResponse {
    HttpResponse::Ok().finish()
}

const EXPORT: &str = concat!(module_path!(), "::export#key=account_of");

/// Two limits of one key function: they share its answers, one lookup per key.
#[get("/bulk")]
#[ratelimit("2/minute;5/hour", scope = "header:X-API-Key", key = account_of)]
async fn bulk() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// A dry run of a tier lookup: a failed lookup never refuses it.
#[get("/trial")]
#[ratelimit(limit = plan_of, scope = "header:X-API-Key", mode = "shadow")]
async fn trial() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn get(path: &str, key: &str) -> actix_http::Request {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::from(([203, 0, 113, 9], 40_000)))
        .insert_header(("X-API-Key", key))
        .to_request()
}

fn limiter(clock: &ManualClock) -> RateLimiter {
    RateLimiter::builder()
        .ignore_env()
        .clock(clock.clone())
        .lookups(Lookups::new().timeout(Duration::from_millis(50)))
        .build()
        .unwrap()
}

macro_rules! app {
    ($limiter:expr) => {
        test::init_service(
            App::new()
                .app_data($limiter.clone())
                .service(report)
                .service(export)
                .service(bulk)
                .service(trial),
        )
        .await
    };
}

/// `ratelimit_lookups_total{kind, outcome}` of `limiter`.
fn lookups(limiter: &RateLimiter, kind: &str, outcome: &str) -> f64 {
    let series = format!("ratelimit_lookups_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}");
    support::series(limiter, &series)
}

#[actix_web::test]
async fn a_tier_is_looked_up_once_per_key_until_its_answer_expires() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);
    set_plan("ttl-pro", "pro");
    let pro = support::statuses(&app, 6, || get("/report", "ttl-pro")).await;
    assert_eq!(pro, [200, 200, 200, 200, 200, 429]);
    let free = support::statuses(&app, 3, || get("/report", "ttl-free")).await;
    assert_eq!(free, [200, 200, 429]);
    assert_eq!((asked("ttl-pro"), asked("ttl-free")), (1, 1));
    assert_eq!(lookups(&limiter, "tier", "looked_up"), 2.0);
    assert_eq!(lookups(&limiter, "tier", "cached"), 7.0);
    // The headers say which limit the lookup chose.
    let res = test::call_service(&app, get("/report", "ttl-pro")).await;
    assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "5");

    // An upgrade applies once the answer expires (60 s), with the next window.
    set_plan("ttl-free", "pro");
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        support::statuses(&app, 1, || get("/report", "ttl-free")).await,
        [429]
    );
    assert_eq!(asked("ttl-free"), 1);
    clock.advance(Duration::from_secs(1));
    let upgraded = support::statuses(&app, 6, || get("/report", "ttl-free")).await;
    assert_eq!(upgraded, [200, 200, 200, 200, 200, 429]);
    assert_eq!(asked("ttl-free"), 2);

    // Operators name the client by its key; the tier is looked up for it.
    let info = limiter.peek(REPORT, "ttl-pro").await.unwrap();
    assert_eq!((info.limit(), info.remaining()), (5, 5));
    limiter.reset(REPORT, "ttl-free").await.unwrap();
    assert_eq!(
        support::statuses(&app, 1, || get("/report", "ttl-free")).await,
        [200]
    );
}

/// 20 concurrent requests of a key nobody looked up yet: one lookup, exactly the tier's 5.
async fn concurrent_misses(limiter: RateLimiter, key: &str) {
    let app = app!(limiter);
    set_plan(key, "pro");
    let answers = join_all((0..20).map(|_| test::call_service(&app, get("/report", key)))).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let refused = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!((ok, refused, asked(key)), (5, 15, 1));
}

#[actix_web::test]
async fn requests_that_miss_together_share_one_lookup() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    concurrent_misses(limiter(&clock), "together-memory").await;
}

#[actix_web::test]
async fn lookups_on_redis_are_as_exact() {
    let redis = RedisServer::start();
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = support::limiter_on_redis(&redis, &clock, RateLimiter::builder()).await;
    concurrent_misses(limiter, "together-redis").await;
}

#[actix_web::test]
async fn a_failed_lookup_uses_the_last_answer_or_gets_503() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);

    // Never answered: 503, asked again after a second, not by every request.
    set_down("down-new", true);
    let res = test::call_service(&app, get("/report", "down-new")).await;
    assert_eq!(
        (res.status().as_u16(), support::retry_after(res.headers())),
        (503, 1)
    );
    let body = test::read_body(res).await;
    assert!(String::from_utf8_lossy(&body).contains("rate_limit_lookup_failed"));
    assert_eq!(
        support::statuses(&app, 3, || get("/report", "down-new")).await,
        [503; 3]
    );
    assert_eq!(asked("down-new"), 1);
    set_down("down-new", false);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        support::statuses(&app, 1, || get("/report", "down-new")).await,
        [200]
    );
    assert_eq!(asked("down-new"), 2);

    // Answered once, then down when the answer expires: the old tier goes on counting.
    set_plan("down-old", "pro");
    assert_eq!(
        support::statuses(&app, 1, || get("/report", "down-old")).await,
        [200]
    );
    clock.advance(Duration::from_secs(120));
    set_down("down-old", true);
    let stale = support::statuses(&app, 6, || get("/report", "down-old")).await;
    assert_eq!(stale, [200, 200, 200, 200, 200, 429]);

    // Operators see it: 5 requests failed (503), 6 had the stale answer.
    assert_eq!(lookups(&limiter, "tier", "failed"), 4.0);
    assert_eq!(lookups(&limiter, "tier", "stale"), 6.0);

    // Too slow (the limiter gives lookups 50 ms here): as a failure.
    let res = test::call_service(&app, get("/report", "slow-1")).await;
    assert_eq!(res.status(), 503);
    let err = limiter.peek(REPORT, "slow-2").await.unwrap_err();
    assert!(err.to_string().contains("no answer within 50ms"), "{err}");
}

#[actix_web::test]
async fn a_key_lookup_lets_an_account_s_keys_share_its_budget() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);
    let mut statuses = Vec::new();
    for key in ["acme-1", "acme-2", "acme-1", "acme-2"] {
        statuses.extend(support::statuses(&app, 1, || get("/export", key)).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!((asked("acme-1"), asked("acme-2")), (1, 1));
    let info = limiter.peek(EXPORT, "acme").await.unwrap();
    assert_eq!(info.remaining(), 0);
    // A key of no account counts per client address: a budget of its own.
    assert_eq!(
        support::statuses(&app, 1, || get("/export", "stray")).await,
        [200]
    );
    // A failing key lookup: 503, not another client's budget.
    assert_eq!(
        support::statuses(&app, 1, || get("/export", "broken")).await,
        [503]
    );
}

/// The example server's `GET /plan`, from outside: 30 concurrent requests of a new pro key ask
/// the plans service once and pass exactly its 20; a free key gets 5; a key whose lookup fails
/// gets 503 with `Retry-After: 1`; on Redis, two processes share the pro key's 20.
async fn plans_from_outside(servers: &[&support::ExampleServer], tag: &str) {
    let pro = format!("pro_{tag}");
    let statuses = support::send(servers, "/plan", Some(&pro), 30).await;
    assert_eq!(
        (
            support::count(&statuses, 200),
            support::count(&statuses, 429)
        ),
        (20, 10),
        "{statuses:?}"
    );
    let looked_up: f64 = servers
        .iter()
        .map(|s| s.metric_where("ratelimit_lookups_total", "outcome=\"looked_up\""))
        .sum();
    assert_eq!(looked_up, servers.len() as f64, "one lookup per process");
    let free = support::send(servers, "/plan", Some(&format!("free_{tag}")), 8).await;
    assert_eq!(
        (support::count(&free, 200), support::count(&free, 429)),
        (5, 3),
        "{free:?}"
    );
    let down = support::send(servers, "/plan", Some(&format!("down_{tag}")), 2).await;
    assert_eq!(down, [503, 503]);
}

#[actix_web::test]
async fn the_example_server_looks_plans_up() {
    let server = support::ExampleServer::start();
    plans_from_outside(&[&server], "memory").await;
    let res = awc::Client::new()
        .get(server.url("/plan"))
        .insert_header(("X-API-Key", "down_again"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), support::retry_after(res.headers())),
        (503, 1)
    );
}

#[actix_web::test]
async fn the_example_server_looks_plans_up_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_KEY_SECRET", "plans"),
    ];
    let (a, b) = support::fleet_on(&redis, &env).await;
    plans_from_outside(&[&a, &b], "redis").await;
}

/// `check_key`, `peek` and `reset` may be spawned: looking tiers up keeps their futures `Send`.
#[test]
fn limits_outside_requests_stay_send() {
    fn send<T: Send>(_: T) {}
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let quota = ratelimit_runtime::Quota::from_parts(1, 1).unwrap();
    send(limiter.check_key(&quota, "k", 1));
    send(limiter.peek(REPORT, "k"));
    send(limiter.reset(REPORT, "k"));
}

#[actix_web::test]
async fn the_limits_of_one_function_share_its_answers() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);
    let mut statuses = Vec::new();
    for key in ["bulk-1", "bulk-2", "bulk-1", "bulk-2"] {
        statuses.extend(support::statuses(&app, 1, || get("/bulk", key)).await);
    }
    // 2 a minute for the account, whichever key: one lookup per key for both limits.
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!((asked("bulk-1"), asked("bulk-2")), (1, 1));
}

#[actix_web::test]
async fn keys_a_lookup_cannot_be_asked_count_per_address() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);
    let mut statuses = Vec::new();
    for value in [&b"\xff"[..], b"\xfe", b"\xff", b"\xfe"] {
        let value = actix_web::http::header::HeaderValue::from_bytes(value).unwrap();
        let req = TestRequest::get()
            .uri("/export")
            .peer_addr(SocketAddr::from(([203, 0, 113, 77], 40_000)))
            .insert_header(("X-API-Key", value))
            .to_request();
        statuses.push(test::call_service(&app, req).await.status().as_u16());
    }
    // Not UTF-8: not looked up, and one budget for the address, not one per value.
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[actix_web::test]
async fn dry_runs_and_per_client_entries_need_no_answer() {
    let clock = ManualClock::new(T0 * 1_000_000_000);
    let limiter = limiter(&clock);
    let app = app!(limiter);
    set_down("down-trial", true);
    assert_eq!(
        support::statuses(&app, 3, || get("/trial", "down-trial")).await,
        [200; 3]
    );
    // A client an entry makes unlimited (or blocked, or gives a rate) is not looked up.
    set_down("down-vip", true);
    limiter
        .set_key_override(REPORT, "down-vip", "unlimited")
        .unwrap();
    limiter
        .set_key_override(REPORT, "down-banned", "blocked")
        .unwrap();
    limiter
        .set_key_override(REPORT, "down-partner", "1/minute")
        .unwrap();
    set_down("down-banned", true);
    set_down("down-partner", true);
    assert_eq!(
        support::statuses(&app, 3, || get("/report", "down-vip")).await,
        [200; 3]
    );
    assert_eq!(
        support::statuses(&app, 1, || get("/report", "down-banned")).await,
        [403]
    );
    assert_eq!(
        support::statuses(&app, 2, || get("/report", "down-partner")).await,
        [200, 429]
    );
    assert_eq!(
        (
            asked("down-vip"),
            asked("down-banned"),
            asked("down-partner")
        ),
        (0, 0, 0)
    );
}
