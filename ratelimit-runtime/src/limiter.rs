//! [`RateLimiter`]: the configuration and state every limit of an app shares.

use std::fmt;
#[cfg(feature = "overrides-file")]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
#[cfg(feature = "metrics")]
use prometheus_client::registry::Registry;
use smallvec::SmallVec;

use crate::adaptive::AdaptiveLimits;
use crate::backend::Backend;
#[cfg(feature = "redis")]
use crate::backend::{FailurePolicy, RedisBackend, RedisStats, RedisTarget};
use crate::catalogue;
use crate::clock::{Clock, SystemClock};
use crate::engine::{Batch, Pass};
use crate::environment::{Environment, FeatureOff};
#[cfg(feature = "metrics")]
use crate::exposition;
use crate::headers::HeaderStyle;
use crate::info::RateLimitInfo;
use crate::inspect::{self, InspectError};
use crate::key::fingerprint::FleetKey;
use crate::key::{ClientIp, InvalidProxy, ProxyHeader};
use crate::keyed::{self, InsufficientCapacity, KeyedLimit};
#[cfg(feature = "redis")]
use crate::leases::Leases;
use crate::lookup::Lookups;
use crate::metrics::Metrics;
use crate::overrides::{self, KeyRule, OverrideError, Overrides};
use crate::response::DeniedBody;
use crate::rule::{Mode, Rule};
use crate::state::{penalty_strikes, LookupCaches, State};
#[cfg(feature = "redis")]
use crate::store::RedisOptions;
use crate::store::{Check, MemoryStore};
use crate::unsupported::UnsupportedLimit;

/// The limiter: a store, a clock, the client-address rules and the header style.
///
/// Every `#[ratelimit]` handler and every [`DefaultLimits`](crate::DefaultLimits) middleware of
/// an app finds its limiter in the app data, or else uses the process-wide one
/// ([`RateLimiter::global`]): with nothing configured, limits work out of the box in memory.
///
/// Build it **once**, outside the `HttpServer::new` factory, and clone it into each worker's
/// app; clones share one state, so a limit counts across all workers:
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use ratelimit_runtime::RateLimiter;
///
/// # async fn run() -> std::io::Result<()> {
/// let limiter = RateLimiter::builder()
///     .trusted_proxies(["10.0.0.0/8"])
///     .max_keys(500_000)
///     .build()
///     .expect("valid limiter configuration");
/// HttpServer::new(move || App::new().app_data(limiter.clone()))
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    state: Arc<State>,
}

static GLOBAL: OnceLock<RateLimiter> = OnceLock::new();

