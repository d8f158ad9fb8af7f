//! Property tests of the client's parsers of response headers (`Retry-After`, `X-RateLimit-*`,
//! `RateLimit`, `RateLimit-Policy`): whatever bytes a server sends, reading them never panics,
//! never allocates more than a small multiple of the input, never asks for a wait past
//! [`MAX_HINT`], and a well-formed value means what it says.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (default 2,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use ratelimit_client::{
    parse_ietf, parse_reset, parse_retry_after, parse_x_ratelimit, Budget, RateLimitStatus,
    MAX_HINT,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported with their shrunk input; no regressions file to keep.
        failure_persistence: None,
        // The default (ChaCha) is most of the time of these tests unoptimized: the inputs are
        // long, and their bytes are drawn one by one.
        rng_algorithm: prop::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000),
        )
    }
}

// ---- Memory: an allocator that counts, per thread, the bytes live at the peak of a call. ----

/// The system allocator, counting what each thread holds: a parser that allocated in proportion
/// to a number it read (`Retry-After: 99999999`) rather than to the bytes it was given shows up
/// as a peak far above the input's size.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: an allocation while the thread's locals are torn down is simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            track(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it held at once on this thread.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get) - start;
    (result, usize::try_from(peak).unwrap_or(0))
}

/// The most a parse of `input_len` bytes may hold at once: linear in the input. The factor
/// covers a Structured Field list of one-byte items, each an item struct of its own.
fn memory_bound(input_len: usize) -> usize {
    256 * input_len + 16 * 1024
}

// ---- Generators ----

/// An instant a client might read a response at: 1970 to about 2096, with nanoseconds.
fn instant() -> impl Strategy<Value = SystemTime> {
    (0u64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Blanks a server may put around a value.
fn blanks() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " ", "  ", "\t", " \t "]).prop_map(str::to_owned)
}

/// A run of `len` ASCII digits (built directly: a regex strategy is slow for long runs).
fn digits(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'0'..=b'9', len)
}

/// Garbage of every kind: raw bytes (most not UTF-8), text made of the characters header values
/// are made of, long runs of digits, and numbers with signs, fractions and exponents.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let text = |pattern: &str| {
        prop::string::string_regex(pattern)
            .unwrap()
            .prop_map(String::into_bytes)
    };
    prop_oneof![
        any::<Vec<u8>>(),
        prop::collection::vec(any::<u8>(), 0..4_096),
        text("[ \t0-9a-zA-Z.,;:=\"()?*+-]{0,40}"),
        digits(1..400),
        text("[-+]?[0-9]{0,12}([.][0-9]{0,12})?([eE][-+]?[0-9]{1,4})?"),
        text(concat!(
            "(Mon|Sun|Fri)[a-z]{0,4}, [0-9]{1,2}[ -](Nov|Feb|Xyz)[ -][0-9]{2,5} ",
            "[0-9]{1,2}:[0-9]{2}:[0-9]{2}( GMT)?"
        )),
    ]
}

/// `valid` with one edit: a byte inserted, replaced or removed, or the value cut short.
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (valid, any::<prop::sample::Index>(), any::<u8>(), 0..4u8).prop_map(
        |(mut bytes, at, byte, edit)| {
            let i = at.index(bytes.len() + 1);
            match edit {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => bytes[i] = byte,
                2 if i < bytes.len() => drop(bytes.remove(i)),
                _ => bytes.truncate(i),
            }
            bytes
        },
    )
}

/// A number of type `T` as text.
fn number_text<T: Arbitrary + ToString>() -> impl Strategy<Value = Vec<u8>> {
    any::<T>().prop_map(|n| n.to_string().into_bytes())
}

/// The value of `secs` in whole seconds, cut to the cap, as the parsers promise.
fn capped_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_HINT)
}

