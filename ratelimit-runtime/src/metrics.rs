//! Prometheus metrics of a limiter: plain atomics on the hot path, rendered on scrape through
//! `prometheus-client`'s encoder.
//!
//! Decisions are counted per rule (the handler's name or its `shared` budget, and the tier a
//! `limit = fn` names), never per client key: the number of series is bounded by the code. A
//! rule's counters are found in a read-mostly table behind an [`ArcSwap`]: a decision loads it
//! without a lock and without touching a reference count; only a rule's first decision writes.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::limiter::RateLimiter;
use crate::rule::Rule;

/// Which store decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreLabel {
    Memory = 0,
    Redis = 1,
    /// The failure policy while Redis fails: the in-memory fallback, fail-open or fail-closed.
    Fallback = 2,
}

const STORES: [&str; 3] = ["memory", "redis", "fallback"];

/// What a decision meant for one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed = 0,
    Denied = 1,
    /// Would have been denied, let through by a dry run.
    ShadowDenied = 2,
    /// Allowed above the rule's soft limit.
    Degraded = 3,
}

const OUTCOMES: [&str; 4] = ["allowed", "denied", "shadow_denied", "degraded"];

/// Upper bounds of the decision-latency buckets, in nanoseconds (1 µs to 250 ms: memory
/// decisions fall in the first, Redis round trips in the middle, timeouts at the top).
const LATENCY_BOUNDS: [u64; 15] = [
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
];

/// The metrics a limiter owns.
pub(crate) struct Metrics {
    enabled: bool,
    /// Tells limiters apart in the rules' caches.
    id: u64,
    rules: ArcSwap<RuleTable>,
    /// Serialises the rare writers of `rules` (a rule's first decision).
    adding: Mutex<()>,
    latency: [Latency; 3],
}

type RuleTable = HashMap<RuleLabel, Arc<RuleCounters>>;

/// A rule's name and tier: the labels of its series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RuleLabel {
    name: Cow<'static, str>,
    tier: &'static str,
}

/// The same, borrowed, to look a rule up without allocating.
struct RuleLabelRef<'a> {
    name: &'a str,
    tier: &'static str,
}

impl Hash for RuleLabelRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `RuleLabel`'s derived hash: `Cow<str>` hashes as its `str`.
        self.name.hash(state);
        self.tier.hash(state);
    }
}

impl Equivalent<RuleLabel> for RuleLabelRef<'_> {
    fn equivalent(&self, key: &RuleLabel) -> bool {
        self.name == key.name && self.tier == key.tier
    }
}

/// The counters of one rule (and tier).
#[derive(Debug, Default)]
pub(crate) struct RuleCounters {
    decisions: [[AtomicU64; 3]; 4],
    /// Units spent beyond one per passed decision (a `cost` above 1; -1 for a fail-open pass,
    /// which spends nothing): most decisions spend one unit and touch no counter here.
    extra_units: [AtomicI64; 3],
    /// When a dry-run denial of this rule was last logged (limiter time).
    last_shadow_log: AtomicU64,
    /// Requests holding a slot of this rule (a concurrency limit), and whether it is one.
    in_flight: AtomicI64,
    concurrent: AtomicBool,
    /// Whether a misconfiguration of the rule was logged already.
    warned: AtomicBool,
    /// Whether the refusal of the rule (a limit the limiter cannot decide) was logged already.
    refusal_logged: AtomicBool,
}

impl RuleCounters {
    /// Units spent with `store`: one per passed decision, and the extra.
    fn units(&self, store: StoreLabel) -> u64 {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let passed = load(&self.decisions[Outcome::Allowed as usize][store as usize])
            + load(&self.decisions[Outcome::Degraded as usize][store as usize]);
        let extra = self.extra_units[store as usize].load(Ordering::Relaxed);
        passed.saturating_add_signed(extra)
    }

    /// True the first time only: a warning about the rule is logged once.
    pub(crate) fn first_warning(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }

    /// True the first time only: a rule the limiter cannot decide is logged once.
    pub(crate) fn first_refusal(&self) -> bool {
        !self.refusal_logged.swap(true, Ordering::Relaxed)
    }

