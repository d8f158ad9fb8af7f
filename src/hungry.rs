//! A "hungry" load client that hammers a rate-limited HTTP endpoint while
//! honouring `429 Too Many Requests` answers.
//!
//! The client sends a fixed number of requests, paced at a target rate in
//! requests per minute. When the server answers `429`, the client reads the
//! `Retry-After` header (delta-seconds or HTTP-date), waits that long (capped
//! by [`Config::max_wait`]) and retries the same request, provided the method is
//! idempotent. Without a usable `Retry-After` it falls back to exponential
//! backoff starting at one second. An overall deadline ([`Config::max_time`])
//! bounds the whole run.
//!
//! Everything that does not need the network is a pure function so that it can
//! be unit tested: [`parse_retry_after`], [`is_idempotent`], [`Backoff`],
//! [`parse_header`], [`parse_url`], [`parse_rpm`], [`format_summary`], …
//! The network part is [`run`], which returns a [`Summary`].
//!
//! The `hungryclient` example is the command-line front end:
//!
//! ```text
//! cargo run --example hungryclient -- --url http://127.0.0.1:8080/rate-limited --rpm 600
//! ```

use std::{
    borrow::Cow,
    fmt,
    io::{self, BufRead, Write},
    str::FromStr,
    time::{Duration, SystemTime},
};

