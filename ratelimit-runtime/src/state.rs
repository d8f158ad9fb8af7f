//! [`State`]: what every limit of one [`RateLimiter`](crate::RateLimiter) shares, composed of
//! the rooms that do the work (the store and backend, the client-address rules, the metrics,
//! the overrides). The limiter's methods hand it to them; the decision itself is in
//! `engine.rs`, which extends it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use std::num::NonZeroU32;

use xxhash_rust::xxh3::Xxh3;

use crate::adaptive::AdaptiveLimits;
use crate::algorithm::{AlgorithmKind, Limit};
use crate::backend::Backend;
use crate::clock::Clock;
use crate::headers::HeaderStyle;
use crate::key::fingerprint::{write_identity, write_str, FleetKey};
use crate::key::{ClientIp, Identity};
use crate::lookup::{self, Chooser, LookupCache, LookupFailed, Lookups};
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::quota::Quota;
use crate::response::DeniedBody;
use crate::rule::{QuotaSource, Rule, Tier};
use crate::store::{Check, MemoryStore};

/// The answers a limiter keeps: tiers, and keys.
pub(crate) struct LookupCaches {
    pub(crate) tiers: LookupCache<Tier>,
    pub(crate) keys: LookupCache<Option<String>>,
}

impl LookupCaches {
    pub(crate) fn new(options: Lookups) -> LookupCaches {
        LookupCaches {
            tiers: LookupCache::new(options),
            keys: LookupCache::new(options),
        }
    }
}

pub(crate) struct State {
    /// The in-memory store: the store itself, or the fallback of a Redis backend.
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) backend: Backend,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) client_ip: ClientIp,
    pub(crate) header_style: HeaderStyle,
    pub(crate) denied_body: DeniedBody,
    /// Every rule a dry run.
    pub(crate) shadow: bool,
    pub(crate) metrics: Metrics,
    pub(crate) overrides: Arc<Overrides>,
    pub(crate) key_prefix: String,
    /// Keys Redis key names, so that nobody without the fleet's secret can aim at them.
    pub(crate) fleet_key: FleetKey,
    pub(crate) hasher: ahash::RandomState,
    /// The answers of async tier and key functions.
    pub(crate) lookups: LookupCaches,
    /// The adaptive concurrency limits of this process.
    pub(crate) adaptive: AdaptiveLimits,
}

impl State {
    /// The tier `chooser` looks up for `key` under the rule `rule`, from the cache while it
    /// holds one. The lookup reads only the key: outside a request, it is handed a request
    /// that carries nothing (made, and dropped, before the lookup is awaited: the future stays
    /// `Send`).
    pub(crate) async fn look_up_tier(
        &self,
        chooser: Chooser<Tier>,
        rule: &str,
        key: &str,
    ) -> Result<Tier, LookupFailed> {
        let clock = &*self.clock;
        self.lookups
            .tiers
            .get((chooser.function)(), rule, key, clock, || {
                let stand_in = actix_web::test::TestRequest::default().to_http_request();
                lookup::later((chooser.choose)(&stand_in, Some(key.to_owned())))
            })
            .await
    }

    /// `rules` with the tiers that lookups choose looked up for `key` (outside a request:
    /// `check_key`, `peek`, `reset`), as fixed quotas.
    pub(crate) async fn with_tiers_of(
        &self,
        mut rules: Vec<Rule>,
        key: &str,
    ) -> Result<Vec<Rule>, LookupFailed> {
        for rule in &mut rules {
            if let Some(chooser) = rule.quota.lookup() {
                let tier = self.look_up_tier(chooser, &rule.name, key).await?;
                rule.quota = QuotaSource::Fixed(tier.quota);
            }
        }
        Ok(rules)
    }

    /// The check of `rule` for the client `identity`. On a shared store, keys are the same in
    /// every process; in memory, they are seeded per process.
    pub(crate) fn check_for(&self, rule: &Rule, limit: Limit, identity: &Identity<'_>) -> Check {
        self.check_tagged(rule, limit, identity, None)
    }

