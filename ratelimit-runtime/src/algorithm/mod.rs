//! The algorithms: each a pure step over explicit time, in its own file.
//!
//! An algorithm is a state type and three functions ([`Algorithm`]): `evaluate` decides a cost
//! at an instant without charging it, `charge` records it, `expires_at` says when the state is
//! as good as new (so stores can drop it). Splitting the decision from the charge is what lets a
//! handler with several limits charge all of them or none.
//!
//! | algorithm | state per key | admits |
//! |---|---|---|
//! | [`FixedWindow`] | 8 bytes | `limit` per clock-aligned window; up to `2 * limit` across a boundary |
//! | [`SlidingWindow`] | 16 bytes | `limit` per aligned window; about `limit` per any window, `< 2 * limit` worst case |
//! | [`SlidingLog`] | one timestamp per unit admitted | exactly `limit` per any window of length `per` |
//! | [`TokenBucket`] | 16 bytes | `capacity` at once (default `limit`), then `limit` per `per` |
//! | [`LeakyBucket`] | 16 bytes | `capacity` at once (default 1: smoothed), then `limit` per `per` |
//! | [`Gcra`] | 8 bytes | as a token bucket of the same capacity |

mod fixed_window;
mod gcra;
mod leaky_bucket;
mod sliding_log;
mod sliding_window;
mod step;
mod token_bucket;

pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use leaky_bucket::{BucketLevel, LeakyBucket};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use sliding_window::{SlidingWindow, SlidingWindowState};
pub use step::{Algorithm, AlgorithmKind, Limit};
pub use token_bucket::TokenBucket;
