//! Where limiter state lives: the [`Store`] trait, the embedded [`MemoryStore`] and the
//! `RedisStore` a fleet shares (feature `redis`).

mod blocked;
mod check;
mod exact;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub(crate) use redis::{is_insecure, is_tls, redacted, SentinelSpec};
mod table;

pub use blocked::{BlockedKeys, Cached};
pub use check::{Check, Store, StoreError, Verdict};
pub(crate) use exact::exact_in_redis;
pub use memory::{MemoryStore, MemoryStoreStats};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    can_lease, ClientCertificate, Grant, LeaseAnswer, LeaseAsk, RedisOptions, RedisStore, RedisTls,
    TimeSource, LEASE_SHARE, WINDOW_LEASE_SHARE,
};
