//! Adaptive concurrency (`concurrency = "adaptive"`): a concurrency limit that follows the
//! latency of the requests it admits. Per process by design: it protects this server's own
//! resources, whose health no other process sees.
//!
//! The controller is a gradient over the no-load latency, after Envoy's adaptive concurrency
//! filter (itself after Netflix's `Gradient` limiter):
//!
//! - **The no-load latency** is measured with the limit pinned to its minimum, at the start and
//!   again every minute, as the 90th percentile of 25 requests admitted while no more were in
//!   flight than the pinned limit lets in (with priorities, what critical requests may take at
//!   it): they do not queue, so this is what a request costs the resource now.
//! - **Every window** of 100 ms (and at least 8 samples), the window's latency (its 90th
//!   percentile, like with like: a latency that spreads with no load is not queueing) against
//!   the no-load latency plus a quarter gives the gradient,
//!   `min_rtt × 1.25 / sample`, clamped to `[0.5, 2]`; the new limit is
//!   `gradient × limit + √limit`, within the bounds. A window in which fewer than half the
//!   slots were used does not raise the limit: an idle server says nothing about its capacity.
//!
//! Why this one. Vegas-style queue estimation needs the same no-load reference and adds
//! thresholds to tune; Gradient2's long-term average needs none, but under a standing queue it
//! drifts up and comes to accept the queue as normal. A gradient decreases in proportion to the
//! queueing (quickly out of an overload, at most halving per window), the square-root headroom
//! settles a little above the resource's parallelism (a queue of about √limit), and measuring
//! the minimum again with the limit pinned low keeps the reference honest both ways: it never
//! sticks at the minimum when the resource genuinely slows down, and never accepts a standing
//! queue. The cost is a dip every minute: what is in flight drains, then 25 requests are served
//! at the minimum while nearly everything else is shed, about `12.5 × latency` with the default
//! minimum of 2 (0.6 s for a 50 ms handler, 13 s for a 1 s one: give slow handlers a higher
//! minimum). A streaming response holds its slot, and is timed, until its last byte: keep
//! adaptive limits off streams and server-sent events.
//!
//! Pure: time and latencies are arguments, so tests drive it on a manual clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::UnixNanos;

/// Nanoseconds of one window of samples.
const WINDOW: u64 = 100_000_000;
/// A window closes with at least this many samples (and not before `WINDOW`).
const WINDOW_SAMPLES: usize = 8;
/// Samples of one no-load measurement.
pub(crate) const MIN_RTT_SAMPLES: usize = 25;
/// How often the no-load latency is measured again.
pub(crate) const RECALCULATE_EVERY: u64 = 60_000_000_000;
/// Latency above the no-load one that is not yet queueing, as a share of it.
const BUFFER: f64 = 0.25;

/// The bounds of an adaptive limit (`concurrency = "adaptive"`, or `"adaptive(2..64)"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveBounds {
    /// The lowest limit, the one the no-load latency is measured at; at least 1.
    pub min: u32,
    /// The highest limit.
    pub max: u32,
}

impl AdaptiveBounds {
    /// The default bounds: 2 to 1,000.
    pub const DEFAULT: AdaptiveBounds = AdaptiveBounds { min: 2, max: 1_000 };
}

/// What the controller is doing.
#[derive(Debug)]
enum Phase {
    /// Measuring the no-load latency, the limit pinned to the minimum since `since`; back to
    /// `resume` after.
    MinRtt {
        since: UnixNanos,
        samples: Vec<u64>,
        resume: f64,
    },
    /// Following the latency of windows of samples.
    Sampling,
}

/// One adaptive limit's state.
#[derive(Debug)]
pub(crate) struct Controller {
    bounds: AdaptiveBounds,
    limit: f64,
    /// The no-load latency, in nanoseconds (0 before the first measurement).
    min_rtt: u64,
    phase: Phase,
    window: Vec<u64>,
    window_start: UnixNanos,
    /// The most requests in flight a sample of the window was admitted with.
    window_peak: u32,
    /// The last window's latency (nanoseconds), for the metrics.
    last_sample: u64,
    /// The most requests the pinned limit lets in flight (the minimum, or with priorities
    /// what critical requests may take at it): samples admitted with no more count as no-load.
    pinned_cap: u32,
    next_recalculation: UnixNanos,
}

