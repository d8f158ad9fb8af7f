//! [`RateLimiter`]: the configuration and state every limit of an app shares.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use actix_web::{web, HttpRequest};
use xxhash_rust::xxh3::Xxh3;

use crate::algorithm::Limit;
use crate::backend::{Backend, FailurePolicy, RedisStats, RedisTarget};
use crate::catalogue;
use crate::clock::{Clock, SystemClock};
use crate::headers::HeaderStyle;
use crate::key::fingerprint::{write_identity, write_rule, FleetKey};
use crate::key::{ClientIp, Identity, InvalidProxy, ProxyHeader};
use crate::leases::Leases;
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::response::DeniedBody;
use crate::rule::Rule;
use crate::store::{Check, MemoryStore, RedisOptions};
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
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The in-memory store: the store itself, or the fallback of a Redis backend.
    pub(crate) store: MemoryStore,
    pub(crate) backend: Backend,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) client_ip: ClientIp,
    pub(crate) header_style: HeaderStyle,
    pub(crate) denied_body: DeniedBody,
    /// Every rule a dry run.
    pub(crate) shadow: bool,
    pub(crate) metrics: Metrics,
    pub(crate) overrides: Arc<Overrides>,
    key_prefix: String,
    /// Keys Redis key names, so that nobody without the fleet's secret can aim at them.
    fleet_key: FleetKey,
    hasher: ahash::RandomState,
}

static GLOBAL: OnceLock<RateLimiter> = OnceLock::new();

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
    /// requests under that rule are answered `500` naming it.
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
        &self.inner.store
    }

    /// Counters of the Redis backend; `None` for a limiter in memory.
    pub fn redis_stats(&self) -> Option<RedisStats> {
        self.inner.backend.redis_stats()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// One `info` line saying how this limiter was built: where limits live (passwords
    /// redacted), the failure policy and leases on Redis, the headers, the overrides file, the
    /// trusted proxies and a limiter-wide dry run.
    fn log_configuration(&self) {
        let inner = &self.inner;
        let overrides = inner
            .overrides
            .file()
            .map_or_else(|| "none".to_string(), |path| path.display().to_string());
        tracing::info!(
            "rate limiter: limits {}; headers {:?}; overrides file {overrides}; trusted proxies {}{}",
            inner.backend.describe(),
            inner.header_style,
            inner.client_ip.describe_trusted(),
            if inner.shadow { "; every limit a dry run (shadow)" } else { "" },
        );
    }
}