// Every public method of the limiter is here. Each hands its work to the room that does it:
// `engine.rs` decides a request (on `State`, the parts this limiter owns, in `state.rs`);
// `keyed.rs` and `inspect.rs` hold what `check_key`, `peek` and `reset` add around a
// decision; `overrides/` keeps the overrides; `exposition.rs` renders the metrics.
impl RateLimiter {
    /// A builder with the defaults: memory store of at most 1,000,000 keys, system clock, no
    /// trusted proxies, IPv6 grouped by /64, `X-RateLimit-*` headers, key prefix `ratelimit`.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    /// The process-wide limiter: the one [installed](RateLimiter::install), or a default one
    /// (in memory, or on Redis when `REDIS_URL` or `REDIS_CLUSTER_URLS` is set; see
    /// [`RateLimiterBuilder::from_env`]).
    ///
    /// Built on first use, so a rule it cannot decide (see
    /// [`RateLimiterBuilder::build`]) is not refused up front: it is logged at error level, and
    /// requests under that rule are answered `500` naming it. An environment variable whose
    /// feature is off ([`ConfigError::FeatureOff`]) is logged at error level and ignored: limits
    /// stay in process memory, as under [`FailurePolicy::Fallback`](crate::FailurePolicy) while
    /// Redis is away.
    pub fn global() -> &'static RateLimiter {
        GLOBAL.get_or_init(|| RateLimiterBuilder::default().build_global())
    }

    /// Makes this limiter the process-wide one, for apps that register none. Fails, returning
    /// it, when a process-wide limiter is already in use.
    pub fn install(self) -> Result<(), RateLimiter> {
        GLOBAL.set(self)
    }

    /// The limiter of `req`'s app, or the process-wide one.
    pub fn for_request(req: &HttpRequest) -> &RateLimiter {
        req.app_data::<RateLimiter>()
            .or_else(|| {
                req.app_data::<web::Data<RateLimiter>>()
                    .map(|data| data.get_ref())
            })
            .unwrap_or_else(|| RateLimiter::global())
    }

    /// The in-memory store (or, on Redis, the fallback store), for its statistics.
    pub fn memory_store(&self) -> &MemoryStore {
        &self.state.store
    }

    /// Counters of the Redis backend; `None` for a limiter in memory.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_stats(&self) -> Option<RedisStats> {
        self.state.backend.redis_stats()
    }

    // Decisions: `engine.rs` decides a request, `keyed.rs` a key outside HTTP.

    /// Decides `rules` for `req`: `Ok` with a [`Pass`] when every enforced rule allows (all
    /// charged), `Err` with the response to send when one denies (none charged).
    pub async fn check(&self, req: &HttpRequest, rules: &[Rule]) -> Result<Pass, HttpResponse> {
        self.state.check(req, rules).await
    }

    /// Decides `cost` units for `key` under `limit` (a [`Rule`] or a [`Quota`](crate::Quota)), charging them
    /// if allowed: `is_allowed()` says whether to go on, `retry_after()` when to try again.
    /// The rule's algorithm, `max_wait` (a turn within it is waited for here) and overrides
    /// apply; its scope and mode do not (`key` is the client, and the answer is the decision).
    /// A tier function is asked with a request that carries nothing; a concurrency limit has no
    /// meaning outside a request and is skipped. A cost of 0 counts as 1. Counted in the metrics
    /// like a request.
    ///
    /// A limit this limiter cannot decide (a `sliding_log` above its maximum, or on Redis a
    /// limit its script cannot keep exact: see [`UnsupportedLimit`](crate::UnsupportedLimit))
    /// is never decided: the answer is not allowed, with a limit of 0 (so that
    /// [`until_ready`](Self::until_ready) fails at once), and the refusal is logged once.
    ///
    /// ```
    /// # async fn job(limiter: ratelimit_runtime::RateLimiter) {
    /// use ratelimit_runtime::Quota;
    ///
    /// let calls = Quota::from_parts(10, 1).unwrap(); // a partner API allows 10 per second
    /// if limiter.check_key(&calls, "partner-api", 1).await.is_allowed() {
    ///     // call it
    /// }
    /// # }
    /// ```
    pub async fn check_key(&self, limit: &impl KeyedLimit, key: &str, cost: u32) -> RateLimitInfo {
        let state = &self.state;
        let now = state.clock.now();
        let rules = keyed::rules_of(limit, cost, &state.overrides);
        let rules = match state.with_tiers_of(rules, key).await {
            Ok(rules) => rules,
            Err(failed) => {
                let secs = failed.retry_after_secs();
                return keyed::unavailable(&Batch::default(), now, secs);
            }
        };
        let batch = keyed::batch(&rules, key, |r, l, id| state.check_for(r, l, id));
        let decided = match batch.checks.is_empty() {
            true => None,
            false => Some(state.decide(&batch, now, now, Mode::Enforce).await),
        };
        keyed::answer(decided, &batch, now).await
    }

    /// Waits (asynchronously) until `cost` units for `key` pass under `limit`, and spends them:
    /// [`check_key`](Self::check_key) again at each `retry_after`. Fails at once when the cost
    /// can never pass. Under [`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)
    /// it waits as long as Redis is down.
    pub async fn until_ready(
        &self,
        limit: &impl KeyedLimit,
        key: &str,
        cost: u32,
    ) -> Result<RateLimitInfo, InsufficientCapacity> {
        loop {
            let info = self.check_key(limit, key, cost).await;
            if info.is_allowed() {
                return Ok(info);
            }
            if cost > info.limit() {
                return Err(InsufficientCapacity {
                    cost,
                    capacity: info.limit(),
                });
            }
            tokio::time::sleep(info.retry_after().max(Duration::from_millis(1))).await;
        }
    }

    // Operations: `inspect.rs` reads and clears a client's state, `overrides/` changes limits.

    /// The state of `key` under the rule `rule`, without spending anything: what the headers
    /// of its next request would start from. `remaining()` is what is left now, `is_allowed()`
    /// whether a request of the rule's cost would pass, `retry_after_secs()` when it would.
    ///
    /// The key is what the rule's scope counts: an IP address for `"ip"` (grouped as requests
    /// are), the header's value for `"header:<Name>"`, the key function's value for `key = fn`,
    /// anything for `"global"`. Where the quota comes from a tier function, the function is
    /// asked with a request carrying the key where the scope reads it (a custom key function's
    /// tier function sees a request without it). With several limits, the most restrictive
    /// is returned. Works on memory and on Redis (one round trip, nothing written).
    pub async fn peek(&self, rule: &str, key: &str) -> Result<RateLimitInfo, InspectError> {
        let state = &self.state;
        let rules = state
            .overrides
            .apply(&inspect::rules_named(rule)?)
            .into_owned();
        let rules = self.with_tiers_of(rules, rule, key).await?;
        let rules = match state.overrides.key_rule_for(rule, key) {
            None => rules,
            Some(KeyRule::Rate(quotas)) => overrides::under_key_rate(&rules, &quotas),
            Some(other) => {
                return Err(InspectError::KeyOverridden {
                    rule: rule.to_owned(),
                    key: key.to_owned(),
                    setting: if other == KeyRule::Blocked {
                        "blocked"
                    } else {
                        "unlimited"
                    },
                })
            }
        };
        let mut checks = self.checks_of(&rules, rule, key)?;
        let own = checks.len();
        checks.extend(self.penalty_probes_of(&rules, rule, key)?);
        inspect::peek(
            &state.backend,
            &state.store,
            &checks,
            own,
            state.clock.now(),
            rule,
        )
        .await
    }

    /// Clears the state of `key` under the rule `rule` (every limit of it): the client starts
    /// again with a whole budget. On Redis the keys are deleted for the whole fleet; another
    /// process may still answer from its local cache of blocked keys until the denial it cached
    /// ends.
    pub async fn reset(&self, rule: &str, key: &str) -> Result<(), InspectError> {
        let state = &self.state;
        let rules = self
            .with_tiers_of(inspect::rules_named(rule)?, rule, key)
            .await?;
        // Under an override too: clearing it later must not bring back a blocked state.
        let mut checks = self.checks_of(&rules, rule, key)?;
        checks.extend(self.checks_of(&state.overrides.apply(&rules), rule, key)?);
        if let Some(KeyRule::Rate(quotas)) = state.overrides.key_rule_for(rule, key) {
            let under = overrides::under_key_rate(&rules, &quotas);
            checks.extend(self.checks_of(&under, rule, key)?);
        }
        // A penalty is lifted with the rest: its probe and the client's strikes.
        if let Some(penalty) = rules.iter().find_map(|r| r.penalty) {
            for probe in self.penalty_probes_of(&rules, rule, key)? {
                checks.push(Check {
                    probe: false,
                    ..probe
                });
                checks.push(penalty_strikes(&probe, penalty));
            }
        }
        inspect::reset(&state.backend, &state.store, &checks).await?;
        tracing::info!(rule, "rate limiter: a client's state was reset");
        Ok(())
    }

    /// Overrides the limit of the rule `rule` (a handler's rule name, as
    /// [`rules`](RateLimiter::rules) lists them, or `shared:<name>`) with `rate`
    /// (`"20/minute"`, or several limits separated by `;`), in force from the next request.
    ///
    /// A rate that does not parse, a name no rule has, or a limit this limiter cannot decide
    /// ([`OverrideError::UnsupportedLimit`]: a `sliding_log` above its maximum, or on Redis a
    /// limit its script cannot keep exact) is refused and the limit stays as it was. An
    /// override counts in a budget of its own (see *Overrides* in the repository's docs/operations.md).
    pub fn set_override(&self, rule: &str, rate: &str) -> Result<(), OverrideError> {
        self.state.overrides.set(rule, rate)
    }

    /// Gives the client `key` of the rule `rule` (the key as [`peek`](RateLimiter::peek) names
    /// it: an address for a rule counted per client address, a header's or a key function's
    /// value otherwise) its own `setting`, in force from its next request:
    ///
    /// - a rate (`"30/10 seconds"`, or several separated by `;`) replacing the rule's limits
    ///   for that client, in a budget of its own;
    /// - `"unlimited"`: the rule does not limit that client;
    /// - `"blocked"`: every request of the rule from that client is answered 403, the store
    ///   not asked.
    ///
    /// An entry of the API takes precedence over the overrides file's for the same key, and
    /// over the rule's own override. Refused, and nothing changes, for a rule no handler has,
    /// a rate that does not parse or that the rule cannot take, a key the rule cannot have
    /// ([`OverrideError::InvalidKey`]), and beyond [`MAX_KEY_OVERRIDES`](crate::MAX_KEY_OVERRIDES)
    /// entries.
    pub fn set_key_override(
        &self,
        rule: &str,
        key: &str,
        setting: &str,
    ) -> Result<(), OverrideError> {
        self.state.overrides.set_key(rule, key, setting)
    }

    /// Removes the API's entry for the client `key` of `rule` (the file's, if any, then
    /// applies); returns whether there was one.
    pub fn clear_key_override(&self, rule: &str, key: &str) -> bool {
        self.state.overrides.clear_key(rule, key)
    }

    /// Removes the API's override of `rule` (the file's, if any, then applies); returns
    /// whether there was one.
    pub fn clear_override(&self, rule: &str) -> bool {
        self.state.overrides.clear(rule)
    }

    /// Reads the overrides file again (the one given to
    /// [`overrides_file`](crate::RateLimiterBuilder::overrides_file) or `RATELIMIT_OVERRIDES`)
    /// and returns how many overrides it holds. A file with any bad entry is refused whole, and
    /// the overrides in force stay.
    #[cfg(feature = "overrides-file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "overrides-file")))]
    pub fn reload_overrides(&self) -> Result<usize, OverrideError> {
        self.state.overrides.load_file()
    }

    /// The names of every rule the program has: `#[ratelimit]` handlers and default limits.
    pub fn rules(&self) -> Vec<String> {
        catalogue::names().into_iter().collect()
    }

    /// `rules` (the rule `rule`) with the tiers lookups choose for `key` looked up.
    async fn with_tiers_of(
        &self,
        rules: Vec<Rule>,
        rule: &str,
        key: &str,
    ) -> Result<Vec<Rule>, InspectError> {
        let looked = self.state.with_tiers_of(rules, key).await;
        looked.map_err(|failed| InspectError::Lookup {
            rule: rule.to_owned(),
            key: key.to_owned(),
            reason: failed.reason,
        })
    }

    /// The checks of `key` under `rules`, the limits of the rule `rule` (for peek and reset).
    fn checks_of(
        &self,
        rules: &[Rule],
        rule: &str,
        key: &str,
    ) -> Result<SmallVec<[Check; 4]>, InspectError> {
        let state = &self.state;
        inspect::checks_of(rules, rule, key, &state.client_ip, |r, l, id| {
            state.check_for(r, l, id)
        })
    }

    /// The penalty probes of `key` under `rules` (one per rule name with a `penalty`).
    fn penalty_probes_of(
        &self,
        rules: &[Rule],
        rule: &str,
        key: &str,
    ) -> Result<SmallVec<[Check; 4]>, InspectError> {
        let mut penalized: Vec<Rule> = Vec::new();
        for r in rules.iter().filter(|r| r.penalty.is_some()) {
            if !penalized.iter().any(|p| p.name == r.name) {
                penalized.push(r.clone());
            }
        }
        let state = &self.state;
        inspect::checks_of(
            &penalized,
            rule,
            key,
            &state.client_ip,
            |r, l, id| match r.penalty {
                Some(penalty) => state.penalty_probe(r, penalty, id),
                None => state.check_for(r, l, id),
            },
        )
    }

    // Observability: `metrics/` counts, `exposition.rs` renders (feature `metrics`).

    /// The limiter's metrics in the OpenMetrics text format (what Prometheus scrapes): decisions
    /// per rule, outcome and store, units spent, decision latency, and the store's health. See
    /// [`metrics_endpoint`](crate::metrics_endpoint) to serve them.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(&self) -> String {
        exposition::render(&self.state)
    }

    /// Registers the limiter's metrics in an application's own registry.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&self, registry: &mut Registry) {
        exposition::register(&self.state, registry);
    }
}