// ---- HTTP dates in the three formats RFC 9110 §5.6.7 has recipients accept ----

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT` as the chosen format: 0 IMF-fixdate, 1 RFC 850 (two-digit
/// years, so only 1970 to 2069), 2 asctime.
fn http_date(at: SystemTime, format: u8) -> String {
    let imf = httpdate::fmt_http_date(at);
    let fields: Vec<&str> = imf.split(' ').collect();
    let [weekday, day, month, year, time, _gmt] = fields[..] else {
        unreachable!("IMF-fixdate has six fields: {imf}")
    };
    let weekday = weekday.trim_end_matches(',');
    match format {
        1 => {
            let long = DAYS.iter().find(|d| d.starts_with(weekday)).unwrap();
            format!("{long}, {day}-{month}-{} {time} GMT", &year[2..])
        }
        2 => {
            let day: u8 = day.parse().unwrap();
            format!("{weekday} {month} {day:>2} {time} {year}")
        }
        _ => imf,
    }
}

/// Seconds since the epoch of 2070-01-01: RFC 850 dates before it are unambiguous.
const YEAR_2070: u64 = 3_155_760_000;
/// Seconds since the epoch of 9999-12-31T23:59:59, the last date an HTTP-date can name.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

proptest! {
    #![proptest_config(config())]

    // ---- Retry-After ----

    #[test]
    fn retry_after_never_panics_nor_exceeds_the_cap(
        value in prop_oneof![garbage(), mutated(number_text::<u32>())],
        now in instant(),
    ) {
        let (wait, peak) = peak_during(|| parse_retry_after(&value, now));
        prop_assert!(wait.is_none_or(|w| w <= MAX_HINT));
        prop_assert!(peak <= memory_bound(value.len()), "{} bytes held for {:?}", peak, value);
    }

    #[test]
    fn retry_after_delta_seconds_mean_that_many_seconds(
        secs in prop_oneof![0u64..=100_000, any::<u64>()],
        (before, after) in (blanks(), blanks()),
        now in instant(),
    ) {
        let value = format!("{before}{secs}{after}");
        prop_assert_eq!(parse_retry_after(value.as_bytes(), now), Some(capped_secs(secs)));
    }

    #[test]
    fn retry_after_digit_runs_of_any_length_are_capped_not_overflowed(
        zeros in 0usize..30,
        (first, rest) in (b'1'..=b'9', digits(0..400)),
        now in instant(),
    ) {
        let digits = String::from_utf8([vec![first], rest].concat()).unwrap();
        let value = format!("{}{digits}", "0".repeat(zeros));
        // Six digits or more is at least 100,000 s, past the cap of 86,400 s.
        let expected = match digits.len() {
            1..=5 => capped_secs(digits.parse().unwrap()),
            _ => MAX_HINT,
        };
        let (wait, peak) = peak_during(|| parse_retry_after(value.as_bytes(), now));
        prop_assert_eq!(wait, Some(expected));
        prop_assert!(peak <= memory_bound(value.len()));
    }

    #[test]
    fn retry_after_refuses_what_is_not_whole_seconds(
        number in "[0-9]{1,10}",
        form in 0..5u8,
        now in instant(),
    ) {
        let value = match form {
            0 => format!("-{number}"),
            1 => format!("+{number}"),
            2 => format!("{number}.5"),
            3 => format!("{number}e3"),
            _ => format!("{number} {number}"),
        };
        prop_assert_eq!(parse_retry_after(value.as_bytes(), now), None, "{:?}", value);
    }

    #[test]
    fn retry_after_dates_in_all_three_formats_mean_the_time_until_them(
        date_secs in 0..=LAST_HTTP_DATE,
        offset in -200_000i64..200_000,
        format in 0..3u8,
        (before, after) in (blanks(), blanks()),
    ) {
        let format = if date_secs >= YEAR_2070 && format == 1 { 0 } else { format };
        let date = UNIX_EPOCH + Duration::from_secs(date_secs);
        let now = if offset >= 0 {
            date - Duration::from_secs(offset.unsigned_abs()).min(Duration::from_secs(date_secs))
        } else {
            date + Duration::from_secs(offset.unsigned_abs())
        };
        let expected = date.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_HINT);
        let value = format!("{before}{}{after}", http_date(date, format));
        prop_assert_eq!(parse_retry_after(value.as_bytes(), now), Some(expected), "{:?}", value);
    }

    // ---- X-RateLimit-Limit / -Remaining / -Reset ----

    #[test]
    fn x_ratelimit_counts_read_as_written(
        remaining in any::<u64>(),
        limit in prop::option::of(any::<u64>()),
        (before, after) in (blanks(), blanks()),
        now in instant(),
    ) {
        let remaining_text = format!("{before}{remaining}{after}");
        let limit_text = limit.map(|l| format!("{after}{l}{before}"));
        let budget = parse_x_ratelimit(
            limit_text.as_deref().map(str::as_bytes),
            Some(remaining_text.as_bytes()),
            None,
            now,
        );
        prop_assert_eq!(budget, Some(Budget { limit, remaining, reset: None, whole_at_reset: true }));
    }

    #[test]
    fn x_ratelimit_garbage_gives_no_budget_or_only_what_it_spells(
        remaining in prop_oneof![garbage(), mutated(number_text::<u64>())],
        limit in prop::option::of(garbage()),
        reset in prop::option::of(garbage()),
        now in instant(),
    ) {
        let input = remaining.len()
            + limit.as_ref().map_or(0, Vec::len)
            + reset.as_ref().map_or(0, Vec::len);
        let (budget, peak) = peak_during(|| {
            parse_x_ratelimit(limit.as_deref(), Some(&remaining), reset.as_deref(), now)
        });
        prop_assert!(peak <= memory_bound(input));
        let Some(budget) = budget else { return Ok(()) };
        // A budget needs a remaining count: digits, blanks around them, nothing else.
        let text = std::str::from_utf8(&remaining).expect("a count is ASCII").trim();
        prop_assert!(!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()), "{:?}", text);
        prop_assert_eq!(budget.remaining, text.parse().unwrap_or(u64::MAX));
        prop_assert!(budget.reset.is_none_or(|r| r <= MAX_HINT));
    }

    #[test]
    fn x_ratelimit_reset_never_panics_nor_exceeds_the_cap(value in garbage(), now in instant()) {
        let (reset, peak) = peak_during(|| parse_reset(&value, now));
        prop_assert!(reset.is_none_or(|r| r <= MAX_HINT));
        prop_assert!(peak <= memory_bound(value.len()));
    }

    #[test]
    fn x_ratelimit_reset_as_a_delay(
        secs in 0u64..1_000_000_000,
        millis in prop::option::of(0u32..1_000),
        now in instant(),
    ) {
        let value = match millis {
            Some(ms) => format!("{secs}.{ms:03}"),
            None => secs.to_string(),
        };
        let exact = Duration::from_secs(secs) + Duration::from_millis(millis.unwrap_or(0).into());
        let reset = parse_reset(value.as_bytes(), now).unwrap();
        // Decimals go through f64: equal to the microsecond.
        let error = reset.abs_diff(exact.min(MAX_HINT));
        prop_assert!(error < Duration::from_micros(1), "{:?} for {:?}", reset, value);
    }

    #[test]
    fn x_ratelimit_reset_as_a_unix_time_in_seconds_or_milliseconds(
        // From 2001-09-11: every reset drawn is then at or after 1e12 ms (2001-09-09), where
        // milliseconds start (values below are Unix seconds).
        now_secs in 1_000_200_000u64..4_000_000_000,
        ahead_ms in -200_000_000i64..200_000_000,
        in_millis in any::<bool>(),
    ) {
        // Local clock on a whole second, so that a reset in whole seconds is exact.
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let ahead_ms = if in_millis { ahead_ms } else { ahead_ms / 1_000 * 1_000 };
        let at_ms = (now_secs * 1_000).checked_add_signed(ahead_ms).unwrap();
        let value = if in_millis { at_ms.to_string() } else { (at_ms / 1_000).to_string() };
        let expected = Duration::from_millis(ahead_ms.max(0).unsigned_abs()).min(MAX_HINT);
        let reset = parse_reset(value.as_bytes(), now).unwrap();
        // Milliseconds are divided in f64: equal to the microsecond.
        let error = reset.abs_diff(expected);
        prop_assert!(error < Duration::from_micros(1), "{:?} for {}", reset, value);
    }

    // ---- IETF RateLimit / RateLimit-Policy ----

    #[test]
    fn ietf_fields_mean_the_most_restrictive_of_their_items(
        (items, policies, cuts) in ietf_fields(),
    ) {
        let ratelimit = items.iter().map(Item::render).collect::<Vec<_>>();
        let policy = policies.iter().map(Policy::render).collect::<Vec<_>>();
        let expected = items
            .iter()
            .filter_map(|item| item.budget(&policies))
            .reduce(Budget::most_restrictive);
        let one_line = [ratelimit.join(", ").into_bytes()];
        let one_policy = [policy.join(", ").into_bytes()];
        let policy_lines = if policies.is_empty() { vec![] } else { as_lines(&one_policy) };
        prop_assert_eq!(parse_ietf(&as_lines(&one_line), &policy_lines), expected);
        // A field split over several lines (at item boundaries) means the same.
        let split = split_at(&ratelimit, &cuts);
        prop_assert_eq!(parse_ietf(&as_lines(&split), &policy_lines), expected);
    }

    #[test]
    fn ietf_an_invalid_field_is_ignored_whole(
        (items, policies, _) in ietf_fields(),
        junk in prop::sample::select(vec![", (", ";", ", \"open", " \u{7f}", ",,", "="]),
    ) {
        let ratelimit = items.iter().map(Item::render).collect::<Vec<_>>().join(", ");
        let policy = policies.iter().map(Policy::render).collect::<Vec<_>>().join(", ");
        let broken = format!("{ratelimit}{junk}");
        prop_assert_eq!(parse_ietf(&[broken.as_bytes()], &[policy.as_bytes()]), None);
        // A broken policy field leaves every limit unknown, and the budgets as they are.
        let broken = format!("{policy}{junk}");
        let expected = items
            .iter()
            .filter_map(|item| item.budget(&[]))
            .reduce(Budget::most_restrictive);
        prop_assert_eq!(parse_ietf(&[ratelimit.as_bytes()], &[broken.as_bytes()]), expected);
    }

    #[test]
    fn ietf_garbage_never_panics_nor_exceeds_the_cap(
        ratelimit in prop::collection::vec(prop_oneof![garbage(), mutated(ietf_line())], 0..4),
        policy in prop::collection::vec(prop_oneof![garbage(), mutated(ietf_line())], 0..4),
    ) {
        let input: usize = ratelimit.iter().chain(&policy).map(Vec::len).sum();
        let (budget, peak) = peak_during(|| parse_ietf(&as_lines(&ratelimit), &as_lines(&policy)));
        prop_assert!(budget.is_none_or(|b| b.reset.is_none_or(|r| r <= MAX_HINT)));
        // The lines of a field are joined with ", ": two more bytes a line.
        let joined = input + 2 * (ratelimit.len() + policy.len());
        prop_assert!(peak <= memory_bound(joined), "{} bytes held for {} of input", peak, joined);
    }

    // ---- A whole response ----

    #[test]
    fn a_response_reads_as_its_headers_say(
        headers in prop::collection::vec(header(), 0..12),
        now in instant(),
    ) {
        let lines = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let input: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let (status, peak) = peak_during(|| RateLimitStatus::from_headers(lines.clone(), now));
        prop_assert!(peak <= memory_bound(input));
        prop_assert!(status.retry_after.is_none_or(|w| w <= MAX_HINT));
        prop_assert!(status.budget.is_none_or(|b| b.reset.is_none_or(|r| r <= MAX_HINT)));
        // Without a `Date`, what each header says, read by its own parser: names in any case,
        // the first of a repeated singleton, every line of a list field, the most restrictive
        // budget of the two kinds.
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
            return Ok(());
        }
        let first = |names: &[&str]| {
            headers
                .iter()
                .find(|(n, _)| names.iter().any(|name| n.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.as_slice())
        };
        let all = |name: &str| {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .collect::<Vec<_>>()
        };
        let x = parse_x_ratelimit(
            first(&["x-ratelimit-limit", "ratelimit-limit"]),
            first(&["x-ratelimit-remaining", "ratelimit-remaining"]),
            first(&["x-ratelimit-reset", "ratelimit-reset"]),
            now,
        );
        let ietf = parse_ietf(&all("ratelimit"), &all("ratelimit-policy"));
        let budget = match (x, ietf) {
            (Some(a), Some(b)) => Some(a.most_restrictive(b)),
            (a, b) => a.or(b),
        };
        prop_assert_eq!(status.budget, budget);
        let retry_after = first(&["retry-after"]).and_then(|v| parse_retry_after(v, now));
        prop_assert_eq!(status.retry_after, retry_after);
    }

    #[test]
    fn a_server_date_within_rounding_changes_nothing(
        headers in prop::collection::vec(header(), 0..8),
        now_secs in 0u64..4_000_000_000,
        nanos in 0u32..1_000_000_000,
        skew in -1i64..=1,
    ) {
        let now = UNIX_EPOCH + Duration::new(now_secs, nanos);
        let server = UNIX_EPOCH + Duration::from_secs(now_secs.saturating_add_signed(skew));
        let headers: Vec<_> = headers
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
            .collect();
        let lines = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let date = httpdate::fmt_http_date(server);
        let dated = std::iter::once(("Date", date.as_bytes())).chain(lines.clone());
        prop_assert_eq!(
            RateLimitStatus::from_headers(dated, now),
            RateLimitStatus::from_headers(lines, now)
        );
    }
}

// ---- IETF fields: a model of what they say ----

/// A parameter value as a server might write it: a valid integer, one out of the range the
/// client accepts (negative), or another type of Structured Field value.
#[derive(Clone, Debug)]
enum Param {
    Int(i64),
    Other(&'static str),
}

impl Param {
    fn count(&self) -> Option<u64> {
        match self {
            Param::Int(n) => u64::try_from(*n).ok(),
            Param::Other(_) => None,
        }
    }

    fn render(&self) -> String {
        match self {
            Param::Int(n) => n.to_string(),
            Param::Other(text) => (*text).to_string(),
        }
    }
}

fn param() -> impl Strategy<Value = Param> {
    // Structured Field integers have at most 15 digits.
    const MAX: i64 = 999_999_999_999_999;
    // A decimal, a string, a boolean, a token, bytes, a date, a display string.
    let others = vec![
        "1.5",
        "\"3\"",
        "?1",
        "tok",
        ":AQID:",
        "@1659578233",
        "%\"x\"",
    ];
    prop_oneof![
        4 => (0i64..2_000).prop_map(Param::Int),
        2 => (0..=MAX).prop_map(Param::Int),
        1 => (-MAX..0).prop_map(Param::Int),
        1 => prop::sample::select(others).prop_map(Param::Other),
    ]
}

/// An item of the `RateLimit` field.
#[derive(Clone, Debug)]
struct Item {
    name: String,
    r: Option<Param>,
    t: Option<Param>,
}

impl Item {
    fn render(&self) -> String {
        let mut text = format!("\"{}\"", self.name);
        for (key, value) in [("r", &self.r), ("t", &self.t)] {
            if let Some(value) = value {
                text.push_str(&format!(";{key}={}", value.render()));
            }
        }
        text
    }

    /// What the item says, as draft-ietf-httpapi-ratelimit-headers reads: no budget without a
    /// remaining count, the quota of the first policy of its name as the limit.
    fn budget(&self, policies: &[Policy]) -> Option<Budget> {
        let limit = policies
            .iter()
            .find(|p| p.name == self.name)
            .and_then(|p| p.q.as_ref()?.count());
        Some(Budget {
            limit,
            remaining: self.r.as_ref()?.count()?,
            reset: self.t.as_ref().and_then(Param::count).map(capped_secs),
            whole_at_reset: false,
        })
    }
}

/// An item of the `RateLimit-Policy` field.
#[derive(Clone, Debug)]
struct Policy {
    name: String,
    q: Option<Param>,
    w: Option<Param>,
}

impl Policy {
    fn render(&self) -> String {
        let mut text = format!("\"{}\"", self.name);
        for (key, value) in [("q", &self.q), ("w", &self.w)] {
            if let Some(value) = value {
                text.push_str(&format!(";{key}={}", value.render()));
            }
        }
        text
    }
}

/// Few names, so that items and policies often match.
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "ab", "ba"]).prop_map(str::to_owned)
}

/// A `RateLimit` field's items, a `RateLimit-Policy` field's, and where to cut the first into
/// lines.
fn ietf_fields() -> impl Strategy<Value = (Vec<Item>, Vec<Policy>, Vec<prop::sample::Index>)> {
    let item = (
        name(),
        prop::option::weighted(0.9, param()),
        prop::option::of(param()),
    )
        .prop_map(|(name, r, t)| Item { name, r, t });
    let policy = (
        name(),
        prop::option::weighted(0.9, param()),
        prop::option::of(param()),
    )
        .prop_map(|(name, q, w)| Policy { name, q, w });
    (
        prop::collection::vec(item, 1..8),
        prop::collection::vec(policy, 0..6),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
}

/// A `RateLimit` or `RateLimit-Policy` line, for mutation.
fn ietf_line() -> impl Strategy<Value = Vec<u8>> {
    ietf_fields().prop_map(|(items, policies, _)| {
        let mut parts: Vec<String> = items.iter().map(Item::render).collect();
        parts.extend(policies.iter().map(Policy::render));
        parts.join(", ").into_bytes()
    })
}

/// Owned lines as the slices the parsers take.
fn as_lines(lines: &[Vec<u8>]) -> Vec<&[u8]> {
    lines.iter().map(Vec::as_slice).collect()
}

/// `parts` joined with `, ` into lines, cut before the parts at `cuts`.
fn split_at(parts: &[String], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut starts: Vec<usize> = cuts.iter().map(|c| c.index(parts.len())).collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    starts.push(parts.len());
    starts
        .windows(2)
        .map(|w| parts[w[0]..w[1]].join(", ").into_bytes())
        .collect()
}

// ---- Whole responses ----

/// A header line: a name the client reads (in any case) or another, and a value that is valid
/// for that name, valid for another, or garbage.
fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        8 => prop::sample::select(vec![
            "Retry-After",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit",
            "RateLimit-Policy",
            "Date",
        ])
        .prop_map(str::to_owned),
        1 => prop::string::string_regex("[A-Za-z-]{1,20}").unwrap(),
    ];
    let cased = (name, any::<u64>()).prop_map(|(name, bits)| {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect::<String>()
    });
    let unix_time = 1_700_000_000u64..1_900_000_000;
    let date = unix_time
        .clone()
        .prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s)).into_bytes());
    let value = prop_oneof![
        2 => (0u64..200_000).prop_map(|n| n.to_string().into_bytes()),
        1 => unix_time.prop_map(|n| n.to_string().into_bytes()),
        2 => ietf_line(),
        1 => date,
        2 => garbage(),
    ];
    (cased, value)
}
