//! Per-client overrides: a `[keys."<rule>"]` table in the overrides file, or
//! `set_key_override`, gives one client key of a rule another rate, `"unlimited"` or
//! `"blocked"` (403, the store not asked). Reloaded with the file; bounded; refused with
//! clear errors. In memory and on Redis on a manual clock, and through the example server's
//! `/data` with `RATELIMIT_OVERRIDES`, the file rewritten while it runs.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use ratelimit_runtime::{
    ratelimit, InspectError, ManualClock, OverrideError, RateLimiter, MAX_KEY_OVERRIDES,
};
use support::{statuses, ExampleServer, RedisServer};

const T0: u64 = 1_800_000_000;

#[get("/keyed")]
#[ratelimit(limit = 3, per = 60, scope = "header:X-API-Key")]
async fn keyed() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/by-address")]
#[ratelimit(limit = 3, per = 60)]
async fn by_address() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/everyone")]
#[ratelimit(limit = 3, per = 60, scope = "global")]
async fn everyone() -> HttpResponse {
    HttpResponse::Ok().finish()
}

const KEYED: &str = concat!(module_path!(), "::keyed");
const BY_ADDRESS: &str = concat!(module_path!(), "::by_address");
const EVERYONE: &str = concat!(module_path!(), "::everyone");

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratelimit-keys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("overrides.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const OVERRIDES: &str = r#"
"ROOT::keyed" = "4/minute"
[keys."ROOT::keyed"]
"vip" = "6/minute"
"banned" = "blocked"
"partner" = "unlimited"
[keys."ROOT::by_address"]
"2001:db8:1:2::99" = "blocked"
"#;

fn overrides() -> String {
    OVERRIDES.replace("ROOT", module_path!())
}

fn keyed_from(key: &str) -> actix_http::Request {
    TestRequest::get()
        .uri("/keyed")
        .insert_header(("X-API-Key", key))
        .peer_addr(SocketAddr::from(([203, 0, 113, 9], 40_000)))
        .to_request()
}

fn repeat(status: u16, n: usize) -> Vec<u16> {
    vec![status; n]
}

/// The file's entries on `limiter`: `scripts` counts the store's decisions where there is one
/// to count (Redis), so that a blocked key is seen to cost none.
async fn per_client_entries(limiter: RateLimiter, path: PathBuf, scripts: impl Fn() -> u64) {
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .service(keyed)
            .service(by_address),
    )
    .await;
    // Everyone else: the rule's own override, 4.
    let anyone = statuses(&app, 5, || keyed_from("anyone")).await;
    assert_eq!(anyone, [200, 200, 200, 200, 429]);
    // The VIP's rate, in a budget of its own.
    let vip = statuses(&app, 7, || keyed_from("vip")).await;
    assert_eq!(vip, [repeat(200, 6), vec![429]].concat());
    assert_eq!(limiter.peek(KEYED, "vip").await.unwrap().limit(), 6);
    // The partner is never limited, nor told of a limit.
    let res = test::call_service(&app, keyed_from("partner")).await;
    assert!(res.headers().get("x-ratelimit-limit").is_none());
    assert_eq!(
        statuses(&app, 30, || keyed_from("partner")).await,
        repeat(200, 30)
    );
    // The banned key: 403, no Retry-After, and the store is not asked.
    let before = scripts();
    let res = test::call_service(&app, keyed_from("banned")).await;
    assert_eq!(res.status().as_u16(), 403);
    assert!(res.headers().get("retry-after").is_none());
    let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(body["error"], "blocked");
    assert_eq!(
        statuses(&app, 10, || keyed_from("banned")).await,
        repeat(403, 10)
    );
    assert_eq!(scripts(), before, "a blocked key costs the store nothing");
    assert!(matches!(
        limiter.peek(KEYED, "banned").await,
        Err(InspectError::KeyOverridden {
            setting: "blocked",
            ..
        })
    ));
    // An IPv6 entry names the /64 its addresses are counted in.
    let from_v6 = |last: u16| {
        move || {
            TestRequest::get()
                .uri("/by-address")
                .peer_addr(SocketAddr::from((
                    [0x2001, 0xdb8, 1, 2, 0, 0, 0, last],
                    40_000,
                )))
                .to_request()
        }
    };
    assert_eq!(statuses(&app, 2, from_v6(7)).await, [403, 403]);
    assert_eq!(
        statuses(&app, 4, || TestRequest::get()
            .uri("/by-address")
            .peer_addr(SocketAddr::from((
                [0x2001, 0xdb8, 1, 3, 0, 0, 0, 7],
                40_000
            )))
            .to_request())
        .await,
        [200, 200, 200, 429]
    );

    // The API's entries come first, and are cleared back to the file's.
    limiter
        .set_key_override(KEYED, "banned", "2/minute")
        .unwrap();
    assert_eq!(
        statuses(&app, 3, || keyed_from("banned")).await,
        [200, 200, 429]
    );
    assert!(limiter.clear_key_override(KEYED, "banned"));
    assert_eq!(statuses(&app, 1, || keyed_from("banned")).await, [403]);

    // Reloaded: the VIP is blocked now, the partner an ordinary client.
    let reloaded = overrides()
        .replace("\"vip\" = \"6/minute\"", "\"vip\" = \"BLOCKED\"")
        .replace("\"partner\" = \"unlimited\"\n", "");
    std::fs::write(&path, reloaded).unwrap();
    limiter.reload_overrides().unwrap();
    assert_eq!(statuses(&app, 1, || keyed_from("vip")).await, [403]);
    assert_eq!(
        statuses(&app, 5, || keyed_from("partner")).await,
        [200, 200, 200, 200, 429]
    );
}

