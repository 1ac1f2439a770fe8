//! `simulate --from-kafka` against a real Apache Kafka broker: a known sequence of Integr8sCode
//! events with chosen times is produced into fresh topics, read back, mapped to the executions
//! the docs promise (arrivals, run times, resources, priorities, recorded waits, what is
//! skipped), and replayed by the command into a table that is the same bytes on every run.
//! An unreachable broker is an error within the timeout, not a hang.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, UNIX_EPOCH};

use coordinator_core::events::EventType;
use coordinator_core::sim::settings::{SimConfig, SimJob};
use coordinator_core::sim::traffic::{Filter, Skips};
use coordinator_core::Priority;
use execution_coordinator::tools::simulate_kafka::{read_traffic, traffic_topics};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use support::daemon::TestConfig;
use support::kafka::{bootstrap_servers, create_topic, producer, transactional_producer};
use support::WAIT;

const BIN: &str = env!("CARGO_BIN_EXE_execution-coordinator");

/// 2026-02-20T10:00:00Z, ms since the epoch.
const T0: i64 = 1_771_581_600_000;

/// A 4-core pool with no reserve: every replayed execution fits at once.
fn sim_config(config: TestConfig) -> TestConfig {
    config
        .set("resources", "total_cpu_cores = 4.0")
        .set("resources", "total_memory_mb = 8192")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.0")
        .set("resources", "min_available_memory_mb = 0")
}

fn at(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn meta(user: Option<&str>) -> Value {
    json!({"service_name": "integr8scode-backend", "service_version": "1.0.0", "user_id": user})
}

fn request(id: &str, ms: i64, user: Option<&str>, priority: Value) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": "execution_requested",
        "event_version": "1.0", "timestamp": at(ms), "aggregate_id": id, "metadata": meta(user),
        "execution_id": id, "script": "print('hi')", "language": "python",
        "language_version": "3.11", "runtime_image": "python:3.11-slim",
        "runtime_command": ["python", "/scripts/main.py"], "runtime_filename": "main.py",
        "timeout_seconds": 60, "priority": priority,
    })
}

/// A `create_pod_command`, an end or a cancellation of `id` at `ms`.
fn event(event_type: EventType, id: &str, ms: i64) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "event_type": event_type.as_str(),
        "timestamp": at(ms), "aggregate_id": id, "metadata": meta(Some("system")),
        "execution_id": id,
    });
    match event_type {
        EventType::CreatePodCommand => {
            e["saga_id"] = json!(coordinator_core::events::saga_id(id).to_string());
            e["cpu_request"] = json!("500m");
            e["memory_request"] = json!("512Mi");
        }
        EventType::ExecutionCompleted => e["exit_code"] = json!(0),
        EventType::ExecutionFailed => {
            e["exit_code"] = json!(1);
            e["error_type"] = json!("script_error");
        }
        EventType::ExecutionCancelled => e["cancelled_by"] = json!("user"),
        _ => {}
    }
    e
}

/// Produces `payload` to `topic`/`partition`, with a message timestamp when given, and waits
/// for the acknowledgement.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    timestamp_ms: Option<i64>,
    payload: &[u8],
) {
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    if let Some(ts) = timestamp_ms {
        record = record.timestamp(ts);
    }
    producer
        .send(record, WAIT)
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic} failed: {e}"));
}

async fn send_event(producer: &FutureProducer, topic: &str, partition: i32, event: &Value) {
    send(
        producer,
        topic,
        partition,
        None,
        &serde_json::to_vec(event).unwrap(),
    )
    .await;
}

