//! The deployment files of deploy/ against the real tools.
//!
//! - `promtool check rules` accepts deploy/prometheus/alerts.yml, and `promtool test rules`
//!   passes deploy/prometheus/alerts_test.yml, which has, for every alert, a case where it fires
//!   and one where it must not.
//! - A real Prometheus, loading those rules, scrapes the example server (on its own Redis, with
//!   leases) every second after a known sequence of requests: the counters it stores equal what
//!   was sent, every query of deploy/grafana/dashboard.json is valid and returns data, every
//!   alert's expression is valid and evaluates without error, and the metrics each alert is
//!   built on exist.
//!
//! Prometheus and promtool come from Debian's `prometheus` package, which scripts/test.sh
//! installs; without them these tests fail (they are not skipped).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{count, free_port, send, ExampleServer, RedisServer};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
const DASHBOARD: &str = "deploy/grafana/dashboard.json";
const JOB: &str = "ratelimit-example";

/// The alerts alerts.yml defines, each with the series it is built on: those must exist in a
/// real scrape of the example server (an alert on a misspelled metric would never fire).
const ALERT_METRICS: &[(&str, &[&str])] = &[
    ("RateLimitRedisFallback", &["ratelimit_redis_fallback"]),
    (
        "RateLimitDenialRatioHigh",
        &[
            r#"ratelimit_decisions_total{outcome="denied"}"#,
            r#"ratelimit_decisions_total{outcome="allowed"}"#,
            r#"ratelimit_decisions_total{outcome="degraded"}"#,
        ],
    ),
    (
        "RateLimitDecisionLatencyHigh",
        &[
            "ratelimit_decision_duration_seconds_bucket",
            "ratelimit_decision_duration_seconds_count",
        ],
    ),
    ("RateLimitAdaptiveShedding", &["ratelimit_shed_total"]),
];

/// Runs `tool args` in the workspace root; fails, saying how to install it, if it is missing.
fn run_tool(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{tool}` ({e}): install Debian's `prometheus` package (prometheus \
                 and promtool), which scripts/test.sh does"
            )
        })
}

fn assert_succeeded(what: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`{what}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    eprintln!("{what}:\n{stdout}{stderr}");
}

/// The alerts `- alert: NAME` of alerts.yml, in order.
fn alert_names() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(ALERTS)).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn promtool_checks_and_tests_the_alerts() {
    let check = run_tool("promtool", &["check", "rules", ALERTS]);
    assert_succeeded(&format!("promtool check rules {ALERTS}"), &check);
    let names = alert_names();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(&format!("{} rules found", names.len())),
        "promtool found another number of rules than the {} alerts {names:?}",
        names.len()
    );
    let expected: Vec<&str> = ALERT_METRICS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected, "the alerts of {ALERTS}");

    let test = run_tool("promtool", &["test", "rules", ALERTS_TEST]);
    assert_succeeded(&format!("promtool test rules {ALERTS_TEST}"), &test);

    // Every alert has a case where it fires and one where it must not (`exp_alerts: []`).
    let text = std::fs::read_to_string(Path::new(ROOT).join(ALERTS_TEST)).unwrap();
    let (mut fires, mut quiet) = (HashSet::new(), HashSet::new());
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = current.clone().expect("exp_alerts after an alertname");
            if rest.trim() == "[]" {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for name in &names {
        assert!(
            fires.contains(name),
            "{ALERTS_TEST} never makes {name} fire"
        );
        assert!(
            quiet.contains(name),
            "{ALERTS_TEST} has no case where {name} must not fire"
        );
    }
}

/// A Prometheus server of our own, on a free port of 127.0.0.1, its configuration and data in
/// a temporary directory; killed (by its process id) when dropped, its log printed if the
/// test failed.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second and evaluates alerts.yml every second.
    fn start(target: &str) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "ratelimit-prometheus-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = Path::new(ROOT).join(ALERTS);
        let config = format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['{target}']
