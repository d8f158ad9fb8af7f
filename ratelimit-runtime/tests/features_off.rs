//! Built without its optional features, the crate turns each of their APIs into a compile error
//! that names the feature (run with `--no-default-features`).
#![cfg(not(any(
    feature = "redis",
    feature = "metrics",
    feature = "overrides-file",
    feature = "ietf-headers"
)))]

#[test]
fn the_apis_of_features_that_are_off_name_their_feature() {
    trybuild::TestCases::new().compile_fail("tests/features_off/*.rs");
}

/// A variable that asks for a feature this build leaves out is refused by `build()`, naming
/// both: a fleet that sets `REDIS_URL` must not get per-process limits without a word.
#[test]
fn a_variable_of_a_feature_that_is_off_is_refused() {
    use ratelimit_runtime::{ConfigError, RateLimiter};

    for (variable, feature, value) in [
        ("REDIS_URL", "redis", "redis://127.0.0.1:6379"),
        ("REDIS_CLUSTER_URLS", "redis", "redis://127.0.0.1:7000"),
        ("RATELIMIT_OVERRIDES", "overrides-file", "overrides.toml"),
    ] {
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
}
