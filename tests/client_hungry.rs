//! `hungryclient --concurrency 4`, the client crate's binary, against the example server's `/data`:
//! 30 requests from 4 tasks sharing one paced client keep to the ideal schedule.

mod client_support;

use std::process::Command;
use std::time::{Duration, Instant};

use client_support::{
    api_key, binary, start_at_phase, within_ten_percent, ExampleServer, MAX_429S, REQUESTS, TASKS,
};

/// The value of a row of the summary table, `| label | value |`.
fn row<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find_map(|line| line.strip_prefix(&format!("| {label} ")))
        .and_then(|rest| rest.trim().strip_prefix('|'))
        .and_then(|rest| rest.trim().strip_suffix('|'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no row {label:?} in\n{summary}"))
}

#[test]
fn thirty_requests_from_four_tasks_keep_to_the_ideal_schedule() {
    let server = ExampleServer::start();
    let key = api_key("client-hungry");
    // The process starts in a few milliseconds: aim its first request half a second into a
    // second (see start_at_phase).
    start_at_phase(Duration::from_millis(450));
    let started = Instant::now();
    let output = Command::new(binary("hungryclient"))
        .args(["--url", &server.url("/data")])
        .args(["-H", &format!("X-API-Key: {key}")])
        .args(["--rpm", "60000", "--no-progress"])
        .args(["--requests", &REQUESTS.to_string()])
        .args(["--concurrency", &TASKS.to_string()])
        .output()
        .expect("hungryclient runs");
    let wall = started.elapsed();
    let summary = String::from_utf8_lossy(&output.stdout);
    println!("{summary}(wall {wall:?})");

    assert!(
        output.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(row(&summary, "2xx responses"), REQUESTS.to_string());
    assert_eq!(row(&summary, "requests given up"), "0");
    let refused: u64 = row(&summary, "429 responses").parse().expect("a count");
    assert!(refused <= MAX_429S, "the server refused {refused}");
    assert_eq!(
        server.data_refusals(),
        refused,
        "as the server counted them"
    );
    let elapsed: f64 = row(&summary, "elapsed time")
        .trim_end_matches(" s")
        .parse()
        .expect("seconds");
    assert!(
        within_ten_percent(Duration::from_secs_f64(elapsed)),
        "took {elapsed} s, ideal 20 s"
    );
    assert!(
        wall < Duration::from_secs(23),
        "the process lasted {wall:?}"
    );
}