    /// A slot of this rule taken (+1) or given back (-1).
    pub(crate) fn in_flight(&self, delta: i64) {
        self.concurrent.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Whether a dry-run denial at `now` may be logged: at most one line a second per rule.
    pub(crate) fn shadow_log_due(&self, now: UnixNanos) -> bool {
        let last = self.last_shadow_log.load(Ordering::Relaxed);
        let due = last == 0 || now >= last.saturating_add(NANOS_PER_SEC);
        due && self
            .last_shadow_log
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// Where a rule keeps its counters for the first limiter that counts it, so that its decisions
/// find them without a lookup (most programs have one limiter). Not a stable API.
#[doc(hidden)]
#[derive(Default)]
pub struct RuleMetricsCache(OnceLock<(u64, Arc<RuleCounters>)>);

impl RuleMetricsCache {
    /// An empty cache.
    pub const fn new() -> RuleMetricsCache {
        RuleMetricsCache(OnceLock::new())
    }
}

impl Clone for RuleMetricsCache {
    /// Empty: a copy of a rule may be renamed.
    fn clone(&self) -> RuleMetricsCache {
        RuleMetricsCache::new()
    }
}

impl fmt::Debug for RuleMetricsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RuleMetricsCache")
    }
}

/// A histogram of atomics: one counter per bucket and the sum in nanoseconds.
#[derive(Debug, Default)]
struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// `(sum in seconds, count, per-bucket counts)` as the encoder takes them.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let bounds = LATENCY_BOUNDS
            .iter()
            .map(|&b| b as f64 / NANOS_PER_SEC as f64)
            .chain([f64::INFINITY]);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / NANOS_PER_SEC as f64;
        (sum, counts.iter().sum(), bounds.zip(counts).collect())
    }
}

impl Metrics {
    pub(crate) fn new(enabled: bool) -> Metrics {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Metrics {
            enabled,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rules: ArcSwap::from_pointee(RuleTable::new()),
            adding: Mutex::new(()),
            latency: Default::default(),
        }
    }

    /// Whether decisions are counted.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts a decision of `store` that took `elapsed`.
    pub(crate) fn observe_latency(&self, store: StoreLabel, elapsed: Duration) {
        self.latency[store as usize].observe(elapsed);
    }

    /// Counts one rule's outcome and the units it spent.
    pub(crate) fn count(
        &self,
        rule: &Rule,
        tier: &'static str,
        outcome: Outcome,
        store: StoreLabel,
        units: u32,
    ) {
        if !self.enabled {
            return;
        }
        let passed = matches!(outcome, Outcome::Allowed | Outcome::Degraded);
        let bump = |counters: &RuleCounters| {
            counters.decisions[outcome as usize][store as usize].fetch_add(1, Ordering::Relaxed);
            if passed && units != 1 {
                counters.extra_units[store as usize]
                    .fetch_add(i64::from(units) - 1, Ordering::Relaxed);
            }
        };
        // A rule without tiers keeps its counters at hand for the limiter that uses it.
        if tier.is_empty() {
            let cache = &rule.metrics_cache.0;
            match cache.get() {
                Some((id, counters)) if *id == self.id => return bump(counters),
                Some(_) => {}
                None => {
                    let counters = self.counters(&rule.name, "");
                    bump(&counters);
                    let _ = cache.set((self.id, counters));
                    return;
                }
            }
        }
        self.with_rule(&rule.name, tier, bump);
    }

    /// Runs `f` on the counters of `name` and `tier`, made on first use.
    pub(crate) fn with_rule<T>(
        &self,
        name: &str,
        tier: &'static str,
        f: impl FnOnce(&RuleCounters) -> T,
    ) -> T {
        let table = self.rules.load();
        if let Some(counters) = table.get(&RuleLabelRef { name, tier }) {
            return f(counters);
        }
        drop(table);
        f(&self.add_rule(name, tier))
    }

    /// The counters of `name` and `tier`, to keep (a slot's, until it is given back).
    pub(crate) fn counters(&self, name: &str, tier: &'static str) -> Arc<RuleCounters> {
        match self.rules.load().get(&RuleLabelRef { name, tier }) {
            Some(counters) => Arc::clone(counters),
            None => self.add_rule(name, tier),
        }
    }

    fn add_rule(&self, name: &str, tier: &'static str) -> Arc<RuleCounters> {
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let table = self.rules.load();
        if let Some(counters) = table.get(&RuleLabelRef { name, tier }) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(RuleCounters::default());
        let mut grown = RuleTable::clone(&table);
        let label = RuleLabel {
            name: Cow::Owned(name.to_owned()),
            tier,
        };
        grown.insert(label, Arc::clone(&counters));
        self.rules.store(Arc::new(grown));
        counters
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .field("rules", &self.rules.load().len())
            .finish_non_exhaustive()
    }
}

/// A limiter's metrics as a `prometheus-client` [`Collector`]: register it in an application's
/// own [`Registry`] with [`RateLimiter::register_metrics`].
#[derive(Debug)]
pub struct LimiterCollector {
    limiter: RateLimiter,
}

