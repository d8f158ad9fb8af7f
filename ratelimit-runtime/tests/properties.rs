//! Property tests of the runtime's parsers of outside bytes: rate strings, overrides files and
//! the header values `scope = "header:..."` keys on. Whatever the input, nothing panics, memory
//! stays within a small multiple of the input, a well-formed input means what it says, and no
//! request escapes its limit.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (default 2,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{get, App};
use proptest::prelude::*;
use ratelimit_runtime::rate::{
    parse_period, parse_rate, parse_rates, parse_wait, RateError, RateSpec,
};
use ratelimit_runtime::{ratelimit, ManualClock, Quota, RateLimiter};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported with their shrunk input; no regressions file to keep.
        failure_persistence: None,
        // The default (ChaCha) is most of the time of these tests unoptimized: the inputs are
        // long, and their bytes are drawn one by one.
        rng_algorithm: prop::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::with_cases(cases())
    }
}

// ---- Memory: an allocator that counts, per thread, the bytes live at the peak of a call. ----

/// The system allocator, counting what each thread holds: a parser that allocated in proportion
/// to a number it read (`"5/99999999 seconds"`) rather than to the bytes it was given shows up as
/// a peak far above the input's size.
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

/// The most a parse of `input_len` bytes may hold at once: linear in the input, with room for a
/// parser's tables and an error message.
fn memory_bound(input_len: usize) -> usize {
    256 * input_len + 64 * 1024
}

// ---- Generators shared by the parsers ----

/// `valid` with one edit: a character inserted, replaced or removed, or the text cut short.
fn mutated(valid: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (valid, any::<prop::sample::Index>(), any::<char>(), 0..4u8).prop_map(|(text, at, c, edit)| {
        let mut chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len() + 1);
        match edit {
            0 => chars.insert(i, c),
            1 if i < chars.len() => chars[i] = c,
            2 if i < chars.len() => drop(chars.remove(i)),
            _ => chars.truncate(i),
        }
        chars.into_iter().collect()
    })
}

/// Text of any kind: any Unicode, the characters rates are made of, long runs of digits.
fn garbage_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::string::string_regex("[0-9a-zA-Z /;,|.+-]{0,40}").unwrap(),
        prop::collection::vec(prop::char::range('0', '9'), 1..400)
            .prop_map(|digits| digits.into_iter().collect()),
    ]
}

// ---- Rate strings ----

const UNITS: [(&str, u64); 6] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3_600),
    ("day", 86_400),
    ("month", 30 * 86_400),
    ("year", 360 * 86_400),
];

/// A rate as a person writes one, and what it means: the count, the multiplier and the unit's
/// length in seconds.
#[derive(Clone, Debug)]
struct WrittenRate {
    text: String,
    count: u64,
    multiplier: u64,
    unit_secs: u64,
}

impl WrittenRate {
    /// What `parse_rate` must answer for it.
    fn meaning(&self) -> Meant<RateSpec> {
        let Ok(limit) = u32::try_from(self.count) else {
            return Meant::TooLarge;
        };
        match seconds(self.multiplier, self.unit_secs) {
            Meant::Value(period) if limit > 0 => Meant::Value(RateSpec {
                limit,
                period_secs: period,
            }),
            Meant::Value(_) | Meant::Zero => Meant::Zero,
            Meant::TooLarge => Meant::TooLarge,
        }
    }
}

/// What a parse must answer: a value, or which refusal.
#[derive(Debug, PartialEq)]
enum Meant<T> {
    Value(T),
    TooLarge,
    Zero,
}

/// The answer of a parse as a [`Meant`]; `None` for the other refusals (malformed, unknown
/// unit), which no well-formed input gets.
fn answered<T>(answer: Result<T, RateError>) -> Option<Meant<T>> {
    match answer {
        Ok(value) => Some(Meant::Value(value)),
        Err(RateError::TooLarge(_)) => Some(Meant::TooLarge),
        Err(RateError::Zero(_)) => Some(Meant::Zero),
        Err(_) => None,
    }
}