impl Controller {
    /// A controller starting at `now` by measuring the no-load latency; `prioritized`: its
    /// requests have priorities (critical ones may go past the minimum while it is pinned).
    pub(crate) fn new(bounds: AdaptiveBounds, prioritized: bool, now: UnixNanos) -> Controller {
        let min = bounds.min.max(1);
        let bounds = AdaptiveBounds {
            min,
            max: bounds.max.max(min),
        };
        let pinned_cap = (0..=min.saturating_mul(4).max(8))
            .take_while(|&n| admits(min, n, Priority::Critical, prioritized))
            .count() as u32;
        Controller {
            pinned_cap: pinned_cap.max(min),
            bounds,
            limit: f64::from(min),
            min_rtt: 0,
            phase: Phase::MinRtt {
                since: now,
                samples: Vec::with_capacity(MIN_RTT_SAMPLES),
                resume: f64::from(min),
            },
            window: Vec::with_capacity(WINDOW_SAMPLES * 4),
            window_start: now,
            window_peak: 0,
            last_sample: 0,
            next_recalculation: now.saturating_add(RECALCULATE_EVERY),
        }
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> u32 {
        match self.phase {
            Phase::MinRtt { .. } => self.bounds.min,
            Phase::Sampling => self.limit.round() as u32,
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    /// The no-load latency and the last window's, in nanoseconds (0 while unknown).
    pub(crate) fn latencies(&self) -> (u64, u64) {
        (self.min_rtt, self.last_sample)
    }

    /// A request admitted at `admitted` with `in_flight` requests in flight (itself included)
    /// ended at `now`.
    pub(crate) fn sample(&mut self, admitted: UnixNanos, in_flight: u32, now: UnixNanos) {
        let latency = now.saturating_sub(admitted);
        match &mut self.phase {
            Phase::MinRtt {
                since,
                samples,
                resume,
            } => {
                // Only requests that did not queue: admitted in this phase, with no more in
                // flight than the pinned limit lets in.
                if admitted >= *since && in_flight <= self.pinned_cap {
                    samples.push(latency);
                }
                if samples.len() >= MIN_RTT_SAMPLES {
                    // The same percentile as the windows': a handler whose latency spreads
                    // with no load at all is compared like with like.
                    self.min_rtt = p90(samples).max(1);
                    self.limit = *resume;
                    self.phase = Phase::Sampling;
                    self.window.clear();
                    self.window_start = now;
                    self.window_peak = 0;
                    self.next_recalculation = now.saturating_add(RECALCULATE_EVERY);
                }
            }
            Phase::Sampling => {
                self.window.push(latency);
                self.window_peak = self.window_peak.max(in_flight);
                if now.saturating_sub(self.window_start) >= WINDOW
                    && self.window.len() >= WINDOW_SAMPLES
                {
                    self.close_window(now);
                }
                if now >= self.next_recalculation {
                    self.phase = Phase::MinRtt {
                        since: now,
                        samples: Vec::with_capacity(MIN_RTT_SAMPLES),
                        resume: self.limit,
                    };
                }
            }
        }
    }

    fn close_window(&mut self, now: UnixNanos) {
        self.last_sample = p90(&mut self.window).max(1);
        let target = self.min_rtt as f64 * (1.0 + BUFFER);
        let gradient = (target / self.last_sample as f64).clamp(0.5, 2.0);
        // A window that used fewer than half the slots says nothing about the capacity: it
        // may lower the limit (a slow resource), never raise it.
        let used = f64::from(self.window_peak) >= self.limit / 2.0;
        let limit = match used {
            true => gradient * self.limit + self.limit.sqrt(),
            false => gradient.min(1.0) * self.limit,
        };
        self.limit = limit.clamp(f64::from(self.bounds.min), f64::from(self.bounds.max));
        self.window.clear();
        self.window_start = now;
        self.window_peak = 0;
    }
}

/// The 90th percentile of `samples` (not empty).
fn p90(samples: &mut [u64]) -> u64 {
    let at = (samples.len() * 9 / 10).min(samples.len() - 1);
    let (_, &mut p90, _) = samples.select_nth_unstable(at);
    p90
}

/// What a request's priority function says (`priority = path::to::fn`): as an adaptive limit
/// tightens, sheddable requests are shed first and critical ones last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Served while any slot is free: the requests the service exists for.
    Critical,
    /// The default.
    #[default]
    Normal,
    /// Shed first: prefetches, analytics, retries of background work.
    Sheddable,
}

impl Priority {
    /// The label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Normal => "normal",
            Priority::Sheddable => "sheddable",
        }
    }
}

