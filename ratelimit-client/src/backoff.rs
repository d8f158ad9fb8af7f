//! Exponential backoff with full jitter, for when the server does not say how long to wait.

use std::time::Duration;

/// Exponential backoff with full jitter: before retry `n` (counting from 0), wait a random time
/// between zero and `min(cap, base × 2ⁿ)`.
///
/// Full jitter spreads clients that failed together over the whole interval, so that they do
/// not come back together and fail together again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// No wait is ever longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    /// From one second, doubling, up to a minute.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The longest wait before retry `retry`: `min(cap, base × 2^retry)`, without overflow.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry `retry` for a draw `unit` in `[0, 1)`; out-of-range draws are
    /// clamped. Split from [`Backoff::jittered`] so that tests choose the draw.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(retry).mul_f64(unit)
    }

    /// The wait before retry `retry`, drawn from `rng`.
    pub fn jittered(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        self.delay(retry, rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff {
            base: secs(1),
            cap: secs(10),
        };
        let ceilings: Vec<_> = (0..6).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [secs(1), secs(2), secs(4), secs(8), secs(10), secs(10)]
        );
    }

    #[test]
    fn doubling_never_overflows() {
        let huge = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        assert_eq!(huge.ceiling(3), Duration::MAX);
        assert_eq!(Backoff::default().ceiling(u32::MAX), secs(60));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(2, 0.0), Duration::ZERO);
        assert_eq!(backoff.delay(2, 0.5), secs(2));
        assert_eq!(backoff.delay(2, 7.0), secs(4), "clamped");
        assert_eq!(backoff.delay(2, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn draws_stay_below_the_ceiling_and_spread() {
        let backoff = Backoff::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<_> = (0..200).map(|_| backoff.jittered(3, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= secs(8)));
        assert!(draws.iter().any(|d| *d < secs(2)), "some short waits");
        assert!(draws.iter().any(|d| *d > secs(6)), "some long waits");
    }
}