/// The builder's methods of features that are off: each is a compile error naming its feature
/// (see `feature_off.rs`).
#[cfg(not(all(feature = "redis", feature = "metrics", feature = "overrides-file")))]
#[doc(hidden)]
#[allow(missing_docs, unused_variables)]
impl RateLimiterBuilder {
    #[cfg(not(feature = "redis"))]
    pub fn redis<U: crate::feature_off::RedisFeature>(self, url: U) -> Self {
        self
    }

    #[cfg(not(feature = "redis"))]
    pub fn redis_cluster<N: crate::feature_off::RedisFeature>(self, nodes: N) -> Self {
        self
    }

    #[cfg(not(feature = "redis"))]
    pub fn redis_sentinel<M: crate::feature_off::RedisFeature, S>(
        self,
        master: M,
        sentinels: S,
    ) -> Self {
        self
    }

    #[cfg(not(feature = "redis"))]
    pub fn redis_options<O: crate::feature_off::RedisFeature>(self, options: O) -> Self {
        self
    }

    #[cfg(not(feature = "redis"))]
    pub fn on_redis_failure<P: crate::feature_off::RedisFeature>(self, policy: P) -> Self {
        self
    }

    #[cfg(not(feature = "redis"))]
    pub fn redis_leases<L: crate::feature_off::RedisFeature>(self, leases: L) -> Self {
        self
    }

