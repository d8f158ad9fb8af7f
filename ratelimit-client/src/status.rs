//! Everything one response says about the client's rate limit, read from its headers.

use std::time::{Duration, SystemTime};

use crate::ietf::parse_ietf;
use crate::retry_after::parse_retry_after;
use crate::seconds::ascii_trimmed;
use crate::x_ratelimit::parse_x_ratelimit;
use crate::Budget;

/// How far the server's `Date` may stray from the local clock before the client measures the
/// server's instants (`Retry-After` dates, `X-RateLimit-Reset` times) against the server's clock.
/// `Date` has whole seconds only, so a small gap is rounding, not skew, and the local clock is
/// the more precise one.
const SKEW_TOLERANCE: Duration = Duration::from_secs(2);

/// What a response says about the rate limit: its `Retry-After`, and its budget from the
/// `X-RateLimit-*` headers and the IETF `RateLimit` fields (the most restrictive when both are
/// present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitStatus {
    /// The budget, when the response describes one.
    pub budget: Option<Budget>,
    /// How long `Retry-After` asks to wait, when present and valid.
    pub retry_after: Option<Duration>,
}

impl RateLimitStatus {
    /// Reads the headers of a response received at `now` (the local clock).
    ///
    /// `headers` yields each header line as (name, value); names match case-insensitively, and
    /// values need not be UTF-8. Nothing here panics on bad input: what cannot be read is left
    /// out.
    pub fn from_headers<'a, I>(headers: I, now: SystemTime) -> RateLimitStatus
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let fields = Fields::collect(headers);
        let now = reference_now(fields.date, now);
        let x = parse_x_ratelimit(fields.limit, fields.remaining, fields.reset, now);
        let ietf = parse_ietf(&fields.ratelimit, &fields.policy);
        RateLimitStatus {
            budget: match (x, ietf) {
                (Some(a), Some(b)) => Some(a.most_restrictive(b)),
                (a, b) => a.or(b),
            },
            retry_after: fields.retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    }
}

/// The header lines that matter here.
#[derive(Default)]
struct Fields<'a> {
    date: Option<&'a [u8]>,
    retry_after: Option<&'a [u8]>,
    limit: Option<&'a [u8]>,
    remaining: Option<&'a [u8]>,
    reset: Option<&'a [u8]>,
    ratelimit: Vec<&'a [u8]>,
    policy: Vec<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn collect<I>(headers: I) -> Fields<'a>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut fields = Fields::default();
        for (name, value) in headers {
            fields.add(name, value);
        }
        fields
    }

    fn add(&mut self, name: &str, value: &'a [u8]) {
        let is = |expected: &str| name.eq_ignore_ascii_case(expected);
        // A repeated singleton header is ambiguous; the first one is kept.
        let slot = if is("date") {
            &mut self.date
        } else if is("retry-after") {
            &mut self.retry_after
        } else if is("x-ratelimit-limit") || is("ratelimit-limit") {
            &mut self.limit
        } else if is("x-ratelimit-remaining") || is("ratelimit-remaining") {
            &mut self.remaining
        } else if is("x-ratelimit-reset") || is("ratelimit-reset") {
            &mut self.reset
        } else {
            if is("ratelimit") {
                self.ratelimit.push(value);
            } else if is("ratelimit-policy") {
                self.policy.push(value);
            }
            return;
        };
        slot.get_or_insert(value);
    }
}

/// The clock to measure the server's instants against: the local one, unless the server's
/// `Date` shows that the two clocks disagree by more than rounding.
fn reference_now(date: Option<&[u8]>, local: SystemTime) -> SystemTime {
    let Some(server) = date
        .and_then(ascii_trimmed)
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return local;
    };
    let gap = match server.duration_since(local) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if gap > SKEW_TOLERANCE {
        server
    } else {
        local
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// 2026-11-25T08:50:00Z, a whole second.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_639_800)
    }

    fn status(headers: &[(&str, &str)], now: SystemTime) -> RateLimitStatus {
        RateLimitStatus::from_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes())), now)
    }

    #[test]
    fn our_servers_429() {
        let s = status(
            &[
                ("Retry-After", "10"),
                ("X-RateLimit-Limit", "10"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1795639808"),
                ("Content-Type", "application/json"),
            ],
            now(),
        );
        assert_eq!(s.retry_after, Some(Duration::from_secs(10)));
        assert_eq!(
            s.budget,
            Some(Budget {
                whole_at_reset: true,
                limit: Some(10),
                remaining: 0,
                reset: Some(Duration::from_secs(8)),
            })
        );
    }

    #[test]
    fn names_are_case_insensitive_and_the_draft_spelling_counts() {
        let s = status(
            &[("ratelimit-remaining", "4"), ("RATELIMIT-RESET", "6")],
            now(),
        );
        assert_eq!(
            s.budget,
            Some(Budget {
                whole_at_reset: true,
                limit: None,
                remaining: 4,
                reset: Some(Duration::from_secs(6)),
            })
        );
    }

    #[test]
    fn x_and_ietf_together_give_the_most_restrictive() {
        let s = status(
            &[
                ("X-RateLimit-Remaining", "5"),
                ("RateLimit", r#""hour";r=0;t=40"#),
                ("RateLimit-Policy", r#""hour";q=100;w=3600"#),
            ],
            now(),
        );
        assert_eq!(
            s.budget,
            Some(Budget {
                whole_at_reset: false,
                limit: Some(100),
                remaining: 0,
                reset: Some(Duration::from_secs(40)),
            })
        );
    }

    #[test]
    fn nothing_known_from_a_plain_response() {
        let s = status(&[("Content-Length", "2")], now());
        assert_eq!(s, RateLimitStatus::default());
    }

    #[test]
    fn garbage_never_panics() {
        let s = RateLimitStatus::from_headers(
            [
                ("Retry-After", &b"\xff\xfe"[..]),
                ("X-RateLimit-Remaining", b"-4"),
                ("X-RateLimit-Reset", b"99999999999999999999999999999999"),
                ("RateLimit", b"\"a\";r=\x00"),
                ("Date", b"yesterday"),
            ],
            now(),
        );
        assert_eq!(s, RateLimitStatus::default());
    }

    #[test]
    fn a_skewed_server_clock_is_followed() {
        // The server's clock runs a minute behind ours: its dates are read against its clock.
        let server_now = now() - Duration::from_secs(60);
        let s = status(
            &[
                ("Date", &httpdate::fmt_http_date(server_now)),
                (
                    "Retry-After",
                    &httpdate::fmt_http_date(server_now + Duration::from_secs(5)),
                ),
            ],
            now(),
        );
        assert_eq!(s.retry_after, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_close_server_clock_is_rounding_not_skew() {
        // Date has whole seconds: 1.5 s after a whole second the server still says the second.
        let local = now() + Duration::from_millis(1500);
        let s = status(
            &[
                ("Date", &httpdate::fmt_http_date(now())),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1795639802"),
            ],
            local,
        );
        assert_eq!(
            s.budget.and_then(|b| b.reset),
            Some(Duration::from_millis(500))
        );
    }
}