impl RateLimiter {
    /// The limiter's metrics in the OpenMetrics text format (what Prometheus scrapes): decisions
    /// per rule, outcome and store, units spent, decision latency, and the store's health. See
    /// [`metrics_endpoint`](crate::metrics_endpoint) to serve them.
    pub fn metrics(&self) -> String {
        let mut registry = Registry::default();
        self.register_metrics(&mut registry);
        let mut text = String::new();
        // Writing into a `String` cannot fail, and our collector reports no errors of its own.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Registers the limiter's metrics in an application's own registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(LimiterCollector {
            limiter: self.clone(),
        }));
    }
}

impl Collector for LimiterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let inner = self.limiter.inner();
        let redis = inner.backend.redis_stats();
        let stores: &[StoreLabel] = match redis {
            None => &[StoreLabel::Memory],
            Some(_) => &[StoreLabel::Redis, StoreLabel::Fallback],
        };
        encode_rules(&mut encoder, &inner.metrics, stores)?;
        encode_latency(&mut encoder, &inner.metrics, stores)?;
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
        if inner.overrides.has_file() {
            let mut reloads = encoder.encode_descriptor(
                "ratelimit_override_reloads",
                "Reads of the overrides file, by result (ok, error: the overrides in force stay)",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [
                ("ok", &inner.overrides.reloads),
                ("error", &inner.overrides.failed_reloads),
            ] {
                let count = ConstCounter::new(count.load(std::sync::atomic::Ordering::Relaxed));
                count.encode(reloads.encode_family(&[("result", result)])?)?;
            }
        }
        let Some(redis) = redis else {
            return Ok(());
        };
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
            &mut encoder,
            "ratelimit_redis_fallback",
            "1 while Redis is considered down and the failure policy decides",
            &ConstGauge::new(i64::from(redis.degraded)),
        )?;
        single(
            &mut encoder,
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
        ] {
            single(&mut encoder, name, help, &ConstCounter::new(value))?;
        }
        Ok(())
    }
}

/// A resource serving the limiter's [metrics](RateLimiter::metrics) at `path`, for
/// Prometheus to scrape (the limiter of the app, or the process-wide one):
///
/// ```
/// use actix_web::App;
///
/// let app = App::new().service(ratelimit_runtime::metrics_endpoint("/metrics"));
/// ```
///
/// [`DefaultLimits`](crate::DefaultLimits) never limit this path: a Prometheus scraping every
/// 15 s would otherwise spend an app-wide `50/hour` in 13 minutes and then see only 429s.
pub fn metrics_endpoint(path: &str) -> actix_web::Resource {
    let paths = METRICS_PATHS.get_or_init(Default::default);
    paths.rcu(|known| {
        let mut known = Vec::clone(known);
        if !known.iter().any(|p| p == path) {
            known.push(path.to_owned());
        }
        known
    });
    actix_web::web::resource(path).route(actix_web::web::get().to(serve_metrics))
}

/// The paths of every [`metrics_endpoint`] made, which app-wide default limits leave alone.
static METRICS_PATHS: std::sync::OnceLock<arc_swap::ArcSwap<Vec<String>>> =
    std::sync::OnceLock::new();

/// Whether `path` is one a [`metrics_endpoint`] serves.
pub(crate) fn is_metrics_path(path: &str) -> bool {
    METRICS_PATHS
        .get()
        .is_some_and(|paths| paths.load().iter().any(|p| p == path))
}

async fn serve_metrics(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(RateLimiter::for_request(&req).metrics())
}

fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &(impl EncodeMetric + prometheus_client::metrics::TypedMetric),
) -> fmt::Result {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

fn encode_rules(
    encoder: &mut DescriptorEncoder,
    metrics: &Metrics,
    stores: &[StoreLabel],
) -> fmt::Result {
    let table = metrics.rules.load();
    let mut rules: Vec<(&RuleLabel, &Arc<RuleCounters>)> = table.iter().collect();
    rules.sort_by(|a, b| (&a.0.name, a.0.tier).cmp(&(&b.0.name, b.0.tier)));
    let labels = |label: &RuleLabel| {
        let mut labels = vec![("rule", label.name.to_string())];
        if !label.tier.is_empty() {
            labels.push(("tier", label.tier.to_string()));
        }
        labels
    };
    let mut decisions = encoder.encode_descriptor(
        "ratelimit_decisions",
        "Decisions per rule, by outcome (allowed, denied, shadow_denied, degraded) and store",
        None,
        MetricType::Counter,
    )?;
    for (label, counters) in &rules {
        for &store in stores {
            for (outcome, name) in OUTCOMES.iter().enumerate() {
                let mut series = labels(label);
                series.push(("outcome", name.to_string()));
                series.push(("store", STORES[store as usize].to_string()));
                let count = counters.decisions[outcome][store as usize].load(Ordering::Relaxed);
                ConstCounter::new(count).encode(decisions.encode_family(&series)?)?;
            }
        }
    }
    let mut units = encoder.encode_descriptor(
        "ratelimit_units_spent",
        "Units charged per rule (a request spends its `cost`), by store",
        None,
        MetricType::Counter,
    )?;
    for (label, counters) in &rules {
        for &store in stores {
            let mut series = labels(label);
            series.push(("store", STORES[store as usize].to_string()));
            ConstCounter::new(counters.units(store)).encode(units.encode_family(&series)?)?;
        }
    }
    let mut in_flight = encoder.encode_descriptor(
        "ratelimit_in_flight",
        "Requests holding a slot of a concurrency limit, in this process",
        None,
        MetricType::Gauge,
    )?;
    for (label, counters) in rules
        .iter()
        .filter(|(_, c)| c.concurrent.load(Ordering::Relaxed))
    {
        let held = counters.in_flight.load(Ordering::Relaxed);
        ConstGauge::new(held).encode(in_flight.encode_family(&labels(label))?)?;
    }
    Ok(())
}

fn encode_latency(
    encoder: &mut DescriptorEncoder,
    metrics: &Metrics,
    stores: &[StoreLabel],
) -> fmt::Result {
    let mut histogram = encoder.encode_descriptor(
        "ratelimit_decision_duration_seconds",
        "Time to decide a request's limits, by store",
        None,
        MetricType::Histogram,
    )?;
    for &store in stores {
        let (sum, count, buckets) = metrics.latency[store as usize].snapshot();
        histogram
            .encode_family(&[("store", STORES[store as usize])])?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_take_each_observation_once() {
        let latency = Latency::default();
        for micros in [0, 1, 2, 7, 300, 1_000_000] {
            latency.observe(Duration::from_micros(micros));
        }
        let (sum, count, buckets) = latency.snapshot();
        assert_eq!(count, 6);
        assert!((sum - 1.000_310).abs() < 1e-9, "{sum}");
        let counts: Vec<u64> = buckets.iter().map(|b| b.1).collect();
        // 0 and 1 µs in the first bucket (le 1 µs), 2 in le 5 µs, 7 in le 10 µs, 300 in le
        // 500 µs, a second beyond the last bound.
        assert_eq!(counts[..4], [2, 1, 1, 0]);
        assert_eq!(counts[6], 1);
        assert_eq!(counts[LATENCY_BOUNDS.len()], 1);
    }

    #[test]
    fn a_rules_counters_are_made_once_and_shared() {
        let metrics = Metrics::new(true);
        let a = Rule::new(
            "a",
            crate::QuotaSource::Fixed(crate::Quota::from_parts(1, 1).unwrap()),
        );
        metrics.count(&a, "", Outcome::Allowed, StoreLabel::Memory, 2);
        metrics.count(&a, "", Outcome::Allowed, StoreLabel::Memory, 1);
        metrics.count(&a, "pro", Outcome::Denied, StoreLabel::Memory, 0);
        assert_eq!(metrics.rules.load().len(), 2);
        metrics.with_rule("a", "", |c| {
            assert_eq!(c.decisions[0][0].load(Ordering::Relaxed), 2);
            assert_eq!(c.units(StoreLabel::Memory), 3);
        });
        // Another limiter counts the same rule apart.
        let other = Metrics::new(true);
        other.count(&a, "", Outcome::Allowed, StoreLabel::Memory, 5);
        other.with_rule("a", "", |c| assert_eq!(c.units(StoreLabel::Memory), 5));
        metrics.with_rule("a", "", |c| assert_eq!(c.units(StoreLabel::Memory), 3));
        let off = Metrics::new(false);
        off.count(&a, "", Outcome::Allowed, StoreLabel::Memory, 1);
        assert_eq!(off.rules.load().len(), 0);
    }

    #[test]
    fn shadow_lines_are_at_most_one_a_second() {
        let counters = RuleCounters::default();
        let t0 = 1_700_000_000 * NANOS_PER_SEC;
        assert!(counters.shadow_log_due(t0));
        assert!(!counters.shadow_log_due(t0 + NANOS_PER_SEC / 2));
        assert!(counters.shadow_log_due(t0 + NANOS_PER_SEC));
    }
}
