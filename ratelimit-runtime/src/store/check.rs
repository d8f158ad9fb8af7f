use std::fmt;
use std::future::Future;

use smallvec::SmallVec;

use crate::algorithm::{AlgorithmKind, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;

/// One limit to decide for one request: whose state, which algorithm, which limit, what cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The key's name: a hash of the rule, its quota and the client identity. On a shared
    /// store, 128 bits keyed by the fleet's secret (the same in every process that shares it;
    /// see [`RateLimiterBuilder::key_secret`](crate::RateLimiterBuilder::key_secret)); in
    /// process memory, 64 bits seeded at random per process.
    pub key: u128,
    /// The group of the key: checks decided together share it (a Redis Cluster hash tag).
    pub group: u64,
    /// The algorithm that owns the key's state.
    pub algorithm: AlgorithmKind,
    /// The quota and capacity.
    pub limit: Limit,
    /// What the request spends.
    pub cost: u32,
    /// How long, in nanoseconds, a refused request may wait for its turn instead (0: refused
    /// at once). See [`Check::reservation`].
    pub max_wait: u64,
    /// Decided with its cost like any other check, never charged: a condition the request
    /// must meet (a rule's `penalty`, which a request passes only while its client is not
    /// serving one). A store must evaluate a probe and must not write it, whatever the
    /// verdict: [`MemoryStore`](crate::store::MemoryStore) and the Redis store do.
    pub probe: bool,
}

impl Check {
    /// The key in 64 bits, as process memory holds it: the key itself when it fits (a memory
    /// store's own keys always do), else its two halves folded.
    pub fn fingerprint(&self) -> u64 {
        (self.key as u64) ^ ((self.key >> 64) as u64)
    }

    /// The limit a decision of this check reports (`X-RateLimit-Limit`): the capacity for the
    /// algorithms that have one, the quota's limit otherwise.
    pub fn reported_limit(&self) -> u32 {
        if self.algorithm.reports_capacity() {
            self.limit.capacity.get()
        } else {
            self.limit.quota.limit()
        }
    }

    /// When a request these `checks` refused at `now` (their `decisions`) may be decided again
    /// and pass, reserving its turn: the latest retry instant of the refusing checks, provided
    /// each is within that check's `max_wait`. `None`: refused.
    pub fn reservation(
        checks: &[Check],
        decisions: &[Decision],
        now: UnixNanos,
    ) -> Option<UnixNanos> {
        let mut at = None;
        for (check, decision) in checks.iter().zip(decisions) {
            // A turn in the future is only sound when every check drains at the rate: a window
            // or a log would count it in the wrong window.
            if !check.algorithm.can_reserve() {
                return None;
            }
            if decision.allowed {
                continue;
            }
            let wait = decision.retry_at.saturating_sub(now);
            if check.max_wait == 0 || wait > check.max_wait {
                return None;
            }
            at = at.max(Some(decision.retry_at));
        }
        at
    }
}

/// The answer to a batch of checks: every decision, and whether all of them allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// One decision per check, in order.
    pub decisions: SmallVec<[Decision; 4]>,
    /// True when every check allowed; then every check was charged, otherwise none was.
    pub allowed: bool,
}

/// A store failed to decide; the limiter applies its failure policy.
#[derive(Clone, Debug)]
pub struct StoreError {
    message: String,
    kind: ErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorKind {
    Failure,
    Timeout,
    Unsupported,
}

impl StoreError {
    /// A failure of the store (unreachable, an error or garbage reply): worth retrying.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            kind: ErrorKind::Failure,
        }
    }

    /// The store did not answer in time: worth retrying.
    pub fn timeout(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            kind: ErrorKind::Timeout,
        }
    }

    /// A check the store cannot decide exactly, however healthy: retrying will not help.
    pub fn unsupported(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            kind: ErrorKind::Unsupported,
        }
    }

    /// Whether the check itself, not the store, is at fault.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }

    /// Whether the store did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit store failed: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Keyed limiter state: decides a batch of checks atomically, all charged or none.
pub trait Store: Send + Sync + 'static {
    /// Decides `checks` at `now`. When every check allows, all are charged; when any denies,
    /// none is.
    fn decide(
        &self,
        checks: &[Check],
        now: UnixNanos,
    ) -> impl Future<Output = Result<Verdict, StoreError>> + Send;

    /// Decides `checks` at `now` as [`decide`](Store::decide) would, without charging anything.
    /// Unsupported unless the store implements it.
    fn peek(
        &self,
        checks: &[Check],
        now: UnixNanos,
    ) -> impl Future<Output = Result<Verdict, StoreError>> + Send {
        let _ = (checks, now);
        std::future::ready(Err(StoreError::unsupported("this store cannot peek")))
    }

    /// Forgets the state of `checks`' keys: their clients start again with a whole budget.
    /// Unsupported unless the store implements it.
    fn reset(&self, checks: &[Check]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = checks;
        std::future::ready(Err(StoreError::unsupported("this store cannot reset")))
    }

    /// Gives back, at `now`, each check's `cost` charged at `charged_at` (the instant of that
    /// decision): units of a request that turned out not to count, or to cost less. Only what
    /// still counts comes back (see [`Algorithm::refund`](crate::algorithm::Algorithm::refund)).
    /// Unsupported unless the store implements it: the units then stay spent.
    fn refund(
        &self,
        checks: &[Check],
        charged_at: UnixNanos,
        now: UnixNanos,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (checks, charged_at, now);
        std::future::ready(Err(StoreError::unsupported(
            "this store cannot give units back",
        )))
    }
}
