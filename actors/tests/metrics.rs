//! `/metrics`, `/healthz` and `/readyz` during an end-to-end run on real Kafka: the gauges and
//! counters move as the events say (under the coordinator's names and Integr8sCode's), a
//! standby instance with no partition is not ready, and the shipped Grafana dashboard names
//! only series the daemon exports.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use coordinator_core::events::EventType;
use support::daemon::{DaemonProcess, TestConfig};
use support::deadline;
use support::golden::{golden, request};
use support::http::get;
use support::kafka::{bootstrap_servers, produce_event, producer};

/// The value of the sample `series` (name with labels, as rendered) in a scrape.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Polls `/metrics` until `series` has `want`; panics with the scrape after the deadline.
fn wait_for_sample(addr: &str, series: &str, want: f64) {
    let deadline = deadline();
    loop {
        let (_, body) = get(addr, "/metrics");
        if sample(&body, series) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {want}; last scrape:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_status(addr: &str, path: &str, want: u16) {
    let deadline = deadline();
    loop {
        let (status, body) = get(addr, path);
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} stayed {status}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn metrics_follow_the_events_and_readiness_follows_the_assignment() {
    let bootstrap = bootstrap_servers();
    // At-least-once, where a second instance is a standby; with exactly-once a second instance
    // takes over instead (see e2e's takeover test).
    let config = TestConfig::fresh()
        .set("kafka", "exactly_once = false")
        .set("resources", "total_cpu_cores = 1.0")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.1")
        .set("queue", "requeue_demotes = false");
    let first = DaemonProcess::start(&config, &bootstrap);
    let first_addr = first.metrics_addr();
    assert_eq!(get(&first_addr, "/healthz").0, 200);
    wait_for_status(&first_addr, "/readyz", 200);

    // A second instance in the same group: after the rebalance one of the two holds the only
    // partition and is ready; the other is a standby, alive but not ready.
    let second = DaemonProcess::start_standby(&config, &bootstrap);
    let second_addr = second.metrics_addr();
    assert_eq!(get(&second_addr, "/healthz").0, 200);
    let deadline = deadline();
    let first_is_active = loop {
        let (one, two) = (get(&first_addr, "/readyz"), get(&second_addr, "/readyz"));
        match (one.0, two.0) {
            (200, 503) => {
                assert!(two.1.contains("consumer_assigned=false"), "{}", two.1);
                break true;
            }
            (503, 200) => {
                assert!(one.1.contains("consumer_assigned=false"), "{}", one.1);
                break false;
            }
            _ => assert!(
                Instant::now() < deadline,
                "no single ready instance: {one:?} {two:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut active, mut standby, a, b) = if first_is_active {
        (first, second, first_addr, second_addr)
    } else {
        (second, first, second_addr, first_addr)
    };

    let events = config.events_topic();
    let p = producer();
    for (id, user) in [("m0", "u0"), ("m1", "u1"), ("m2", "u2")] {
        produce_event(&p, &events, &request(id, user, 5)).await;
    }
    wait_for_sample(&a, "execution_coordinator_commanded_total", 1.0);
    wait_for_sample(&a, "execution_coordinator_accepted_total", 3.0);
    wait_for_sample(
        &a,
        "execution_coordinator_queue_depth{priority=\"normal\"}",
        2.0,
    );
    wait_for_sample(
        &a,
        "execution_coordinator_pool{resource=\"cpu_cores\",state=\"used\"}",
        0.5,
    );
    wait_for_sample(
        &a,
        "execution_coordinator_pool{resource=\"cpu_cores\",state=\"total\"}",
        1.0,
    );
    wait_for_sample(&a, "execution_coordinator_active_allocations", 1.0);
    // The same under the names of Integr8sCode's coordinator.
    wait_for_sample(&a, "coordinator_executions_active", 1.0);
    wait_for_sample(
        &a,
        "coordinator_executions_scheduled_total{status=\"queued\"}",
        3.0,
    );
    wait_for_sample(
        &a,
        "coordinator_executions_scheduled_total{status=\"scheduled\"}",
        1.0,
    );
    wait_for_sample(&a, "execution_queue_depth", 2.0);

    produce_event(&p, &events, &golden("execution_completed", "m0")).await;
    wait_for_sample(&a, "execution_coordinator_commanded_total", 2.0);
    wait_for_sample(
        &a,
        "execution_coordinator_queue_depth{priority=\"normal\"}",
        1.0,
    );
    let (_, body) = get(&a, "/metrics");
    assert!(
        body.contains("execution_coordinator_queue_wait_seconds_bucket{priority=\"normal\""),
        "queue wait histogram missing:\n{body}"
    );
    assert!(body.contains("execution_coordinator_scheduling_duration_seconds_count"));
    assert!(
        body.contains("coordinator_queue_wait_time_seconds_bucket{priority=\"normal\""),
        "Integr8sCode's queue wait histogram missing:\n{body}"
    );
    assert!(body.contains("\ncoordinator_scheduling_duration_seconds_count"));

    // The active instance stops; the standby takes the partition and becomes ready.
    assert!(active.terminate().success());
    wait_for_status(&b, "/readyz", 200);
    assert!(standby.terminate().success());
}

/// PromQL's aggregation operators (which may stand before `by (…)`) and binary keywords.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "and",
    "or",
    "unless",
    "bool",
];

/// Every metric name in a PromQL expression: identifiers outside `{…}` label matchers, `[…]`
/// ranges and `by (…)`/`without (…)` groupings that are not function calls.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut skip_group) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        let close = match c {
            '{' => Some('}'),
            '[' => Some(']'),
            '(' if skip_group => Some(')'),
            _ => None,
        };
        if let Some(close) = close {
            skip_group = false;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(word.as_str(), "by" | "without" | "on" | "ignoring") {
                skip_group = true;
            } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                names.insert(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le, priority) (rate(a_bucket{job=~\"$job\",x=\"y\"}[5m]))) / sum(b) and on(le) c",
    );
    assert_eq!(names, ["a_bucket", "b", "c"].map(String::from).into());
}

#[tokio::test]
async fn the_grafana_dashboard_names_only_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../packaging/grafana/execution-coordinator.json"
    ))
    .expect("the dashboard is JSON");
    // Every query of every panel and of the template variables.
    let mut exprs = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v.as_str()) {
                        ("expr", Some(e)) => exprs.push(e.to_owned()),
                        ("query", Some(q)) if q.starts_with("label_values(") => exprs.push(
                            q["label_values(".len()..]
                                .replace(')', "")
                                .replace(',', " by ("),
                        ),
                        _ => stack.push(v),
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        wanted.len() > 20,
        "the dashboard covers the metric set: {wanted:?}"
    );

    // A daemon that has queued, commanded and released something, so every series exists.
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh().per_event_type();
    let daemon = DaemonProcess::start(&config, &bootstrap);
    let addr = daemon.metrics_addr();
    let p = producer();
    produce_event(
        &p,
        &config.topic(EventType::ExecutionRequested),
        &request("g0", "u0", "normal"),
    )
    .await;
    wait_for_sample(&addr, "execution_coordinator_commanded_total", 1.0);
    produce_event(
        &p,
        &config.topic(EventType::ExecutionCompleted),
        &golden("execution_completed", "g0"),
    )
    .await;
    wait_for_sample(&addr, "execution_coordinator_active_allocations", 0.0);
    let deadline = deadline();
    loop {
        let (_, body) = get(&addr, "/metrics");
        let exported: BTreeSet<String> = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect();
        let missing: Vec<&String> = wanted.difference(&exported).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard names metrics the daemon does not export: {missing:?}\nscrape:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