use actix_web::{
    http::{
        header::{HeaderName, HeaderValue, HttpDate, DATE, RETRY_AFTER, USER_AGENT},
        Method, StatusCode, Uri,
    },
    rt::time::{sleep, sleep_until, timeout, Instant},
};
use awc::error::{ConnectError, SendRequestError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// URL used when none is given on the command line or at the prompt.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/rate-limited";
/// Target rate (requests per minute) used when none is given.
pub const DEFAULT_RPM: f64 = 600.0;
/// Number of requests sent when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 100;
/// Default cap, in seconds, on a single wait after a `429`.
pub const DEFAULT_MAX_WAIT_SECS: u64 = 120;
/// Default overall deadline of a run, in seconds.
pub const DEFAULT_MAX_TIME_SECS: u64 = 600;
/// Default timeout, in seconds, of a single HTTP request.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// First delay of the exponential backoff used when `Retry-After` is unusable.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Largest response body read (and discarded) so that connections can be reused.
const BODY_LIMIT: usize = 256 * 1024;

/// Value of the `User-Agent` header unless the user sets one.
const CLIENT_USER_AGENT: &str = concat!("hungryclient/", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------
// Configuration and input validation
// ---------------------------------------------------------------------------

/// An invalid command-line or interactive input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL could not be used.
    Url {
        /// What the user typed.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The rate is not a positive, finite number of requests per minute.
    Rate {
        /// What the user typed.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `-H/--header` argument is not of the form `Name: value`.
    Header {
        /// What the user typed.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP method is not a valid token.
    Method {
        /// What the user typed.
        input: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url { input, reason } => write!(f, "invalid URL {input:?}: {reason}"),
            Self::Rate { input, reason } => write!(f, "invalid rate {input:?}: {reason}"),
            Self::Header { input, reason } => write!(f, "invalid header {input:?}: {reason}"),
            Self::Method { input } => write!(f, "invalid HTTP method {input:?}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses and checks the target URL.
///
/// Only absolute `http://` URLs with a host are accepted; this build of the
/// HTTP client has no TLS support, so `https://` is rejected up front rather
/// than failing on every request.
pub fn parse_url(input: &str) -> Result<Uri, ConfigError> {
    let trimmed = input.trim();
    let error = |reason: &str| ConfigError::Url {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let uri = Uri::from_str(trimmed).map_err(|err| error(&err.to_string()))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {
            return Err(error(
                "https is not supported (the client is built without TLS); use http://",
            ))
        }
        Some(_) => return Err(error("only http:// URLs are supported")),
        None => {
            return Err(error(
                "expected an absolute URL such as http://host:port/path",
            ))
        }
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(uri),
        _ => Err(error("the URL has no host")),
    }
}

/// Time between two requests for a rate of `rpm` requests per minute.
pub fn interval_for_rpm(rpm: f64) -> Result<Duration, ConfigError> {
    let error = |reason: &str| ConfigError::Rate {
        input: rpm.to_string(),
        reason: reason.to_owned(),
    };
    if !rpm.is_finite() {
        return Err(error("the rate must be a finite number"));
    }
    if rpm <= 0.0 {
        return Err(error("the rate must be greater than 0 requests per minute"));
    }
    Duration::try_from_secs_f64(60.0 / rpm).map_err(|_| error("the rate is too small"))
}

/// Parses a rate in requests per minute, such as `600` or `0.5`.
///
/// The value must be positive and finite; see [`interval_for_rpm`].
pub fn parse_rpm(input: &str) -> Result<f64, ConfigError> {
    let rpm: f64 = input.trim().parse().map_err(|_| ConfigError::Rate {
        input: input.to_owned(),
        reason: "expected a number of requests per minute".to_owned(),
    })?;
    interval_for_rpm(rpm).map_err(|err| match err {
        ConfigError::Rate { reason, .. } => ConfigError::Rate {
            input: input.to_owned(),
            reason,
        },
        other => other,
    })?;
    Ok(rpm)
}

/// Parses a `-H/--header` argument of the form `Name: value`.
///
/// Whitespace around the name and the value is ignored; the value may itself
/// contain colons and may be empty.
pub fn parse_header(input: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let error = |reason: String| ConfigError::Header {
        input: input.to_owned(),
        reason,
    };
    let (name, value) = input
        .split_once(':')
        .ok_or_else(|| error("expected \"Name: value\"".to_owned()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(error("the header name is empty".to_owned()));
    }
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| error(format!("{name:?} is not a valid header name")))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| error("the value contains characters not allowed in a header".to_owned()))?;
    Ok((name, value))
}

/// Parses an HTTP method; lower case is accepted (`post` becomes `POST`).
pub fn parse_method(input: &str) -> Result<Method, ConfigError> {
    let upper = input.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Err(ConfigError::Method {
            input: input.to_owned(),
        });
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| ConfigError::Method {
        input: input.to_owned(),
    })
}

/// Whether a request with this method may be repeated safely (RFC 9110 §9.2.2).
///
/// Only idempotent requests are retried after a `429`.
pub fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ]
    .contains(method)
}

/// Asks `question` on `output` and reads one line from `input`.
///
/// An empty answer, or end of input, yields `default`. The answer is trimmed.
pub fn prompt_with_default<R, W>(
    input: &mut R,
    output: &mut W,
    question: &str,
    default: &str,
) -> io::Result<String>
where
    R: BufRead,
    W: Write,
{
    write!(output, "{question} [{default}]: ")?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_owned()
    } else {
        answer.to_owned()
    })
}

/// Everything [`run`] needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Target URL.
    pub url: Uri,
    /// Time between two consecutive requests (`60 s / rpm`); zero means
    /// no pacing at all.
    pub interval: Duration,
    /// Number of requests that should succeed.
    pub requests: u64,
    /// HTTP method of every request.
    pub method: Method,
    /// Extra headers sent with every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Cap on a single wait after a `429`.
    pub max_wait: Duration,
    /// Deadline of the whole run, counted from its start.
    pub max_time: Duration,
    /// Timeout of a single request.
    pub request_timeout: Duration,
    /// Whether to draw a progress bar on stdout.
    pub progress: bool,
}