#[actix_web::test]
async fn per_client_entries_from_the_file_in_memory() {
    let path = file("memory", &overrides());
    let limiter = RateLimiter::builder()
        .ignore_env()
        .clock(ManualClock::at_secs(T0))
        .overrides_file(&path)
        .build()
        .unwrap();
    per_client_entries(limiter, path, || 0).await;
}

#[actix_web::test]
async fn per_client_entries_from_the_file_on_redis() {
    let redis = RedisServer::start();
    let path = file("redis", &overrides());
    let clock = ManualClock::at_secs(T0);
    let builder = RateLimiter::builder().overrides_file(&path);
    let limiter = support::limiter_on_redis(&redis, &clock, builder).await;
    per_client_entries(limiter.clone(), path, || redis.script_calls()).await;
    assert_eq!(limiter.redis_stats().unwrap().degraded_decisions, 0);
}

#[actix_web::test]
async fn bad_entries_are_refused_with_clear_errors() {
    let limiter = RateLimiter::builder().ignore_env().build().unwrap();
    let refused = |r: Result<(), OverrideError>| r.unwrap_err().to_string();
    let e = refused(limiter.set_key_override("nobody::here", "k", "1/minute"));
    assert!(
        e.contains("no rate-limit rule is called `nobody::here`"),
        "{e}"
    );
    let e = refused(limiter.set_key_override(BY_ADDRESS, "vip", "1/minute"));
    assert!(e.contains("not an IP address"), "{e}");
    let e = refused(limiter.set_key_override(EVERYONE, "vip", "blocked"));
    assert!(e.contains("counts everyone together"), "{e}");
    let e = refused(limiter.set_key_override(KEYED, "vip", "lots"));
    assert!(e.contains("invalid rate for rule"), "{e}");
    assert!(!limiter.clear_key_override(KEYED, "vip"));

    // A file with one entry too many is refused whole, naming the bound.
    let mut text = format!("[keys.\"{KEYED}\"]\n");
    for i in 0..=MAX_KEY_OVERRIDES {
        text.push_str(&format!("\"key-{i}\" = \"blocked\"\n"));
    }
    let path = file("too-many", &text);
    let limiter = RateLimiter::builder()
        .ignore_env()
        .overrides_file(&path)
        .build()
        .unwrap();
    let e = limiter.reload_overrides().unwrap_err().to_string();
    assert!(e.contains("at most 10000"), "{e}");
    // A table where a rate belongs says where per-client entries go.
    std::fs::write(&path, format!("[\"{KEYED}\"]\n\"vip\" = \"blocked\"\n")).unwrap();
    let e = limiter.reload_overrides().unwrap_err().to_string();
    assert!(e.contains("[keys."), "{e}");
}

/// The example server's `/data` (10 per 10 s per API key) with `RATELIMIT_OVERRIDES`: the
/// file's per-client entries apply, and a rewrite is picked up while it runs.
#[actix_web::test]
async fn the_example_server_reloads_per_client_entries() {
    let path = file(
        "server",
        "[keys.\"server::data\"]\n\"vip\" = \"30/10 seconds\"\n\"banned\" = \"blocked\"\n\"partner\" = \"unlimited\"\n",
    );
    let server = ExampleServer::start_with(&[("RATELIMIT_OVERRIDES", path.to_str().unwrap())]);
    let [vip, banned, partner] = [
        support::data(&[&server], "vip", 31).await,
        support::data(&[&server], "banned", 3).await,
        support::data(&[&server], "partner", 40).await,
    ];
    assert_eq!(support::count(&vip, 200), 30, "{vip:?}");
    assert_eq!(banned, [403, 403, 403]);
    assert_eq!(partner, repeat(200, 40));
    std::fs::write(
        &path,
        "[keys.\"server::data\"]\n\"partner\" = \"blocked\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::data(&[&server], "partner", 1).await != [403] {
        assert!(Instant::now() < deadline, "the rewrite was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The banned key is an ordinary client again.
    assert_eq!(support::data(&[&server], "banned", 1).await, [200]);
}

/// A default limit joins the program's rules when the app is built, which may be after the
/// limiter read the file: its per-client entries wait, and are checked when it first decides a
/// request. One it cannot have is refused with an error; the others apply.
#[actix_web::test]
async fn entries_for_a_rule_not_known_yet_are_checked_when_it_appears() {
    let path = file(
        "pending",
        "[keys.\"late-keys\"]\n\"203.0.113.60\" = \"blocked\"\n\"203.0.113.61\" = \"1/minute\"\n\"not-an-address\" = \"blocked\"\n",
    );
    let limiter = RateLimiter::builder()
        .ignore_env()
        .overrides_file(&path)
        .build()
        .unwrap();
    let defaults = ratelimit_runtime::DefaultLimits::new("3/minute")
        .unwrap()
        .name("late-keys");
    let app = test::init_service(
        App::new()
            .app_data(limiter.clone())
            .wrap(defaults)
            .service(actix_web::web::resource("/").to(|| async { "ok" })),
    )
    .await;
    let from = |last: u8| {
        move || {
            TestRequest::get()
                .uri("/")
                .peer_addr(SocketAddr::from(([203, 0, 113, last], 40_000)))
                .to_request()
        }
    };
    assert_eq!(statuses(&app, 2, from(60)).await, [403, 403]);
    assert_eq!(statuses(&app, 2, from(61)).await, [200, 429]);
    assert_eq!(statuses(&app, 4, from(62)).await, [200, 200, 200, 429]);
}