/// Whether a request of `priority` may take a slot with `in_flight` taken of `limit`. Without
/// priorities (`prioritized` false), any slot. With them, a quarter of the limit (at least 2
/// slots) is kept from normal requests for critical ones, and as much again from sheddable
/// ones for normal ones: when the server is healthy nobody reaches the reserves; as the limit
/// tightens, sheddable requests go first and critical ones last. Critical requests always
/// have the reserve beyond what normal ones may take, even at the smallest limits.
pub(crate) fn admits(limit: u32, in_flight: u32, priority: Priority, prioritized: bool) -> bool {
    if !prioritized {
        return in_flight < limit;
    }
    let reserve = (limit / 4).max(2);
    let normal = limit.saturating_sub(reserve).max(1);
    let allowed = match priority {
        Priority::Critical => limit.max(normal + reserve),
        Priority::Normal => normal,
        // One sheddable request at a time still passes an idle server.
        Priority::Sheddable => limit.saturating_sub(2 * reserve).max(1),
    };
    in_flight < allowed
}

/// The most adaptive limits kept per limiter (one per rule and client, for a rule with a
/// scope); past it, those with nothing in flight are dropped.
const MAX_LIMITS: usize = 10_000;

/// One adaptive limit in this process: its controller, the limit in force and the requests it
/// admitted still in flight.
pub(crate) struct AdaptiveLimit {
    /// The rule's name (the metrics' label).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) rule: String,
    controller: Mutex<Controller>,
    limit: AtomicU32,
    in_flight: AtomicU32,
    /// When it was last used (a stamp of its limiter's), for eviction.
    used: AtomicU64,
}