impl Config {
    /// A configuration with the default settings for everything except the
    /// URL and the pacing interval (see [`interval_for_rpm`]).
    ///
    /// The progress bar is off by default.
    pub fn new(url: Uri, interval: Duration) -> Self {
        Self {
            url,
            interval,
            requests: DEFAULT_REQUESTS,
            method: Method::GET,
            headers: Vec::new(),
            max_wait: Duration::from_secs(DEFAULT_MAX_WAIT_SECS),
            max_time: Duration::from_secs(DEFAULT_MAX_TIME_SECS),
            request_timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            progress: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Retry-After and backoff
// ---------------------------------------------------------------------------

/// Parses a `Retry-After` header value into the delay to wait.
///
/// The value is either a number of seconds (`120`) or an HTTP-date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, or one of the two obsolete date formats).
/// A date is converted into a delay relative to `now`; a date in the past
/// means no delay. Anything else (negative or fractional numbers, garbage)
/// yields `None`. A number of seconds too large for a `u64` saturates.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits, so the only possible parse error is overflow.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date: SystemTime = HttpDate::from_str(value).ok()?.into();
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff: `initial`, `2 × initial`, `4 × initial`, …, each delay
/// capped at `cap`.
///
/// It is an endless iterator; use [`Iterator::take`] to bound it.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts a backoff sequence.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self { next: initial, cap }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next.min(self.cap);
        self.next = self.next.saturating_mul(2).min(self.cap);
        Some(current)
    }
}

/// Why the client is waiting after a `429`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The server's `Retry-After` header.
    RetryAfter,
    /// The server's `Retry-After` header, but reduced to the `--max-wait` cap.
    RetryAfterCapped,
    /// Exponential backoff, because `Retry-After` was missing or unusable.
    Backoff,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RetryAfter => "Retry-After",
            Self::RetryAfterCapped => "Retry-After, capped",
            Self::Backoff => "backoff",
        })
    }
}

/// Chooses how long to wait after a `429`: the parsed `Retry-After` delay
/// capped at `max_wait`, or else the next step of `backoff`.
pub fn retry_delay(
    retry_after: Option<Duration>,
    backoff: &mut Backoff,
    max_wait: Duration,
) -> (Duration, WaitReason) {
    match retry_after {
        Some(delay) if delay > max_wait => (max_wait, WaitReason::RetryAfterCapped),
        Some(delay) => (delay, WaitReason::RetryAfter),
        None => (
            backoff.next().unwrap_or(max_wait).min(max_wait),
            WaitReason::Backoff,
        ),
    }
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

/// The outcome of a [`run`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests that should have succeeded.
    pub planned: u64,
    /// HTTP attempts made, retries included.
    pub sent: u64,
    /// Responses with a 2xx status (one per successful planned request).
    pub succeeded: u64,
    /// Responses with status `429`.
    pub rate_limited: u64,
    /// Responses with any other status.
    pub other_status: u64,
    /// Attempts that failed without a response (connection refused, timeout…).
    pub errors: u64,
    /// Planned requests given up on: non-2xx final answer or network error.
    pub failed: u64,
    /// Waits performed because of a `429`.
    pub waits: u64,
    /// Total time spent in those waits.
    pub waited: Duration,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
    /// Target rate in requests per minute (infinite when unpaced).
    pub target_rpm: f64,
    /// Whether the run stopped because of the `--max-time` deadline.
    pub deadline_reached: bool,
    /// Distinct network error messages, with how often each occurred.
    pub error_messages: Vec<(String, u64)>,
}

impl Summary {
    /// Whether every planned request eventually got a 2xx answer.
    pub fn all_succeeded(&self) -> bool {
        self.succeeded == self.planned
    }

    /// Planned requests that were neither completed nor given up on, because
    /// the deadline stopped the run.
    pub fn unfinished(&self) -> u64 {
        self.planned
            .saturating_sub(self.succeeded.saturating_add(self.failed))
    }

    /// Attempts per minute over the whole run.
    pub fn sent_per_minute(&self) -> f64 {
        per_minute(self.sent, self.elapsed)
    }

    /// 2xx responses per minute over the whole run.
    pub fn succeeded_per_minute(&self) -> f64 {
        per_minute(self.succeeded, self.elapsed)
    }

    fn record_error(&mut self, message: String) -> bool {
        self.errors += 1;
        if let Some((_, count)) = self.error_messages.iter_mut().find(|(m, _)| *m == message) {
            *count += 1;
            false
        } else {
            self.error_messages.push((message, 1));
            true
        }
    }
}

fn per_minute(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        // u64 -> f64 may round for astronomically large counts; fine for a rate.
        count as f64 * 60.0 / secs
    } else {
        0.0
    }
}

fn format_secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

fn format_rate(rpm: f64) -> String {
    if rpm.is_finite() {
        format!("{rpm:.1} req/min")
    } else {
        "unlimited".to_owned()
    }
}

