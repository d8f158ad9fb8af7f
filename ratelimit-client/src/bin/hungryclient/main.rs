//! `hungryclient`: hammers a rate-limited endpoint at a given rate from N tasks sharing one
//! paced client, then prints a summary. The client (`ratelimit-client`'s awc wrapper) holds
//! requests while the server says the budget is spent, and retries a `429` after its
//! `Retry-After` when the method may be repeated.
//!
//! ```text
//! cargo run --example server            # in one terminal
//! cargo run -p ratelimit-client --features cli -- --url http://127.0.0.1:8080/rate-limited \
//!     --rpm 600 --requests 50 -H "X-API-Key: key1" --concurrency 4
//! ```
//!
//! It draws a progress bar while it runs (on a terminal), and at the end a summary and a
//! timeline, a row per second with its 2xx, its 429s and the time spent waiting, so that a
//! run shows the limit being hit and the reset; `--json` prints both as one JSON object.
//!
//! Without `--url` or `--rpm`, the client asks for them when stdin is a
//! terminal and uses the defaults otherwise. Exit status: 0 when every request
//! eventually succeeded, 1 otherwise, 2 on invalid input.
//! The run loop and the summary live in `hungry.rs`; pacing and retries in this crate's
//! library, through its awc wrapper.

use std::{
    error::Error,
    io::{self, IsTerminal, Write},
    process::ExitCode,
    time::Duration,
};

use awc::http::{
    header::{HeaderName, HeaderValue},
    Method, Uri,
};
use clap::Parser;
mod hungry;

use hungry::Config;

/// Hammer a rate-limited HTTP API at a fixed rate, paced by its rate-limit headers.
#[derive(Debug, Parser)]
#[command(name = "hungryclient", version)]
struct Cli {
    /// Target URL (http:// only) [asked for, or default http://127.0.0.1:8080/rate-limited]
    #[arg(long, value_parser = hungry::parse_url)]
    url: Option<Uri>,

    /// Target rate in requests per minute [asked for, or default 600]
    #[arg(long, value_parser = hungry::parse_rpm)]
    rpm: Option<f64>,

    /// Number of requests that should succeed
    #[arg(long, default_value_t = hungry::DEFAULT_REQUESTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,

    /// Tasks sending at once, sharing one paced client
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,

    /// HTTP method; only idempotent methods (or requests with an Idempotency-Key header) are
    /// retried after a 429
    #[arg(long, default_value = "GET", value_parser = hungry::parse_method)]
    method: Method,

    /// Extra request header, repeatable: -H "X-API-Key: key1"
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE",
          value_parser = hungry::parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,

    /// Wait budget of one request, pacing and retries together, in seconds
    #[arg(long, value_name = "SECS", default_value_t = hungry::DEFAULT_MAX_WAIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_wait: u64,

    /// Deadline for the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = hungry::DEFAULT_MAX_TIME_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_time: u64,

    /// Timeout of a single request, in seconds
    #[arg(long, value_name = "SECS", default_value_t = hungry::DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Do not draw the progress bar
    #[arg(long)]
    no_progress: bool,

    /// Print the summary and the per-second timeline as one JSON object (no progress bar)
    #[arg(long)]
    json: bool,
}

/// Turns the parsed flags into a [`Config`], asking on the terminal for a
/// missing URL or rate.
fn build_config(cli: &Cli) -> Result<Config, Box<dyn Error>> {
    let interactive = io::stdin().is_terminal();
    let ask = |question: &str, default: &str| -> io::Result<String> {
        if interactive {
            // With --json, stdout holds the JSON and nothing else.
            let mut out: Box<dyn Write> = if cli.json {
                Box::new(io::stderr())
            } else {
                Box::new(io::stdout())
            };
            hungry::prompt_with_default(&mut io::stdin().lock(), &mut out, question, default)
        } else {
            eprintln!("hungryclient: {question} not given; using {default}");
            Ok(default.to_owned())
        }
    };

    let url = match cli.url.clone() {
        Some(url) => url,
        None => hungry::parse_url(&ask("Target URL", hungry::DEFAULT_URL)?)?,
    };
    let rpm = match cli.rpm {
        Some(rpm) => rpm,
        None => hungry::parse_rpm(&ask(
            "Requests per minute",
            &hungry::DEFAULT_RPM.to_string(),
        )?)?,
    };

    let mut config = Config::new(url, hungry::interval_for_rpm(rpm)?);
    config.requests = cli.requests;
    // At most 1024 (checked by clap), so the conversion cannot fail.
    config.concurrency = usize::try_from(cli.concurrency).unwrap_or(1);
    config.method = cli.method.clone();
    config.headers = cli.headers.clone();
    config.max_wait = Duration::from_secs(cli.max_wait);
    config.max_time = Duration::from_secs(cli.max_time);
    config.request_timeout = Duration::from_secs(cli.timeout);
    config.progress = !cli.no_progress && !cli.json && io::stdout().is_terminal();
    Ok(config)
}

#[actix_rt::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let cli = Cli::parse();
    let config = match build_config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hungryclient: {err}");
            return ExitCode::from(2);
        }
    };

    let summary = hungry::run(&config).await;
    if cli.json {
        println!("{}", hungry::format_json(&summary));
    } else {
        print!("{}", hungry::format_summary(&summary));
        print!(
            "{}",
            hungry::format_timeline(&summary.timeline, config.concurrency)
        );
    }
    if summary.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
