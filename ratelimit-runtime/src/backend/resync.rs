//! Resync after an outage: what a process admitted in its own memory while Redis was away
//! (the `Fallback` policy), kept per Redis key and charged to Redis once it answers again, so
//! that a fleet does not get a second full budget for the window of an outage.
//!
//! Units are charged at the instant of the resync, each key in a call of its own, taking what
//! still fits in the budget (a budget is emptied, never overdrawn), and only while they still
//! count:
//!
//! | algorithm | units admitted alone are charged | and are dropped |
//! |---|---|---|
//! | fixed window | into the same window | once that window has ended: they no longer count |
//! | sliding window | into the same window | once it has ended (they would count only as the previous window's weighted share, which a charge cannot write) |
//! | sliding log | as entries from the resync on | a period after the last of them |
//! | token bucket, leaky bucket, GCRA | as spent units | once the budget would have refilled from empty after the last of them |
//!
//! Units of a log or a bucket are charged whole, though some would have expired or refilled by
//! the resync: after an outage the limiter errs on refusing, never on a second budget.
//!
//! The table is bounded ([`MAX_KEYS`]): keys beyond it are not recorded, and the process says
//! so in its log once per outage.

use std::collections::{hash_map, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::algorithm::AlgorithmKind;
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::store::Check;

/// The most keys a process records while Redis is away.
pub(crate) const MAX_KEYS: usize = 10_000;

/// Units admitted alone, per Redis key.
pub(crate) struct Unsynced {
    entries: Mutex<HashMap<(u128, u64), Owed>>,
    /// How many entries there are, read without the lock on every Redis answer.
    len: AtomicUsize,
    max_keys: usize,
    /// Whether a key found the table full in this outage (logged once).
    overflowed: AtomicBool,
    /// Units charged to Redis after outages.
    resynced: AtomicU64,
    /// Units not charged: their key found the table full, or Redis refuses its key.
    dropped: AtomicU64,
}

/// One key's units: the check that charges them (`cost` the units) and until when they count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owed {
    pub(crate) check: Check,
    until: UnixNanos,
}

impl Unsynced {
    pub(crate) fn new(max_keys: usize) -> Unsynced {
        Unsynced {
            entries: Mutex::default(),
            len: AtomicUsize::new(0),
            max_keys,
            overflowed: AtomicBool::new(false),
            resynced: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Records the checks of a request admitted alone at `now` (their Redis keys).
    pub(crate) fn record(&self, checks: &[Check], now: UnixNanos) {
        // A probe charged nothing: nothing is owed.
        for check in checks.iter().filter(|c| !c.probe) {
            self.add(Owed {
                check: Check {
                    max_wait: 0,
                    probe: false,
                    ..*check
                },
                until: counts_until(check, now),
            });
        }
    }

    /// Puts back units that could not be charged (Redis failed again), for the next resync.
    pub(crate) fn put_back(&self, owed: Owed) {
        self.add(owed);
    }

    fn add(&self, owed: Owed) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let room = entries.len() < self.max_keys;
        match entries.entry((owed.check.key, owed.check.group)) {
            hash_map::Entry::Occupied(mut held) => {
                let held = held.get_mut();
                let windowed = matches!(
                    owed.check.algorithm,
                    AlgorithmKind::FixedWindow | AlgorithmKind::SlidingWindow
                );
                if windowed && owed.until > held.until {
                    // A later window: what the earlier one admitted no longer counts.
                    *held = owed;
                } else {
                    held.check.cost = held.check.cost.saturating_add(owed.check.cost);
                    held.until = held.until.max(owed.until);
                }
                // More than a whole budget never fits: the sum stops there.
                held.check.cost = held.check.cost.min(whole(&held.check));
            }
            hash_map::Entry::Vacant(free) if room => {
                let owed = free.insert(owed);
                owed.check.cost = owed.check.cost.min(whole(&owed.check));
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            hash_map::Entry::Vacant(_) => {
                self.dropped
                    .fetch_add(u64::from(owed.check.cost), Ordering::Relaxed);
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "rate limiter: more than {} keys were limited in process memory while \
                         Redis was away; what the others admit will not be charged to Redis \
                         when it answers again",
                        self.max_keys
                    );
                }
            }
        }
    }

    /// Takes every key's units that still count at `now`, to be charged; the rest is dropped.
    pub(crate) fn take(&self, now: UnixNanos) -> Vec<Owed> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.overflowed.store(false, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        entries
            .drain()
            .map(|(_, owed)| owed)
            .filter(|owed| owed.until > now)
            .collect()
    }

