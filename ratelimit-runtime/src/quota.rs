//! [`Quota`]: how many requests, per how long.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use crate::rate::{self, RateError};

/// A rate: `limit` requests per `period`, both non-zero, the period in whole seconds.
///
/// A small `Copy` value built by `const fn`s, so a quota of zero cannot exist.
///
/// ```
/// use std::num::NonZeroU32;
/// use ratelimit_runtime::Quota;
///
/// const FREE: Quota = Quota::per_hour(NonZeroU32::new(100).unwrap());
/// assert_eq!(FREE.limit(), 100);
/// assert_eq!(FREE.period_secs(), 3_600);
/// assert_eq!("100/hour".parse::<Quota>().unwrap(), FREE);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    period_secs: NonZeroU32,
}

impl Quota {
    /// `limit` requests per `period_secs` seconds.
    pub const fn new(limit: NonZeroU32, period_secs: NonZeroU32) -> Quota {
        Quota { limit, period_secs }
    }

    /// `limit` requests per second.
    pub const fn per_second(limit: NonZeroU32) -> Quota {
        Quota::new(limit, NonZeroU32::MIN)
    }

    /// `limit` requests per minute.
    pub const fn per_minute(limit: NonZeroU32) -> Quota {
        Quota::with_secs(limit, 60)
    }

    /// `limit` requests per hour.
    pub const fn per_hour(limit: NonZeroU32) -> Quota {
        Quota::with_secs(limit, 3_600)
    }

    /// `limit` requests per day.
    pub const fn per_day(limit: NonZeroU32) -> Quota {
        Quota::with_secs(limit, 86_400)
    }

    /// A quota from plain numbers; `None` when either is zero.
    pub const fn from_parts(limit: u32, period_secs: u32) -> Option<Quota> {
        match (NonZeroU32::new(limit), NonZeroU32::new(period_secs)) {
            (Some(limit), Some(period_secs)) => Some(Quota { limit, period_secs }),
            _ => None,
        }
    }

    /// Parses several quotas in the Flask-Limiter notation: `"100/hour;10/second"`.
    pub fn parse_many(text: &str) -> Result<Vec<Quota>, RateError> {
        let specs = rate::parse_rates(text)?;
        Ok(specs.into_iter().map(Quota::from_spec).collect())
    }

    /// How many requests one period allows.
    pub const fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// The period in seconds.
    pub const fn period_secs(&self) -> u32 {
        self.period_secs.get()
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        Duration::from_secs(self.period_secs.get() as u64)
    }

    /// The period in nanoseconds.
    pub const fn period_nanos(&self) -> u64 {
        self.period_secs.get() as u64 * 1_000_000_000
    }

    const fn with_secs(limit: NonZeroU32, secs: u32) -> Quota {
        match NonZeroU32::new(secs) {
            Some(period_secs) => Quota { limit, period_secs },
            None => Quota::per_second(limit),
        }
    }

    fn from_spec(spec: rate::RateSpec) -> Quota {
        // The parser never returns zeros; `from_parts` re-checks rather than trusting it.
        Quota::from_parts(spec.limit, spec.period_secs)
            .unwrap_or(Quota::per_second(NonZeroU32::MIN))
    }
}

impl FromStr for Quota {
    type Err = RateError;

    /// Parses one quota: `"100/minute"`, `"10 per second"`, `"5/5 minutes"`.
    fn from_str(text: &str) -> Result<Quota, RateError> {
        rate::parse_rate(text).map(Quota::from_spec)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {} seconds", self.limit, self.period_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_agree() {
        let ten = NonZeroU32::new(10).unwrap();
        assert_eq!(Quota::per_second(ten), Quota::from_parts(10, 1).unwrap());
        assert_eq!(Quota::per_minute(ten).period_secs(), 60);
        assert_eq!(Quota::per_day(ten).period(), Duration::from_secs(86_400));
        assert_eq!(Quota::per_hour(ten).period_nanos(), 3_600_000_000_000);
        assert_eq!(Quota::from_parts(0, 1), None);
        assert_eq!(Quota::from_parts(1, 0), None);
    }

    #[test]
    fn parses() {
        assert_eq!(
            "5/5 minutes".parse::<Quota>(),
            Ok(Quota::from_parts(5, 300).unwrap())
        );
        assert_eq!(Quota::parse_many("1/second;2/minute").unwrap().len(), 2);
        assert!("1/second;2/minute".parse::<Quota>().is_err());
    }
}