    #[cfg(not(feature = "metrics"))]
    pub fn metrics<B: crate::feature_off::MetricsFeature>(self, on: B) -> Self {
        self
    }

    #[cfg(not(feature = "overrides-file"))]
    pub fn overrides_file<P: crate::feature_off::OverridesFileFeature>(self, path: P) -> Self {
        self
    }
}

/// The limiter's methods of features that are off: each is a compile error naming its feature.
#[cfg(not(all(feature = "redis", feature = "metrics", feature = "overrides-file")))]
#[doc(hidden)]
#[allow(missing_docs, unused_variables)]
impl RateLimiter {
    #[cfg(not(feature = "redis"))]
    pub fn redis_stats<'a>(&'a self) -> Option<std::convert::Infallible>
    where
        &'a Self: crate::feature_off::RedisFeature,
    {
        None
    }

    #[cfg(not(feature = "metrics"))]
    pub fn metrics<'a>(&'a self) -> String
    where
        &'a Self: crate::feature_off::MetricsFeature,
    {
        String::new()
    }

    #[cfg(not(feature = "metrics"))]
    pub fn register_metrics<R: crate::feature_off::MetricsFeature>(&self, registry: R) {}

    #[cfg(not(feature = "overrides-file"))]
    pub fn reload_overrides<'a>(&'a self) -> Result<usize, OverrideError>
    where
        &'a Self: crate::feature_off::OverridesFileFeature,
    {
        Ok(0)
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.fmt(f)
    }
}

/// Builds a [`RateLimiter`].
pub struct RateLimiterBuilder {
    max_keys: Option<usize>,
    max_log_bytes: Option<usize>,
    clock: Box<dyn Clock>,
    trusted_proxies: Result<Vec<String>, InvalidProxy>,
    proxy_header: ProxyHeader,
    ipv6_prefix: u8,
    header_style: HeaderStyle,
    denied_body: DeniedBody,
    shadow: Option<bool>,
    metrics: bool,
    #[cfg(feature = "overrides-file")]
    overrides_file: Option<PathBuf>,
    key_prefix: String,
    key_secret: Option<FleetKey>,
    #[cfg(feature = "redis")]
    redis: RedisChoice,
    /// A setting of the environment whose feature is off: `build()` refuses it.
    feature_off: Option<FeatureOff>,
    /// Why the environment's Redis TLS files cannot be read: `build()` refuses it.
    #[cfg(feature = "redis")]
    redis_tls_error: Option<String>,
    /// Whether trusted proxies were given in code (the environment then adds none).
    proxies_given: bool,
    /// Whether `build()` reads the environment for what code left unset.
    read_env: bool,
    lookups: Lookups,
}

impl Default for RateLimiterBuilder {
    fn default() -> RateLimiterBuilder {
        RateLimiterBuilder {
            max_keys: None,
            max_log_bytes: None,
            clock: Box::new(SystemClock::new()),
            trusted_proxies: Ok(Vec::new()),
            proxy_header: ProxyHeader::default(),
            ipv6_prefix: 64,
            header_style: HeaderStyle::default(),
            denied_body: DeniedBody::default(),
            shadow: None,
            metrics: true,
            #[cfg(feature = "overrides-file")]
            overrides_file: None,
            key_prefix: "ratelimit".to_string(),
            key_secret: None,
            #[cfg(feature = "redis")]
            redis: RedisChoice::default(),
            feature_off: None,
            #[cfg(feature = "redis")]
            redis_tls_error: None,
            proxies_given: false,
            read_env: true,
            lookups: Lookups::default(),
        }
    }
}

/// Where limits go on Redis, and how (feature `redis`).
#[cfg(feature = "redis")]
#[derive(Default)]
struct RedisChoice {
    target: Option<RedisTarget>,
    options: Option<RedisOptions>,
    on_failure: FailurePolicy,
    leases: Option<Leases>,
}

