//! `RateLimiter::builder().build()` reads the documented environment (explicit calls win,
//! `ignore_env()` opts out) and says in one `info` line how it was built, never with the
//! password. The environment is the process's: this binary holds this one test, whose
//! scenarios run in order.

use std::sync::{Arc, Mutex};

use ratelimit_runtime::{ConfigError, RateLimiter};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The text of every `info` event.
#[derive(Clone, Default)]
struct InfoLines(Arc<Mutex<Vec<String>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, _: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{value:?} "));
    }
}

impl<S: Subscriber> Layer<S> for InfoLines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::INFO {
            let mut text = String::new();
            event.record(&mut Text(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
}

impl InfoLines {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[test]
fn the_builder_reads_the_environment_and_says_how_it_was_built() {
    let lines = InfoLines::default();
    let _events =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
    let redis_url = "redis://:hunter2@127.0.0.1:1/0";
    std::env::set_var("REDIS_URL", redis_url);
    std::env::set_var("RATELIMIT_SHADOW", "1");
    std::env::set_var("RATELIMIT_TRUSTED_PROXIES", "10.0.0.0/8");

    // The getting-started setup: a plain build is on the Redis the environment names.
    let limiter = RateLimiter::builder().build().unwrap();
    assert!(limiter.redis_stats().is_some(), "{limiter:?}");
    let built = lines.take();
    assert_eq!(built.len(), 1, "{built:?}");
    let line = &built[0];
    assert!(
        line.contains("limits on Redis at redis://:***@127.0.0.1:1/0"),
        "{line}"
    );
    assert!(
        line.contains("when it fails: fall back to process memory"),
        "{line}"
    );
    assert!(line.contains("trusted proxies 10.0.0.0/8"), "{line}");
    assert!(line.contains("dry run"), "{line}");
    assert!(!line.contains("hunter2") && !format!("{limiter:?}").contains("hunter2"));

    // Explicit calls win over the environment, whatever their order.
    let explicit = RateLimiter::builder()
        .shadow(false)
        .redis("redis://127.0.0.1:2")
        .trusted_proxies(["192.168.0.0/16"])
        .build()
        .unwrap();
    let line = lines.take().concat();
    assert!(
        line.contains("limits on Redis at redis://127.0.0.1:2;"),
        "{line}"
    );
    assert!(line.contains("trusted proxies 192.168.0.0/16"), "{line}");
    assert!(!line.contains("dry run"), "{line}");
    drop(explicit);

    // And `ignore_env()` ignores it.
    let plain = RateLimiter::builder().ignore_env().build().unwrap();
    assert!(plain.redis_stats().is_none());
    let line = lines.take().concat();
    assert!(line.contains("limits in process memory"), "{line}");
    assert!(
        line.contains("trusted proxies none") && !line.contains("dry run"),
        "{line}"
    );

    for name in ["REDIS_URL", "RATELIMIT_SHADOW", "RATELIMIT_TRUSTED_PROXIES"] {
        std::env::remove_var(name);
    }

    // Sentinel: the sentinels without the master's name is a configuration error, named.
    std::env::set_var(
        "REDIS_SENTINEL_URLS",
        "redis://:hunter2@127.0.0.1:1, redis://:hunter2@127.0.0.1:2",
    );
    let error = RateLimiter::builder().build().unwrap_err();
    assert!(
        matches!(&error, ConfigError::RedisSentinel(m) if m.contains("REDIS_SENTINEL_MASTER")),
        "{error}"
    );
    std::env::set_var("REDIS_SENTINEL_MASTER", "mymaster");
    // Over REDIS_URL when both are set.
    std::env::set_var("REDIS_URL", "redis://127.0.0.1:3");
    let limiter = RateLimiter::builder().build().unwrap();
    assert!(limiter.redis_stats().is_some());
    let line = lines.take().concat();
    assert!(
        line.contains(
            "limits on the Redis master mymaster of the sentinels at \
             redis://:***@127.0.0.1:1,redis://:***@127.0.0.1:2;"
        ),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
    for name in ["REDIS_SENTINEL_URLS", "REDIS_SENTINEL_MASTER", "REDIS_URL"] {
        std::env::remove_var(name);
    }
}