",
            rules = rules.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `prometheus` ({e}): install Debian's `prometheus` package, \
                     which scripts/test.sh does"
                )
            });
        Prometheus { child, port, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus.log\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET `url` with `query` (form-encoded); the JSON answer, whatever the status.
async fn get_json(client: &awc::Client, url: &str, query: &[(&str, &str)]) -> Value {
    let request = client.get(url).query(&query).expect("a query string");
    let mut response = request.send().await.expect("Prometheus answers");
    let body = response.body().limit(16 << 20).await.expect("a body");
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "not JSON from {url} {query:?} ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// The answer of Prometheus's instant query API to `expr`, now.
async fn query(client: &awc::Client, prometheus: &Prometheus, expr: &str) -> Value {
    get_json(client, &prometheus.url("/api/v1/query"), &[("query", expr)]).await
}

/// The result vector of `expr`, asserting the query is valid.
async fn vector(client: &awc::Client, prometheus: &Prometheus, expr: &str) -> Vec<Value> {
    let answer = query(client, prometheus, expr).await;
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The value of a one-element result of `expr`.
async fn scalar(client: &awc::Client, prometheus: &Prometheus, expr: &str) -> f64 {
    let result = vector(client, prometheus, expr).await;
    assert_eq!(result.len(), 1, "{expr}: {result:?}");
    sample_value(&result[0])
}

fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

/// Statuses of `count` POST /login with a wrong password, one after another.
async fn failed_logins(server: &ExampleServer, count: usize) -> Vec<u16> {
    let client = awc::Client::default();
    let mut statuses = Vec::new();
    for _ in 0..count {
        let response = client
            .post(server.url("/login"))
            .send_json(&json!({"user": "a", "password": "wrong"}))
            .await
            .expect("answered");
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// Statuses of `count` requests to `path`, one after another (the order a sliding log or a
/// penalty sees matters).
async fn one_by_one(
    server: &ExampleServer,
    path: &str,
    key: Option<&str>,
    count: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.extend(send(&[server], path, key, 1).await);
    }
    statuses
}

/// What the test sent, per rule: the decisions Prometheus must hold.
#[derive(Debug, Default)]
struct Sent {
    feed: usize,
    rate_limited: usize,
    data_allowed: usize,
    data_denied: usize,
}

/// One wave of requests: `feed` to /feed (1,000 a minute), `rate_limited` to /rate-limited
/// (300 per 30 s) and 15 to /data with `key` (10 per 10 s per key: 5 refused), all counted
/// into `sent`.
async fn wave(
    server: &ExampleServer,
    sent: &mut Sent,
    feed: usize,
    rate_limited: usize,
    key: &str,
) {
    let statuses = send(&[server], "/feed", None, feed).await;
    assert_eq!(count(&statuses, 200), feed, "/feed: {statuses:?}");
    sent.feed += feed;
    let statuses = send(&[server], "/rate-limited", None, rate_limited).await;
    assert_eq!(
        count(&statuses, 200),
        rate_limited,
        "/rate-limited: {statuses:?}"
    );
    sent.rate_limited += rate_limited;
    let statuses = one_by_one(server, "/data", Some(key), 15).await;
    assert_eq!(count(&statuses, 200), 10, "/data: {statuses:?}");
    assert_eq!(count(&statuses, 429), 5, "/data: {statuses:?}");
    sent.data_allowed += 10;
    sent.data_denied += 5;
}

/// Every `expr` of the dashboard's panels (rows included), with the panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            if panel["type"] != "row" {
                assert_eq!(
                    panel["datasource"]["uid"], "${datasource}",
                    "panel {title:?} does not use the datasource variable"
                );
                assert!(
                    panel["gridPos"].is_object(),
                    "panel {title:?} has no gridPos"
                );
                let targets = panel["targets"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                assert!(!targets.is_empty(), "panel {title:?} has no query");
                for target in targets {
                    assert_eq!(
                        target["datasource"]["uid"], "${datasource}",
                        "a query of {title:?} does not use the datasource variable"
                    );
                    let expr = target["expr"].as_str().expect("a PromQL expr");
                    out.push((title.clone(), expr.to_string()));
                }
            }
            if let Some(inner) = panel["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// `expr` with Grafana's variables replaced as Grafana would: `$rule` by `rule` (the regex of
/// the selection), the intervals by one minute.
fn substitute(expr: &str, rule: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1m")
        .replace("${rule}", rule)
        .replace("$rule", rule)
        .replace("${job}", ".*")
        .replace("$job", ".*");
    assert!(
        !out.contains('$'),
        "a variable the test does not know in {expr}"
    );
    out
}

#[actix_web::test]
async fn prometheus_scrapes_the_example_server_and_every_query_answers() {
    // Prometheus before anything starts: a clear failure when it is missing.
    assert_succeeded(
        "prometheus --version",
        &run_tool("prometheus", &["--version"]),
    );

    let redis = RedisServer::start();
    let url = redis.url();
    let server = ExampleServer::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_LEASES", "1"),
    ]);
    let mut sent = Sent::default();
    // The connection to Redis is made on first use, in the background: /rate-limited until a
    // script call reached Redis (those requests counted too).
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.script_calls() == 0 {
        assert!(Instant::now() < deadline, "no decision reached Redis");
        assert_eq!(send(&[&server], "/rate-limited", None, 1).await, [200]);
        sent.rate_limited += 1;
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    // Before Prometheus starts: the series of every rule, a penalty, an adaptive limit.
    wave(&server, &mut sent, 40, 20, "prometheus-1").await;
    assert_eq!(send(&[&server], "/busy", None, 1).await, [200]);
    // 5 failed logins a minute (a clock-aligned window, on Redis's clock: all 8 in one), then
    // refusals: the third refusal begins a penalty.
    let second = redis.time_secs() % 60;
    if second + 5 >= 60 {
        actix_web::rt::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let logins = failed_logins(&server, 8).await;
    assert_eq!(logins, [401, 401, 401, 401, 401, 429, 429, 429]);
    assert_eq!(server.metric("ratelimit_penalties_total"), 1.0);

    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", server.port));
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();

    // Scraped at least 3 times, then a second wave (so that rates are not all zero), then at
    // least 5 scrapes after it.
    let scrapes = format!(r#"count_over_time(ratelimit_redis_fallback{{job="{JOB}"}}[1m])"#);
    let scraped = |at_least: f64| {
        let (client, prometheus, scrapes) = (&client, &prometheus, &scrapes);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let done = match client.get(prometheus.url("/-/ready")).send().await {
                    Ok(r) if r.status().is_success() => {
                        let answer = query(client, prometheus, scrapes).await;
                        answer["data"]["result"][0]["value"][1]
                            .as_str()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|n| n >= at_least)
                    }
                    _ => false,
                };
                if done {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus did not scrape {at_least} times within 60 s"
                );
                actix_web::rt::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    scraped(3.0).await;
    let before = vector(&client, &prometheus, &scrapes).await;
    let before = sample_value(&before[0]);
    wave(&server, &mut sent, 25, 10, "prometheus-2").await;
    scraped(before + 5.0).await;
    eprintln!("{sent:?}");

    // Prometheus holds exactly what was sent.
    let decided = |rule: &str, outcomes: &str| {
        format!(
            r#"sum(ratelimit_decisions_total{{job="{JOB}",rule=~"{rule}",outcome=~"{outcomes}"}})"#
        )
    };
    let feed = format!(r#"sum(ratelimit_decisions_total{{job="{JOB}",rule="server::feed"}})"#);
    assert_eq!(
        scalar(&client, &prometheus, &feed).await,
        sent.feed as f64,
        "{feed}"
    );
    let checks = [
        (decided("server::feed", "allowed"), sent.feed),
        (decided("server::feed", "allowed|denied"), sent.feed),
        (
            decided("server::rate_limited", "allowed|denied"),
            sent.rate_limited,
        ),
        (decided("server::data", "allowed"), sent.data_allowed),
        (decided("server::data", "denied"), sent.data_denied),
        (decided("server::login", "allowed"), 5),
        (decided("server::login", "denied"), 3),
        // An adaptive limit is each process's own, even on Redis: store="memory".
        (
            format!(
                r#"sum(ratelimit_decisions_total{{job="{JOB}",rule="server::busy",outcome="allowed",store="memory"}})"#
            ),
            1,
        ),
        (
            decided(
                "server::feed|server::data|server::rate_limited",
                "degraded|shadow_denied|shed",
            ),
            0,
        ),
        (
            r#"sum(ratelimit_penalties_total{rule="server::login"})"#.to_string(),
            1,
        ),
    ];
    for (expr, expected) in &checks {
        assert_eq!(
            scalar(&client, &prometheus, expr).await,
            *expected as f64,
            "{expr}"
        );
    }
    // The same numbers as the server's own /metrics.
    for (rule, outcome) in [("server::feed", "allowed"), ("server::data", "denied")] {
        let labels = format!(r#"{{rule="{rule}",outcome="{outcome}",store="redis"}}"#);
        let own = server.metric_where("ratelimit_decisions_total", &labels);
        let expr = format!("sum(ratelimit_decisions_total{labels})");
        assert_eq!(scalar(&client, &prometheus, &expr).await, own, "{expr}");
    }
    // How many decisions leases make depends on their sizing, not on this test: only their
    // series are required (the dashboard's lease panels below must return data).
    // The dashboard: its variables, then every query, with `$rule` as "All" (`.*`) and as a
    // selection of every rule the variable's query lists.
    let text = std::fs::read_to_string(Path::new(ROOT).join(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let datasource = variables["datasource"];
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    // `job` (the services scraped), then `rule` among the chosen jobs' rules.
    for (name, query) in [
        ("job", "label_values(ratelimit_decisions_total, job)"),
        (
            "rule",
            r#"label_values(ratelimit_decisions_total{job=~"$job"}, rule)"#,
        ),
    ] {
        let variable = variables[name];
        assert_eq!(variable["type"], "query", "{name}");
        assert_eq!(variable["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(variable["query"]["query"], query, "{name}");
        assert_eq!(variable["definition"], query, "{name}");
        assert_eq!(variable["includeAll"], true, "{name}");
        assert_eq!(variable["allValue"], ".*", "{name}");
    }
    // What the `job` variable lists: the test's scrape job.
    let jobs = get_json(
        &client,
        &prometheus.url("/api/v1/label/job/values"),
        &[("match[]", "ratelimit_decisions_total")],
    )
    .await;
    assert_eq!(jobs["data"], serde_json::json!([JOB]), "{jobs}");
    // What the `rule` variable lists, through the label API.
    let values = get_json(
        &client,
        &prometheus.url("/api/v1/label/rule/values"),
        &[(
            "match[]",
            &format!(r#"ratelimit_decisions_total{{job=~"{JOB}"}}"#),
        )],
    )
    .await;
    assert_eq!(values["status"], "success", "{values}");
    let rules: BTreeSet<&str> = values["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "server::feed",
        "server::data",
        "server::rate_limited",
        "server::login",
        "server::busy",
    ] {
        assert!(rules.contains(expected), "{expected} not in {rules:?}");
    }
    // Grafana's form of a multi-value selection in a regex.
    let selection = format!("({})", rules.iter().copied().collect::<Vec<_>>().join("|"));

    let queries = dashboard_queries(&dashboard);
    let ids: Vec<u64> = collect_ids(&dashboard["panels"]);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "panel ids repeat: {ids:?}"
    );
    let mut evaluated = 0;
    let mut with_numbers = 0;
    for (title, expr) in &queries {
        assert_eq!(
            expr.matches("ratelimit_").count(),
            expr.matches(r#"job=~"$job""#).count(),
            "panel {title:?}: a series not narrowed to the chosen jobs: {expr}"
        );
        for value in [".*", selection.as_str()] {
            let promql = substitute(expr, value);
            let result = vector(&client, &prometheus, &promql).await;
            assert!(!result.is_empty(), "panel {title:?}: no data for {promql}");
            evaluated += 1;
            if result.iter().any(|s| sample_value(s).is_finite()) {
                with_numbers += 1;
            }
        }
        eprintln!("dashboard {title:?}: {expr}");
    }
    // The panels traffic moves show it: rates above zero, latency quantiles numbers.
    for (title, expected) in [
        ("Decisions by rule and outcome", "a rate"),
        ("Decision latency by store (p50, p99)", "quantiles"),
        ("Denial ratio per rule", "a ratio"),
    ] {
        let (_, expr) = queries
            .iter()
            .find(|(t, _)| t == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"));
        let result = vector(&client, &prometheus, &substitute(expr, ".*")).await;
        assert!(
            result
                .iter()
                .any(|s| sample_value(s).is_finite() && sample_value(s) > 0.0),
            "panel {title:?} shows no {expected} above zero: {result:?}"
        );
    }
    eprintln!(
        "{} dashboard queries, {evaluated} evaluated (`$rule` as .* and as {selection}), \
         {with_numbers} with finite values",
        queries.len()
    );
    assert_eq!(
        with_numbers, evaluated,
        "every dashboard query has a number to show (not only NaN)"
    );

    // The alerts as Prometheus loaded them: each evaluated without error, its expression valid
    // as a query, the metrics it is built on present.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let answer = get_json(&client, &prometheus.url("/api/v1/rules"), &[]).await;
        assert_eq!(answer["status"], "success", "{answer}");
        let groups = answer["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0]["name"], "ratelimit");
        let rules = groups[0]["rules"].as_array().cloned().unwrap_or_default();
        if rules.iter().all(|r| r["health"] == "ok") {
            break rules;
        }
        assert!(
            rules.iter().all(|r| r["health"] != "err"),
            "a rule failed to evaluate: {rules:?}"
        );
        assert!(
            Instant::now() < deadline,
            "rules never evaluated: {rules:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    };
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let expected: Vec<&str> = ALERT_METRICS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected);
    let mut alert_queries = 0;
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        assert_eq!(rule["type"], "alerting", "{name}");
        assert_eq!(rule["lastError"].as_str().unwrap_or(""), "", "{name}");
        let expr = rule["query"].as_str().unwrap();
        let answer = query(&client, &prometheus, expr).await;
        assert_eq!(answer["status"], "success", "{name}: {expr}: {answer}");
        alert_queries += 1;
        let (_, metrics) = ALERT_METRICS.iter().find(|(n, _)| *n == name).unwrap();
        for metric in *metrics {
            let bare = metric.split('{').next().unwrap();
            assert!(expr.contains(bare), "{name} is not built on {bare}: {expr}");
            let series = vector(&client, &prometheus, metric).await;
            assert!(
                !series.is_empty(),
                "{name}: no series {metric} in the scrape"
            );
        }
        eprintln!(
            "alert {name}: state {}, {} series under it",
            rule["state"],
            metrics.len()
        );
    }
    eprintln!("{alert_queries} alert expressions evaluated");
    drop(prometheus);
}

fn collect_ids(panels: &Value) -> Vec<u64> {
    let mut ids = Vec::new();
    for panel in panels.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        ids.push(panel["id"].as_u64().expect("a panel id"));
        ids.extend(collect_ids(&panel["panels"]));
    }
    ids
}