impl Inner {
    /// The check of `rule` for the client `identity`. On a shared store, keys are the same in
    /// every process; in memory, they are seeded per process.
    pub(crate) fn check_for(&self, rule: &Rule, limit: Limit, identity: &Identity<'_>) -> Check {
        let (key, group) = if self.backend.is_shared() {
            let key = self.fleet_key.name(|h| {
                write_rule(h, &self.key_prefix, rule, &limit);
                write_identity(h, identity);
            });
            // The hash tag groups a rule's keys on one Cluster slot; it names the rule, not a
            // client, so it needs no secret.
            let mut group = Xxh3::with_seed(0);
            group.update(self.key_prefix.as_bytes());
            group.update(rule.name.as_bytes());
            (key, group.digest())
        } else {
            let mut h = self.hasher.build_hasher();
            write_rule(&mut h, &self.key_prefix, rule, &limit);
            write_identity(&mut h, identity);
            (u128::from(h.finish()), 0)
        };
        Check {
            key,
            group,
            algorithm: rule.algorithm,
            limit,
            cost: rule.cost.get(),
            max_wait: rule.max_wait_nanos(),
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("backend", &self.inner.backend)
            .field("memory_store", &self.inner.store.stats())
            .field("client_ip", &self.inner.client_ip)
            .field("header_style", &self.inner.header_style)
            .field("denied_body", &self.inner.denied_body)
            .field("shadow", &self.inner.shadow)
            .field("metrics", &self.inner.metrics)
            .field("key_prefix", &self.inner.key_prefix)
            .field("fleet_key", &self.inner.fleet_key)
            .finish_non_exhaustive()
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
    overrides_file: Option<PathBuf>,
    key_prefix: String,
    key_secret: Option<FleetKey>,
    redis: Option<RedisTarget>,
    redis_options: Option<RedisOptions>,
    on_redis_failure: FailurePolicy,
    redis_leases: Option<Leases>,
    /// Whether trusted proxies were given in code (the environment then adds none).
    proxies_given: bool,
    /// Whether `build()` reads the environment for what code left unset.
    read_env: bool,
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
            overrides_file: None,
            key_prefix: "ratelimit".to_string(),
            key_secret: None,
            redis: None,
            redis_options: None,
            on_redis_failure: FailurePolicy::default(),
            redis_leases: None,
            proxies_given: false,
            read_env: true,
        }
    }
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidProxy(e) => write!(f, "invalid trusted proxy: {e}"),
            ConfigError::ZeroMaxKeys => write!(f, "`max_keys` must be at least 1"),
            ConfigError::UnsupportedLimit(e) => e.fmt(f),
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
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// A file of overrides (`rule = "rate"` pairs, TOML, or JSON when it ends in `.json`),
    /// loaded when the limiter is built and reloaded whenever it changes. See
    /// [`RateLimiter::set_override`].
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
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(RedisTarget::Single(url.into()));
        self
    }

    /// Keeps every limit on a Redis Cluster, reached through any of `nodes`.
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redis = Some(RedisTarget::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The per-call timeout and the time source of the Redis store (its key prefix is
    /// [`key_prefix`](Self::key_prefix)).
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.redis_options = Some(options);
        self
    }

    /// What to do while Redis fails (default: [`FailurePolicy::Fallback`]).
    pub fn on_redis_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_redis_failure = policy;
        self
    }

    /// Takes units of Redis budgets in batches and spends them in process memory (see
    /// [`Leases`] for what each algorithm's fleet-wide limit becomes): far fewer Redis calls
    /// for the keys a process sees often. Off by default; without Redis it does nothing.
    pub fn redis_leases(mut self, leases: Leases) -> Self {
        self.redis_leases = Some(leases);
        self
    }

    /// Reads the environment now, as [`build`](Self::build) does by itself for whatever code
    /// leaves unset: here what it finds replaces what was set before, and calls after this one
    /// replace it in turn. The variables:
    ///
    /// - `REDIS_URL` puts limits on that Redis, `REDIS_CLUSTER_URLS` (comma-separated node
    ///   URLs) on a Redis Cluster; without either, limits stay in memory;
    /// - `RATELIMIT_REDIS_TIMEOUT_MS` sets the per-call timeout, `RATELIMIT_REDIS_LEASE_MS` the
    ///   lease of concurrency slots;
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
        Environment::read().apply(self, true)
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
        let limiter = self.with_environment().assemble()?;
        if limiter.inner.backend.is_shared() {
            catalogue::adopt_redis().map_err(ConfigError::UnsupportedLimit)?;
        }
        limiter.log_configuration();
        limiter.watch_overrides();
        Ok(limiter)
    }

    /// The process-wide limiter: its configuration (the defaults and the environment) is valid,
    /// but a rule it cannot decide only gets logged here, and answered per request.
    fn build_global(self) -> RateLimiter {
        let mut builder = self.with_environment();
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
        if limiter.inner.backend.is_shared() {
            if let Err(refused) = catalogue::adopt_redis() {
                tracing::error!("rate limiter: {refused}; requests under it are answered 500");
            }
        }
        limiter.log_configuration();
        limiter.watch_overrides();
        limiter
    }

    /// What the environment sets that code left unset, unless told to ignore it.
    fn with_environment(self) -> Self {
        if self.read_env {
            Environment::read().apply(self, false)
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
        if let Some(bytes) = self.max_log_bytes {
            store = store.with_max_log_bytes(bytes);
        }
        let backend = match self.redis {
            Some(target) => {
                let options = RedisOptions {
                    prefix: self.key_prefix.clone(),
                    ..self.redis_options.unwrap_or_default()
                };
                Backend::redis(
                    target,
                    options,
                    self.on_redis_failure,
                    self.redis_leases,
                    fleet_key.mark(),
                )
            }
            None => Backend::Memory,
        };
        let on_redis = backend.is_shared();
        if on_redis && !fleet_key.is_secret() {
            tracing::warn!(
                "rate limiter: Redis key names use a public key, so a crafted key could be aimed \
                 at another client's budget; set RATELIMIT_KEY_SECRET (or `key_secret`), the \
                 same in every process of the fleet"
            );
        }
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                store,
                backend,
                clock: self.clock,
                client_ip,
                header_style: self.header_style,
                denied_body: self.denied_body,
                shadow: self.shadow.unwrap_or(false),
                metrics: Metrics::new(self.metrics),
                overrides: Arc::new(Overrides::with_file(self.overrides_file, on_redis)),
                key_prefix: self.key_prefix,
                fleet_key,
                hasher: ahash::RandomState::new(),
            }),
        })
    }
}

