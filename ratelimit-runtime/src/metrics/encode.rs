//! The counters in the OpenMetrics text format, through `prometheus-client`'s encoder
//! (feature `metrics`).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{Metrics, RuleCounters, RuleLabel, StoreLabel};

const STORES: [&str; 3] = ["memory", "redis", "fallback"];

const OUTCOMES: [&str; 6] = [
    "allowed",
    "denied",
    "shadow_denied",
    "degraded",
    "refunded",
    "shed",
];

pub(crate) fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &(impl EncodeMetric + prometheus_client::metrics::TypedMetric),
) -> fmt::Result {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

impl Metrics {
    /// Writes the series of every rule and the decision-latency histogram, for `stores`.
    pub(crate) fn encode(
        &self,
        encoder: &mut DescriptorEncoder,
        stores: &[StoreLabel],
    ) -> fmt::Result {
        encode_rules(encoder, self, stores)?;
        encode_latency(encoder, self, stores)
    }
}

/// A per-store count of units of one rule's counters.
type UnitsOf = fn(&RuleCounters, StoreLabel) -> u64;

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
        "Decisions per rule, by outcome (allowed, denied, shadow_denied, degraded; refunded: allowed, then given back after the response; shed: by an adaptive concurrency limit) and store",
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
    let units_counters: [(&str, &str, UnitsOf); 2] = [
        (
            "ratelimit_units_spent",
            "Units charged per rule (a request spends its `cost`), by store",
            RuleCounters::units,
        ),
        (
            "ratelimit_units_refunded",
            "Units given back after the response (deduct_when, settle), per rule and store",
            |counters, store| counters.refunded_units[store as usize].load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in units_counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (label, counters) in &rules {
            for &store in stores {
                let mut series = labels(label);
                series.push(("store", STORES[store as usize].to_string()));
                ConstCounter::new(value(counters, store)).encode(family.encode_family(&series)?)?;
            }
        }
    }
    let mut penalties = encoder.encode_descriptor(
        "ratelimit_penalties",
        "Penalties begun per rule (`penalty`: a client refused too often is refused for a while), decided by any store",
        None,
        MetricType::Counter,
    )?;
    for (label, counters) in rules
        .iter()
        .filter(|(_, c)| c.has_penalty.load(Ordering::Relaxed))
    {
        let begun = counters.penalties.load(Ordering::Relaxed);
        ConstCounter::new(begun).encode(penalties.encode_family(&labels(label))?)?;
    }
    let mut shed = encoder.encode_descriptor(
        "ratelimit_shed",
        "Requests an adaptive concurrency limit shed (503), by priority",
        None,
        MetricType::Counter,
    )?;
    for (label, counters) in rules
        .iter()
        .filter(|(_, c)| c.adaptive.load(Ordering::Relaxed))
    {
        for (at, priority) in ["critical", "normal", "sheddable"].into_iter().enumerate() {
            let mut series = labels(label);
            series.push(("priority", priority.to_string()));
            let count = counters.shed[at].load(Ordering::Relaxed);
            ConstCounter::new(count).encode(shed.encode_family(&series)?)?;
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
