//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`, the de facto headers
//! (GitHub, the Flask decorator, our own server), and their earlier IETF draft spelling
//! `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`.

use std::time::{Duration, SystemTime};

use crate::seconds::{capped, parse_count, parse_seconds, until_epoch};
use crate::Budget;

/// Values at or above this are instants, not delays: a billion seconds is 31 years, far longer
/// than any window, while as a Unix time it is 2001, before any server now running.
const EPOCH_SECONDS_FROM: f64 = 1e9;

/// Values at or above this are Unix times in milliseconds: as seconds they would lie 30,000
/// years ahead, as milliseconds they are 2001 onwards.
const EPOCH_MILLIS_FROM: f64 = 1e12;

/// How long until the reset a `X-RateLimit-Reset` value names, measured from `now`.
///
/// Servers disagree on the unit: GitHub and our server send Unix seconds, others send seconds
/// from now, a few send Unix milliseconds. Small values are delays, values of a billion and
/// more are Unix seconds, values of a trillion and more Unix milliseconds. An instant in the
/// past means the reset has come; garbage gives `None`.
pub fn parse_reset(value: &[u8], now: SystemTime) -> Option<Duration> {
    let secs = parse_seconds(value)?;
    Some(if secs >= EPOCH_MILLIS_FROM {
        until_epoch(secs / 1000.0, now)
    } else if secs >= EPOCH_SECONDS_FROM {
        until_epoch(secs, now)
    } else {
        capped(secs)
    })
}

/// The budget the three headers describe; `None` without a usable remaining count, since a
/// limit or a reset alone says nothing about whether to send.
pub fn parse_x_ratelimit(
    limit: Option<&[u8]>,
    remaining: Option<&[u8]>,
    reset: Option<&[u8]>,
    now: SystemTime,
) -> Option<Budget> {
    Some(Budget {
        remaining: parse_count(remaining?)?,
        limit: limit.and_then(parse_count),
        reset: reset.and_then(|value| parse_reset(value, now)),
        whole_at_reset: true,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::MAX_HINT;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_439_000)
    }

    fn reset(value: &str) -> Option<Duration> {
        parse_reset(value.as_bytes(), now())
    }

    #[test]
    fn reset_as_unix_seconds() {
        assert_eq!(reset("1795439010"), Some(Duration::from_secs(10)));
        assert_eq!(reset("1795438990"), Some(Duration::ZERO), "in the past");
    }

    #[test]
    fn reset_as_unix_milliseconds() {
        assert_eq!(reset("1795439002500"), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn reset_as_seconds_from_now() {
        assert_eq!(reset("30"), Some(Duration::from_secs(30)));
        assert_eq!(reset("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(
            reset("999999999"),
            Some(MAX_HINT),
            "just under an epoch: capped"
        );
    }

    #[test]
    fn reset_garbage() {
        for bad in ["-5", "soon", "", "1e9"] {
            assert_eq!(reset(bad), None, "{bad:?}");
        }
        assert_eq!(parse_reset(b"\x80", now()), None);
    }

    #[test]
    fn budget_from_the_three_headers() {
        let budget = parse_x_ratelimit(Some(b"10"), Some(b"3"), Some(b"1795439008"), now());
        assert_eq!(
            budget,
            Some(Budget {
                whole_at_reset: true,
                limit: Some(10),
                remaining: 3,
                reset: Some(Duration::from_secs(8)),
            })
        );
    }

    #[test]
    fn no_remaining_no_budget() {
        assert_eq!(
            parse_x_ratelimit(Some(b"10"), None, Some(b"5"), now()),
            None
        );
        assert_eq!(parse_x_ratelimit(None, Some(b"-1"), None, now()), None);
        let partial = parse_x_ratelimit(Some(b"lots"), Some(b"0"), Some(b"later"), now());
        assert_eq!(
            partial,
            Some(Budget {
                whole_at_reset: true,
                limit: None,
                remaining: 0,
                reset: None,
            }),
            "garbage in the other two is dropped, not fatal"
        );
    }
}