    /// Whether any units wait to be charged.
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Counts units that will not be charged: Redis refuses their key (one holding another
    /// type), however often it is asked.
    pub(crate) fn drop_units(&self, units: u32) {
        self.dropped.fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// Counts units charged to Redis.
    pub(crate) fn charged(&self, units: u32) {
        self.resynced.fetch_add(u64::from(units), Ordering::Relaxed);
    }

    /// Units charged to Redis after outages, and units that found the table full.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.resynced.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The most units of `check`'s budget: what an empty budget holds.
fn whole(check: &Check) -> u32 {
    match check.algorithm {
        AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket | AlgorithmKind::Gcra => {
            check.limit.capacity.get()
        }
        _ => check.limit.quota.limit(),
    }
}

/// Until when units of `check` admitted at `now` count (see the module's table).
fn counts_until(check: &Check, now: UnixNanos) -> UnixNanos {
    let quota = check.limit.quota;
    let period = quota.period_nanos();
    match check.algorithm {
        // The end of the clock-aligned window holding `now`, as the algorithms align it.
        AlgorithmKind::FixedWindow | AlgorithmKind::SlidingWindow => {
            let secs = u64::from(quota.period_secs());
            (now / NANOS_PER_SEC / secs + 1)
                .saturating_mul(secs)
                .saturating_mul(NANOS_PER_SEC)
        }
        AlgorithmKind::SlidingLog => now.saturating_add(period),
        // From empty, a bucket is whole again after `capacity` units at the rate.
        _ => {
            let refill = u128::from(period) * u128::from(check.limit.capacity.get())
                / u128::from(quota.limit().max(1));
            now.saturating_add(u64::try_from(refill).unwrap_or(u64::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;

    fn check(key: u128, algorithm: AlgorithmKind, limit: u32, period: u32, cost: u32) -> Check {
        Check {
            key,
            group: 7,
            algorithm,
            limit: algorithm.default_limit(Quota::from_parts(limit, period).unwrap()),
            cost,
            max_wait: 5 * NANOS_PER_SEC,
            probe: false,
        }
    }

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn units_add_up_per_key_and_stop_at_a_whole_budget() {
        let unsynced = Unsynced::new(10);
        let a = check(1, AlgorithmKind::FixedWindow, 10, 60, 3);
        unsynced.record(&[a, a], 600 * S);
        unsynced.record(&[check(2, AlgorithmKind::FixedWindow, 10, 60, 1)], 600 * S);
        let mut taken: Vec<Check> = unsynced.take(601 * S).iter().map(|o| o.check).collect();
        taken.sort_by_key(|c| c.key);
        assert_eq!(
            taken.iter().map(|c| (c.key, c.cost)).collect::<Vec<_>>(),
            [(1, 6), (2, 1)]
        );
        assert!(taken.iter().all(|c| c.max_wait == 0), "charged at once");
        assert!(unsynced.is_empty(), "taken once");
        for _ in 0..5 {
            unsynced.record(&[a], 600 * S);
        }
        assert_eq!(
            unsynced.take(601 * S)[0].check.cost,
            10,
            "a whole budget at most"
        );
    }

    #[test]
    fn units_of_a_window_that_ended_are_dropped() {
        let unsynced = Unsynced::new(10);
        // The window of 60 s holding 630 s is [600 s, 660 s).
        unsynced.record(&[check(1, AlgorithmKind::FixedWindow, 10, 60, 1)], 630 * S);
        unsynced.record(
            &[check(2, AlgorithmKind::SlidingWindow, 10, 60, 1)],
            630 * S,
        );
        unsynced.record(&[check(3, AlgorithmKind::SlidingLog, 10, 60, 1)], 630 * S);
        // A token bucket of 10 per 60 s refills from empty in 60 s; GCRA as well.
        unsynced.record(&[check(4, AlgorithmKind::TokenBucket, 10, 60, 1)], 630 * S);
        unsynced.record(&[check(5, AlgorithmKind::Gcra, 10, 60, 1)], 630 * S);
        // A leaky bucket holds one: it is whole again after one unit's time, 6 s.
        unsynced.record(&[check(6, AlgorithmKind::LeakyBucket, 10, 60, 1)], 630 * S);
        let mut kept: Vec<u128> = unsynced.take(660 * S).iter().map(|o| o.check.key).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            [3, 4, 5],
            "the windows ended at 660 s, the leaky bucket at 636 s"
        );
    }

    #[test]
    fn a_later_window_replaces_the_units_of_the_one_before() {
        let unsynced = Unsynced::new(10);
        let a = check(1, AlgorithmKind::FixedWindow, 10, 60, 4);
        unsynced.record(&[a], 630 * S);
        unsynced.record(&[Check { cost: 1, ..a }], 661 * S);
        let owed = unsynced.take(662 * S);
        assert_eq!(owed[0].check.cost, 1, "the window [600 s, 660 s) ended");
        // A bucket adds up, capped at its capacity (a leaky bucket's is 1 by default).
        let leaky = check(2, AlgorithmKind::LeakyBucket, 10, 60, 1);
        unsynced.record(&[leaky, leaky, leaky], 630 * S);
        assert_eq!(unsynced.take(631 * S)[0].check.cost, 1);
    }

    #[test]
    fn a_full_table_records_no_more_keys_and_counts_what_it_drops() {
        let unsynced = Unsynced::new(2);
        for key in 0..4 {
            unsynced.record(
                &[check(key, AlgorithmKind::FixedWindow, 10, 60, 2)],
                600 * S,
            );
        }
        // Keys already held still add up.
        unsynced.record(&[check(0, AlgorithmKind::FixedWindow, 10, 60, 2)], 600 * S);
        assert_eq!(unsynced.stats(), (0, 4));
        let taken = unsynced.take(601 * S);
        assert_eq!(taken.iter().map(|o| o.check.cost).sum::<u32>(), 6);
    }

    #[test]
    fn units_put_back_wait_for_the_next_resync() {
        let unsynced = Unsynced::new(10);
        let a = check(1, AlgorithmKind::TokenBucket, 10, 60, 4);
        unsynced.record(&[a], 600 * S);
        let owed = unsynced.take(601 * S);
        assert_eq!(owed.len(), 1);
        unsynced.put_back(owed[0]);
        unsynced.record(&[Check { cost: 1, ..a }], 602 * S);
        let owed = unsynced.take(603 * S);
        assert_eq!(owed[0].check.cost, 5);
        // They count until the bucket refills from the last admission: 602 s + 60 s.
        assert!(unsynced.take(603 * S).is_empty());
        unsynced.put_back(owed[0]);
        assert!(unsynced.take(662 * S).is_empty(), "refilled by then");
    }
}
