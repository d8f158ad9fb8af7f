//! The example server's `/metrics`, read by the Prometheus client's own OpenMetrics parser
//! (Python's `prometheus_client`, through scripts/parse_metrics.py) after a known sequence of
//! requests: every counter equals what was sent.

mod client_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use client_support::ExampleServer;
use serde_json::Value;

/// Sends `n` GETs to `path` and returns the statuses.
async fn send(
    client: &awc::Client,
    server: &ExampleServer,
    path: &str,
    key: Option<&str>,
    n: usize,
) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = client.get(server.url(path));
        if let Some(key) = key {
            request = request.insert_header(("X-API-Key", key));
        }
        let response = request.send().await.expect("the server answers");
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// The samples of an exposition, as the Prometheus client parses them.
fn parse(exposition: &str) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the exposition: {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Value> = samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .collect();
    assert_eq!(matching.len(), 1, "{name} {labels:?}: {matching:?}");
    matching[0]["value"].as_f64().unwrap()
}

/// Waits, if need be, until a 10-second window has just begun, so that the fixed windows of
/// `/search` and `/shadow` hold the whole sequence.
fn start_of_a_window() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 10_000;
    if into > 7_000 {
        std::thread::sleep(Duration::from_millis(10_050 - into as u64));
    }
}

#[actix_web::test]
async fn every_counter_equals_what_was_sent() {
    let server = ExampleServer::start();
    let client = awc::Client::default();
    start_of_a_window();
    let data = send(&client, &server, "/data", Some("metrics-key"), 13).await;
    assert_eq!(data.iter().filter(|&&s| s == 200).count(), 10);
    // Without a key: 401, exempt from the limit, not counted.
    assert_eq!(send(&client, &server, "/data", None, 2).await, [401, 401]);
    assert_eq!(send(&client, &server, "/shadow", None, 8).await, [200; 8]);
    let search = send(&client, &server, "/search", None, 12).await;
    assert_eq!(search.iter().filter(|&&s| s == 429).count(), 2);
    send(&client, &server, "/tiered", Some("pro_demo"), 3).await;
    // An async tier lookup, and an adaptive concurrency limit: their families parse too.
    assert_eq!(
        send(&client, &server, "/plan", Some("pro_metrics"), 2).await,
        [200; 2]
    );
    assert_eq!(send(&client, &server, "/busy", None, 2).await, [200; 2]);

    let mut response = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    let body = response.body().await.unwrap();
    let samples = parse(std::str::from_utf8(&body).unwrap());
    let decisions = |rule: &str, outcome: &str| {
        value(
            &samples,
            "ratelimit_decisions_total",
            &[
                ("rule", &format!("server::{rule}")),
                ("outcome", outcome),
                ("store", "memory"),
            ],
        )
    };
    assert_eq!(decisions("data", "allowed"), 10.0);
    assert_eq!(decisions("data", "denied"), 3.0);
    assert_eq!(decisions("shadow", "allowed"), 5.0);
    assert_eq!(decisions("shadow", "shadow_denied"), 3.0);
    assert_eq!(decisions("shadow", "denied"), 0.0);
    assert_eq!(decisions("search", "allowed"), 5.0);
    assert_eq!(decisions("search", "degraded"), 5.0);
    assert_eq!(decisions("search", "denied"), 2.0);
    let tiered = [
        ("rule", "server::tiered#key=issued_key"),
        ("tier", "pro"),
        ("outcome", "allowed"),
    ];
    assert_eq!(value(&samples, "ratelimit_decisions_total", &tiered), 3.0);
    let units = [("rule", "server::search"), ("store", "memory")];
    assert_eq!(value(&samples, "ratelimit_units_spent_total", &units), 10.0);
    let lookups = [("kind", "tier"), ("outcome", "looked_up")];
    assert_eq!(value(&samples, "ratelimit_lookups_total", &lookups), 1.0);
    let busy = [("rule", "server::busy")];
    assert!(value(&samples, "ratelimit_adaptive_limit", &busy) >= 2.0);
    let admitted = [("rule", "server::busy"), ("outcome", "allowed")];
    assert_eq!(value(&samples, "ratelimit_decisions_total", &admitted), 2.0);
    let shed = [("rule", "server::busy"), ("priority", "normal")];
    assert_eq!(value(&samples, "ratelimit_shed_total", &shed), 0.0);
    // Every decision timed once: 13 + 8 + 12 + 3 + 2 (an adaptive limit asks no store).
    let timed = [("store", "memory")];
    assert_eq!(
        value(
            &samples,
            "ratelimit_decision_duration_seconds_count",
            &timed
        ),
        38.0
    );
    // Keys: one API key on /data, the address on /shadow and /search, one on /tiered, one on
    // /plan.
    assert_eq!(value(&samples, "ratelimit_tracked_keys", &[]), 5.0);
    assert_eq!(value(&samples, "ratelimit_evictions_total", &[]), 0.0);
    // The one sliding log (`/data`) holds its 10 entries of 8 bytes, with some room to grow.
    let log_bytes = value(&samples, "ratelimit_log_bytes", &[]);
    assert!((80.0..=160.0).contains(&log_bytes), "{log_bytes}");
}