/// A configuration [`RateLimiterBuilder::build`] refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A trusted proxy that is not an address or network.
    InvalidProxy(InvalidProxy),
    /// `max_keys(0)`.
    ZeroMaxKeys,
    /// A rule of the program this limiter cannot decide: on Redis, a limit its script cannot
    /// keep exact. Deciding it in process memory instead would make a fleet's limit a
    /// process's; the rule must change (the error says how).
    UnsupportedLimit(UnsupportedLimit),
    /// An environment variable asks for a part of the crate this build leaves out (its Cargo
    /// feature is off): `REDIS_URL` without the `redis` feature, say. Limits would otherwise
    /// stay per process while the fleet expects them shared.
    FeatureOff {
        /// The variable.
        variable: &'static str,
        /// The feature it needs.
        feature: &'static str,
    },
    /// A Redis TLS file (`RATELIMIT_REDIS_TLS_CA`, `_CERT`, `_KEY`) cannot be read, or a client
    /// certificate comes without its key.
    RedisTls(String),
    /// A Redis Sentinel configuration that cannot work: no sentinels, no master name
    /// (`REDIS_SENTINEL_URLS` without `REDIS_SENTINEL_MASTER`), a URL that does not parse.
    RedisSentinel(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidProxy(e) => write!(f, "invalid trusted proxy: {e}"),
            ConfigError::ZeroMaxKeys => write!(f, "`max_keys` must be at least 1"),
            ConfigError::UnsupportedLimit(e) => e.fmt(f),
            ConfigError::RedisTls(message) => f.write_str(message),
            ConfigError::RedisSentinel(message) => write!(f, "Redis Sentinel: {message}"),
            ConfigError::FeatureOff { variable, feature } => write!(
                f,
                "`{variable}` is set, but ratelimit-runtime was built without its `{feature}` \
                 feature: enable it (`features = [\"{feature}\"]`) or unset `{variable}`"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl RateLimiterBuilder {
    /// The hard cap on keys the memory store tracks (default 1,000,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// The cap on bytes the memory store's sliding logs hold (default 256 MiB; see
    /// [`MemoryStore::with_max_log_bytes`]).
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.max_log_bytes = Some(bytes);
        self
    }

    /// The clock; tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Proxies (addresses like `"10.0.0.7"` or networks like `"10.0.0.0/8"`) whose forwarding
    /// header names the client. Without any, the client is always the TCP peer.
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list: Vec<String> = proxies
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        self.proxies_given = true;
        self.trusted_proxies = match self.trusted_proxies {
            Ok(mut known) => {
                known.extend(list);
                Ok(known)
            }
            err => err,
        };
        self
    }

    /// The header trusted proxies write (default `X-Forwarded-For`).
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.proxy_header = header;
        self
    }

    /// How many leading bits of an IPv6 address identify a client (default 64).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// Which limit headers responses carry (default `X-RateLimit-*`).
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.header_style = style;
        self
    }

    /// The body of the default 429 response (default: JSON; or an RFC 9457 problem).
    pub fn denied_body(mut self, body: DeniedBody) -> Self {
        self.denied_body = body;
        self
    }

    /// Makes every rule a dry run, as `mode = "shadow"` makes one: limits are decided and
    /// charged as usual, but a request they would refuse is let through, logged at info level
    /// (at most one line a second per rule) and counted as `shadow_denied`. A concurrency limit
    /// with no slot left lets the request through too (without a slot).
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Whether decisions are counted for [`metrics`](RateLimiter::metrics) (default: on).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// A file of overrides (`rule = "rate"` pairs, TOML, or JSON when it ends in `.json`),
    /// loaded when the limiter is built and reloaded whenever it changes. See
    /// [`RateLimiter::set_override`].
    #[cfg(feature = "overrides-file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "overrides-file")))]
    pub fn overrides_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides_file = Some(path.into());
        self
    }

    /// A prefix of every key, so that apps sharing a store keep apart (default `ratelimit`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The fleet's secret for Redis key names (any bytes; 32 random ones, say, from a secret
    /// store): names become a keyed hash (128 bits of SipHash-1-3) nobody without the secret
    /// can aim at, so no crafted header value or key lands on another client's budget.
    ///
    /// Every process of a fleet must use the same secret. One that does not names every key
    /// differently: its requests are counted apart from the others' (limits split between the
    /// two groups, each admitting up to the limit), which is why a process with a secret that
    /// differs from the one Redis has seen logs an error at its first connection. Changing the
    /// secret starts every budget afresh. Without a secret, names use a public key: stable, but
    /// predictable (logged as a warning when a limiter is built on Redis).
    /// `RATELIMIT_KEY_SECRET` sets it from the environment.
    pub fn key_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.key_secret = Some(FleetKey::from_secret(secret.as_ref()));
        self
    }

    /// Keeps every limit on one Redis (`redis://host:port/db`), shared by every process that
    /// uses it. The connection is made on first use and remade by itself; see
    /// [`on_redis_failure`](Self::on_redis_failure) for what happens while Redis is down.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis.target = Some(RedisTarget::Single(url.into()));
        self
    }

    /// Keeps every limit on a Redis Cluster, reached through any of `nodes`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redis.target = Some(RedisTarget::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Keeps every limit on the Redis master that the sentinels at `sentinels` name `master`,
    /// and follows it through failovers: when Redis fails, the sentinels are asked again, and
    /// once they name a new master the limiter decides there (meanwhile the
    /// [failure policy](Self::on_redis_failure) answers, each request within the Redis
    /// timeout).
    ///
    /// `sentinels` are URLs (`redis://:password@h1:26379`, `rediss://` for TLS), with one user
    /// and password for all. `master` is the name the sentinels monitor (`mymaster`): the
    /// master then takes the sentinels' user, password and TLS; or a URL whose host is that name
    /// and whose user, password, database and scheme are the master's own
    /// (`rediss://app:secret@mymaster/0`). `REDIS_SENTINEL_URLS` and `REDIS_SENTINEL_MASTER`
    /// set the same from the environment.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_sentinel<I, S>(mut self, master: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redis.target = Some(RedisTarget::Sentinel {
            master: master.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// The per-call timeout and the time source of the Redis store (its key prefix is
    /// [`key_prefix`](Self::key_prefix)).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.redis.options = Some(options);
        self
    }

    /// What to do while Redis fails (default: [`FailurePolicy::Fallback`]).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn on_redis_failure(mut self, policy: FailurePolicy) -> Self {
        self.redis.on_failure = policy;
        self
    }

    /// Takes units of Redis budgets in batches and spends them in process memory (see
    /// [`Leases`] for what each algorithm's fleet-wide limit becomes): far fewer Redis calls
    /// for the keys a process sees often. Off by default; without Redis it does nothing.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_leases(mut self, leases: Leases) -> Self {
        self.redis.leases = Some(leases);
        self
    }

    /// How the answers of async tier and key functions are kept: for how long, how many, how
    /// long a lookup may take and when a failed one is asked again (see
    /// [`lookup`](crate::lookup) for what a slow or failing lookup gets). The defaults:
    /// [`Lookups::new`].
    pub fn lookups(mut self, lookups: Lookups) -> Self {
        self.lookups = lookups;
        self
    }

    /// Reads the environment now, as [`build`](Self::build) does by itself for whatever code
    /// leaves unset: here what it finds replaces what was set before, and calls after this one
    /// replace it in turn. The variables:
    ///
    /// - `REDIS_URL` puts limits on that Redis, `REDIS_CLUSTER_URLS` (comma-separated node
    ///   URLs) on a Redis Cluster, `REDIS_SENTINEL_URLS` (comma-separated sentinel URLs) with
    ///   `REDIS_SENTINEL_MASTER` on the master they name (see
    ///   [`redis_sentinel`](Self::redis_sentinel)); without any, limits stay in memory. When
    ///   several are set, the Cluster wins, then Sentinel;
    /// - `RATELIMIT_REDIS_TIMEOUT_MS` sets the per-call timeout, `RATELIMIT_REDIS_LEASE_MS` the
    ///   lease of concurrency slots;
    /// - `RATELIMIT_REDIS_TLS_CA` names a PEM file of a CA to trust for `rediss://` URLs (besides
    ///   the system's roots), `RATELIMIT_REDIS_TLS_CERT` and `RATELIMIT_REDIS_TLS_KEY` a client
    ///   certificate and its key (see [`RedisTls`](crate::store::RedisTls));
    /// - `RATELIMIT_OVERRIDES` names an [overrides file](Self::overrides_file);
    /// - `RATELIMIT_LEASES=1` turns [leases](Self::redis_leases) on (`RATELIMIT_LEASE_MS` sets
    ///   their lifetime);
    /// - `RATELIMIT_TRUSTED_PROXIES` (comma-separated addresses or networks, such as
    ///   `10.0.0.0/8,127.0.0.1/32`) adds [trusted proxies](Self::trusted_proxies): trust only
    ///   ranges that hold nothing but your proxies, for a client inside a trusted range picks
    ///   its own address through the forwarding header;
    /// - `RATELIMIT_SHADOW=1` makes every rule a [dry run](Self::shadow): the kill switch
    ///   during an incident;
    /// - `RATELIMIT_KEY_SECRET` is the fleet's [secret for key names](Self::key_secret).
    pub fn from_env(self) -> Self {
        self.apply(Environment::read(), true)
    }

    /// Makes [`build`](Self::build) ignore the environment: only what code sets counts (tests
    /// that must not pick up a developer's `REDIS_URL`, say).
    pub fn ignore_env(mut self) -> Self {
        self.read_env = false;
        self
    }

    /// The limiter, or what is wrong with the configuration.
    ///
    /// With a Redis target, every rule the program holds with a quota known now is checked: the
    /// `#[ratelimit]` handlers of the whole binary (whether this app serves them or not) and
    /// the [`DefaultLimits`](crate::DefaultLimits) made so far. One whose arithmetic Redis
    /// cannot keep exact is refused with [`ConfigError::UnsupportedLimit`], naming it; default
    /// limits made later are checked as their app starts. Quotas chosen per request are
    /// checked per request (see [`UnsupportedLimit`]).
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let builder = self.with_environment();
        if let Some(FeatureOff { variable, feature }) = builder.feature_off {
            return Err(ConfigError::FeatureOff { variable, feature });
        }
        #[cfg(feature = "redis")]
        if let Some(message) = builder.redis_tls_error.clone() {
            return Err(ConfigError::RedisTls(message));
        }
        #[cfg(feature = "redis")]
        if let Some(target) = &builder.redis.target {
            target.check().map_err(ConfigError::RedisSentinel)?;
        }
        let limiter = builder.assemble()?;
        if limiter.state.backend.is_shared() {
            catalogue::adopt_redis().map_err(ConfigError::UnsupportedLimit)?;
        }
        limiter.state.log_configuration();
        #[cfg(feature = "overrides-file")]
        limiter.state.overrides.watch();
        Ok(limiter)
    }

    /// The process-wide limiter: its configuration (the defaults and the environment) is valid,
    /// but a rule it cannot decide only gets logged here, and answered per request.
    fn build_global(self) -> RateLimiter {
        let mut builder = self.with_environment();
        if let Some(off) = builder.feature_off.take() {
            tracing::error!(
                "rate limiter: {}; it is ignored",
                ConfigError::FeatureOff {
                    variable: off.variable,
                    feature: off.feature
                }
            );
        }
        #[cfg(feature = "redis")]
        if let Some(message) = builder.redis_tls_error.take() {
            tracing::error!("rate limiter: {message}; connecting without it");
        }
        // A Sentinel configuration that cannot connect: limits stay in process memory, said
        // loudly, rather than a process that cannot start.
        #[cfg(feature = "redis")]
        if let Some(Err(message)) = builder.redis.target.as_ref().map(RedisTarget::check) {
            tracing::error!(
                "rate limiter: {}; limits stay in process memory",
                ConfigError::RedisSentinel(message)
            );
            builder.redis.target = None;
        }
        // Only the environment can be wrong here (a trusted proxy that is no address): trusting
        // no proxy is the strict reading, never a fresh budget for a forger.
        let proxies = builder.trusted_proxies.clone();
        if let Err(e) = proxies.and_then(|p| ClientIp::trusting(p, builder.proxy_header)) {
            tracing::error!("rate limiter: invalid trusted proxy: {e}; trusting no proxy");
            builder.trusted_proxies = Ok(Vec::new());
        }
        let limiter = match builder.assemble() {
            Ok(limiter) => limiter,
            Err(e) => unreachable!("the default configuration is valid: {e}"),
        };
        if limiter.state.backend.is_shared() {
            if let Err(refused) = catalogue::adopt_redis() {
                tracing::error!("rate limiter: {refused}; requests under it are answered 500");
            }
        }
        limiter.state.log_configuration();
        #[cfg(feature = "overrides-file")]
        limiter.state.overrides.watch();
        limiter
    }

    /// What the environment sets that code left unset, unless told to ignore it.
    fn with_environment(self) -> Self {
        if self.read_env {
            self.apply(Environment::read(), false)
        } else {
            self
        }
    }

    /// The limiter, its options checked; its rules not yet, its overrides file not yet read.
    fn assemble(self) -> Result<RateLimiter, ConfigError> {
        if self.max_keys == Some(0) {
            return Err(ConfigError::ZeroMaxKeys);
        }
        let proxies = self
            .trusted_proxies
            .clone()
            .map_err(ConfigError::InvalidProxy)?;
        let client_ip = ClientIp::trusting(proxies, self.proxy_header)
            .map_err(ConfigError::InvalidProxy)?
            .with_ipv6_prefix(self.ipv6_prefix);
        let mut store = self
            .max_keys
            .map_or_else(MemoryStore::default, MemoryStore::with_max_keys);
        let fleet_key = self.key_secret.unwrap_or_else(FleetKey::public);
        let clock: Arc<dyn Clock> = Arc::from(self.clock);
        if let Some(bytes) = self.max_log_bytes {
            store = store.with_max_log_bytes(bytes);
        }
        #[cfg(feature = "redis")]
        let backend = match self.redis.target {
            Some(target) => {
                if target.urls().any(crate::store::is_insecure) {
                    tracing::warn!(
                        "rate limiter: a Redis URL ends in #insecure: its TLS certificate and \
                         server name are not checked, so anyone on the path can read and change \
                         every limit; never in production"
                    );
                }
                let options = RedisOptions {
                    prefix: self.key_prefix.clone(),
                    ..self.redis.options.unwrap_or_default()
                };
                Backend::Redis(Arc::new(RedisBackend::new(
                    target,
                    options,
                    self.redis.on_failure,
                    self.redis.leases,
                    fleet_key.mark(),
                    Arc::clone(&clock),
                )))
            }
            None => Backend::Memory,
        };
        #[cfg(not(feature = "redis"))]
        let backend = Backend::Memory;
        let on_redis = backend.is_shared();
        if on_redis && !fleet_key.is_secret() {
            tracing::warn!(
                "rate limiter: Redis key names use a public key, so a crafted key could be aimed \
                 at another client's budget; set RATELIMIT_KEY_SECRET (or `key_secret`), the \
                 same in every process of the fleet"
            );
        }
        #[cfg(feature = "overrides-file")]
        let mut overrides = match self.overrides_file {
            Some(path) => Overrides::with_file(path, on_redis),
            None => Overrides::new(on_redis),
        };
        #[cfg(not(feature = "overrides-file"))]
        let mut overrides = Overrides::new(on_redis);
        overrides.client_ip = client_ip.clone();
        Ok(RateLimiter {
            state: Arc::new(State {
                store: Arc::new(store),
                backend,
                clock,
                client_ip,
                header_style: self.header_style,
                denied_body: self.denied_body,
                shadow: self.shadow.unwrap_or(false),
                metrics: Metrics::new(self.metrics && cfg!(feature = "metrics")),
                overrides: Arc::new(overrides),
                key_prefix: self.key_prefix,
                fleet_key,
                hasher: ahash::RandomState::new(),
                lookups: LookupCaches::new(self.lookups),
                adaptive: AdaptiveLimits::default(),
            }),
        })
    }
}

