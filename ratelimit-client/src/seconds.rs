//! Numbers of seconds as servers write them in headers, read defensively.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest wait any header can ask for.
///
/// A server that answers "come back in a century" is broken or hostile; a client that believed it
/// would hang for good. Longer hints are cut to this, and the retry policy's wait budget then
/// decides whether to wait at all.
pub const MAX_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// A header value as text without surrounding blanks, if it is ASCII.
pub(crate) fn ascii_trimmed(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    (!text.is_empty() && text.is_ascii()).then_some(text)
}

/// A count such as `X-RateLimit-Remaining: 42`; a count too large for `u64` saturates, since it
/// only ever means "plenty". Signs, fractions and garbage give `None`.
pub(crate) fn parse_count(value: &[u8]) -> Option<u64> {
    let text = ascii_trimmed(value)?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// A non-negative number of seconds, whole (`30`) or decimal (`1.5`); no sign, no exponent.
pub(crate) fn parse_seconds(value: &[u8]) -> Option<f64> {
    let text = ascii_trimmed(value)?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return None;
    }
    // Every string of digits parses as a finite f64 (huge ones become large, not infinite, up to
    // 309 digits); anything longer is cut to the cap anyway.
    text.parse::<f64>().ok().filter(|secs| secs.is_finite())
}

/// `secs` as a duration no longer than [`MAX_HINT`].
pub(crate) fn capped(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(MAX_HINT, |d| d.min(MAX_HINT))
}

/// How long from `now` until the instant `at`; zero for an instant in the past.
pub(crate) fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(MAX_HINT)
}

/// How long from `now` until `secs` after the Unix epoch; zero for an instant in the past.
pub(crate) fn until_epoch(secs: f64, now: SystemTime) -> Duration {
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    capped(secs - since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count(b" 42 "), Some(42));
        assert_eq!(parse_count(b"0"), Some(0));
        assert_eq!(parse_count(b"99999999999999999999999"), Some(u64::MAX));
        for bad in [&b""[..], b"-1", b"+1", b"1.5", b"ten", b"\xff\xfe", b"1 2"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds(b"30"), Some(30.0));
        assert_eq!(parse_seconds(b"1.5"), Some(1.5));
        for bad in [
            &b""[..],
            b"-3",
            b".5",
            b"5.",
            b"1e3",
            b"inf",
            b"NaN",
            b"1.2.3",
            b"\xc3\xa9",
        ] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
        let huge = "9".repeat(400);
        assert_eq!(
            parse_seconds(huge.as_bytes()),
            None,
            "too long to be finite"
        );
    }

    #[test]
    fn durations_are_capped_and_never_negative() {
        assert_eq!(capped(1e300), MAX_HINT);
        assert_eq!(capped(-5.0), Duration::ZERO);
        assert_eq!(capped(f64::NAN), Duration::ZERO);
        assert_eq!(capped(2.5), Duration::from_millis(2500));
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(until_epoch(1_010.0, now), Duration::from_secs(10));
        assert_eq!(until_epoch(10.0, now), Duration::ZERO, "in the past");
        assert_eq!(until(now - Duration::from_secs(1), now), Duration::ZERO);
    }
}
