use std::fmt;
use std::num::NonZeroU32;

use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::quota::Quota;

/// What an algorithm needs to know about one limit: its quota and its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Requests per period.
    pub quota: Quota,
    /// The most a client can spend at once (`burst`); the quota's limit unless set.
    pub capacity: NonZeroU32,
}

impl Limit {
    /// A limit whose capacity is its quota's limit.
    pub const fn new(quota: Quota) -> Limit {
        Limit {
            quota,
            capacity: match NonZeroU32::new(quota.limit()) {
                Some(c) => c,
                None => NonZeroU32::MIN,
            },
        }
    }

    /// A limit with an explicit capacity (`burst`).
    pub const fn with_capacity(quota: Quota, capacity: NonZeroU32) -> Limit {
        Limit { quota, capacity }
    }
}

/// A rate-limiting algorithm: plain data and pure functions over explicit time.
pub trait Algorithm {
    /// Per-key state; `Default` is a key never seen.
    type State: Default + Send + 'static;

    /// The name users pick it by.
    const KIND: AlgorithmKind;

    /// Decides whether `cost` may be spent at `now`, without spending it. May tidy `state`
    /// (drop what has expired) but never changes what it admits.
    fn evaluate(state: &mut Self::State, now: UnixNanos, limit: &Limit, cost: u32) -> Decision;

    /// Spends `cost` at `now`; called only after [`Algorithm::evaluate`] allowed it.
    fn charge(state: &mut Self::State, now: UnixNanos, limit: &Limit, cost: u32);

    /// The instant from which `state` admits exactly what a fresh state admits.
    fn expires_at(state: &Self::State) -> UnixNanos;

    /// Gives back, at `now`, `cost` units charged at `charged_at`: a request that turned out
    /// not to count (`deduct_when`) or to cost less (`settle`). Only what still counts comes
    /// back: units of a window that has ended, log entries that have expired, or the part of a
    /// bucket that has drained meanwhile are gone already, and a state never gives back more
    /// than it holds.
    fn refund(
        state: &mut Self::State,
        charged_at: UnixNanos,
        now: UnixNanos,
        limit: &Limit,
        cost: u32,
    );

    /// What forgetting `state` at `now` would give back to its client, comparable between
    /// states of this algorithm: the units it holds where it counts them (the windows and the
    /// log), else the time until it is whole (the buckets and GCRA, whose states hold no count:
    /// units over their rate). A full memory store evicts, among a few keys, the one that holds
    /// least, so that a flood of fresh keys pushes out keys like themselves, not a busy
    /// client's spent budget. (Time is a fair measure between keys of one rate only: a key of a
    /// slow rule holding one request can outweigh a fast rule's spent budget. States would need
    /// their limit to do better.)
    fn held(state: &Self::State, now: UnixNanos) -> u64 {
        Self::expires_at(state).saturating_sub(now)
    }

    /// The bytes `state` holds on the heap, beside its fixed size (a log's entries).
    fn heap_bytes(state: &Self::State) -> usize {
        let _ = state;
        0
    }

    /// Decides `cost` at `now` and, if allowed, spends it: one request against one limit.
    fn step(state: &mut Self::State, now: UnixNanos, limit: &Limit, cost: u32) -> Decision {
        let decision = Self::evaluate(state, now, limit, cost);
        if decision.allowed {
            Self::charge(state, now, limit, cost);
        }
        decision
    }
}

/// The algorithms by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// Clock-aligned windows, as the Flask decorator: [`FixedWindow`](super::FixedWindow).
    FixedWindow,
    /// Weighted previous and current windows: [`SlidingWindow`](super::SlidingWindow).
    SlidingWindow,
    /// One timestamp per admitted request: [`SlidingLog`](super::SlidingLog).
    SlidingLog,
    /// Tokens refilled continuously: [`TokenBucket`](super::TokenBucket).
    TokenBucket,
    /// A bucket leaking at the rate: [`LeakyBucket`](super::LeakyBucket).
    LeakyBucket,
    /// One theoretical arrival time: [`Gcra`](super::Gcra).
    Gcra,
}

impl AlgorithmKind {
    /// Every algorithm.
    pub const ALL: [AlgorithmKind; 6] = [
        AlgorithmKind::FixedWindow,
        AlgorithmKind::SlidingWindow,
        AlgorithmKind::SlidingLog,
        AlgorithmKind::TokenBucket,
        AlgorithmKind::LeakyBucket,
        AlgorithmKind::Gcra,
    ];