/// `n` units of `unit_secs` seconds as a period: at most `u32` seconds, at least one.
fn seconds(n: u64, unit_secs: u64) -> Meant<u32> {
    match n.checked_mul(unit_secs).map(u32::try_from) {
        Some(Ok(0)) => Meant::Zero,
        Some(Ok(secs)) => Meant::Value(secs),
        _ => Meant::TooLarge,
    }
}

/// A period of `n` units of `unit_secs` seconds as a wait, in milliseconds.
fn millis(n: u64, unit_secs: u64) -> Meant<u64> {
    match seconds(n, unit_secs) {
        Meant::Value(secs) => Meant::Value(u64::from(secs) * 1_000),
        Meant::TooLarge => Meant::TooLarge,
        Meant::Zero => Meant::Zero,
    }
}

/// A number as it may appear in a rate: small, near the limits of `u32`, or any `u64`.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1_000,
        1 => (u64::from(u32::MAX) - 2)..=(u64::from(u32::MAX) + 2),
        1 => any::<u64>(),
    ]
}

/// A unit in any case, singular or plural.
fn unit() -> impl Strategy<Value = (String, u64)> {
    (
        prop::sample::select(UNITS.to_vec()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|((name, secs), plural, case)| {
            let name = if plural {
                format!("{name}s")
            } else {
                name.to_string()
            };
            let cased: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            (cased, secs)
        })
}

/// Blanks between the parts of a rate.
fn gap() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "  ", "\t"])
}

/// `10/second`, `10 per second`, `5/5 minutes`, `100 per 2 hours`, with blanks anywhere they
/// are allowed.
fn written_rate() -> impl Strategy<Value = WrittenRate> {
    (
        number(),
        prop::option::of(number()),
        unit(),
        any::<bool>(),
        (gap(), gap(), gap(), gap()),
    )
        .prop_map(
            |(count, multiplier, (unit, unit_secs), per, (g0, g1, g2, g3))| {
                let separator = if per { " per " } else { "/" };
                let text = match multiplier {
                    Some(n) => format!("{g0}{count}{g1}{separator}{g2}{n} {unit}{g3}"),
                    None => format!("{g0}{count}{g1}{separator}{g2}{unit}{g3}"),
                };
                WrittenRate {
                    text,
                    count,
                    multiplier: multiplier.unwrap_or(1),
                    unit_secs,
                }
            },
        )
}

fn rate_text() -> impl Strategy<Value = String> {
    written_rate().prop_map(|r| r.text)
}

/// Several rates, joined by `;`.
fn rates_text(count: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(rate_text(), count).prop_map(|rates| rates.join(";"))
}

/// A rate string: well-formed, one edit away from it, or garbage.
fn any_rate_text() -> impl Strategy<Value = String> {
    prop_oneof![
        rate_text(),
        mutated(rate_text()),
        rates_text(0..6),
        garbage_text(),
    ]
}

/// What separates rates: `;`, `,` or `|`, with blanks and empty parts.
fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![";", ",", "|", " ; ", ";;", ", |"])
}

/// A period's unit as `parse_period` takes them, and its length in seconds.
fn period_unit() -> impl Strategy<Value = (&'static str, u64)> {
    prop::sample::select(vec![
        ("", 1),
        ("s", 1),
        ("m", 60),
        ("h", 3_600),
        ("d", 86_400),
        (" minutes", 60),
        ("Hour", 3_600),
        (" day", 86_400),
    ])
}

/// Every rate error's message, which quotes the input, stays within the input and a sentence.
fn message_is_bounded(error: &RateError, input: &str) -> bool {
    error.to_string().len() <= input.len() + 300
}