impl AdaptiveLimit {
    fn new(rule: &str, bounds: AdaptiveBounds, prioritized: bool, now: UnixNanos) -> AdaptiveLimit {
        let controller = Controller::new(bounds, prioritized, now);
        AdaptiveLimit {
            rule: rule.to_owned(),
            limit: AtomicU32::new(controller.limit()),
            controller: Mutex::new(controller),
            in_flight: AtomicU32::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// A slot taken whatever the limit (a dry run): the requests in flight then.
    pub(crate) fn force_take(&self) -> u32 {
        self.in_flight.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A slot for a request of `priority` if the limit admits it: the requests in flight then,
    /// this one included. `Err`: shed, with the limit in force.
    pub(crate) fn try_take(&self, priority: Priority, prioritized: bool) -> Result<u32, u32> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if !admits(limit, current, priority, prioritized) {
                return Err(limit);
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(current + 1),
                Err(now) => current = now,
            }
        }
    }

    /// Gives a slot back at `now`; `served`: the request admitted at `admitted` with
    /// `in_flight` in flight was answered, and its latency is a sample (a request refused by
    /// a rate limit after taking its slot says nothing about the resource).
    pub(crate) fn give_back(
        &self,
        served: bool,
        admitted: UnixNanos,
        in_flight: u32,
        now: UnixNanos,
    ) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if served {
            let mut controller = self.controller.lock().unwrap_or_else(|e| e.into_inner());
            controller.sample(admitted, in_flight, now);
            self.limit.store(controller.limit(), Ordering::Relaxed);
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    /// The limit in force, the no-load latency and the last window's (nanoseconds).
    pub(crate) fn snapshot(&self) -> (u32, u64, u64) {
        let controller = self.controller.lock().unwrap_or_else(|e| e.into_inner());
        let (min_rtt, sampled) = controller.latencies();
        (controller.limit(), min_rtt, sampled)
    }
}

/// Drops the eighth of the limits used longest ago among those with nothing in flight, so that
/// a full map costs a sweep every eighth of its size, and the limits in use (a handler's own,
/// the clients seen lately) stay with what they learnt.
fn evict(by_key: &mut HashMap<u128, Arc<AdaptiveLimit>>) {
    let idle = |limit: &Arc<AdaptiveLimit>| {
        Arc::strong_count(limit) == 1 && limit.in_flight.load(Ordering::Relaxed) == 0
    };
    let mut uses: Vec<u64> = by_key
        .values()
        .filter(|l| idle(l))
        .map(|l| l.used.load(Ordering::Relaxed))
        .collect();
    if uses.is_empty() {
        return;
    }
    let evict = (MAX_LIMITS / 8).clamp(1, uses.len());
    let (_, &mut newest_evicted, _) = uses.select_nth_unstable(evict - 1);
    by_key.retain(|_, l| !(idle(l) && l.used.load(Ordering::Relaxed) <= newest_evicted));
}

/// A limiter's adaptive limits, by check key.
#[derive(Default)]
pub(crate) struct AdaptiveLimits {
    by_key: Mutex<HashMap<u128, Arc<AdaptiveLimit>>>,
    /// Stamps of use.
    tick: AtomicU64,
}

impl AdaptiveLimits {
    /// The adaptive limit of `key` (the rule `rule` for one client, or for all), made at
    /// `now` on first use.
    pub(crate) fn get(
        &self,
        key: u128,
        rule: &str,
        bounds: AdaptiveBounds,
        prioritized: bool,
        now: UnixNanos,
    ) -> Arc<AdaptiveLimit> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = by_key.get(&key) {
            limit.used.store(tick, Ordering::Relaxed);
            return Arc::clone(limit);
        }
        if by_key.len() >= MAX_LIMITS {
            evict(&mut by_key);
        }
        let limit = Arc::new(AdaptiveLimit::new(rule, bounds, prioritized, now));
        limit.used.store(tick, Ordering::Relaxed);
        by_key.insert(key, Arc::clone(&limit));
        limit
    }

    /// Every adaptive limit (for the metrics).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn all(&self) -> Vec<Arc<AdaptiveLimit>> {
        let by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        by_key.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A resource of `workers` parallel workers taking `service` each: a request admitted with
    /// `n` in flight (itself included) takes `service × max(1, n / workers)` (it queues).
    struct Resource {
        workers: u32,
        service: u64,
    }

    /// A resource whose service time spreads: from `service` to 3x it, by request.
    fn spread(service: u64) -> impl Fn(u64) -> u64 {
        move |n| service + (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % (2 * service)
    }

    /// Drives `c` with `clients` that always have a request to send, for `ms` milliseconds from
    /// `start`; the limit at each millisecond and the latencies served.
    fn drive(
        c: &mut Controller,
        resource: &Resource,
        clients: u32,
        start: UnixNanos,
        ms: u64,
    ) -> (Vec<u32>, Vec<u64>) {
        drive_with(
            c,
            resource.workers,
            |_| resource.service,
            clients,
            start,
            ms,
        )
    }

    /// `drive`, the service time of the `n`th request given by `service`.
    fn drive_with(
        c: &mut Controller,
        workers: u32,
        service: impl Fn(u64) -> u64,
        clients: u32,
        start: UnixNanos,
        ms: u64,
    ) -> (Vec<u32>, Vec<u64>) {
        let mut sent = 0;
        let mut in_flight: Vec<(UnixNanos, u32, UnixNanos)> = Vec::new();
        let (mut limits, mut latencies) = (Vec::new(), Vec::new());
        for t in 0..ms {
            let now = start + t * MS;
            in_flight.retain(|&(admitted, n, done)| {
                if done > now {
                    return true;
                }
                c.sample(admitted, n, now);
                latencies.push(now - admitted);
                false
            });
            while (in_flight.len() as u32) < clients.min(c.limit()) {
                let n = in_flight.len() as u32 + 1;
                let queued = u64::from(n.div_ceil(workers)).max(1);
                sent += 1;
                in_flight.push((now, n, now + service(sent) * queued));
            }
            limits.push(c.limit());
        }
        (limits, latencies)
    }

    fn p99(latencies: &mut [u64]) -> u64 {
        latencies.sort_unstable();
        latencies[latencies.len() * 99 / 100]
    }

    fn bounds(min: u32, max: u32) -> AdaptiveBounds {
        AdaptiveBounds { min, max }
    }

    #[test]
    fn it_settles_near_the_resource_s_parallelism_within_seconds() {
        let mut c = Controller::new(bounds(2, 100), false, 0);
        let four = Resource {
            workers: 4,
            service: 50 * MS,
        };
        let (limits, mut latencies) = drive(&mut c, &four, 64, 0, 10_000);
        // After 3 s the limit stays between the parallelism and what keeps latency within 3x.
        let settled = &limits[3_000..];
        assert!(
            settled.iter().all(|&l| (4..=12).contains(&l)),
            "{:?}",
            &settled[..50]
        );
        let half = latencies.len() / 2;
        let late = &mut latencies[half..];
        assert!(p99(late) <= 150 * MS, "p99 {} ms", p99(late) / MS);
    }

    #[test]
    fn it_falls_when_the_resource_slows_and_rises_again_after() {
        let mut c = Controller::new(bounds(2, 100), false, 0);
        let eight = Resource {
            workers: 8,
            service: 20 * MS,
        };
        drive(&mut c, &eight, 64, 0, 5_000);
        let healthy = c.limit();
        assert!((8..=20).contains(&healthy), "{healthy}");
        // Half the workers gone: requests queue, the limit falls within a second.
        let four = Resource {
            workers: 4,
            service: 20 * MS,
        };
        let (limits, _) = drive(&mut c, &four, 64, 5_000 * MS, 2_000);
        assert!(
            limits[1_000..].iter().all(|&l| l <= 10),
            "{:?}",
            &limits[1_000..1_050]
        );
        // Back: it rises again.
        let (limits, _) = drive(&mut c, &eight, 64, 7_000 * MS, 3_000);
        assert!(
            limits[2_000..].iter().all(|&l| l >= 8),
            "{:?}",
            &limits[2_000..2_050]
        );
    }

    #[test]
    fn it_never_sticks_at_the_minimum_when_every_request_gets_slower() {
        let mut c = Controller::new(bounds(2, 100), false, 0);
        let fast = Resource {
            workers: 8,
            service: 10 * MS,
        };
        drive(&mut c, &fast, 64, 0, 5_000);
        // Every request now takes 10x as long at any load (a slow dependency, not a queue):
        // measured against the old no-load latency, the limit falls to where halving it each
        // window meets the headroom (4) ...
        let slow = Resource {
            workers: 8,
            service: 100 * MS,
        };
        let (limits, _) = drive(&mut c, &slow, 64, 5_000 * MS, 5_000);
        assert!(
            limits[2_000..].iter().all(|&l| l <= 4),
            "{:?}",
            &limits[2_000..2_050]
        );
        // ... until the no-load latency is measured again (every minute): then it recovers.
        let (limits, _) = drive(&mut c, &slow, 64, 10_000 * MS, 70_000);
        assert!(
            limits[65_000..].iter().all(|&l| l >= 8),
            "{:?}",
            &limits[65_000..65_050]
        );
    }

    #[test]
    fn a_latency_that_spreads_without_load_is_not_taken_for_queueing() {
        // 20 to 60 ms a request with no queue at all: the no-load latency and the windows are
        // both judged at their 90th percentile, so the spread does not hold the limit down.
        let mut c = Controller::new(bounds(2, 100), false, 0);
        let (limits, _) = drive_with(&mut c, 8, spread(20 * MS), 64, 0, 10_000);
        let settled = &limits[5_000..];
        assert!(settled.iter().all(|&l| l >= 8), "{:?}", &settled[..50]);
    }

    #[test]
    fn with_priorities_the_pinned_limit_still_measures() {
        // Critical requests may take 3 slots while the limit is pinned at 2: their samples
        // count, so the measurement ends under critical traffic.
        let mut c = Controller::new(bounds(2, 100), true, 0);
        for i in 0..MIN_RTT_SAMPLES as u64 {
            c.sample(i * MS, 3, i * MS + 10 * MS);
        }
        assert_eq!(c.latencies().0, 10 * MS);
    }

    #[test]
    fn it_stays_within_its_bounds() {
        let mut c = Controller::new(bounds(3, 6), false, 0);
        let wide = Resource {
            workers: 64,
            service: 5 * MS,
        };
        let (limits, _) = drive(&mut c, &wide, 200, 0, 5_000);
        assert!(limits.iter().all(|&l| (3..=6).contains(&l)));
        assert_eq!(
            limits.last(),
            Some(&6),
            "a resource that never queues: the maximum"
        );
        let mut c = Controller::new(bounds(3, 6), false, 0);
        let one = Resource {
            workers: 1,
            service: 50 * MS,
        };
        let (limits, _) = drive(&mut c, &one, 200, 0, 5_000);
        assert!(limits.iter().all(|&l| (3..=6).contains(&l)));
    }

    #[test]
    fn an_idle_server_does_not_raise_its_limit() {
        let mut c = Controller::new(bounds(2, 1_000), false, 0);
        let wide = Resource {
            workers: 64,
            service: 10 * MS,
        };
        // One client: never more than one in flight.
        let (limits, _) = drive(&mut c, &wide, 1, 0, 10_000);
        assert!(*limits.last().unwrap() <= 4, "{:?}", limits.last());
    }

    #[test]
    fn reserves_keep_slots_for_critical_requests() {
        // Without priorities: any slot.
        assert!(admits(8, 7, Priority::Sheddable, false));
        assert!(!admits(8, 8, Priority::Critical, false));
        // With them, of 8: sheddable up to 4 in flight, normal 6, critical 8.
        let most = |p| (0..=8).filter(|&n| admits(8, n, p, true)).count();
        assert_eq!(
            [
                most(Priority::Sheddable),
                most(Priority::Normal),
                most(Priority::Critical)
            ],
            [4, 6, 8]
        );
        // A limit too small for reserves still lets one of each through, and keeps the
        // reserve for critical requests beyond what normal ones take.
        assert!(admits(2, 0, Priority::Sheddable, true));
        assert!(!admits(2, 1, Priority::Sheddable, true));
        assert!(!admits(2, 1, Priority::Normal, true));
        assert!(admits(2, 2, Priority::Critical, true));
        assert!(!admits(2, 3, Priority::Critical, true));
    }
}
