//! Concurrency limits (`concurrency = N`): a slot is taken when a request passes and given back
//! when its response has been sent, or whenever the request ends otherwise (the client gone, the
//! handler panicking, its future dropped): the slot lives in a guard whose drop gives it back.
//!
//! In memory, slots are per-key counters in the sharded store. On Redis, a slot is a lease in a
//! sorted set (member: a lease id, score: its expiry on Redis's clock): a process that dies or
//! loses Redis stops renewing its leases, and they expire within the lease time.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;

use crate::adaptive::AdaptiveLimit;
use crate::clock::{Clock, UnixNanos};
use crate::metrics::RuleCounters;
use crate::store::MemoryStore;
#[cfg(feature = "redis")]
pub(crate) use on_redis::slot_id;
#[cfg(feature = "redis")]
use on_redis::RedisSlot;

/// What taking a slot came to.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum SlotAnswer {
    /// Taken; the requests in flight now, this one included.
    Taken(Held, u32),
    /// Every slot taken; the requests in flight.
    Full(u32),
    /// Fail-open while the store is down: no slot, no limit.
    Unlimited,
    /// Fail-closed while the store is down: 503 for this many seconds.
    Unavailable(u64),
}

/// Where a slot was taken.
pub(crate) enum Held {
    /// In the memory store (or the fallback), under this key.
    Memory(u64),
    /// Of an adaptive limit, in this process.
    Adaptive(AdaptiveSlot),
    /// A lease on Redis, renewed until given back.
    #[cfg(feature = "redis")]
    Redis(RedisSlot),
}

/// A slot of an adaptive limit: when its request was admitted, with how many in flight, and
/// whether it was served (its latency is then a sample of the limit's controller).
pub(crate) struct AdaptiveSlot {
    limit: Arc<AdaptiveLimit>,
    admitted: UnixNanos,
    in_flight: u32,
    clock: Arc<dyn Clock>,
    served: bool,
}

impl AdaptiveSlot {
    pub(crate) fn new(
        limit: Arc<AdaptiveLimit>,
        admitted: UnixNanos,
        in_flight: u32,
        clock: Arc<dyn Clock>,
    ) -> AdaptiveSlot {
        AdaptiveSlot {
            limit,
            admitted,
            in_flight,
            clock,
            served: false,
        }
    }
}

/// A slot taken: given back when dropped.
pub(crate) struct Slot {
    held: Option<Held>,
    /// Where a slot held in memory goes back.
    memory: Arc<MemoryStore>,
    counters: Arc<RuleCounters>,
}

impl Slot {
    pub(crate) fn new(held: Held, memory: Arc<MemoryStore>, counters: Arc<RuleCounters>) -> Slot {
        counters.in_flight(1);
        Slot {
            held: Some(held),
            memory,
            counters,
        }
    }
}

impl Slot {
    /// The handler answered: the request is served (an adaptive limit then learns its latency
    /// when the slot goes back).
    pub(crate) fn served(&mut self) {
        if let Some(Held::Adaptive(slot)) = &mut self.held {
            slot.served = true;
        }
    }

    /// The request starts being served at `now`: an adaptive limit times it from here.
    pub(crate) fn admitted_at(&mut self, now: UnixNanos) {
        if let Some(Held::Adaptive(slot)) = &mut self.held {
            slot.admitted = now;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.in_flight(-1);
        match self.held.take() {
            Some(Held::Memory(key)) => self.memory.give_slot(key),
            Some(Held::Adaptive(slot)) => {
                let now = slot.clock.now();
                let AdaptiveSlot {
                    limit,
                    admitted,
                    in_flight,
                    served,
                    ..
                } = slot;
                limit.give_back(served, admitted, in_flight, now);
            }
            #[cfg(feature = "redis")]
            Some(Held::Redis(slot)) => slot.give_back(),
            None => {}
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.held {
            Some(Held::Memory(_)) => "memory",
            Some(Held::Adaptive(_)) => "adaptive",
            #[cfg(feature = "redis")]
            Some(Held::Redis(_)) => "redis",
            None => "given back",
        };
        f.debug_struct("Slot").field("held", &place).finish()
    }
}

/// A response body holding the request's slots until it has been sent (or dropped, when the
/// client goes away mid-stream).
pub(crate) struct HoldingBody {
    body: BoxBody,
    slots: Vec<Slot>,
}

impl HoldingBody {
    pub(crate) fn new(body: BoxBody, slots: Vec<Slot>) -> HoldingBody {
        HoldingBody { body, slots }
    }
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(None) = next {
            // Sent: the slots go back now, not when the connection lets go of the body.
            this.slots.clear();
        }
        next
    }
}

/// Slots on Redis (feature `redis`).
#[cfg(feature = "redis")]
mod on_redis {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    use tokio::task::AbortHandle;

    use super::Held;
    use crate::store::RedisStore;

    /// A lease on Redis, renewed until given back.
    pub(crate) struct RedisSlot {
        store: RedisStore,
        key: String,
        id: String,
        renewal: AbortHandle,
    }

    impl Held {
        /// A lease on Redis, renewed every third of `lease` while the request runs.
        pub(crate) fn redis(store: RedisStore, key: String, id: String, lease: Duration) -> Held {
            let renewal = {
                let (store, key, id) = (store.clone(), key.clone(), id.clone());
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(lease / 3);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        if let Ok(false) = store.renew_slot(&key, &id, lease).await {
                            tracing::warn!(
                                "rate limiter: a concurrency lease expired before its request ended (Redis unreachable for longer than the lease?)"
                            );
                            return;
                        }
                    }
                })
                .abort_handle()
            };
            Held::Redis(RedisSlot {
                store,
                key,
                id,
                renewal,
            })
        }
    }

    impl RedisSlot {
        /// Stops the renewal and gives the lease back, in one command sent without waiting.
        pub(super) fn give_back(self) {
            self.renewal.abort();
            self.store.give_slot(&self.key, &self.id);
        }
    }

    /// A unique lease id: this process and a counter.
    pub(crate) fn slot_id() -> String {
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let process =
            PROCESS.get_or_init(|| ahash::RandomState::new().hash_one(std::process::id()));
        format!("{process:016x}:{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }
}
