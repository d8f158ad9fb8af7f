//! Which limits the Redis script decides exactly.
//!
//! The script computes in Lua numbers, which are doubles: exact integers up to 2^53, rounded
//! beyond. Its instants are microseconds since the Unix epoch (about 2^51 today), and each
//! algorithm scales its state so that no fraction is ever rounded (the buckets keep their
//! level multiplied by the period). A limit is decided on Redis only when the largest value its
//! arithmetic forms stays below 2^53; any other is refused, never decided approximately, and
//! never decided somewhere else instead: a fleet's limit must not quietly become a process's.
//!
//! GCRA keeps whole-microsecond arrival times, except above 10,000 per second, where a
//! whole-microsecond interval would round the rate by more than 1%: there it keeps the
//! nanosecond interval the memory store uses, and its times relative to the decision's instant,
//! which stay small (see [`gcra_in_nanos`]).

use crate::algorithm::{AlgorithmKind, Limit};

/// Doubles are exact below this: the values the script forms must stay under it.
const EXACT: u128 = 1 << 53;
const MICROS_PER_SEC: u128 = 1_000_000;
const NANOS_PER_MICRO: u128 = 1_000;

/// Whether the script keeps `limit`'s GCRA state to the nanosecond: above 10,000 per second,
/// where a whole-microsecond interval (under 100 µs) would be more than 1% too long.
///
/// Below that rate the state stays a whole-microsecond arrival time, the format Redis keys have
/// always held. Above it the state is `"<µs> <ns>"`, the arrival time's microseconds and the
/// nanoseconds beyond them; such keys are new, since limits this fast were never decided on
/// Redis before.
pub(crate) fn gcra_in_nanos(limit: &Limit) -> bool {
    u128::from(limit.quota.period_secs()) * MICROS_PER_SEC < 100 * u128::from(limit.quota.limit())
}

/// `Ok` when the script decides `algorithm` over `limit` at `cost` exactly; otherwise why not,
/// with what to do instead.
pub(crate) fn exact_in_redis(
    algorithm: AlgorithmKind,
    limit: &Limit,
    cost: u32,
) -> Result<(), String> {
    let period = u128::from(limit.quota.period_secs()) * MICROS_PER_SEC;
    let rate = u128::from(limit.quota.limit());
    let capacity = u128::from(limit.capacity.get());
    let cost = u128::from(cost);
    // The largest value each algorithm's step forms.
    let largest = match algorithm {
        AlgorithmKind::FixedWindow | AlgorithmKind::SlidingLog => period,
        // Times relative to now, in ns: at most (capacity + cost) intervals of under 100 µs.
        AlgorithmKind::Gcra if gcra_in_nanos(limit) => {
            (capacity + cost) * (period * NANOS_PER_MICRO).div_ceil(rate)
        }
        // Arrival times reach `now + (capacity + cost) × interval`; `now` needs the other half.
        AlgorithmKind::Gcra => 2 * (capacity + cost) * period.div_ceil(rate),
        AlgorithmKind::SlidingWindow => (rate + cost) * period,
        AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket => (capacity + cost) * period,
    };
    if largest < EXACT {
        return Ok(());
    }
    let scaled = match algorithm {
        AlgorithmKind::SlidingWindow => "(limit + cost) × period",
        AlgorithmKind::Gcra => "2 × (capacity + cost) × period / limit",
        _ => "(capacity + cost) × period",
    };
    Err(format!(
        "on Redis, {scaled} in microseconds must stay below 2^53 (where Lua's numbers stop \
         being exact) and is {largest}; use a shorter period with a proportionally smaller \
         limit (per hour rather than per day), or `fixed_window`"
    ))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::quota::Quota;

    fn limit(algorithm: AlgorithmKind, rate: u32, per: u32) -> Limit {
        algorithm.default_limit(Quota::from_parts(rate, per).unwrap())
    }

    fn exact(algorithm: AlgorithmKind, rate: u32, per: u32) -> Result<(), String> {
        exact_in_redis(algorithm, &limit(algorithm, rate, per), 1)
    }

    #[test]
    fn quotas_beyond_exact_doubles_are_refused() {
        assert!(exact(AlgorithmKind::TokenBucket, 100_000, 86_400).is_ok());
        let too_large = exact(AlgorithmKind::TokenBucket, 2_000_000, 86_400 * 30).unwrap_err();
        assert!(too_large.contains("2^53"), "{too_large}");
        assert!(exact(AlgorithmKind::SlidingWindow, 2_000_000, 86_400 * 30).is_err());
        assert!(exact(AlgorithmKind::FixedWindow, u32::MAX, u32::MAX).is_ok());
        assert!(exact(AlgorithmKind::SlidingLog, 10_000, u32::MAX).is_ok());
        let slow_huge_burst = Limit::with_capacity(
            Quota::from_parts(1, 86_400).unwrap(),
            NonZeroU32::new(1_000_000).unwrap(),
        );
        assert!(exact_in_redis(AlgorithmKind::Gcra, &slow_huge_burst, 1).is_err());
    }

    #[test]
    fn gcra_above_ten_thousand_per_second_is_exact_whatever_its_burst() {
        for rate in [1, 10_000, 10_001, 50_000, 1_000_000, u32::MAX] {
            assert!(
                exact(AlgorithmKind::Gcra, rate, 1).is_ok(),
                "{rate} per second"
            );
        }
        for rate in [10_001, 50_000, 1_000_000, u32::MAX] {
            let quota = Quota::from_parts(rate, 1).unwrap();
            let burst = Limit::with_capacity(quota, NonZeroU32::MAX);
            assert!(
                exact_in_redis(AlgorithmKind::Gcra, &burst, u32::MAX).is_ok(),
                "{rate}"
            );
        }
    }

    #[test]
    fn gcra_keeps_nanoseconds_above_ten_thousand_per_second() {
        assert!(!gcra_in_nanos(&limit(AlgorithmKind::Gcra, 10_000, 1)));
        assert!(gcra_in_nanos(&limit(AlgorithmKind::Gcra, 10_001, 1)));
        assert!(!gcra_in_nanos(&limit(AlgorithmKind::Gcra, 600_000, 60)));
        assert!(gcra_in_nanos(&limit(AlgorithmKind::Gcra, 600_001, 60)));
    }
}