/// The limiter's environment variables, read once (see [`RateLimiterBuilder::from_env`]).
#[derive(Default)]
struct Environment {
    redis: Option<RedisTarget>,
    timeout_ms: Option<u64>,
    slot_lease_ms: Option<u64>,
    overrides: Option<PathBuf>,
    leases: Option<Leases>,
    proxies: Option<Vec<String>>,
    shadow: Option<bool>,
    secret: Option<FleetKey>,
}

impl Environment {
    fn read() -> Environment {
        let var = |name| {
            std::env::var(name)
                .ok()
                .map(|v: String| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |name| var(name).and_then(|v| v.parse::<u64>().ok());
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        };
        let redis = match (var("REDIS_CLUSTER_URLS"), var("REDIS_URL")) {
            (Some(nodes), _) => Some(RedisTarget::Cluster(list(nodes))),
            (None, Some(url)) => Some(RedisTarget::Single(url)),
            (None, None) => None,
        };
        let leases = var("RATELIMIT_LEASES").filter(|v| is_on(v)).map(|_| {
            match number("RATELIMIT_LEASE_MS") {
                Some(ms) => Leases::new().lifetime(std::time::Duration::from_millis(ms)),
                None => Leases::new(),
            }
        });
        Environment {
            redis,
            timeout_ms: number("RATELIMIT_REDIS_TIMEOUT_MS"),
            slot_lease_ms: number("RATELIMIT_REDIS_LEASE_MS"),
            overrides: var("RATELIMIT_OVERRIDES").map(PathBuf::from),
            leases,
            proxies: var("RATELIMIT_TRUSTED_PROXIES").map(list),
            shadow: var("RATELIMIT_SHADOW").map(|v| is_on(&v)),
            secret: std::env::var_os("RATELIMIT_KEY_SECRET")
                .filter(|s| !s.is_empty())
                .map(|s| FleetKey::from_secret(s.as_encoded_bytes())),
        }
    }

    /// Sets in `builder` what the environment says: everything when `replace`, else only what
    /// code left unset.
    fn apply(self, mut builder: RateLimiterBuilder, replace: bool) -> RateLimiterBuilder {
        fn put<T>(slot: &mut Option<T>, value: Option<T>, replace: bool) {
            if value.is_some() && (replace || slot.is_none()) {
                *slot = value;
            }
        }
        put(&mut builder.redis, self.redis, replace);
        put(&mut builder.overrides_file, self.overrides, replace);
        put(&mut builder.redis_leases, self.leases, replace);
        put(&mut builder.shadow, self.shadow, replace);
        put(&mut builder.key_secret, self.secret, replace);
        if replace || builder.redis_options.is_none() {
            let options = builder
                .redis_options
                .get_or_insert_with(RedisOptions::default);
            if let Some(ms) = self.timeout_ms {
                options.timeout = std::time::Duration::from_millis(ms);
            }
            if let Some(ms) = self.slot_lease_ms {
                options.lease = std::time::Duration::from_millis(ms);
            }
        }
        if let Some(proxies) = self.proxies.filter(|_| replace || !builder.proxies_given) {
            builder = builder.trusted_proxies(proxies);
        }
        builder
    }
}

/// Whether an environment switch is on: `1`, `true`, `on` or `yes`, in any case.
fn is_on(value: &str) -> bool {
    ["1", "true", "on", "yes"]
        .iter()
        .any(|on| value.trim().eq_ignore_ascii_case(on))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .inner()
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
