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
