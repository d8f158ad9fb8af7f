//! The conformance suite on the in-memory store.

mod conformance;

use ratelimit_runtime::store::MemoryStore;

conformance_tests!(MemoryStore::default());
