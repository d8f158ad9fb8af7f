//! Counters of what a client did, for progress displays and summaries.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What the requests through one [`Pacer`](crate::Pacer) did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Attempts sent, retries included.
    pub sent: u64,
    /// `429 Too Many Requests` answers.
    pub rate_limited: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Times a request was held back, by pacing or before a retry.
    pub waits: u64,
    /// Time requests were held back, added over all requests (concurrent waits add up).
    pub waited: Duration,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    waits: AtomicU64,
    waited_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn wait(&self, time: Duration) {
        self.waits.fetch_add(1, Relaxed);
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.waited_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            sent: self.sent.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            retries: self.retries.load(Relaxed),
            waits: self.waits.load(Relaxed),
            waited: Duration::from_nanos(self.waited_nanos.load(Relaxed)),
        }
    }
}
