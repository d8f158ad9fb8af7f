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
    // The timeline: a row per second of the run, whose 2xx and 429 add up to the summary's,
    // and where the tasks waited for /data's window to move on.
    let rows = timeline(&summary);
    // A row per second begun; the summary's elapsed time is rounded to 0.1 s.
    assert!(
        (rows.len() as f64 - elapsed.ceil()).abs() <= 1.0,
        "{summary}"
    );
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), REQUESTS as u64);
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), refused);
    assert!(
        rows.iter().any(|r| r.3 > 0.5),
        "no second of waiting:\n{summary}"
    );
}

/// The rows of the timeline: (second, 2xx, 429, seconds waited).
fn timeline(output: &str) -> Vec<(u64, u64, u64, f64)> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("Timeline"))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| cells[i].parse().unwrap_or_else(|_| panic!("{line:?}"));
            let waited = cells[3].trim_end_matches('s').parse().expect("seconds");
            (number(0), number(1), number(2), waited)
        })
        .collect()
}

#[test]
fn json_output_holds_the_summary_and_the_timeline() {
    let server = ExampleServer::start();
    let output = Command::new(binary("hungryclient"))
        .args(["--url", &server.url("/rate-limited")])
        .args(["--rpm", "600", "--requests", "5", "--json"])
        .output()
        .expect("hungryclient runs");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(json["succeeded"], 5, "{json}");
    assert_eq!(json["rate_limited"], 0, "{json}");
    let timeline = json["timeline"].as_array().expect("a timeline");
    let served: u64 = timeline
        .iter()
        .map(|s| s["succeeded"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 5, "{json}");
    // 5 at 600 a minute: the last sent 0.4 s after the first.
    assert!(json["elapsed_secs"].as_f64().unwrap() >= 0.4, "{json}");
}