    /// The name used in `algorithm = "..."`.
    pub const fn name(self) -> &'static str {
        match self {
            AlgorithmKind::FixedWindow => "fixed_window",
            AlgorithmKind::SlidingWindow => "sliding_window",
            AlgorithmKind::SlidingLog => "sliding_log",
            AlgorithmKind::TokenBucket => "token_bucket",
            AlgorithmKind::LeakyBucket => "leaky_bucket",
            AlgorithmKind::Gcra => "gcra",
        }
    }

    /// Whether the limit it reports (`X-RateLimit-Limit`) is its capacity (the buckets and
    /// GCRA) rather than the quota's limit (the windows and the log).
    pub const fn reports_capacity(self) -> bool {
        matches!(
            self,
            AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket | AlgorithmKind::Gcra
        )
    }

    /// Whether a refused request can reserve a later turn (`max_wait`): the algorithms whose
    /// state is a level draining at the rate (the buckets, GCRA), where a turn taken in advance
    /// only pushes the next one later. The windows and the log count what happens in a window,
    /// and a turn in a later window would be counted in this one.
    pub const fn can_reserve(self) -> bool {
        self.reports_capacity()
    }

    /// Whether units of a shared budget can be taken ahead and spent later by one process (a
    /// lease) without breaking the limit: the fixed window (units leased in a window are
    /// counted in it, and die with it) and the algorithms that drain at the rate (a unit spent
    /// later than it was taken stretches a burst by at most the lease's lifetime). The sliding
    /// window and the log weigh each unit by when it was admitted, which a lease would hide.
    pub const fn can_lease(self) -> bool {
        matches!(self, AlgorithmKind::FixedWindow) || self.reports_capacity()
    }

    /// The algorithm's limit for `quota` when no `burst` is given: the quota's limit, except
    /// for the leaky bucket, which smooths to one request at a time (as nginx's `limit_req`).
    pub const fn default_limit(self, quota: Quota) -> Limit {
        match self {
            AlgorithmKind::LeakyBucket => Limit::with_capacity(quota, NonZeroU32::MIN),
            _ => Limit::new(quota),
        }
    }
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An instant computed in `u128`, saturated to `UnixNanos`.
pub(crate) fn saturate(t: u128) -> UnixNanos {
    UnixNanos::try_from(t).unwrap_or(UnixNanos::MAX)
}

#[cfg(test)]
mod refund_tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::algorithm::{
        FixedWindow, Gcra, LeakyBucket, SlidingLog, SlidingWindow, TokenBucket,
    };
    use crate::clock::NANOS_PER_SEC;

    const S: UnixNanos = NANOS_PER_SEC;
    /// A multiple of 60 s: windows start here.
    const T0: UnixNanos = 1_800_000_000 * S;

    /// 10 per 60 s with a capacity of 10: 3 charged at `T0`, 2 of them refunded at `at`; what
    /// remains for a request at `at`.
    fn remaining_after_refund<A: Algorithm>(at: UnixNanos) -> u32 {
        let limit = Limit::with_capacity(
            Quota::from_parts(10, 60).unwrap(),
            NonZeroU32::new(10).unwrap(),
        );
        let mut state = A::State::default();
        assert!(A::step(&mut state, T0, &limit, 3).allowed);
        A::refund(&mut state, T0, at, &limit, 2);
        let before = A::evaluate(&mut state, at, &limit, 1).remaining;
        // A refund never gives back more than was charged.
        A::refund(&mut state, T0, at, &limit, 50);
        let after = A::evaluate(&mut state, at, &limit, 1).remaining;
        assert!(
            after <= 9,
            "{}: {after} left after refunding everything",
            A::KIND
        );
        before
    }

    #[test]
    fn a_refund_gives_back_what_still_counts() {
        // At once: 3 - 2 = 1 spent, whatever the algorithm (remaining counts the next unit).
        assert_eq!(remaining_after_refund::<FixedWindow>(T0), 8);
        assert_eq!(remaining_after_refund::<SlidingWindow>(T0), 8);
        assert_eq!(remaining_after_refund::<SlidingLog>(T0), 8);
        assert_eq!(remaining_after_refund::<TokenBucket>(T0), 8);
        assert_eq!(remaining_after_refund::<LeakyBucket>(T0), 8);
        assert_eq!(remaining_after_refund::<Gcra>(T0), 8);
    }

    #[test]
    fn a_refund_after_the_units_stopped_counting_changes_nothing() {
        // A minute on: the window ended, the log entries expired, the buckets drained.
        let later = T0 + 61 * S;
        assert_eq!(remaining_after_refund::<FixedWindow>(later), 9);
        assert_eq!(remaining_after_refund::<SlidingLog>(later), 9);
        assert_eq!(remaining_after_refund::<TokenBucket>(later), 9);
        assert_eq!(remaining_after_refund::<Gcra>(later), 9);
        // 9 s on, a bucket of one unit per 6 s has drained 1.5 of the 3: the refund of 2 takes
        // the 1.5 left, not more (as many remain as from an empty bucket).
        assert_eq!(remaining_after_refund::<TokenBucket>(T0 + 9 * S), 9);
        assert_eq!(remaining_after_refund::<Gcra>(T0 + 9 * S), 9);
        // The sliding window: charged in the previous window, refunded from its share.
        assert_eq!(remaining_after_refund::<SlidingWindow>(T0 + 60 * S), 8);
    }
}
