//! A limiter's metrics for Prometheus (feature `metrics`): its counters and its store's health,
//! rendered on scrape as a `prometheus-client` collector.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::encode::single;
use crate::metrics::StoreLabel;
use crate::state::State;

/// A limiter's metrics as a `prometheus-client` [`Collector`]: register it in an application's
/// own [`Registry`] with
/// [`RateLimiter::register_metrics`](crate::RateLimiter::register_metrics).
#[derive(Debug)]
pub struct LimiterCollector {
    state: Arc<State>,
}

/// The metrics of the limiter of `state`, rendered (see [`RateLimiter::metrics`](crate::RateLimiter::metrics)).
pub(crate) fn render(state: &Arc<State>) -> String {
    let mut registry = Registry::default();
    register(state, &mut registry);
    let mut text = String::new();
    // Writing into a `String` cannot fail, and our collector reports no errors of its own.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Registers the metrics of the limiter of `state` in `registry`.
pub(crate) fn register(state: &Arc<State>, registry: &mut Registry) {
    registry.register_collector(Box::new(LimiterCollector {
        state: Arc::clone(state),
    }));
}

impl Collector for LimiterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let inner = &*self.state;
        #[cfg(feature = "redis")]
        let redis = inner.backend.redis_stats();
        #[cfg(not(feature = "redis"))]
        let redis: Option<std::convert::Infallible> = None;
        // On Redis, decisions are Redis's or the fallback's, except those of an adaptive
        // concurrency limit, which is each process's own: `memory`.
        let stores: &[StoreLabel] = match redis {
            None => &[StoreLabel::Memory],
            Some(_) => &[StoreLabel::Redis, StoreLabel::Fallback, StoreLabel::Memory],
        };
        inner.metrics.encode(&mut encoder, stores)?;
        let memory = inner.store.stats();
        let keys = i64::try_from(memory.keys).unwrap_or(i64::MAX);
        single(
            &mut encoder,
            "ratelimit_tracked_keys",
            "Keys the in-memory store (or the Redis fallback) tracks",
            &ConstGauge::new(keys),
        )?;
        single(
            &mut encoder,
            "ratelimit_evictions",
            "Live keys dropped to keep the in-memory store under its cap",
            &ConstCounter::new(memory.evictions),
        )?;
        single(
            &mut encoder,
            "ratelimit_log_bytes",
            "Bytes the in-memory store's sliding logs hold (capped by max_log_bytes)",
            &ConstGauge::new(i64::try_from(memory.log_bytes).unwrap_or(i64::MAX)),
        )?;
        encode_adaptive(&mut encoder, inner)?;
        // Lookups (async tier and key functions): shown once a request asked one.
        let lookups = [
            ("tier", inner.lookups.tiers.outcomes()),
            ("key", inner.lookups.keys.outcomes()),
        ];
        if lookups.iter().flat_map(|(_, o)| o).any(|&(_, n)| n > 0) {
            let mut family = encoder.encode_descriptor(
                "ratelimit_lookups",
                "Answers of async tier and key lookups, one per rule and request, by how they came: cached, looked_up, stale (a failed lookup, the last answer standing in), failed (503)",
                None,
                MetricType::Counter,
            )?;
            for (kind, outcomes) in lookups {
                for (outcome, count) in outcomes {
                    let labels = [("kind", kind), ("outcome", outcome.label())];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        #[cfg(feature = "overrides-file")]
        if let Some(file) = &inner.overrides.file {
            let mut reloads = encoder.encode_descriptor(
                "ratelimit_override_reloads",
                "Reads of the overrides file, by result (ok, error: the overrides in force stay)",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [("ok", &file.reloads), ("error", &file.failed_reloads)] {
                let count = ConstCounter::new(count.load(std::sync::atomic::Ordering::Relaxed));
                count.encode(reloads.encode_family(&[("result", result)])?)?;
            }
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = redis {
            encode_redis(&mut encoder, redis)?;
        }
        Ok(())
    }
}

/// The adaptive concurrency limits: per rule, the limit in force and the latencies its
/// controller sees; for a rule with a scope (a limit per client), the client of the highest.
fn encode_adaptive(encoder: &mut DescriptorEncoder, state: &State) -> fmt::Result {
    let mut by_rule: std::collections::BTreeMap<String, (u32, u64, u64)> = Default::default();
    for limit in state.adaptive.all() {
        let now = limit.snapshot();
        let kept = by_rule.entry(limit.rule.clone()).or_insert(now);
        if now.0 > kept.0 {
            *kept = now;
        }
    }
    if by_rule.is_empty() {
        return Ok(());
    }
    {
        let mut limits = encoder.encode_descriptor(
            "ratelimit_adaptive_limit",
            "The limit an adaptive concurrency limit is at, in this process",
            None,
            MetricType::Gauge,
        )?;
        for (rule, (limit, _, _)) in &by_rule {
            let series = [("rule", rule.as_str())];
            ConstGauge::new(i64::from(*limit)).encode(limits.encode_family(&series)?)?;
        }
    }
    let mut latency = encoder.encode_descriptor(
        "ratelimit_adaptive_latency_seconds",
        "The latencies an adaptive concurrency limit follows: no_load (measured at its minimum) and sampled (the 90th percentile of its last window)",
        None,
        MetricType::Gauge,
    )?;
    for (rule, (_, no_load, sampled)) in &by_rule {
        for (kind, nanos) in [("no_load", no_load), ("sampled", sampled)] {
            let series = [("rule", rule.as_str()), ("kind", kind)];
            let seconds = *nanos as f64 / 1e9;
            ConstGauge::new(seconds).encode(latency.encode_family(&series)?)?;
        }
    }
    Ok(())
}

/// The Redis store's health: errors, the fallback, the local cache of denials and leases.
#[cfg(feature = "redis")]
fn encode_redis(encoder: &mut DescriptorEncoder, redis: crate::backend::RedisStats) -> fmt::Result {
    let mut errors = encoder.encode_descriptor(
        "ratelimit_redis_errors",
        "Failed Redis decisions, by kind (error, timeout, refused: a rule Redis cannot decide)",
        None,
        MetricType::Counter,
    )?;
    for (kind, count) in [
        (
            "error",
            redis.errors.saturating_sub(redis.timeouts + redis.refused),
        ),
        ("timeout", redis.timeouts),
        ("refused", redis.refused),
    ] {
        ConstCounter::new(count).encode(errors.encode_family(&[("kind", kind)])?)?;
    }
    single(
        encoder,
        "ratelimit_redis_fallback",
        "1 while Redis is considered down and the failure policy decides",
        &ConstGauge::new(i64::from(redis.degraded)),
    )?;
    single(
        encoder,
        "ratelimit_redis_resynced_units",
        "Units admitted in process memory while Redis was away, charged to Redis once it answered again",
        &ConstCounter::new(redis.resynced_units),
    )?;
    single(
        encoder,
        "ratelimit_redis_unsynced_dropped_units",
        "Units admitted in process memory while Redis was away that will not be charged to it \
         (the table of keys to charge was full, or Redis refuses the key)",
        &ConstCounter::new(redis.unsynced_dropped_units),
    )?;
    single(
        encoder,
        "ratelimit_blocked_cache_hits",
        "Denials answered from the local cache of blocked keys, without Redis",
        &ConstCounter::new(redis.blocked_cache_hits),
    )?;
    let Some(leases) = redis.leases else {
        return Ok(());
    };
    for (name, help, value) in [
        (
            "ratelimit_lease_calls",
            "Redis calls that took or handed back leased units",
            leases.calls,
        ),
        (
            "ratelimit_leased_units",
            "Units of Redis budgets leased beyond the cost of the requests that asked",
            leases.leased,
        ),
        (
            "ratelimit_lease_returned_units",
            "Leased units handed back unspent",
            leases.returned,
        ),
        (
            "ratelimit_lease_decisions",
            "Decisions made from leased units, without Redis",
            leases.local_decisions,
        ),
        (
            "ratelimit_lease_dropped_units",
            "Leased units dropped unspent and not handed back (their fixed window ended, their key was reset or left the table, or the hand-back failed)",
            leases.dropped,
        ),
    ] {
        single(encoder, name, help, &ConstCounter::new(value))?;
    }
    Ok(())
}
