//! Where limiter state lives: the [`Store`] trait and the embedded [`MemoryStore`].

mod check;
mod memory;

pub use check::{Check, Store, StoreError, Verdict};
pub use memory::{MemoryStore, MemoryStoreStats};