/// A value of `X-API-Key`: the bytes a header value may hold (any but controls other than tab,
/// and DEL), of any length; a few fixed ones so that clients share keys.
fn key_value() -> impl Strategy<Value = Vec<u8>> {
    // Any byte, moved into what a header value may hold: cheaper than drawing from a union.
    let valid = |bytes: Vec<u8>| {
        bytes
            .into_iter()
            .map(|b| match b {
                b'\t' | 0x20..=0x7e | 0x80..=0xff => b,
                0x7f => b' ',
                control => control + 0x40,
            })
            .collect::<Vec<u8>>()
    };
    let shared = vec![
        &b"alpha"[..],
        b"beta",
        b" alpha",
        b"alpha ",
        b"",
        b" ",
        b"\t \t",
        b"\xff\xfe",
    ];
    let huge = (prop::sample::select(vec![b'k', b' ', 0xff]), 1usize..20_000);
    prop_oneof![
        3 => prop::sample::select(shared).prop_map(<[u8]>::to_vec),
        2 => prop::collection::vec(any::<u8>(), 0..16).prop_map(valid),
        1 => prop::collection::vec(any::<u8>(), 0..1_000).prop_map(valid),
        1 => huge.prop_map(|(byte, n)| vec![byte; n]),
    ]
}

/// One request: from which of two clients, and its `X-API-Key` lines (none, one or many).
fn keyed_request() -> impl Strategy<Value = (usize, Vec<Vec<u8>>)> {
    (0usize..2, prop::collection::vec(key_value(), 0..4))
}

/// Whom the limit counts a request against: the first `X-API-Key` line, unless it is blank, in
/// which case its address, in a budget of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Budget {
    Key(Vec<u8>),
    Address(usize),
}

fn budget_of(client: usize, lines: &[Vec<u8>]) -> Budget {
    match lines.first() {
        Some(key) if !key.trim_ascii().is_empty() => Budget::Key(key.clone()),
        _ => Budget::Address(client),
    }
}

fn peer(client: usize) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 1 + client as u8], 40_000))
}

/// The instant the tests' clock starts at.
const T0: u64 = 1_800_000_000;

