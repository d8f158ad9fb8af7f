//! Time: a [`Clock`] trait, the [`SystemClock`] used in production and a [`ManualClock`] for
//! tests.
//!
//! Time is a `u64` of nanoseconds since the Unix epoch ([`UnixNanos`]): fixed windows align to
//! it and `X-RateLimit-Reset` is expressed in it, and it lasts until the year 2554.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub type UnixNanos = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixNanos;
}

/// Wall-clock time that does not follow wall-clock adjustments.
///
/// It reads the system time once, at construction, and from then on adds the monotonic time
/// elapsed since, read from the CPU's time-stamp counter (`quanta`, about half the cost of
/// `Instant::now` here); a wall-clock adjustment (NTP, a manual change) cannot move a limiter's
/// time backwards and reopen spent windows. A counter that steps back on some CPUs reads as no
/// time passing, and every algorithm also keeps the later of two instants. Create it once:
/// building one calibrates the counter, which takes microseconds.
#[derive(Clone, Debug)]
pub struct SystemClock {
    anchor_unix: UnixNanos,
    /// The counter's raw reading at the anchor: a reading is scaled once, as a difference.
    anchor: u64,
    counter: quanta::Clock,
}

impl SystemClock {
    /// A clock anchored at the current system time.
    pub fn new() -> SystemClock {
        let counter = quanta::Clock::new();
        let anchor = counter.raw();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        SystemClock {
            anchor_unix: duration_nanos(since_epoch),
            anchor,
            counter,
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        // Zero when the counter reads earlier than the anchor: no time passed.
        let elapsed = self.counter.delta_as_nanos(self.anchor, self.counter.raw());
        self.anchor_unix.saturating_add(elapsed)
    }
}

/// A clock that moves only when told; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_runtime::{Clock, ManualClock};
///
/// let clock = ManualClock::at_secs(1_700_000_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(shared.now(), 1_700_000_001_500_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: UnixNanos) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicU64::new(now)),
        }
    }

    /// A clock showing `secs` seconds after the Unix epoch.
    pub fn at_secs(secs: u64) -> ManualClock {
        ManualClock::new(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(duration_nanos(by), Ordering::SeqCst);
    }

    /// Sets the clock to `now`, also backwards (to test that limits survive it).
    pub fn set(&self, now: UnixNanos) {
        self.now.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixNanos {
        self.now.load(Ordering::SeqCst)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds from `now` until `then`, rounded up, at least 1: what `Retry-After` says.
pub(crate) fn secs_until_ceil(now: UnixNanos, then: UnixNanos) -> u64 {
    then.saturating_sub(now).div_ceil(NANOS_PER_SEC).max(1)
}

/// `t` in Unix seconds, rounded up: what `X-RateLimit-Reset` says.
pub(crate) fn unix_secs_ceil(t: UnixNanos) -> u64 {
    t.div_ceil(NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_near_system_time_and_monotonic() {
        let clock = SystemClock::new();
        let wall = duration_nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(a.abs_diff(wall) < 5 * NANOS_PER_SEC);
    }

    #[test]
    fn rounding() {
        assert_eq!(secs_until_ceil(0, 1), 1);
        assert_eq!(secs_until_ceil(0, NANOS_PER_SEC), 1);
        assert_eq!(secs_until_ceil(0, NANOS_PER_SEC + 1), 2);
        assert_eq!(
            secs_until_ceil(10, 5),
            1,
            "at least one second, even when already due"
        );
        assert_eq!(unix_secs_ceil(3 * NANOS_PER_SEC), 3);
        assert_eq!(unix_secs_ceil(3 * NANOS_PER_SEC + 1), 4);
    }
}