fn simulate(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("simulate")
        .arg("--from-kafka")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn replays_a_deployments_own_traffic_from_its_topics() {
    let bootstrap = bootstrap_servers();
    let config = sim_config(TestConfig::fresh().per_event_type());
    let kafka = config.kafka();
    for topic in traffic_topics(&kafka) {
        create_topic(&topic, 2).await;
    }
    let topic = |t: EventType| kafka.topic_of(t);
    let (requested, commands) = (
        topic(EventType::ExecutionRequested),
        topic(EventType::CreatePodCommand),
    );
    let p = producer();
    use EventType::*;

    // a: HIGH by name, explicit resources; started after 2 s, completed 5 s later.
    let mut a = request("a", T0, Some("alice"), json!("high"));
    a["cpu_request"] = json!("500m");
    a["memory_request"] = json!("256Mi");
    send_event(&p, &requested, 0, &a).await;
    // b: CRITICAL by number, java's default resources; timed out by the pod monitor.
    let mut b = request("b", T0 + 1_000, Some("bob"), json!(0));
    b["language"] = json!("java");
    b["timeout_seconds"] = json!(30);
    send_event(&p, &requested, 1, &b).await;
    // c: LOW; the worker reports it failed a second after its start.
    send_event(
        &p,
        &requested,
        0,
        &request("c", T0 + 2_000, Some("alice"), json!("low")),
    )
    .await;
    // d: anonymous, no `timestamp` field (timed by the message); started, never ended.
    let mut d = request("d", 0, None, json!("background"));
    d.as_object_mut().unwrap().remove("timestamp");
    send(
        &p,
        &requested,
        1,
        Some(T0 + 3_000),
        &serde_json::to_vec(&d).unwrap(),
    )
    .await;
    // e: cancelled while queued; f: refused by the coordinator; g: an unknown priority.
    send_event(
        &p,
        &requested,
        0,
        &request("e", T0 + 4_000, None, json!("normal")),
    )
    .await;
    send_event(
        &p,
        &requested,
        1,
        &request("f", T0 + 5_000, None, json!("normal")),
    )
    .await;
    send_event(
        &p,
        &requested,
        0,
        &request("g", T0 + 6_000, None, json!("urgent")),
    )
    .await;
    // h: still queued when the topics are read.
    send_event(
        &p,
        &requested,
        1,
        &request("h", T0 + 7_000, Some("carol"), json!("normal")),
    )
    .await;
    // A redelivery of a, a message that is not JSON, and an event type the replay ignores.
    send_event(
        &p,
        &requested,
        1,
        &request("a", T0 + 8_000, Some("alice"), json!("high")),
    )
    .await;
    send(&p, &requested, 0, Some(T0), b"not json").await;
    let other = json!({"event_type": "pod_created", "execution_id": "a", "metadata": meta(None)});
    send_event(&p, &topic(ExecutionCompleted), 0, &other).await;

    send_event(&p, &commands, 1, &event(CreatePodCommand, "a", T0 + 2_000)).await;
    send_event(&p, &commands, 0, &event(CreatePodCommand, "b", T0 + 1_500)).await;
    send_event(&p, &commands, 1, &event(CreatePodCommand, "c", T0 + 3_000)).await;
    send_event(&p, &commands, 0, &event(CreatePodCommand, "d", T0 + 3_250)).await;
    send_event(
        &p,
        &topic(ExecutionCompleted),
        1,
        &event(ExecutionCompleted, "a", T0 + 7_000),
    )
    .await;
    let mut timeout = event(ExecutionTimeout, "b", T0 + 31_500);
    timeout["timeout_seconds"] = json!(30);
    send_event(&p, &topic(ExecutionTimeout), 0, &timeout).await;
    send_event(
        &p,
        &topic(ExecutionFailed),
        1,
        &event(ExecutionFailed, "c", T0 + 4_000),
    )
    .await;
    send_event(
        &p,
        &topic(ExecutionCancelled),
        0,
        &event(ExecutionCancelled, "e", T0 + 4_500),
    )
    .await;
    let mut refused = event(ExecutionFailed, "f", T0 + 5_010);
    refused["exit_code"] = json!(-1);
    refused["error_type"] = json!("resource_limit");
    refused["metadata"]["service_name"] = json!("execution-coordinator");
    send_event(&p, &topic(ExecutionFailed), 0, &refused).await;
    // An end of an execution never requested.
    send_event(
        &p,
        &topic(ExecutionCompleted),
        0,
        &event(ExecutionCompleted, "ghost", T0),
    )
    .await;
    p.flush(WAIT).expect("flush");

    // The mapping, read the way the command reads it.
    let toml = config.toml(&bootstrap);
    let sim = SimConfig::from_toml_str(&toml).expect("a valid simulator config");
    let (traffic, read) = read_traffic(&kafka, &bootstrap, Duration::from_secs(30)).unwrap();
    assert_eq!(read.iter().map(|t| t.messages).sum::<u64>(), 21, "{read:?}");
    assert!(read.iter().all(|t| !t.missing), "{read:?}");
    let counts = traffic.counts();
    assert_eq!(
        (counts.bad, counts.ignored, counts.kafka_timestamps),
        (1, 1, 1)
    );
    let bad = traffic.bad_messages();
    assert_eq!(
        (bad[0].topic.as_str(), bad[0].partition),
        (requested.as_str(), 0)
    );
    assert!(bad[0].reason.contains("not valid JSON"), "{bad:?}");

    let mapped = traffic.map(&sim, &Filter::default());
    assert_eq!(
        mapped.skips,
        Skips {
            cancelled: 1,
            not_started: 1,
            invalid: 1,
            duplicates: 1,
            orphans: 1,
            still_running: 1,
            still_queued: 1,
            ..Skips::default()
        }
    );
    let job =
        |submit: i64, runtime_ms, timeout_ms, cpu_millis, memory_mib, priority, user, wait| {
            SimJob {
                submit_ms: (T0 + submit) as u64,
                runtime_ms,
                timeout_ms,
                cpu_millis,
                memory_mib,
                priority,
                user,
                recorded_wait_ms: wait,
                overruns: false,
            }
        };
    assert_eq!(
        mapped.jobs,
        vec![
            job(0, 5_000, 60_000, 500, 256, Priority::High, 0, Some(2_000)),
            job(
                1_000,
                30_000,
                30_000,
                1_000,
                1_024,
                Priority::Critical,
                1,
                Some(500)
            ),
            job(
                2_000,
                1_000,
                60_000,
                500,
                512,
                Priority::Low,
                0,
                Some(1_000)
            ),
            job(
                3_000,
                60_000,
                60_000,
                500,
                512,
                Priority::Background,
                -1,
                Some(250)
            ),
            job(7_000, 60_000, 60_000, 500, 512, Priority::Normal, 2, None),
        ]
    );

    // The command: a table on stdout, what was skipped and why on stderr, the same bytes twice.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = simulate(&path, &["--policy", "strict"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("5 jobs, 3 skipped, 0 rejected, 0 never fit, 0 expired"),
        "{stdout}"
    );
    for level in ["critical", "high", "normal", "low", "background", "all"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{level} ")))
            .unwrap_or_else(|| panic!("no {level} row:\n{stdout}"));
        let jobs = if level == "all" { "5" } else { "1" };
        assert_eq!(row.split_whitespace().nth(1), Some(jobs), "{row}");
    }
    let recorded = stdout.lines().find(|l| l.starts_with("trace ")).unwrap();
    assert_eq!(recorded.split_whitespace().nth(1), Some("4"), "{recorded}");
    assert!(stderr.contains("read 21 messages"), "{stderr}");
    assert!(stderr.contains("1 bad messages skipped"), "{stderr}");
    assert!(stderr.contains(&format!("{requested}/0@")), "{stderr}");
    assert!(
        stderr.contains("1 cancelled before a create_pod_command"),
        "{stderr}"
    );
    assert!(stderr.contains("1 invalid"), "{stderr}");
    assert!(stderr.contains("1 still queued"), "{stderr}");
    let again = simulate(&path, &["--policy", "strict"]);
    assert_eq!(text(&again.stdout), stdout, "a second run differs");

    // A window: the requests from T0 + 2 s on (c, d, h replayed; e, f, g skipped).
    let since = at(T0 + 2_000);
    let out = simulate(
        &path,
        &[
            "--since",
            &since,
            "--until",
            "2126-01-01T00:00:00Z",
            "--json",
        ],
    );
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(
        (json["jobs"].as_u64(), json["skipped"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        text(&out.stderr).contains("2 requests outside --since/--until"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn the_shared_layout_is_read_committed_to_its_end() {
    let bootstrap = bootstrap_servers();
    let config = sim_config(TestConfig::fresh());
    let kafka = config.kafka();
    let topics = traffic_topics(&kafka);
    assert_eq!(topics.len(), 2, "{topics:?}");
    for topic in &topics {
        create_topic(topic, 1).await;
    }
    let events = kafka.topic_of(EventType::ExecutionRequested);
    let commands = kafka.topic_of(EventType::CreatePodCommand);
    // As the daemon writes under exactly-once: in transactions, so every partition ends in a
    // commit marker; an aborted transaction's events are not seen.
    let p = transactional_producer();
    p.begin_transaction().unwrap();
    for i in 0..3 {
        let id = format!("x{i}");
        let start = T0 + i * 10_000;
        send_event(
            &p,
            &events,
            0,
            &request(&id, start, Some("u"), json!("normal")),
        )
        .await;
        send_event(
            &p,
            &commands,
            0,
            &event(EventType::CreatePodCommand, &id, start + 100),
        )
        .await;
        send_event(
            &p,
            &events,
            0,
            &event(EventType::ExecutionCompleted, &id, start + 1_100),
        )
        .await;
    }
    p.commit_transaction(WAIT).unwrap();
    p.begin_transaction().unwrap();
    send_event(&p, &events, 0, &request("aborted", T0, None, json!("high"))).await;
    p.abort_transaction(WAIT).unwrap();

    let started = Instant::now();
    let (traffic, read) = read_traffic(&kafka, &bootstrap, Duration::from_secs(30)).unwrap();
    // Ending at the commit markers, not waiting for a message past them.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(read.iter().map(|t| t.messages).sum::<u64>(), 9, "{read:?}");
    let sim = SimConfig::from_toml_str(&config.toml(&bootstrap)).unwrap();
    let mapped = traffic.map(&sim, &Filter::default());
    assert_eq!(mapped.skips, Skips::default());
    let summary: Vec<_> = mapped
        .jobs
        .iter()
        .map(|j| (j.submit_ms as i64 - T0, j.runtime_ms, j.recorded_wait_ms))
        .collect();
    assert_eq!(
        summary,
        [
            (0, 1_000, Some(100)),
            (10_000, 1_000, Some(100)),
            (20_000, 1_000, Some(100))
        ]
    );
}

#[test]
fn an_unreachable_broker_is_an_error_within_the_timeout() {
    let config = TestConfig::fresh().toml("127.0.0.1:1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let out = simulate(&path, &["--kafka-timeout", "2s"]);
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("no Kafka broker at 127.0.0.1:1 answered within 2s"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    assert!(out.stdout.is_empty());

    // No brokers at all: said at once, not an embedded broker.
    let path = dir.path().join("no-brokers.toml");
    std::fs::write(&path, "[kafka]\ntopic_prefix = \"x.\"\n").unwrap();
    let out = simulate(&path, &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("--from-kafka needs brokers"),
        "{}",
        text(&out.stderr)
    );

    // The Kafka input's flags are refused with another input, not ignored.
    let out = Command::new(BIN)
        .args(["simulate", "--synthetic", "5", "--since", "2h", "--config"])
        .arg(&path)
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--since applies to --from-kafka only"),
        "{stderr}"
    );
}
