//! `Retry-After` (RFC 9110 §10.2.3): delta seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

use crate::seconds::{ascii_trimmed, capped, parse_count, until};

/// How long a `Retry-After` value asks the client to wait, measured from `now`.
///
/// The value is a number of seconds (`120`) or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`,
/// or one of the two obsolete formats). A date in the past means no wait. Anything else
/// (negative or fractional numbers, garbage, non-UTF-8 bytes) gives `None`, so that the caller
/// falls back to its own backoff. Waits longer than [`MAX_HINT`](crate::MAX_HINT) are cut to it.
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    if let Some(secs) = parse_count(value) {
        // u64 -> f64 rounds only far beyond the cap.
        return Some(capped(secs as f64));
    }
    let date = httpdate::parse_http_date(ascii_trimmed(value)?).ok()?;
    Some(until(date, now))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::MAX_HINT;

    /// `Sun, 06 Nov 1994 08:49:37 GMT`, the example date of RFC 9110.
    fn rfc_example_date() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    fn parse(value: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(value.as_bytes(), now)
    }

    #[test]
    fn delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse("0", now), Some(Duration::ZERO));
    }

    #[test]
    fn absurd_delays_are_capped() {
        let now = SystemTime::now();
        assert_eq!(parse("99999999999999999999999", now), Some(MAX_HINT));
        assert_eq!(parse("86401", now), Some(MAX_HINT));
        assert_eq!(parse("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(MAX_HINT));
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let date = rfc_example_date();
        let before = date - Duration::from_secs(30);
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse(value, before),
                Some(Duration::from_secs(30)),
                "{value}"
            );
        }
    }

    #[test]
    fn a_date_in_the_past_means_now() {
        let after = rfc_example_date() + Duration::from_secs(5);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", after),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let now = SystemTime::now();
        for value in [
            "",
            "  ",
            "-1",
            "1.5",
            "soon",
            "+3",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(value, now), None, "{value:?}");
        }
        assert_eq!(parse_retry_after(b"\xff\x00\x80", now), None, "non-UTF-8");
    }
}