    /// The probe of `rule`'s penalty (its `penalty` quota) for the client `identity`: a GCRA of
    /// one unit per period, which a request passes while the client serves no penalty.
    /// Charged, it starts one (see `engine.rs`).
    pub(crate) fn penalty_probe(
        &self,
        rule: &Rule,
        penalty: Quota,
        identity: &Identity<'_>,
    ) -> Check {
        let one = Quota::new(
            NonZeroU32::MIN,
            NonZeroU32::new(penalty.period_secs()).unwrap_or(NonZeroU32::MIN),
        );
        let limit = Limit::with_capacity(one, NonZeroU32::MIN);
        Check {
            algorithm: AlgorithmKind::Gcra,
            cost: 1,
            max_wait: 0,
            probe: true,
            ..self.check_tagged(rule, limit, identity, Some("penalty"))
        }
    }

    /// [`check_for`](Self::check_for), the key told apart by `tag` (a check the rule keeps
    /// besides its budget) when there is one.
    fn check_tagged(
        &self,
        rule: &Rule,
        limit: Limit,
        identity: &Identity<'_>,
        tag: Option<&str>,
    ) -> Check {
        let (key, group) = if self.backend.is_shared() {
            let key = self.fleet_key.name(|h| {
                rule.write_budget(h, &self.key_prefix, &limit);
                write_identity(h, identity);
                if let Some(tag) = tag {
                    write_str(h, tag);
                }
            });
            // The hash tag groups a rule's keys on one Cluster slot; it names the rule, not a
            // client, so it needs no secret.
            let mut group = Xxh3::with_seed(0);
            group.update(self.key_prefix.as_bytes());
            group.update(rule.name.as_bytes());
            (key, group.digest())
        } else {
            let mut h = self.hasher.build_hasher();
            rule.write_budget(&mut h, &self.key_prefix, &limit);
            write_identity(&mut h, identity);
            if let Some(tag) = tag {
                write_str(&mut h, tag);
            }
            (u128::from(h.finish()), 0)
        };
        Check {
            key,
            group,
            algorithm: rule.algorithm,
            limit,
            cost: rule.cost.get(),
            max_wait: rule.max_wait_nanos(),
            probe: false,
        }
    }

    /// One `info` line saying how the limiter was built: where limits live (passwords
    /// redacted), the failure policy and leases on Redis, the headers, the overrides file, the
    /// trusted proxies and a limiter-wide dry run.
    pub(crate) fn log_configuration(&self) {
        let overrides = self
            .overrides
            .file_path()
            .map_or_else(|| "none".to_string(), |path| path.display().to_string());
        tracing::info!(
            "rate limiter: limits {}; headers {:?}; overrides file {overrides}; trusted proxies {}{}",
            self.backend.describe(),
            self.header_style,
            self.client_ip.describe_trusted(),
            if self.shadow { "; every limit a dry run (shadow)" } else { "" },
        );
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("backend", &self.backend)
            .field("memory_store", &self.store.stats())
            .field("client_ip", &self.client_ip)
            .field("header_style", &self.header_style)
            .field("denied_body", &self.denied_body)
            .field("shadow", &self.shadow)
            .field("metrics", &self.metrics)
            .field("key_prefix", &self.key_prefix)
            .field("fleet_key", &self.fleet_key)
            .finish_non_exhaustive()
    }
}

/// A client's strikes under `penalty`, whose probe is `probe`: a sliding log of
/// `penalty.limit()` refusals per period, its key derived from the probe's (so the same in
/// every process that shares it).
pub(crate) fn penalty_strikes(probe: &Check, penalty: Quota) -> Check {
    let mut h = Xxh3::with_seed(0);
    h.update(&probe.key.to_le_bytes());
    h.update(b"strikes");
    Check {
        key: h.digest128(),
        algorithm: AlgorithmKind::SlidingLog,
        limit: Limit::new(penalty),
        probe: false,
        ..*probe
    }
}
