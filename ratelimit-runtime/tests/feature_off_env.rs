//! Built without its optional features, the crate refuses an environment variable that needs
//! one (run with `--no-default-features`). A binary of its own: the test changes the process's
//! environment, which no other thread may read meanwhile.
#![cfg(not(any(feature = "redis", feature = "overrides-file")))]

use ratelimit_runtime::{ConfigError, RateLimiter};

/// Every variable that needs a feature, and the feature.
const VARIABLES: [(&str, &str, &str); 10] = [
    ("REDIS_URL", "redis", "redis://127.0.0.1:6379"),
    ("REDIS_CLUSTER_URLS", "redis", "redis://127.0.0.1:7000"),
    ("RATELIMIT_LEASES", "redis", "1"),
    ("RATELIMIT_LEASE_MS", "redis", "500"),
    ("RATELIMIT_REDIS_TIMEOUT_MS", "redis", "20"),
    ("RATELIMIT_REDIS_LEASE_MS", "redis", "2000"),
    ("RATELIMIT_REDIS_TLS_CA", "redis", "ca.pem"),
    ("RATELIMIT_REDIS_TLS_CERT", "redis", "client.pem"),
    ("RATELIMIT_REDIS_TLS_KEY", "redis", "client.key"),
    ("RATELIMIT_OVERRIDES", "overrides-file", "overrides.toml"),
];

/// A variable that asks for a feature this build leaves out is refused by `build()`, naming
/// both: a fleet that sets `REDIS_URL` must not get per-process limits without a word.
#[test]
fn a_variable_of_a_feature_that_is_off_is_refused() {
    // Whatever the machine running the tests sets is not this test's.
    for (variable, _, _) in VARIABLES {
        std::env::remove_var(variable);
    }
    assert!(RateLimiter::builder().build().is_ok());
    for (variable, feature, value) in VARIABLES {
        std::env::set_var(variable, value);
        let refused = RateLimiter::builder().build().unwrap_err();
        assert_eq!(refused, ConfigError::FeatureOff { variable, feature });
        let message = refused.to_string();
        assert!(
            message.contains(variable) && message.contains(&format!("features = [\"{feature}\"]")),
            "{message}"
        );
        // Told to ignore the environment, the same build is fine.
        assert!(RateLimiter::builder().ignore_env().build().is_ok());
        std::env::remove_var(variable);
        assert!(RateLimiter::builder().build().is_ok());
    }
    // The process-wide limiter cannot refuse: it logs the error and limits in memory.
    std::env::set_var("REDIS_URL", "redis://127.0.0.1:6379");
    let global = format!("{:?}", RateLimiter::global());
    assert!(global.contains("backend: Memory"), "{global}");
}