/// Renders the summary as a two-column text table, followed by the list of
/// distinct network errors if there were any.
pub fn format_summary(summary: &Summary) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("requests planned", summary.planned.to_string()),
        ("requests sent (attempts)", summary.sent.to_string()),
        ("2xx responses", summary.succeeded.to_string()),
        ("429 responses", summary.rate_limited.to_string()),
        ("other statuses", summary.other_status.to_string()),
        ("network errors", summary.errors.to_string()),
        ("requests given up", summary.failed.to_string()),
    ];
    if summary.deadline_reached {
        rows.push(("not done (deadline)", summary.unfinished().to_string()));
    }
    rows.extend([
        ("waits after 429", summary.waits.to_string()),
        ("total time waited", format_secs(summary.waited)),
        ("elapsed time", format_secs(summary.elapsed)),
        ("target rate", format_rate(summary.target_rpm)),
        (
            "effective rate (sent)",
            format_rate(summary.sent_per_minute()),
        ),
        (
            "effective rate (2xx)",
            format_rate(summary.succeeded_per_minute()),
        ),
    ]);

    let left = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let right = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let rule = format!("+-{}-+-{}-+\n", "-".repeat(left), "-".repeat(right));

    let mut out = String::from("Summary\n");
    out.push_str(&rule);
    for (key, value) in &rows {
        out.push_str(&format!("| {key:<left$} | {value:>right$} |\n"));
    }
    out.push_str(&rule);
    if summary.deadline_reached {
        out.push_str("Stopped early: the --max-time deadline was reached.\n");
    }
    if !summary.error_messages.is_empty() {
        out.push_str("Network errors:\n");
        for (message, count) in &summary.error_messages {
            out.push_str(&format!("  {count:>6} x {message}\n"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// Turns a send error into a message that says what to check.
fn describe_send_error(err: &SendRequestError, url: &Uri) -> String {
    let authority = url.authority().map_or("the server", |a| a.as_str());
    match err {
        SendRequestError::Connect(ConnectError::Io(io))
            if io.kind() == io::ErrorKind::ConnectionRefused =>
        {
            format!("connection refused by {authority} (is the server running?)")
        }
        SendRequestError::Connect(ConnectError::Timeout) => {
            format!("timed out while connecting to {authority}")
        }
        SendRequestError::Connect(ConnectError::Resolver(_) | ConnectError::NoRecords) => {
            format!("could not resolve the host of {authority}")
        }
        SendRequestError::Connect(ConnectError::SslIsNotSupported) => {
            "https is not supported (the client is built without TLS)".to_owned()
        }
        SendRequestError::Timeout => "timed out waiting for the response".to_owned(),
        other => other.to_string(),
    }
}

/// What one HTTP attempt produced.
enum Attempt {
    /// A response with this status; for a `429`, the parsed `Retry-After`.
    Response {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// No response.
    Error(String),
    /// The run deadline passed while waiting for the response.
    Deadline,
}

/// Live progress display; a hidden bar when disabled.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(enabled: bool, len: u64) -> Self {
        if !enabled {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{spinner} [{bar:16}] {pos}/{len} {prefix} {wide_msg}")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }

    fn status(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    fn counts(&self, summary: &Summary) {
        let mut prefix = format!("2xx:{} 429:{}", summary.succeeded, summary.rate_limited);
        // Rare outcomes only take room on the line once they happen.
        if summary.other_status > 0 {
            prefix.push_str(&format!(" other:{}", summary.other_status));
        }
        if summary.errors > 0 {
            prefix.push_str(&format!(" err:{}", summary.errors));
        }
        self.bar.set_prefix(prefix);
    }

    /// Prints a line on stderr without garbling the bar.
    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("hungryclient: {message}"));
    }

    fn advance(&self) {
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// State of one run.
struct Runner<'a> {
    config: &'a Config,
    client: awc::Client,
    progress: Progress,
    summary: Summary,
    deadline: Option<Instant>,
}

impl Runner<'_> {
    /// Whether something planned for `at` (or never, for `None`) would be
    /// after the deadline.
    fn after_deadline(&self, at: Option<Instant>) -> bool {
        match (at, self.deadline) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(at), Some(deadline)) => at > deadline,
        }
    }

    fn stop_at_deadline(&mut self, why: &str) {
        self.summary.deadline_reached = true;
        self.progress
            .note(&format!("stopping early (--max-time): {why}"));
    }

    /// Sends one request and reads (and discards) its body.
    async fn attempt(&self) -> Attempt {
        let mut request = self
            .client
            .request(self.config.method.clone(), self.config.url.clone());
        for (name, value) in &self.config.headers {
            request = request.append_header((name.clone(), value.clone()));
        }
        request = request.insert_header_if_none((USER_AGENT, CLIENT_USER_AGENT));

        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status();
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
                // Measure an HTTP-date against the server's clock when it
                // tells us its time, to be immune to clock skew.
                let now = response
                    .headers()
                    .get(DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| HttpDate::from_str(v).ok())
                    .map_or_else(SystemTime::now, SystemTime::from);
                response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now))
            } else {
                None
            };
            if let Err(err) = response.body().limit(BODY_LIMIT).await {
                log::debug!("could not read the response body: {err}");
            }
            Ok::<_, SendRequestError>(Attempt::Response {
                status,
                retry_after,
            })
        };

        let outcome = match self.deadline {
            Some(deadline) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match timeout(remaining, exchange).await {
                    Ok(result) => result,
                    Err(_) => return Attempt::Deadline,
                }
            }
            None => exchange.await,
        };
        outcome.unwrap_or_else(|err| Attempt::Error(describe_send_error(&err, &self.config.url)))
    }

    /// Sleeps for `total`, showing a countdown; returns the time really waited.
    async fn wait(&self, total: Duration, reason: WaitReason) -> Duration {
        let start = Instant::now();
        let end = start.checked_add(total);
        loop {
            let remaining = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => total,
            };
            if remaining.is_zero() {
                break;
            }
            let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
            self.progress.status(format!("waiting {secs}s ({reason})"));
            sleep(remaining.min(Duration::from_secs(1))).await;
        }
        start.elapsed()
    }

    async fn run(mut self) -> Summary {
        let started = Instant::now();
        self.deadline = started.checked_add(self.config.max_time);
        let total = self.config.requests;
        let retry_429 = is_idempotent(&self.config.method);
        let mut next_send = Some(started);
        self.progress.counts(&self.summary);
        self.progress.status("starting");

        'requests: for index in 1..=total {
            let mut backoff = Backoff::new(INITIAL_BACKOFF, self.config.max_wait);
            loop {
                if self.after_deadline(next_send) {
                    self.stop_at_deadline("the next request would start too late");
                    break 'requests;
                }
                if let Some(at) = next_send {
                    if at > Instant::now() {
                        self.progress.status("pacing");
                        sleep_until(at).await;
                    }
                }

                self.progress.status(format!("sending #{index}"));
                let sent_at = Instant::now();
                next_send = sent_at.checked_add(self.config.interval);
                self.summary.sent += 1;
                let attempt = self.attempt().await;

                let (retry_after, retry) = match attempt {
                    Attempt::Deadline => {
                        self.stop_at_deadline("no response before the deadline");
                        break 'requests;
                    }
                    Attempt::Error(message) => {
                        if self.summary.record_error(message.clone()) {
                            self.progress.note(&message);
                        }
                        self.summary.failed += 1;
                        self.progress.counts(&self.summary);
                        self.progress.advance();
                        break;
                    }
                    Attempt::Response { status, .. } if status.is_success() => {
                        self.summary.succeeded += 1;
                        self.progress.counts(&self.summary);
                        self.progress.advance();
                        break;
                    }
                    Attempt::Response {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        retry_after,
                    } => {
                        self.summary.rate_limited += 1;
                        (retry_after, retry_429)
                    }
                    Attempt::Response { status, .. } => {
                        log::debug!("request {index}: unexpected status {status}");
                        self.summary.other_status += 1;
                        self.summary.failed += 1;
                        self.progress.counts(&self.summary);
                        self.progress.advance();
                        break;
                    }
                };

                // A 429. Non-idempotent requests are not repeated, but the
                // server's wish is still honoured before the next request.
                self.progress.counts(&self.summary);
                if !retry {
                    self.summary.failed += 1;
                    self.progress.advance();
                    if index == total {
                        break 'requests;
                    }
                }
                let (delay, reason) = retry_delay(retry_after, &mut backoff, self.config.max_wait);
                if self.after_deadline(Instant::now().checked_add(delay)) {
                    self.stop_at_deadline(&format!(
                        "waiting {:.1}s ({reason}) would pass the deadline",
                        delay.as_secs_f64()
                    ));
                    break 'requests;
                }
                let waited = self.wait(delay, reason).await;
                self.summary.waits += 1;
                self.summary.waited += waited;
                if !retry {
                    break;
                }
            }
        }

        self.summary.elapsed = started.elapsed();
        self.progress.finish();
        self.summary
    }
}

