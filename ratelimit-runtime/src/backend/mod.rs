//! Where a limiter decides: in process memory, or on Redis with a plan for when Redis fails
//! (`redis.rs`, feature `redis`), and what the fallback admitted charged to Redis once it
//! answers again (`resync.rs`).

use std::fmt;
#[cfg(feature = "redis")]
use std::sync::Arc;

use crate::clock::UnixNanos;
use crate::metrics::StoreLabel;
use crate::slots::{Held, SlotAnswer};
use crate::store::{Check, MemoryStore, StoreError, Verdict};

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod resync;

#[cfg(feature = "redis")]
pub(crate) use redis::RedisBackend;
#[cfg(feature = "redis")]
pub use redis::{FailurePolicy, RedisStats, RedisTarget};

pub(crate) enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis(Arc<RedisBackend>),
}

/// What the backend answered.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Outcome {
    Decided(Verdict),
    /// Fail-open: allowed, state unknown.
    Unlimited,
    /// Fail-closed: refused for this many seconds.
    Unavailable(u64),
}

pub(crate) fn take_in_memory(memory: &MemoryStore, key: u64, limit: u32) -> SlotAnswer {
    match memory.take_slot(key, limit) {
        Ok(held) => SlotAnswer::Taken(Held::Memory(key), held),
        Err(held) => SlotAnswer::Full(held),
    }
}

impl Backend {
    /// Where limits are kept and what happens when that fails, in words for a log line
    /// (passwords redacted).
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Memory => "in process memory".to_string(),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.describe(),
        }
    }

    /// Whether keys must be the same in every process (a shared store).
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(self, Backend::Memory)
    }

    /// Remembers, where a remote store's refusals are cached, that `check` is refused until
    /// `until` (a penalty begun or found: its probe then refuses without a round trip).
    pub(crate) fn remember_refused(&self, check: &Check, until: UnixNanos, now: UnixNanos) {
        #[cfg(feature = "redis")]
        if let Backend::Redis(redis) = self {
            redis.remember_refused(check, until, now);
        }
        #[cfg(not(feature = "redis"))]
        let _ = (check, until, now);
    }

    /// Decides `checks`, and says which store did. `leasable`: the rules allow leases (no
    /// soft limit reads the remaining count).
    pub(crate) async fn decide(
        &self,
        memory: &MemoryStore,
        checks: &[Check],
        now: UnixNanos,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] leasable: bool,
    ) -> (Outcome, StoreLabel) {
        match self {
            Backend::Memory => (
                Outcome::Decided(memory.decide_now(checks, now)),
                StoreLabel::Memory,
            ),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.decide(memory, checks, now, leasable).await,
        }
    }

    /// Gives back `checks`' costs, charged at `charged_at` by `store`: in memory at once; on
    /// Redis in one round trip (or in memory, where the fallback decided). A failure leaves
    /// the units spent (stricter), logged at debug level.
    pub(crate) async fn refund(
        &self,
        memory: &MemoryStore,
        checks: &[Check],
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] store: StoreLabel,
        charged_at: UnixNanos,
        now: UnixNanos,
    ) {
        match self {
            Backend::Memory => memory.refund_now(checks, charged_at, now),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.refund(memory, checks, store, charged_at, now).await,
        }
    }

    /// Takes one of `limit` slots of `check`'s key (a concurrency limit).
    pub(crate) async fn take_slot(
        &self,
        memory: &MemoryStore,
        check: &Check,
        limit: u32,
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))] now: UnixNanos,
    ) -> (SlotAnswer, StoreLabel) {
        match self {
            Backend::Memory => (
                take_in_memory(memory, check.fingerprint(), limit),
                StoreLabel::Memory,
            ),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.take_slot(memory, check, limit, now).await,
        }
    }

    /// Decides `checks` without charging them. On Redis, a failure is the caller's to see: an
    /// operator asking about one client wants Redis's answer or an error, not a guess.
    pub(crate) async fn peek(
        &self,
        memory: &MemoryStore,
        checks: &[Check],
        now: UnixNanos,
    ) -> Result<Verdict, StoreError> {
        match self {
            Backend::Memory => Ok(memory.peek_now(checks, now)),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.peek(checks, now).await,
        }
    }

    /// Forgets the state of `checks`: on Redis, its keys, the local cache of their denials and
    /// their state in the fallback store.
    pub(crate) async fn reset(
        &self,
        memory: &MemoryStore,
        checks: &[Check],
    ) -> Result<(), StoreError> {
        match self {
            Backend::Memory => {
                memory.reset_now(checks);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.reset(memory, checks).await,
        }
    }

    /// Counts a decision refused before it reached Redis: a limit Redis cannot decide exactly.
    pub(crate) fn count_refused(&self) {
        #[cfg(feature = "redis")]
        if let Backend::Redis(redis) = self {
            redis.count_refused();
        }
    }

    /// Counters of the Redis backend; `None` in memory.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_stats(&self) -> Option<RedisStats> {
        match self {
            Backend::Memory => None,
            Backend::Redis(redis) => Some(redis.stats()),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Memory => f.write_str("Memory"),
            #[cfg(feature = "redis")]
            Backend::Redis(redis) => redis.fmt(f),
        }
    }
}
