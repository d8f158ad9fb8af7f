//! Parsing of rate strings (`"100/minute"`, `"5 per 5 minutes"`, `"100/hour;10/second"`) and of
//! periods (`30`, `"30s"`, `"5m"`), in the Flask-Limiter notation.
//!
//! The `#[ratelimit]` attribute (`ratelimit-macros`) checks its strings with this crate at compile
//! time and `ratelimit-runtime` parses overrides and default limits with it at run time, so a
//! string the attribute accepts is a string the runtime accepts, with the same messages. Use it
//! through `ratelimit_runtime::rate`.
//!
//! ```
//! use ratelimit_rate::{parse_rates, RateSpec};
//!
//! let specs = parse_rates("100/hour;10/second").unwrap();
//! assert_eq!(specs[1], RateSpec { limit: 10, period_secs: 1 });
//! ```
//!
//! # Where the notation appears
//!
//! The same strings, and the same errors, in every place a rate is written:
//!
//! - the attribute, `#[ratelimit("100/minute")]`, and its `per = "30s"`, `max_wait = "2s"` and
//!   `penalty = "3/10 minutes"` (checked when the handler compiles);
//! - `quota!("1000/hour")` and `"100/hour".parse::<Quota>()` in `ratelimit-runtime`;
//! - app-wide defaults, `DefaultLimits::new("200/day;50/hour")`;
//! - operators' overrides, `limiter.set_override("server::data", "20/minute")` or an overrides
//!   file, refused with the parser's message when a string is wrong.
//!
//! ```
//! use ratelimit_rate::{parse_period, parse_rates};
//!
//! assert_eq!(parse_period("5m").unwrap(), 300);
//! assert!(parse_rates("10/minuets").unwrap_err().to_string().contains("did you mean `minute`?"));
//! ```
//!
//! The arguments of the attribute and where each rate goes: docs/guide.md in the repository;
//! overrides: docs/operations.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

/// One rate: `limit` requests per `period_secs` seconds, both non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    /// How many requests the period allows.
    pub limit: u32,
    /// The period, in whole seconds.
    pub period_secs: u32,
}

/// Why a rate or period string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateError {
    /// The string holds no rate at all.
    Empty,
    /// A part that does not read as `<count> / [n] <unit>` or `<count> per [n] <unit>`.
    Malformed(String),
    /// A unit that is not one of the known ones; carries the nearest known unit, if any is close.
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The known unit closest to it.
        suggestion: Option<&'static str>,
    },
    /// A count or multiplier of zero.
    Zero(String),
    /// A number too large for a limit (`u32`), a period (about 136 years) or a wait (`u64`
    /// milliseconds).
    TooLarge(String),
    /// A rate given twice in one string (`"10/minute;10/minute"`): both would count in one
    /// budget, each request twice.
    Repeated(String),
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::Empty => write!(f, "the rate is empty; write it as `\"100/minute\"`"),
            RateError::Malformed(part) => write!(
                f,
                "`{part}` is not a rate; write `<count>/<unit>`, `<count> per <n> <unit>` or several joined by `;`, e.g. `\"100/hour;10/second\"`"
            ),
            RateError::UnknownUnit { unit, suggestion: Some(s) } => write!(
                f,
                "unknown unit `{unit}`; did you mean `{s}`? units are {UNIT_LIST}"
            ),
            RateError::UnknownUnit { unit, suggestion: None } => {
                write!(f, "unknown unit `{unit}`; units are {UNIT_LIST}")
            }
            RateError::Zero(part) => write!(f, "`{part}` allows nothing; counts and periods must be at least 1"),
            RateError::TooLarge(part) => write!(
                f,
                "`{part}` is too large; a limit fits in 32 bits and a period is at most 136 years"
            ),
            RateError::Repeated(part) => write!(
                f,
                "`{part}` repeats a rate given before it; both would count in one budget, so each request would count twice; remove one"
            ),
        }
    }
}

impl std::error::Error for RateError {}

const UNIT_LIST: &str =
    "`second`, `minute`, `hour`, `day`, `month` (30 days) and `year` (360 days)";

/// Units as Flask-Limiter names them, with their length in seconds.
const UNITS: [(&str, u64); 6] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3_600),
    ("day", 86_400),
    ("month", 30 * 86_400),
    ("year", 12 * 30 * 86_400),
];

