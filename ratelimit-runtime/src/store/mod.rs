//! Where limiter state lives: the [`Store`] trait, the embedded [`MemoryStore`] and the
//! [`RedisStore`] a fleet shares.

mod blocked;
mod check;
mod exact;
mod lane;
mod lease;
mod memory;
mod redis;
mod reply;
#[cfg(test)]
mod reply_properties;
mod table;

pub use blocked::BlockedKeys;
pub use check::{Check, Store, StoreError, Verdict};
pub(crate) use exact::exact_in_redis;
pub use lease::{can_lease, Grant, LeaseAnswer, LeaseAsk, LEASE_SHARE};
pub use memory::{MemoryStore, MemoryStoreStats};
pub use redis::{RedisOptions, RedisStore, TimeSource};
