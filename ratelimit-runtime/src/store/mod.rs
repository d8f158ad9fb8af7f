//! Where limiter state lives: the [`Store`] trait, the embedded [`MemoryStore`] and the
//! `RedisStore` a fleet shares (feature `redis`).

mod blocked;
mod check;
mod exact;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod table;

pub use blocked::BlockedKeys;
pub use check::{Check, Store, StoreError, Verdict};
pub(crate) use exact::exact_in_redis;
pub use memory::{MemoryStore, MemoryStoreStats};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    can_lease, Grant, LeaseAnswer, LeaseAsk, RedisOptions, RedisStore, TimeSource, LEASE_SHARE,
};