/// Short unit suffixes accepted by [`parse_period`].
const SHORT_UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400)];

/// Parses one or more rates separated by `;`, `,` or `|`.
pub fn parse_rates(text: &str) -> Result<Vec<RateSpec>, RateError> {
    let parts: Vec<&str> = text
        .split([';', ',', '|'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(RateError::Empty);
    }
    let mut specs: Vec<RateSpec> = Vec::with_capacity(parts.len());
    for part in parts {
        let spec = parse_rate(part)?;
        if specs.contains(&spec) {
            return Err(RateError::Repeated(part.to_string()));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Parses one rate: `10/second`, `10 per second`, `5/5 minutes`, `100 per 2 hours`.
pub fn parse_rate(part: &str) -> Result<RateSpec, RateError> {
    let malformed = || RateError::Malformed(part.to_string());
    let (count, rest) = split_number(part.trim()).ok_or_else(malformed)?;
    let rest = rest.trim_start();
    let rest = if let Some(r) = rest.strip_prefix('/') {
        r
    } else if let Some(r) = rest.strip_prefix("per") {
        r
    } else {
        return Err(malformed());
    };
    let rest = rest.trim();
    let (multiplier, unit) = match split_number(rest) {
        Some((n, unit)) => (n, unit.trim()),
        None => (1, rest),
    };
    if unit.is_empty() || unit.contains(char::is_whitespace) {
        return Err(malformed());
    }
    let unit_secs = lookup_unit(unit)?;
    let limit = u32::try_from(count).map_err(|_| RateError::TooLarge(part.to_string()))?;
    let period = multiplier
        .checked_mul(unit_secs)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| RateError::TooLarge(part.to_string()))?;
    if limit == 0 || period == 0 {
        return Err(RateError::Zero(part.to_string()));
    }
    Ok(RateSpec {
        limit,
        period_secs: period,
    })
}

/// Parses a period: whole seconds (`"30"`) or a number with a suffix (`"30s"`, `"5m"`, `"1h"`,
/// `"1d"`); returns seconds.
pub fn parse_period(text: &str) -> Result<u32, RateError> {
    let text = text.trim();
    let (n, unit) = split_number(text).ok_or_else(|| RateError::Malformed(text.to_string()))?;
    let unit = unit.trim();
    let unit_secs = if unit.is_empty() {
        1
    } else if let Some(&(_, secs)) = SHORT_UNITS.iter().find(|(name, _)| *name == unit) {
        secs
    } else {
        lookup_unit(unit)?
    };
    let secs = n
        .checked_mul(unit_secs)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| RateError::TooLarge(text.to_string()))?;
    if secs == 0 {
        return Err(RateError::Zero(text.to_string()));
    }
    Ok(secs)
}

/// A wait, `"500ms"` or a period as [`parse_period`] takes it (`"2s"`, `"1m"`, `"3"` seconds),
/// in milliseconds.
pub fn parse_wait(text: &str) -> Result<u64, RateError> {
    let text = text.trim();
    match text.strip_suffix("ms") {
        Some(millis) => match split_number(millis.trim_end()) {
            Some((0, "")) => Err(RateError::Zero(text.to_string())),
            // `split_number` saturates: `u64::MAX` stands for every longer run of digits.
            Some((u64::MAX, "")) => Err(RateError::TooLarge(text.to_string())),
            Some((n, "")) => Ok(n),
            _ => Err(RateError::Malformed(text.to_string())),
        },
        None => parse_period(text).map(|secs| u64::from(secs) * 1_000),
    }
}

/// Splits a leading run of ASCII digits off `text`, returning the number and the rest.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    // A run of digits too long for u64 saturates; the caller then reports it as too large.
    let n = text[..end].parse::<u64>().unwrap_or(u64::MAX);
    Some((n, &text[end..]))
}

/// Seconds in `unit`, accepting singular and plural, any case.
fn lookup_unit(unit: &str) -> Result<u64, RateError> {
    let lower = unit.to_ascii_lowercase();
    let singular = lower.strip_suffix('s').unwrap_or(&lower);
    if let Some(&(_, secs)) = UNITS.iter().find(|(name, _)| *name == singular) {
        return Ok(secs);
    }
    let suggestion = UNITS
        .iter()
        .map(|(name, _)| (*name, strsim::levenshtein(name, singular)))
        .filter(|(_, distance)| *distance <= 3)
        .min_by_key(|(_, distance)| *distance)
        .map(|(name, _)| name);
    Err(RateError::UnknownUnit {
        unit: unit.to_string(),
        suggestion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(limit: u32, period_secs: u32) -> RateSpec {
        RateSpec { limit, period_secs }
    }

    #[test]
    fn flask_limiter_notation() {
        assert_eq!(parse_rates("100/minute"), Ok(vec![rate(100, 60)]));
        assert_eq!(parse_rates("10 per second"), Ok(vec![rate(10, 1)]));
        assert_eq!(parse_rates("5/5 minutes"), Ok(vec![rate(5, 300)]));
        assert_eq!(parse_rates("100 per 2 hours"), Ok(vec![rate(100, 7_200)]));
        assert_eq!(parse_rates("1/day"), Ok(vec![rate(1, 86_400)]));
        assert_eq!(parse_rates("2/Month"), Ok(vec![rate(2, 2_592_000)]));
    }

    #[test]
    fn several_rates() {
        assert_eq!(
            parse_rates("100/hour;10/second"),
            Ok(vec![rate(100, 3_600), rate(10, 1)])
        );
        assert_eq!(
            parse_rates(" 1/second , 2/minute ;"),
            Ok(vec![rate(1, 1), rate(2, 60)])
        );
        // One budget stated twice, however it is written, would count each request twice.
        assert_eq!(
            parse_rates("10/minute;10 per 60 seconds"),
            Err(RateError::Repeated("10 per 60 seconds".into()))
        );
    }

    #[test]
    fn suggests_the_nearest_unit() {
        assert_eq!(
            parse_rates("10/minuets"),
            Err(RateError::UnknownUnit {
                unit: "minuets".into(),
                suggestion: Some("minute")
            })
        );
        let err = parse_rates("10/fortnight").unwrap_err();
        assert_eq!(
            err,
            RateError::UnknownUnit {
                unit: "fortnight".into(),
                suggestion: None
            }
        );
        assert!(err.to_string().contains("`second`"));
    }

    #[test]
    fn refuses_bad_rates() {
        assert_eq!(parse_rates(""), Err(RateError::Empty));
        assert_eq!(parse_rates(" ; "), Err(RateError::Empty));
        assert!(matches!(
            parse_rates("ten/second"),
            Err(RateError::Malformed(_))
        ));
        assert!(matches!(
            parse_rates("10 second"),
            Err(RateError::Malformed(_))
        ));
        assert!(matches!(parse_rates("10/"), Err(RateError::Malformed(_))));
        assert!(matches!(
            parse_rates("-1/second"),
            Err(RateError::Malformed(_))
        ));
        assert!(matches!(parse_rates("0/second"), Err(RateError::Zero(_))));
        assert!(matches!(
            parse_rates("5/0 minutes"),
            Err(RateError::Zero(_))
        ));
        assert!(matches!(
            parse_rates("5000000000/second"),
            Err(RateError::TooLarge(_))
        ));
        assert!(matches!(
            parse_rates("1/99999999999999999999999 years"),
            Err(RateError::TooLarge(_))
        ));
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("30"), Ok(30));
        assert_eq!(parse_period("30s"), Ok(30));
        assert_eq!(parse_period("5m"), Ok(300));
        assert_eq!(parse_period("1h"), Ok(3_600));
        assert_eq!(parse_period("1d"), Ok(86_400));
        assert_eq!(parse_period("2 minutes"), Ok(120));
        assert!(matches!(parse_period("0s"), Err(RateError::Zero(_))));
        assert!(matches!(
            parse_period("5x"),
            Err(RateError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_period("m"), Err(RateError::Malformed(_))));
    }

    #[test]
    fn waits() {
        assert_eq!(parse_wait("500ms"), Ok(500));
        assert_eq!(parse_wait("2s"), Ok(2_000));
        assert_eq!(parse_wait("1m"), Ok(60_000));
        assert!(matches!(parse_wait("0ms"), Err(RateError::Zero(_))));
        assert!(matches!(parse_wait("ms"), Err(RateError::Malformed(_))));
        assert!(
            matches!(
                parse_wait("99999999999999999999999ms"),
                Err(RateError::TooLarge(_))
            ),
            "too large for u64, not u64::MAX ms"
        );
    }
}