impl RateLimiterBuilder {
    /// Sets what the environment says: everything when `replace`, else only what code left
    /// unset.
    fn apply(mut self, env: Environment, replace: bool) -> RateLimiterBuilder {
        fn put<T>(slot: &mut Option<T>, value: Option<T>, replace: bool) {
            if value.is_some() && (replace || slot.is_none()) {
                *slot = value;
            }
        }
        #[cfg(feature = "redis")]
        {
            put(&mut self.redis.target, env.redis, replace);
            put(&mut self.redis.leases, env.leases, replace);
            if replace || self.redis.options.is_none() {
                let options = self.redis.options.get_or_insert_with(RedisOptions::default);
                if let Some(ms) = env.timeout_ms {
                    options.timeout = std::time::Duration::from_millis(ms);
                }
                if let Some(ms) = env.slot_lease_ms {
                    options.lease = std::time::Duration::from_millis(ms);
                }
                match env.tls {
                    Some(Ok(tls)) => options.tls = tls,
                    Some(Err(message)) => put(&mut self.redis_tls_error, Some(message), true),
                    None => {}
                }
            }
        }
        #[cfg(feature = "overrides-file")]
        put(&mut self.overrides_file, env.overrides, replace);
        put(&mut self.shadow, env.shadow, replace);
        put(&mut self.key_secret, env.secret, replace);
        put(&mut self.feature_off, env.feature_off, replace);
        if let Some(proxies) = env.proxies.filter(|_| replace || !self.proxies_given) {
            self = self.trusted_proxies(proxies);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Identity;

    #[test]
    fn invalid_configuration_is_refused() {
        let err = RateLimiter::builder()
            .trusted_proxies(["10.0.0.0/8", "ten"])
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::InvalidProxy(InvalidProxy("ten".into())));
        assert_eq!(
            RateLimiter::builder().max_keys(0).build().unwrap_err(),
            ConfigError::ZeroMaxKeys
        );
    }

    fn rule(name: &'static str) -> Rule {
        Rule::new(
            name,
            crate::rule::QuotaSource::Fixed(crate::Quota::from_parts(5, 60).unwrap()),
        )
    }

    fn key(limiter: &RateLimiter, name: &'static str, ip: [u8; 4]) -> Check {
        let rule = rule(name);
        let limit = rule
            .algorithm
            .default_limit(crate::Quota::from_parts(5, 60).unwrap());
        limiter
            .state
            .check_for(&rule, limit, &Identity::Ip(ip.into()))
    }

    #[test]
    fn memory_keys_are_seeded_per_limiter() {
        let a = RateLimiter::builder().build().unwrap();
        let b = RateLimiter::builder().build().unwrap();
        assert_eq!(key(&a, "x", [1, 2, 3, 4]), key(&a, "x", [1, 2, 3, 4]));
        assert_ne!(
            key(&a, "x", [1, 2, 3, 4]).key,
            key(&a, "y", [1, 2, 3, 4]).key
        );
        assert_ne!(
            key(&a, "x", [1, 2, 3, 4]).key,
            key(&a, "x", [1, 2, 3, 5]).key
        );
        assert_ne!(
            key(&a, "x", [1, 2, 3, 4]).key,
            key(&b, "x", [1, 2, 3, 4]).key
        );
    }

    #[test]
    #[cfg(feature = "redis")]
    fn shared_store_keys_are_keyed_by_the_fleet_secret() {
        let redis = |secret: Option<&str>| {
            let builder = RateLimiter::builder().redis("redis://127.0.0.1:1");
            match secret {
                Some(secret) => builder.key_secret(secret),
                None => builder,
            }
            .build()
            .unwrap()
        };
        let (a, b, other, public) = (
            redis(Some("s3cret")),
            redis(Some("s3cret")),
            redis(Some("another")),
            redis(None),
        );
        let name = |limiter: &RateLimiter| key(limiter, "x", [1, 2, 3, 4]).key;
        assert_eq!(name(&a), name(&b));
        assert_ne!(name(&a), name(&other));
        assert_ne!(name(&a), name(&public));
        // 128 bits of name, both halves used.
        assert!(name(&a) >> 64 != 0 && name(&a) as u64 != 0);
        // The same rule's keys still share a Cluster slot whatever the secret.
        assert_eq!(
            key(&a, "x", [1, 2, 3, 4]).group,
            key(&other, "x", [1, 2, 3, 4]).group
        );
        let shown = format!("{a:?}");
        assert!(shown.contains("FleetKey(secret)") && !shown.contains("s3cret"));
    }

    #[test]
    #[cfg(feature = "redis")]
    fn shared_store_keys_agree_across_limiters_and_group_by_rule() {
        let redis = |prefix| {
            RateLimiter::builder()
                .redis("redis://127.0.0.1:1")
                .key_prefix(prefix)
                .build()
                .unwrap()
        };
        let (a, b, other_app) = (redis("app"), redis("app"), redis("other"));
        assert_eq!(key(&a, "x", [1, 2, 3, 4]), key(&b, "x", [1, 2, 3, 4]));
        assert_eq!(
            key(&a, "x", [1, 2, 3, 4]).group,
            key(&a, "x", [9, 9, 9, 9]).group
        );
        assert_ne!(
            key(&a, "x", [1, 2, 3, 4]).group,
            key(&a, "y", [1, 2, 3, 4]).group
        );
        assert_ne!(
            key(&a, "x", [1, 2, 3, 4]).key,
            key(&other_app, "x", [1, 2, 3, 4]).key
        );
    }
}
