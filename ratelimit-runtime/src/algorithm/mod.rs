//! The algorithms: each a pure step over explicit time, in its own file.
//!
//! An algorithm is a state type and three functions ([`Algorithm`]): `evaluate` decides a cost
//! at an instant without charging it, `charge` records it, `expires_at` says when the state is
//! as good as new (so stores can drop it). Splitting the decision from the charge is what lets a
//! handler with several limits charge all of them or none.

mod fixed_window;
mod sliding_log;
mod step;

pub use fixed_window::{FixedWindow, FixedWindowState};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use step::{Algorithm, AlgorithmKind, Limit};
