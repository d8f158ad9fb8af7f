//! The command-line side of `hungryclient`, the load client: input checks, the run loop
//! (N tasks sharing one paced client, at a target rate) and the summary.
//!
//! Pacing, `Retry-After`, backoff and the choice of what to retry are not here: they are the
//! `ratelimit-client` crate's, used through its awc wrapper, [`PacedClient`]. This module only
//! decides how many requests to send, how fast, and how to show what happened.
//!
//! ```text
//! cargo run -p ratelimit-client --features cli -- --url http://127.0.0.1:8080/data \
//!     -H "X-API-Key: key1" --rpm 600 --requests 30 --concurrency 4
//! ```

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    fmt,
    io::{self, BufRead, Write},
    rc::Rc,
    str::FromStr,
    time::Duration,
};

use actix_rt::time::{sleep_until, timeout, Instant};
use awc::error::{ConnectError, SendRequestError};
use awc::http::{
    header::{HeaderName, HeaderValue, USER_AGENT},
    Method, Uri,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ratelimit_client::awc::{PacedClient, SendError};
use ratelimit_client::{RetryPolicy, Stats};

/// URL used when none is given on the command line or at the prompt.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/rate-limited";
/// Target rate (requests per minute) used when none is given.
pub const DEFAULT_RPM: f64 = 600.0;
/// Number of requests sent when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 100;
/// Default wait budget of one request, in seconds: pacing and retries together.
pub const DEFAULT_MAX_WAIT_SECS: u64 = 120;
/// Default overall deadline of a run, in seconds.
pub const DEFAULT_MAX_TIME_SECS: u64 = 600;
/// Default timeout, in seconds, of a single HTTP request.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

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
    /// Time between two consecutive requests of the whole run (`60 s / rpm`), whichever task
    /// sends them; zero means no pacing beyond what the server says.
    pub interval: Duration,
    /// Number of requests that should succeed.
    pub requests: u64,
    /// Tasks sending at once, sharing one paced client.
    pub concurrency: usize,
    /// HTTP method of every request.
    pub method: Method,
    /// Extra headers sent with every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Wait budget of one request: pacing and retries together.
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
    /// One task; the progress bar is off by default.
    pub fn new(url: Uri, interval: Duration) -> Self {
        Self {
            url,
            interval,
            requests: DEFAULT_REQUESTS,
            concurrency: 1,
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
    /// Responses with status `429`, retried or not.
    pub rate_limited: u64,
    /// Final answers with any other status.
    pub other_status: u64,
    /// Requests that failed without a response (connection refused, timeout...).
    pub errors: u64,
    /// Planned requests given up on: non-2xx final answer, network error, or a wait longer than
    /// the wait budget.
    pub failed: u64,
    /// Times a request was held back, by pacing or before a retry.
    pub waits: u64,
    /// Time requests were held back, added over all tasks.
    pub waited: Duration,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
    /// Target rate in requests per minute (infinite when unpaced).
    pub target_rpm: f64,
    /// Whether the run stopped because of the `--max-time` deadline.
    pub deadline_reached: bool,
    /// Distinct network error messages, with how often each occurred.
    pub error_messages: Vec<(String, u64)>,
    /// What happened in each second of the run, from its start.
    pub timeline: Vec<Second>,
}

/// One second of a run (see [`Timeline`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Attempts sent, retries included.
    pub sent: u64,
    /// 2xx responses.
    pub succeeded: u64,
    /// `429` answers.
    pub rate_limited: u64,
    /// Time requests were held back in this second (pacing, `Retry-After`), over all tasks.
    pub waited: Duration,
}

/// The longest timeline kept (a run lasts at most `--max-time`; waits past this are cut).
const MAX_SECONDS: u64 = 1 << 20;

/// How often the counters are read to build the timeline.
const TIMELINE_TICK: Duration = Duration::from_millis(100);

/// Builds the per-second timeline from the counters, read every [`TIMELINE_TICK`]: what changed
/// since the last reading goes to the second it was seen in; a wait (counted when it starts,
/// with its length) is spread over the seconds it lasts. Waits begun between two readings
/// are taken as equally long, and a second never holds more waiting than its tasks can do
/// (the rest goes to the seconds after).
#[derive(Debug)]
pub struct Timeline {
    seconds: Vec<Second>,
    /// The last reading: the client's counters and the 2xx.
    last: (Stats, u64),
    /// The most waiting one second can hold: one second per task.
    capacity: Duration,
}

impl Timeline {
    /// The timeline of a run of `tasks` tasks.
    pub fn new(tasks: usize) -> Timeline {
        Timeline {
            seconds: Vec::new(),
            last: Default::default(),
            capacity: Duration::from_secs(u64::try_from(tasks.max(1)).unwrap_or(u64::MAX)),
        }
    }

    /// Takes a reading at `at` (from the start of the run): the client's counters and the 2xx
    /// so far.
    pub fn read(&mut self, at: Duration, stats: Stats, succeeded: u64) {
        let (last, last_succeeded) = std::mem::replace(&mut self.last, (stats, succeeded));
        let second = self.second(at.as_secs());
        second.sent += stats.sent.saturating_sub(last.sent);
        second.succeeded += succeeded.saturating_sub(last_succeeded);
        second.rate_limited += stats.rate_limited.saturating_sub(last.rate_limited);
        let begun = stats.waits.saturating_sub(last.waits);
        let length = stats.waited.saturating_sub(last.waited);
        if begun > 0 && !length.is_zero() {
            // Waits begun since the last reading: as many of equal length, from `at`.
            let each = length / u32::try_from(begun).unwrap_or(u32::MAX);
            self.spread(at, each, begun);
        }
    }

    /// `count` waits of `each`, from `start`.
    fn spread(&mut self, start: Duration, each: Duration, count: u64) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let mut left = each.saturating_mul(count);
        let mut from = start;
        // Bounded: each round fills a second or places all that is left.
        while !left.is_zero() && from.as_secs() < MAX_SECONDS {
            let second = from.as_secs();
            let until = Duration::from_secs(second + 1);
            let capacity = self.capacity;
            let slot = self.second(second);
            let room = capacity.saturating_sub(slot.waited);
            let time = ((until - from) * count).min(room).min(left);
            slot.waited += time;
            left -= time;
            from = until;
        }
    }

    fn second(&mut self, second: u64) -> &mut Second {
        let index = usize::try_from(second.min(MAX_SECONDS)).unwrap_or(0);
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    /// The seconds up to `elapsed` (waits that would last longer are cut there).
    pub fn finish(mut self, elapsed: Duration) -> Vec<Second> {
        let seconds = usize::try_from(elapsed.as_secs_f64().ceil() as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        self.seconds.resize(seconds, Second::default());
        self.seconds
    }
}

/// Draws the timeline: a row per second with its 2xx (`#`), 429s (`x`) and the share of the
/// second the tasks spent waiting (`~`, ten for all of them all the second).
pub fn format_timeline(timeline: &[Second], tasks: usize) -> String {
    const WIDTH: u64 = 50;
    let most = timeline
        .iter()
        .map(|s| s.succeeded + s.rate_limited)
        .max()
        .unwrap_or(0);
    // Each mark stands for `per` answers, so that the busiest second fits in WIDTH.
    let per = most.div_ceil(WIDTH).max(1);
    let mut out = String::from("Timeline (a row per second: # 2xx, x 429, ~ waiting");
    if per > 1 {
        out.push_str(&format!("; one mark per {per} answers"));
    }
    out.push_str(
        ")
     s    2xx    429  waited
",
    );
    let tasks = u32::try_from(tasks.max(1)).unwrap_or(u32::MAX);
    for (i, second) in timeline.iter().enumerate() {
        let share = second.waited.as_secs_f64() / f64::from(tasks);
        let waiting = (share * 10.0).round().clamp(0.0, 10.0) as usize;
        let marks =
            |count: u64, mark: &str| mark.repeat(usize::try_from(count.div_ceil(per)).unwrap_or(0));
        let mut bar = marks(second.succeeded, "#") + &marks(second.rate_limited, "x");
        if waiting > 0 {
            if !bar.is_empty() {
                bar.push(' ');
            }
            bar.push_str(&"~".repeat(waiting));
        }
        let line = format!(
            "{i:>6} {:>6} {:>6} {:>6.1}s {bar}",
            second.succeeded,
            second.rate_limited,
            second.waited.as_secs_f64(),
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The summary and the timeline as one JSON object (`--json`).
pub fn format_json(summary: &Summary) -> String {
    let timeline: Vec<_> = summary
        .timeline
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "second": i,
                "sent": s.sent,
                "succeeded": s.succeeded,
                "rate_limited": s.rate_limited,
                "waited_secs": s.waited.as_secs_f64(),
            })
        })
        .collect();
    let errors: Vec<_> = summary
        .error_messages
        .iter()
        .map(|(message, count)| serde_json::json!({"message": message, "count": count}))
        .collect();
    let rate = |rpm: f64| rpm.is_finite().then_some(rpm);
    serde_json::json!({
        "planned": summary.planned,
        "sent": summary.sent,
        "succeeded": summary.succeeded,
        "rate_limited": summary.rate_limited,
        "other_status": summary.other_status,
        "errors": summary.errors,
        "failed": summary.failed,
        "unfinished": summary.unfinished(),
        "waits": summary.waits,
        "waited_secs": summary.waited.as_secs_f64(),
        "elapsed_secs": summary.elapsed.as_secs_f64(),
        "target_rpm": rate(summary.target_rpm),
        "sent_per_minute": summary.sent_per_minute(),
        "succeeded_per_minute": summary.succeeded_per_minute(),
        "deadline_reached": summary.deadline_reached,
        "error_messages": errors,
        "timeline": timeline,
    })
    .to_string()
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

    /// Takes the attempt-level counts from the client's pacer.
    fn add_client_stats(&mut self, stats: Stats) {
        self.sent = stats.sent;
        self.rate_limited = stats.rate_limited;
        self.waits = stats.waits;
        self.waited = stats.waited;
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
        ("waits (pacing, retries)", summary.waits.to_string()),
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

    fn counts(&self, summary: &Summary, stats: Stats) {
        let mut prefix = format!("2xx:{} 429:{}", summary.succeeded, stats.rate_limited);
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

/// One run: the paced client and what the tasks share.
struct Run {
    config: Config,
    client: PacedClient,
    progress: Progress,
    summary: RefCell<Summary>,
    /// Requests not yet handed to a task.
    left: Cell<u64>,
    /// When the next request of the whole run may start (`--rpm`).
    next_send: Cell<Instant>,
}

impl Run {
    fn take_request(&self) -> bool {
        let left = self.left.get();
        self.left.set(left.saturating_sub(1));
        left > 0
    }

    /// Waits for this task's turn at the target rate.
    async fn pace(&self) {
        let slot = self.next_send.get().max(Instant::now());
        self.next_send.set(slot + self.config.interval);
        if slot > Instant::now() {
            sleep_until(slot).await;
        }
    }

    fn request(&self) -> awc::ClientRequest {
        let mut request = self
            .client
            .client()
            .request(self.config.method.clone(), self.config.url.clone());
        for (name, value) in &self.config.headers {
            request = request.append_header((name.clone(), value.clone()));
        }
        request.insert_header_if_none((USER_AGENT, CLIENT_USER_AGENT))
    }

    async fn send_one(&self) {
        self.progress.status("sending");
        let outcome = match self.client.send(self.request()).await {
            Ok(mut response) => {
                let status = response.status();
                if let Err(err) = response.body().limit(BODY_LIMIT).await {
                    log::debug!("could not read the response body: {err}");
                }
                Ok(status)
            }
            Err(err) => Err(err),
        };
        self.record(outcome);
        self.progress
            .counts(&self.summary.borrow(), self.client.pacer().stats());
        self.progress.advance();
    }

    fn record(&self, outcome: Result<awc::http::StatusCode, SendError>) {
        let mut summary = self.summary.borrow_mut();
        match outcome {
            Ok(status) if status.is_success() => summary.succeeded += 1,
            Ok(status) => {
                log::debug!("unexpected final status {status}");
                // A final 429 is counted among the 429s already.
                if status.as_u16() != 429 {
                    summary.other_status += 1;
                }
                summary.failed += 1;
            }
            Err(SendError::Send(err)) => {
                let message = describe_send_error(&err, &self.config.url);
                if summary.record_error(message.clone()) {
                    self.progress.note(&message);
                }
                summary.failed += 1;
            }
            Err(err) => {
                self.progress.note(&err.to_string());
                summary.failed += 1;
            }
        }
    }

    /// Adds a reading of the counters to `timeline`.
    fn read_into(&self, timeline: &mut Timeline, started: Instant) {
        let succeeded = self.summary.borrow().succeeded;
        timeline.read(started.elapsed(), self.client.pacer().stats(), succeeded);
    }

    async fn task(self: Rc<Self>) {
        while self.take_request() {
            self.pace().await;
            self.send_one().await;
        }
    }
}

/// Runs the load test described by `config` and returns its [`Summary`].
///
/// Must be called from within an actix (Tokio current-thread) runtime, for
/// binary under `#[actix_rt::main]` or `#[actix_web::test]`. `config.concurrency`
/// tasks share one [`PacedClient`], so that what one response says paces them all.
/// Network errors are counted and reported on stderr, never propagated.
pub async fn run(config: &Config) -> Summary {
    let client = awc::Client::builder()
        .timeout(config.request_timeout)
        .finish();
    let policy = RetryPolicy {
        wait_budget: config.max_wait,
        ..RetryPolicy::default()
    };
    let target_rpm = if config.interval.is_zero() {
        f64::INFINITY
    } else {
        60.0 / config.interval.as_secs_f64()
    };
    let started = Instant::now();
    let run = Rc::new(Run {
        config: config.clone(),
        client: PacedClient::new(client).with_policy(policy),
        progress: Progress::new(config.progress, config.requests),
        summary: RefCell::new(Summary {
            planned: config.requests,
            target_rpm,
            ..Summary::default()
        }),
        left: Cell::new(config.requests),
        next_send: Cell::new(started),
    });
    let mut tasks: Vec<_> = (0..config.concurrency.max(1))
        .map(|_| actix_rt::spawn(Rc::clone(&run).task()))
        .collect();
    let timeline = Rc::new(RefCell::new(Timeline::new(config.concurrency)));
    let reader = {
        let (run, timeline) = (Rc::clone(&run), Rc::clone(&timeline));
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(TIMELINE_TICK);
            loop {
                tick.tick().await;
                run.read_into(&mut timeline.borrow_mut(), started);
            }
        })
    };
    let all_done = async {
        for task in &mut tasks {
            if let Err(err) = task.await {
                log::warn!("a task failed: {err}");
            }
        }
    };
    let finished = timeout(config.max_time, all_done).await.is_ok();
    for task in &tasks {
        task.abort();
    }
    reader.abort();
    run.progress.finish();
    run.read_into(&mut timeline.borrow_mut(), started);
    let elapsed = started.elapsed();
    let mut summary = run.summary.borrow().clone();
    summary.timeline = timeline.replace(Timeline::new(1)).finish(elapsed);
    if !finished {
        summary.deadline_reached = true;
        run.progress
            .note("stopping early (--max-time): the deadline was reached");
    }
    summary.add_client_stats(run.client.pacer().stats());
    summary.elapsed = elapsed;
    summary
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
    };

    use actix_web::{http::header::RETRY_AFTER, web, App, HttpResponse, HttpServer};

    use super::*;

    #[test]
    fn methods() {
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert_eq!(parse_method(" GET "), Ok(Method::GET));
        assert!(parse_method("").is_err());
        assert!(parse_method("GE T").is_err());
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
            timeline: Vec::new(),
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
        assert!(row("waits (pacing, retries)").ends_with(" 3 |"));
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
    fn the_timeline_puts_each_reading_in_its_second_and_spreads_waits() {
        let mut timeline = Timeline::new(1);
        let ms = Duration::from_millis;
        // Attempts sent, 429s, waits begun and time waited so far.
        let stats = |sent, rate_limited, waits, waited| Stats {
            sent,
            rate_limited,
            waits,
            waited,
            ..Stats::default()
        };
        timeline.read(ms(100), stats(5, 1, 0, ms(0)), 4);
        // A 429's Retry-After of 1.5 s begins at 0.9 s: 0.1 s of it in second 0, 1 s in
        // second 1, 0.4 s in second 2.
        timeline.read(ms(900), stats(6, 2, 1, ms(1_500)), 4);
        timeline.read(ms(2_500), stats(9, 2, 1, ms(1_500)), 7);
        let seconds = timeline.finish(ms(2_600));
        assert_eq!(seconds.len(), 3);
        assert_eq!(
            seconds
                .iter()
                .map(|s| (s.sent, s.succeeded, s.rate_limited))
                .collect::<Vec<_>>(),
            [(6, 4, 2), (0, 0, 0), (3, 3, 0)]
        );
        let waited: Vec<_> = seconds.iter().map(|s| s.waited.as_millis()).collect();
        assert_eq!(waited, [100, 1_000, 400]);

        // Two tasks begin waits of 3 s and 1 s at 0.5 s: taken as 2 s each, at most 2 s of
        // waiting in a second.
        let mut two = Timeline::new(2);
        two.read(ms(500), stats(2, 2, 2, ms(4_000)), 0);
        let waited: Vec<_> = two
            .finish(ms(3_000))
            .iter()
            .map(|s| s.waited.as_millis())
            .collect();
        assert_eq!(waited, [1_000, 2_000, 1_000]);

        let drawn = format_timeline(&seconds, 1);
        let rows: Vec<&str> = drawn.lines().skip(2).collect();
        assert_eq!(rows[0], "     0      4      2    0.1s ####xx ~");
        assert_eq!(rows[1], "     1      0      0    1.0s ~~~~~~~~~~");
        assert_eq!(rows[2], "     2      3      0    0.4s ### ~~~~");
    }

    #[test]
    fn the_json_holds_the_summary_and_the_timeline() {
        let summary = Summary {
            planned: 2,
            sent: 3,
            succeeded: 2,
            rate_limited: 1,
            waits: 1,
            waited: Duration::from_secs(1),
            elapsed: Duration::from_secs(2),
            target_rpm: f64::INFINITY,
            timeline: vec![
                Second {
                    sent: 2,
                    succeeded: 1,
                    rate_limited: 1,
                    waited: Duration::from_millis(500),
                },
                Second {
                    sent: 1,
                    succeeded: 1,
                    rate_limited: 0,
                    waited: Duration::from_millis(500),
                },
            ],
            ..Summary::default()
        };
        let json: serde_json::Value = serde_json::from_str(&format_json(&summary)).unwrap();
        assert_eq!(json["succeeded"], 2);
        assert_eq!(json["rate_limited"], 1);
        assert_eq!(json["target_rpm"], serde_json::Value::Null, "unpaced");
        assert_eq!(json["timeline"][0]["rate_limited"], 1);
        assert_eq!(json["timeline"][1]["waited_secs"], 0.5);
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
        // Two waits of Retry-After: 1 each, counted from the 429s' arrival.
        assert!(summary.waited >= Duration::from_millis(1900), "{summary:?}");
        assert!(summary.elapsed >= Duration::from_secs(2), "{summary:?}");
        assert!(summary.waited < Duration::from_secs(10), "{summary:?}");
        assert!(summary.elapsed >= summary.waited, "{summary:?}");
        assert!(!summary.deadline_reached);
        assert!(summary.all_succeeded());
        assert_eq!(hits.load(Ordering::SeqCst), 5);
        // The timeline accounts for every answer, and shows the waits.
        let total = |f: fn(&Second) -> u64| summary.timeline.iter().map(f).sum::<u64>();
        assert_eq!(total(|s| s.succeeded), 3, "{:?}", summary.timeline);
        assert_eq!(total(|s| s.rate_limited), 2, "{:?}", summary.timeline);
        assert_eq!(total(|s| s.sent), 5, "{:?}", summary.timeline);
        let waited: Duration = summary.timeline.iter().map(|s| s.waited).sum();
        assert!(
            waited >= Duration::from_millis(1900),
            "{:?}",
            summary.timeline
        );
        assert_eq!(
            summary.timeline.len() as u64,
            summary.elapsed.as_secs_f64().ceil() as u64
        );
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
