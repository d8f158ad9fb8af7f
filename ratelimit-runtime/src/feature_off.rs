//! What a feature that is off leaves behind: its types and functions are gone (rustc then names
//! the feature by itself), and each of its methods on the limiter, its builder and
//! [`HeaderStyle`](crate::HeaderStyle) is a compile error naming the feature, through the
//! bounds below, which nothing ever satisfies. Nothing here runs.

#[cfg(not(feature = "redis"))]
/// Nothing satisfies this bound: the method needs the `redis` feature.
#[diagnostic::on_unimplemented(
    message = "this needs the `redis` feature of `ratelimit-runtime`, which is off",
    label = "needs the `redis` feature",
    note = "enable it in Cargo.toml: ratelimit-runtime = {{ version = \"0.1\", features = [\"redis\"] }}"
)]
pub trait RedisFeature: sealed::Sealed {}

#[cfg(not(feature = "metrics"))]
/// Nothing satisfies this bound: the method needs the `metrics` feature.
#[diagnostic::on_unimplemented(
    message = "this needs the `metrics` feature of `ratelimit-runtime`, which is off",
    label = "needs the `metrics` feature",
    note = "enable it in Cargo.toml: ratelimit-runtime = {{ version = \"0.1\", features = [\"metrics\"] }}"
)]
pub trait MetricsFeature: sealed::Sealed {}

#[cfg(not(feature = "overrides-file"))]
/// Nothing satisfies this bound: the method needs the `overrides-file` feature.
#[diagnostic::on_unimplemented(
    message = "this needs the `overrides-file` feature of `ratelimit-runtime`, which is off",
    label = "needs the `overrides-file` feature",
    note = "enable it in Cargo.toml: ratelimit-runtime = {{ version = \"0.1\", features = [\"overrides-file\"] }}"
)]
pub trait OverridesFileFeature: sealed::Sealed {}

#[cfg(not(all(feature = "redis", feature = "metrics", feature = "overrides-file")))]
mod sealed {
    /// Implemented by nothing.
    pub trait Sealed {}
}

/// What `HeaderStyle::Ietf` and `HeaderStyle::Both` are without the `ietf-headers` feature: not
/// a header style, so that using one fails to compile with this name in the error.
#[cfg(not(feature = "ietf-headers"))]
#[derive(Clone, Copy, Debug)]
pub struct IetfHeadersNeedTheIetfHeadersFeature;
