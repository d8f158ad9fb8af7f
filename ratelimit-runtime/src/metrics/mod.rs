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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};

use crate::adaptive::Priority;
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::rule::Rule;

#[cfg(feature = "metrics")]
pub(crate) mod encode;

/// Which store decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum StoreLabel {
    Memory = 0,
    Redis = 1,
    /// The failure policy while Redis fails: the in-memory fallback, fail-open or fail-closed.
    Fallback = 2,
}

/// What a decision meant for one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed = 0,
    Denied = 1,
    /// Would have been denied, let through by a dry run.
    ShadowDenied = 2,
    /// Allowed above the rule's soft limit.
    Degraded = 3,
    /// Allowed, and its units given back after the response (`deduct_when`, `settle`): the
    /// units counted are those given back.
    Refunded = 4,
    /// Shed by an adaptive concurrency limit (503).
    Shed = 5,
}

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
    decisions: [[AtomicU64; 3]; 6],
    /// Requests an adaptive limit shed, by priority (critical, normal, sheddable), and whether
    /// the rule is one.
    shed: [AtomicU64; 3],
    adaptive: AtomicBool,
    /// Units given back after the response, by store.
    refunded_units: [AtomicU64; 3],
    /// Penalties this rule began (`penalty`), and whether the rule has one (set by its
    /// decisions: its series are shown from then on).
    penalties: AtomicU64,
    has_penalty: AtomicBool,
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
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn units(&self, store: StoreLabel) -> u64 {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let passed = load(&self.decisions[Outcome::Allowed as usize][store as usize])
            + load(&self.decisions[Outcome::Degraded as usize][store as usize]);
        let extra = self.extra_units[store as usize].load(Ordering::Relaxed);
        passed.saturating_add_signed(extra)
    }

    /// Counts a penalty begun (the rule's decisions mark it as one with a penalty).
    pub(crate) fn count_penalty(&self) {
        self.penalties.fetch_add(1, Ordering::Relaxed);
    }

    /// True the first time only: a warning about the rule is logged once.
    pub(crate) fn first_warning(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }

    /// True the first time only: a rule the limiter cannot decide is logged once.
    pub(crate) fn first_refusal(&self) -> bool {
        !self.refusal_logged.swap(true, Ordering::Relaxed)
    }

    /// Counts a request an adaptive limit shed.
    pub(crate) fn shed(&self, priority: Priority) {
        let at = match priority {
            Priority::Critical => 0,
            Priority::Normal => 1,
            Priority::Sheddable => 2,
        };
        self.shed[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the rule an adaptive limit (its shed counts are shown from then on).
    pub(crate) fn adaptive(&self) {
        self.adaptive.store(true, Ordering::Relaxed);
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
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
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
            if rule.penalty.is_some() {
                counters.has_penalty.store(true, Ordering::Relaxed);
            }
            if outcome == Outcome::Refunded {
                counters.refunded_units[store as usize]
                    .fetch_add(u64::from(units), Ordering::Relaxed);
            }
            if passed && units != 1 {
                counters.extra_units[store as usize]
                    .fetch_add(i64::from(units) - 1, Ordering::Relaxed);
            }
        };
        // A rule without tiers keeps its counters at hand for the limiter that uses it.
        if tier.is_empty() {
            let cache = &rule.limiter_cache;
            if let Some(counters) = cache.get::<RuleCounters>(self.id) {
                return bump(counters);
            }
            if cache.is_empty() {
                let counters = self.counters(&rule.name, "");
                bump(&counters);
                cache.keep(self.id, counters);
                return;
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