/// Runs the load test described by `config` and returns its [`Summary`].
///
/// Must be called from within an actix (Tokio current-thread) runtime, for
/// example under `#[actix_web::main]` or `#[actix_web::test]`. Requests are
/// sent one at a time. Network errors are counted and reported on stderr,
/// never propagated.
pub async fn run(config: &Config) -> Summary {
    let client = awc::Client::builder()
        .timeout(config.request_timeout)
        .finish();
    let target_rpm = if config.interval.is_zero() {
        f64::INFINITY
    } else {
        60.0 / config.interval.as_secs_f64()
    };
    let runner = Runner {
        config,
        client,
        progress: Progress::new(config.progress, config.requests),
        summary: Summary {
            planned: config.requests,
            target_rpm,
            ..Summary::default()
        },
        deadline: None,
    };
    runner.run().await
}

#[cfg(test)]
mod tests {
    use std::{
        io::Cursor,
        net::{SocketAddr, TcpListener},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::UNIX_EPOCH,
    };

    use actix_web::{web, App, HttpResponse, HttpServer};

    use super::*;

    /// `Sun, 06 Nov 1994 08:49:37 GMT`, the example date of RFC 9110.
    fn rfc_example_date() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_dates() {
        let date = rfc_example_date();
        let before = date - Duration::from_secs(30);
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(value, before),
                Some(Duration::from_secs(30)),
                "{value}"
            );
        }
        let after = date + Duration::from_secs(5);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", after),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage() {
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
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn idempotent_methods() {
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            let method = parse_method(method).expect("valid method");
            assert!(is_idempotent(&method), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "PURGE"] {
            let method = parse_method(method).expect("valid method");
            assert!(!is_idempotent(&method), "{method}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert_eq!(parse_method(" GET "), Ok(Method::GET));
        assert!(parse_method("").is_err());
        assert!(parse_method("GE T").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let secs = |s| Duration::from_secs(s);
        let delays: Vec<_> = Backoff::new(secs(1), secs(10)).take(6).collect();
        assert_eq!(
            delays,
            [secs(1), secs(2), secs(4), secs(8), secs(10), secs(10)]
        );

        let capped: Vec<_> = Backoff::new(secs(5), secs(3)).take(2).collect();
        assert_eq!(capped, [secs(3), secs(3)]);

        // Doubling never overflows.
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.nth(3), Some(Duration::MAX));
    }

    #[test]
    fn retry_delay_prefers_retry_after() {
        let secs = |s| Duration::from_secs(s);
        let mut backoff = Backoff::new(secs(1), secs(60));
        assert_eq!(
            retry_delay(Some(secs(7)), &mut backoff, secs(60)),
            (secs(7), WaitReason::RetryAfter)
        );
        assert_eq!(
            retry_delay(Some(secs(600)), &mut backoff, secs(60)),
            (secs(60), WaitReason::RetryAfterCapped)
        );
        // The backoff only advances when it is used.
        assert_eq!(
            retry_delay(None, &mut backoff, secs(60)),
            (secs(1), WaitReason::Backoff)
        );
        assert_eq!(
            retry_delay(None, &mut backoff, secs(60)),
            (secs(2), WaitReason::Backoff)
        );
    }

    #[test]
    fn headers() {
        let (name, value) = parse_header("X-API-Key: key1").expect("valid header");
        assert_eq!(name.as_str(), "x-api-key");
        assert_eq!(value, "key1");

        let (name, value) = parse_header("  Accept :text/html  ").expect("valid header");
        assert_eq!(name.as_str(), "accept");
        assert_eq!(value, "text/html");

        let (_, value) = parse_header("X-Url: http://a:1/b").expect("colons in value");
        assert_eq!(value, "http://a:1/b");

        let (_, value) = parse_header("X-Empty:").expect("empty value");
        assert_eq!(value, "");

        for bad in [
            "no colon",
            ": value",
            "Bad Name: x",
            "X-Ctl: a\u{1}b",
            "Ünï: x",
        ] {
            assert!(
                matches!(parse_header(bad), Err(ConfigError::Header { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls() {
        let uri = parse_url(" http://127.0.0.1:8080/rate-limited ").expect("valid URL");
        assert_eq!(uri.host(), Some("127.0.0.1"));
        assert_eq!(uri.port_u16(), Some(8080));
        assert!(parse_url(DEFAULT_URL).is_ok());

        for bad in [
            "",
            "127.0.0.1:8080/x",
            "/relative",
            "https://example.com/",
            "ftp://example.com/",
            "http:///nohost",
            "http://exa mple.com/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ConfigError::Url { .. })),
                "{bad:?}"
            );
        }
        let https = parse_url("https://example.com/").expect_err("https is rejected");
        assert!(https.to_string().contains("TLS"), "{https}");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rpm("600"), Ok(600.0));
        assert_eq!(interval_for_rpm(600.0), Ok(Duration::from_millis(100)));
        assert_eq!(interval_for_rpm(0.5), Ok(Duration::from_secs(120)));
        for bad in ["0", "-5", "abc", "", "NaN", "inf", "1e-300"] {
            assert!(
                matches!(parse_rpm(bad), Err(ConfigError::Rate { .. })),
                "{bad:?}"
            );
        }
        let zero = parse_rpm("0").expect_err("zero is rejected");
        assert!(zero.to_string().contains("greater than 0"), "{zero}");
    }

    #[test]
    fn prompts() {
        let mut shown = Vec::new();
        let answer = prompt_with_default(&mut Cursor::new("\n"), &mut shown, "URL", DEFAULT_URL)
            .expect("in-memory I/O");
        assert_eq!(answer, DEFAULT_URL);
        assert_eq!(
            String::from_utf8_lossy(&shown),
            format!("URL [{DEFAULT_URL}]: ")
        );

        let answer = prompt_with_default(
            &mut Cursor::new(" 42 \nrest"),
            &mut Vec::new(),
            "RPM",
            "600",
        )
        .expect("in-memory I/O");
        assert_eq!(answer, "42");

        let answer = prompt_with_default(&mut Cursor::new(""), &mut Vec::new(), "RPM", "600")
            .expect("in-memory I/O");
        assert_eq!(answer, "600", "end of input gives the default");
    }

    #[test]
    fn summary_table() {
        let summary = Summary {
            planned: 10,
            sent: 13,
            succeeded: 9,
            rate_limited: 3,
            other_status: 0,
            errors: 1,
            failed: 1,
            waits: 3,
            waited: Duration::from_millis(7_300),
            elapsed: Duration::from_secs(30),
            target_rpm: 60.0,
            deadline_reached: false,
            error_messages: vec![("connection refused by x:1".to_owned(), 1)],
        };
        let table = format_summary(&summary);
        let row = |label: &str| {
            table
                .lines()
                .find(|line| line.starts_with(&format!("| {label} ")))
                .unwrap_or_else(|| panic!("no row {label:?} in\n{table}"))
                .to_owned()
        };
        assert!(row("requests planned").ends_with(" 10 |"));
        assert!(row("requests sent (attempts)").ends_with(" 13 |"));
        assert!(row("2xx responses").ends_with(" 9 |"));
        assert!(row("429 responses").ends_with(" 3 |"));
        assert!(row("network errors").ends_with(" 1 |"));
        assert!(row("waits after 429").ends_with(" 3 |"));
        assert!(row("total time waited").ends_with(" 7.3 s |"));
        assert!(row("elapsed time").ends_with(" 30.0 s |"));
        assert!(row("effective rate (sent)").ends_with(" 26.0 req/min |"));
        assert!(row("effective rate (2xx)").ends_with(" 18.0 req/min |"));
        assert!(table.contains("1 x connection refused by x:1"));
        assert!(!table.contains("deadline"));

        // Every table line has the same width.
        let widths: Vec<_> = table
            .lines()
            .filter(|l| l.starts_with('|') || l.starts_with('+'))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");

        let stopped = Summary {
            deadline_reached: true,
            ..summary
        };
        let table = format_summary(&stopped);
        assert!(table.contains("deadline"), "{table}");
        assert!(stopped.unfinished() == 0);
        assert!(!stopped.all_succeeded());
    }

    #[test]
    fn connection_refused_is_explained() {
        let url = parse_url("http://127.0.0.1:9/x").expect("valid URL");
        let err =
            SendRequestError::Connect(ConnectError::Io(io::ErrorKind::ConnectionRefused.into()));
        let message = describe_send_error(&err, &url);
        assert_eq!(
            message,
            "connection refused by 127.0.0.1:9 (is the server running?)"
        );
    }

    /// Starts a server whose handler answers `429` with `Retry-After: 1` to the
    /// first `limited` requests and `200` afterwards. Returns its address, the
    /// request counter and a handle to stop it.
    fn start_server(
        limited: usize,
    ) -> io::Result<(SocketAddr, Arc<AtomicUsize>, actix_web::dev::ServerHandle)> {
        let hits = Arc::new(AtomicUsize::new(0));
        let data = web::Data::from(Arc::clone(&hits));
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).default_service(web::to(
                move |hits: web::Data<AtomicUsize>| async move {
                    if hits.fetch_add(1, Ordering::SeqCst) < limited {
                        HttpResponse::TooManyRequests()
                            .insert_header((RETRY_AFTER, "1"))
                            .body("slow down")
                    } else {
                        HttpResponse::Ok().body("ok")
                    }
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("server bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok((addr, hits, handle))
    }

    fn test_config(addr: SocketAddr, requests: u64) -> Config {
        let url = parse_url(&format!("http://{addr}/limited")).expect("valid URL");
        let mut config = Config::new(url, Duration::from_millis(10));
        config.requests = requests;
        config.max_time = Duration::from_secs(30);
        config
    }

    #[actix_web::test]
    async fn retries_after_429_until_success() {
        let (addr, hits, handle) = start_server(2).expect("test server starts");
        let summary = run(&test_config(addr, 3)).await;
        handle.stop(true).await;

        assert_eq!(summary.planned, 3);
        assert_eq!(summary.sent, 5, "{summary:?}");
        assert_eq!(summary.succeeded, 3, "{summary:?}");
        assert_eq!(summary.rate_limited, 2, "{summary:?}");
        assert_eq!(summary.other_status, 0, "{summary:?}");
        assert_eq!(summary.errors, 0, "{summary:?}");
        assert_eq!(summary.failed, 0, "{summary:?}");
        assert_eq!(summary.waits, 2, "{summary:?}");
        assert!(summary.waited >= Duration::from_secs(2), "{summary:?}");
        assert!(summary.waited < Duration::from_secs(10), "{summary:?}");
        assert!(summary.elapsed >= summary.waited, "{summary:?}");
        assert!(!summary.deadline_reached);
        assert!(summary.all_succeeded());
        assert_eq!(hits.load(Ordering::SeqCst), 5);
    }

    #[actix_web::test]
    async fn connection_refused_is_counted() {
        // Find a port nobody listens on: bind, note the port, release it.
        let addr = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let summary = run(&test_config(addr, 2)).await;

        assert_eq!(summary.sent, 2, "{summary:?}");
        assert_eq!(summary.errors, 2, "{summary:?}");
        assert_eq!(summary.failed, 2, "{summary:?}");
        assert_eq!(summary.succeeded, 0, "{summary:?}");
        assert!(!summary.all_succeeded());
        assert_eq!(summary.error_messages.len(), 1, "{summary:?}");
        assert!(
            summary.error_messages[0].0.contains("connection refused"),
            "{summary:?}"
        );
    }
}
