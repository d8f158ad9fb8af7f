//! [`State`]: what every limit of one [`RateLimiter`](crate::RateLimiter) shares, composed of
//! the rooms that do the work (the store and backend, the client-address rules, the metrics,
//! the overrides). The limiter's methods hand it to them; the decision itself is in
//! `engine.rs`, which extends it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use crate::algorithm::Limit;
use crate::backend::Backend;
use crate::clock::Clock;
use crate::headers::HeaderStyle;
use crate::key::fingerprint::{write_identity, FleetKey};
use crate::key::{ClientIp, Identity};
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::response::DeniedBody;
use crate::rule::Rule;
use crate::store::{Check, MemoryStore};

pub(crate) struct State {
    /// The in-memory store: the store itself, or the fallback of a Redis backend.
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) backend: Backend,
    pub(crate) clock: Box<dyn Clock>,
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
}

impl State {
    /// The check of `rule` for the client `identity`. On a shared store, keys are the same in
    /// every process; in memory, they are seeded per process.
    pub(crate) fn check_for(&self, rule: &Rule, limit: Limit, identity: &Identity<'_>) -> Check {
        let (key, group) = if self.backend.is_shared() {
            let key = self.fleet_key.name(|h| {
                rule.write_budget(h, &self.key_prefix, &limit);
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
            rule.write_budget(&mut h, &self.key_prefix, &limit);
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
