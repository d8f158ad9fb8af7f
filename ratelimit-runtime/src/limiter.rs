//! [`RateLimiter`]: the configuration and state every limit of an app shares.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use actix_web::{web, HttpRequest};

use crate::clock::{Clock, SystemClock};
use crate::key::{ClientIp, InvalidProxy, ProxyHeader};
use crate::response::HeaderStyle;
use crate::store::MemoryStore;

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
    pub(crate) store: MemoryStore,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) client_ip: ClientIp,
    pub(crate) header_style: HeaderStyle,
    key_prefix: String,
    hasher: ahash::RandomState,
}

static GLOBAL: OnceLock<RateLimiter> = OnceLock::new();

impl RateLimiter {
    /// A builder with the defaults: memory store of at most 1,000,000 keys, system clock, no
    /// trusted proxies, IPv6 grouped by /64, `X-RateLimit-*` headers, key prefix `ratelimit`.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    /// The process-wide limiter: the one [installed](RateLimiter::install), or a default one.
    pub fn global() -> &'static RateLimiter {
        GLOBAL.get_or_init(|| RateLimiterBuilder::default().build_valid())
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

    /// The in-memory store, for its statistics.
    pub fn memory_store(&self) -> &MemoryStore {
        &self.inner.store
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    /// The 64-bit key of one rule's state for one client.
    pub(crate) fn fingerprint(&self, parts: impl Hash) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        self.key_prefix.hash(&mut hasher);
        parts.hash(&mut hasher);
        hasher.finish()
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("store", &self.inner.store.stats())
            .field("client_ip", &self.inner.client_ip)
            .field("header_style", &self.inner.header_style)
            .field("key_prefix", &self.inner.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimiter`].
pub struct RateLimiterBuilder {
    max_keys: Option<usize>,
    clock: Box<dyn Clock>,
    trusted_proxies: Result<Vec<String>, InvalidProxy>,
    proxy_header: ProxyHeader,
    ipv6_prefix: u8,
    header_style: HeaderStyle,
    key_prefix: String,
}

impl Default for RateLimiterBuilder {
    fn default() -> RateLimiterBuilder {
        RateLimiterBuilder {
            max_keys: None,
            clock: Box::new(SystemClock::new()),
            trusted_proxies: Ok(Vec::new()),
            proxy_header: ProxyHeader::default(),
            ipv6_prefix: 64,
            header_style: HeaderStyle::default(),
            key_prefix: "ratelimit".to_string(),
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidProxy(e) => write!(f, "invalid trusted proxy: {e}"),
            ConfigError::ZeroMaxKeys => write!(f, "`max_keys` must be at least 1"),
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

    /// A prefix of every key, so that apps sharing a store keep apart (default `ratelimit`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The limiter, or what is wrong with the configuration.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
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
        let store = self
            .max_keys
            .map_or_else(MemoryStore::default, MemoryStore::with_max_keys);
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                store,
                clock: self.clock,
                client_ip,
                header_style: self.header_style,
                key_prefix: self.key_prefix,
                hasher: ahash::RandomState::new(),
            }),
        })
    }

    /// `build` for a configuration known to be valid (the defaults).
    fn build_valid(self) -> RateLimiter {
        match self.build() {
            Ok(limiter) => limiter,
            Err(e) => unreachable!("the default configuration is valid: {e}"),
        }
    }
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

    #[test]
    fn fingerprints_depend_on_prefix_and_parts() {
        let a = RateLimiter::builder().key_prefix("a").build().unwrap();
        let b = RateLimiter::builder().key_prefix("b").build().unwrap();
        assert_eq!(
            a.inner().fingerprint(("x", 1)),
            a.inner().fingerprint(("x", 1))
        );
        assert_ne!(
            a.inner().fingerprint(("x", 1)),
            a.inner().fingerprint(("x", 2))
        );
        // Different limiters have different seeds and prefixes.
        assert_ne!(
            a.inner().fingerprint(("x", 1)),
            b.inner().fingerprint(("x", 1))
        );
    }
}
