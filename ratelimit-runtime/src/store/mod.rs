//! Where limiter state lives: the [`Store`] trait, the embedded [`MemoryStore`] and the
//! [`RedisStore`] a fleet shares.

mod blocked;
mod check;
mod memory;
mod redis;
mod table;

pub use blocked::BlockedKeys;
pub use check::{Check, Store, StoreError, Verdict};
pub use memory::{MemoryStore, MemoryStoreStats};
pub use redis::{RedisOptions, RedisStore, TimeSource};