/// Sends `requests` through `send`, on a clock that stands still, and checks each answer
/// against the budget it must be counted in: the first two requests of each budget pass, every
/// later one is refused. `send` answers a request's status and `X-RateLimit-Remaining`.
async fn check_keyed(
    send: impl AsyncFn(TestRequest) -> (StatusCode, Option<u32>),
    requests: &[(usize, Vec<Vec<u8>>)],
) -> Result<(), TestCaseError> {
    const LIMIT: u32 = 2;
    let mut spent: HashMap<Budget, u32> = HashMap::new();
    for (client, lines) in requests {
        let mut req = TestRequest::get().uri("/keyed").peer_addr(peer(*client));
        for line in lines {
            let value = HeaderValue::from_bytes(line).expect("the generator makes valid values");
            req = req.append_header(("x-api-key", value));
        }
        let (status, remaining) = send(req).await;
        let budget = budget_of(*client, lines);
        let used = spent.entry(budget.clone()).or_default();
        if *used < LIMIT {
            *used += 1;
            prop_assert_eq!(status, StatusCode::OK, "{:?}", budget);
            prop_assert_eq!(remaining, Some(LIMIT - *used));
        } else {
            prop_assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{:?}", budget);
            prop_assert_eq!(remaining, Some(0));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    // ---- Rate strings ----

    #[test]
    fn rates_mean_what_they_say(rate in written_rate()) {
        prop_assert_eq!(answered(parse_rate(&rate.text)), Some(rate.meaning()), "{:?}", rate.text);
    }

    #[test]
    fn parsed_rates_round_trip(rate in written_rate()) {
        let Ok(spec) = parse_rate(&rate.text) else { return Ok(()) };
        // Through the quota's own display, and in the plainest notation.
        let quota: Quota = rate.text.parse().unwrap();
        prop_assert_eq!(parse_rate(&quota.to_string()), Ok(spec));
        let plain = format!("{}/{} seconds", spec.limit, spec.period_secs);
        prop_assert_eq!(parse_rate(&plain), Ok(spec));
    }

    #[test]
    fn several_rates_parse_in_order(
        rates in prop::collection::vec(written_rate(), 1..6),
        separators in prop::collection::vec(separator(), 6),
    ) {
        let mut text = String::new();
        for (rate, separator) in rates.iter().zip(&separators) {
            text.push_str(&rate.text);
            text.push_str(separator);
        }
        // Each part as `parse_rates` hands it on: without its blanks; a rate given twice is
        // refused where it repeats.
        let mut each: Result<Vec<RateSpec>, RateError> = Ok(Vec::new());
        for rate in &rates {
            let part = rate.text.trim();
            each = each.and_then(|mut specs| {
                let spec = parse_rate(part)?;
                if specs.contains(&spec) {
                    return Err(RateError::Repeated(part.to_string()));
                }
                specs.push(spec);
                Ok(specs)
            });
        }
        prop_assert_eq!(parse_rates(&text), each);
    }

    #[test]
    fn rate_garbage_never_panics(text in any_rate_text()) {
        let (rates, peak) = peak_during(|| parse_rates(&text));
        prop_assert!(peak <= memory_bound(text.len()), "{} bytes held for {:?}", peak, text);
        match rates {
            Ok(specs) => {
                prop_assert!(specs.len() <= text.matches([';', ',', '|']).count() + 1);
                for spec in specs {
                    prop_assert!(spec.limit >= 1 && spec.period_secs >= 1);
                }
            }
            Err(error) => prop_assert!(message_is_bounded(&error, &text)),
        }
        if let Err(error) = parse_rate(&text) {
            prop_assert!(message_is_bounded(&error, &text));
        }
    }

    #[test]
    fn periods_mean_what_they_say(
        n in number(),
        (suffix, unit_secs) in period_unit(),
        (g0, g1) in (gap(), gap()),
    ) {
        let text = format!("{g0}{n}{suffix}{g1}");
        prop_assert_eq!(answered(parse_period(&text)), Some(seconds(n, unit_secs)), "{:?}", text);
    }

    #[test]
    fn waits_mean_what_they_say(n in number(), unit in 0..3u8, (g0, g1) in (gap(), gap())) {
        let (text, meant) = match unit {
            // `u64::MAX` ms and beyond are too large.
            0 => (
                format!("{g0}{n}{g1}ms{g1}"),
                match n {
                    0 => Meant::Zero,
                    u64::MAX => Meant::TooLarge,
                    n => Meant::Value(n),
                },
            ),
            1 => (format!("{g0}{n}s{g1}"), millis(n, 1)),
            _ => (format!("{g0}{n}m{g1}"), millis(n, 60)),
        };
        prop_assert_eq!(answered(parse_wait(&text)), Some(meant), "{:?}", text);
    }

    #[test]
    fn waits_past_any_number_are_too_large(
        zeros in 0usize..3,
        digits in prop::collection::vec(prop::char::range('0', '9'), 20..60),
    ) {
        // Twenty digits or more after the leading zeros: at least 10^19 ms (fits in `u64`), or
        // more than `u64` holds (too large). Never a wait of some other length.
        let digits: String = digits.into_iter().collect();
        let text = format!("{}9{digits}ms", "0".repeat(zeros));
        let meant = match text.trim_end_matches("ms").parse::<u64>() {
            Ok(n) if n < u64::MAX => Meant::Value(n),
            _ => Meant::TooLarge,
        };
        prop_assert_eq!(answered(parse_wait(&text)), Some(meant), "{:?}", text);
    }

    #[test]
    fn period_and_wait_garbage_never_panics(
        text in prop_oneof![garbage_text(), mutated(number().prop_map(|n| format!("{n}ms")))],
    ) {
        let (period, peak) = peak_during(|| parse_period(&text));
        prop_assert!(peak <= memory_bound(text.len()));
        match period {
            Ok(secs) => prop_assert!(secs >= 1),
            Err(error) => prop_assert!(message_is_bounded(&error, &text)),
        }
        let (wait, peak) = peak_during(|| parse_wait(&text));
        prop_assert!(peak <= memory_bound(text.len()));
        match wait {
            Ok(millis) => prop_assert!(millis >= 1),
            Err(error) => prop_assert!(message_is_bounded(&error, &text)),
        }
    }
}

// ---- Header keys ----

#[get("/keyed")]
#[ratelimit(limit = 2, per = 60, scope = "header:X-API-Key")]
async fn keyed() -> &'static str {
    "ok"
}

#[test]
fn header_keys_never_escape_the_limit() {
    // One app for all the cases, on one runtime: each case starts an hour after the last, when
    // every budget (60 s) is whole again.
    let system = actix_web::rt::System::new();
    let clock = ManualClock::at_secs(T0);
    let limiter = RateLimiter::builder().clock(clock.clone()).build().unwrap();
    let app = system.block_on(test::init_service(
        App::new().app_data(limiter).service(keyed),
    ));
    let send = async |req: TestRequest| {
        let res = test::call_service(&app, req.to_request()).await;
        let remaining = res
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        (res.status(), remaining)
    };
    proptest!(config(), |(requests in prop::collection::vec(keyed_request(), 1..12))| {
        clock.advance(Duration::from_secs(3_600));
        system.block_on(check_keyed(&send, &requests))?;
    });
}

#[cfg(feature = "overrides-file")]
mod overrides_files {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use ratelimit_runtime::OverrideError;

    use super::*;

    // ---- Overrides files ----

    /// A limiter reading overrides from a file of its own, TOML or JSON by its extension.
    struct OverridesFile {
        path: PathBuf,
        limiter: RateLimiter,
    }

    impl OverridesFile {
        fn new(extension: &str) -> OverridesFile {
            let dir =
                std::env::temp_dir().join(format!("ratelimit-properties-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("overrides.{extension}"));
            std::fs::write(&path, "").unwrap();
            let limiter = RateLimiter::builder()
                .overrides_file(&path)
                .build()
                .unwrap();
            OverridesFile { path, limiter }
        }

        /// Writes `contents` and reads the file again, as an operator's edit would have it.
        fn load(&self, contents: &[u8]) -> Result<usize, OverrideError> {
            // A new file each time: truncating one that has data makes ext4 write it out first,
            // which was most of the time of these tests.
            std::fs::remove_file(&self.path).unwrap();
            std::fs::write(&self.path, contents).unwrap();
            self.limiter.reload_overrides()
        }
    }

    impl Drop for OverridesFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Rule names no handler of this test has (those are checked against the rules as well).
    fn rule_name() -> impl Strategy<Value = String> {
        prop::string::string_regex("x-[a-z0-9_-]{1,12}").unwrap()
    }

    /// A table of overrides, each rate well-formed or not.
    fn overrides_table() -> impl Strategy<Value = BTreeMap<String, String>> {
        let rate = prop_oneof![
            4 => rate_text(),
            1 => rates_text(1..4),
            1 => prop::string::string_regex("[0-9a-z /;]{0,20}").unwrap(),
        ];
        prop::collection::btree_map(rule_name(), rate, 0..8)
    }

    /// `table` as TOML: one `"rule" = "rate"` a line.
    fn as_toml(table: &BTreeMap<String, String>) -> String {
        table
            .iter()
            .map(|(rule, rate)| format!("\"{rule}\" = \"{rate}\"\n"))
            .collect()
    }

    /// `table` as a JSON object.
    fn as_json(table: &BTreeMap<String, String>) -> String {
        serde_json::to_string(table).unwrap()
    }

    /// Structures a parser may recurse into, `depth` levels deep, in TOML.
    fn deep_toml(depth: usize, kind: u8) -> String {
        match kind {
            0 => format!("a = {}1{}", "[".repeat(depth), "]".repeat(depth)),
            1 => format!("a = {}{}", "{ b = ".repeat(depth), "}".repeat(depth)),
            2 => format!("{} = \"1/second\"", vec!["a"; depth].join(".")),
            3 => format!("[{}]\nx = \"1/second\"", vec!["a"; depth].join(".")),
            _ => format!("{}a = 1", "[[a]]\n".repeat(depth)),
        }
    }

    /// Structures a parser may recurse into, `depth` levels deep, in JSON.
    fn deep_json(depth: usize, kind: u8) -> String {
        match kind {
            0 => format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
            1 => format!(
                "{}\"1/second\"{}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            ),
            _ => format!("{{\"a\":{}\"x\"{}}}", "[".repeat(depth), "]".repeat(depth)),
        }
    }

    /// File contents: a well-formed table, one edit away from it, deep nesting, huge numbers and
    /// strings, or raw bytes (most not UTF-8).
    fn file_contents(
        well_formed: fn(&BTreeMap<String, String>) -> String,
        deep: fn(usize, u8) -> String,
    ) -> impl Strategy<Value = Vec<u8>> {
        let well_formed = overrides_table().prop_map(move |t| well_formed(&t)).boxed();
        // Far deeper than any parser's recursion limit, mostly not much deeper.
        let depth = prop_oneof![1usize..200, 200usize..2_000];
        let deep = (depth, 0..5u8).prop_map(move |(depth, kind)| deep(depth, kind));
        let huge = (
            prop::sample::select(vec!["9", "\"", "x", "["]),
            1usize..30_000,
        )
            .prop_map(|(unit, n)| format!("a = {}", unit.repeat(n)));
        let text = prop::string::string_regex("[a-z0-9 =\"'{}\\[\\],.:\n#-]{0,60}").unwrap();
        prop_oneof![
            3 => well_formed.clone().prop_map(String::into_bytes),
            3 => mutated(well_formed).prop_map(String::into_bytes),
            1 => deep.prop_map(String::into_bytes),
            1 => huge.prop_map(String::into_bytes),
            1 => text.prop_map(String::into_bytes),
            2 => any::<Vec<u8>>(),
        ]
    }

    // The overrides files: one limiter per format for all the cases, each case a new edit of its
    // file (building a limiter per case would start a file watcher per case).

    #[test]
    fn overrides_toml_files_give_a_table_or_an_error() {
        overrides_file_property("toml", as_toml, deep_toml);
    }

    #[test]
    fn overrides_json_files_give_a_table_or_an_error() {
        overrides_file_property("json", as_json, deep_json);
    }

    fn overrides_file_property(
        extension: &str,
        well_formed: fn(&BTreeMap<String, String>) -> String,
        deep: fn(usize, u8) -> String,
    ) {
        let file = OverridesFile::new(extension);
        proptest!(config(), |(contents in file_contents(well_formed, deep))| {
            let (loaded, peak) = peak_during(|| file.load(&contents));
            let bound = memory_bound(contents.len());
            prop_assert!(peak <= bound, "{} bytes held for {} of input", peak, contents.len());
            match loaded {
                // At least `a="1/day"` and a line break for each: never more entries than the file
                // has room for.
                Ok(count) => prop_assert!(count * 9 <= contents.len()),
                Err(error) => prop_assert!(matches!(error, OverrideError::File { .. }), "{:?}", error),
            }
        });
        // Well-formed files: the table they hold when every rate parses, refused whole otherwise.
        proptest!(config(), |(table in overrides_table())| {
            let valid = table.values().all(|rate| Quota::parse_many(rate).is_ok());
            let loaded = file.load(well_formed(&table).as_bytes());
            if valid {
                prop_assert_eq!(loaded, Ok(table.len()));
            } else {
                prop_assert!(matches!(loaded, Err(OverrideError::File { .. })), "{:?}", loaded);
            }
        });
    }
}
