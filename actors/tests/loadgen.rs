//! `loadgen` and `worker-sim` against a real Apache Kafka broker (`make test` starts one): the
//! load generator publishes exactly what it says, reproducibly, and with the daemon and the
//! worker simulator it closes the loop: every request is commanded and completed, through a
//! pool that holds only a few at a time.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use coordinator_core::events::{decode_input, ExecutionRequested, InputEvent};
use coordinator_core::Priority;
use execution_coordinator::tools::loadgen::{execution_id, run_loadgen, LoadgenOptions};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::kafka::{bootstrap_servers, collect_until, create_topic, Isolation, Received};
use support::{deadline, WAIT};

/// Runs the binary with `args` and `config` as its config file; waits (bounded) for its exit.
fn run_cli(config: &TestConfig, bootstrap: &str, args: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().expect("temp config file");
    file.write_all(config.toml(bootstrap).as_bytes())
        .expect("writing the config file");
    let child = Command::new(env!("CARGO_BIN_EXE_execution-coordinator"))
        .args(args)
        .arg("--config")
        .arg(file.path())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the binary");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("waiting for the binary"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!(
                "`execution-coordinator {}` did not exit within {WAIT:?}",
                args.join(" ")
            );
        }
    }
}

/// Stdout and stderr of `output`, for failure messages.
fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// How many messages `topic`'s only partition holds (its high watermark).
/// Messages on partition 0 of `topic` as a `read_committed` reader sees them: read from the
/// start until the reader's position reaches the high watermark (transaction markers take
/// offsets too, so the watermark alone over-counts under exactly-once).
fn message_count(topic: &str) -> i64 {
    let consumer: BaseConsumer = support::kafka::client_config(&[
        ("group.id", &support::kafka::fresh_group()),
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
    ])
    .create()
    .expect("cannot create the Kafka consumer");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, WAIT)
        .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"));
    assert_eq!(low, 0);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = deadline();
    let mut count = 0;
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
            count += 1;
        }
        let position = consumer
            .position()
            .ok()
            .and_then(|p| p.find_partition(topic, 0).map(|e| e.offset()));
        if matches!(position, Some(rdkafka::Offset::Offset(p)) if p >= high) {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} not read to its end ({high})"
        );
    }
}

/// The requests on `messages`, in order; each must decode and be keyed by its execution id.
fn requests(messages: &[Received]) -> Vec<ExecutionRequested> {
    messages
        .iter()
        .map(|m| {
            let payload = m.payload.as_deref().unwrap_or_default();
            match decode_input(payload, 1 << 20) {
                Ok(InputEvent::Requested(r)) => {
                    assert_eq!(m.key_str(), r.execution_id, "key = execution_id");
                    r
                }
                other => panic!("not an execution_requested: {other:?}"),
            }
        })
        .collect()
}

/// Reads `topic` from the start until `n` messages have arrived.
async fn read_n(topic: &str, n: usize) -> Vec<Received> {
    collect_until(topic, Isolation::ReadCommitted, deadline(), |m| {
        m.len() >= n
    })
    .await
}

#[tokio::test]
async fn loadgen_publishes_exactly_count_requests_reproducibly() {
    const COUNT: usize = 400;
    const SEED: u64 = 42;
    let bootstrap = bootstrap_servers();

    // The CLI, publishing to the input topic of its config.
    let config = TestConfig::fresh();
    create_topic(&config.events_topic(), 1).await;
    let count = COUNT.to_string();
    let seed = SEED.to_string();
    let output = run_cli(
        &config,
        &bootstrap,
        &[
            "loadgen",
            "--count",
            &count,
            "--rate",
            "0",
            "--seed",
            &seed,
            "--users",
            "7",
            "--priority-mix",
            "critical=1,normal=3",
            "--language-mix",
            "python=1,go=1",
            "--script-bytes",
            "300",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "{COUNT} execution_requested sent to {}",
            config.events_topic()
        )) && stdout.contains(&format!("{COUNT} acked, 0 errors (seed {SEED})")),
        "{}",
        text(&output)
    );

    let first = requests(&read_n(&config.events_topic(), COUNT).await);
    assert_eq!(message_count(&config.events_topic()), COUNT as i64);
    let ids: Vec<String> = first.iter().map(|r| r.execution_id.clone()).collect();
    let want: Vec<String> = (0..COUNT as u64)
        .map(|i| execution_id(SEED, i).to_string())
        .collect();
    assert_eq!(ids, want, "ids are the seed's sequence, in order");
    let mut by_priority: BTreeMap<Priority, usize> = BTreeMap::new();
    let mut users = BTreeSet::new();
    for r in &first {
        *by_priority
            .entry(r.priority_level().expect("loadgen writes valid levels"))
            .or_default() += 1;
        users.insert(r.metadata.user_key().to_owned());
        assert!(matches!(r.language.as_str(), "python" | "go"));
        assert_eq!(r.script.len(), 300);
        assert_eq!(
            r.cpu_request, None,
            "no --cpu: the language default applies"
        );
    }
    // critical = 1/4 of 400: expected 100, standard deviation under 9.
    let critical = by_priority.get(&Priority::Critical).copied();
    assert!(
        matches!(critical, Some(60..=140)),
        "priority counts {by_priority:?}"
    );
    assert_eq!(
        by_priority.keys().copied().collect::<Vec<_>>(),
        [Priority::Critical, Priority::Normal]
    );
    assert_eq!(users.len(), 7);

    // The library with the same seed and mix, to another topic: the same sequence.
    let again = TestConfig::fresh();
    create_topic(&again.events_topic(), 1).await;
    let options = LoadgenOptions {
        count: COUNT as u64,
        rate: 0.0,
        seed: Some(SEED),
        users: 7,
        priority_mix: "critical=1,normal=3".parse().expect("mix"),
        language_mix: "python=1,go=1".parse().expect("mix"),
        script_bytes: 300,
        quiet: true,
        ..LoadgenOptions::default()
    };
    let summary = run_loadgen(options, &again.config(&bootstrap).kafka, &bootstrap)
        .await
        .expect("loadgen runs");
    assert_eq!((summary.sent, summary.acked, summary.errors), (400, 400, 0));
    assert_eq!(summary.topic, again.events_topic());
    let second = requests(&read_n(&again.events_topic(), COUNT).await);
    assert_eq!(message_count(&again.events_topic()), COUNT as i64);
    let strip = |r: &ExecutionRequested| ExecutionRequested {
        timestamp: String::new(),
        ..r.clone()
    };
    assert!(
        first.iter().map(strip).eq(second.iter().map(strip)),
        "the same seed gives the same requests"
    );
}

/// JSON of every message of `event_type` on `messages`.
fn of_type(messages: &[Received], event_type: &str) -> Vec<Value> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(m.payload.as_deref()?).ok())
        .filter(|v| v["event_type"] == event_type)
        .collect()
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn daemon_loadgen_and_worker_sim_close_the_loop() {
    const COUNT: usize = 60;
    const SEED: u64 = 7;
    let bootstrap = bootstrap_servers();
    // Three 500m executions at a time: 2 cores, no overcommit, 100m kept free.
    let config = TestConfig::fresh()
        .set("resources", "total_cpu_cores = 2.0")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.1")
        .set("scheduler", "scheduling_interval = \"100ms\"");
    let mut daemon = DaemonProcess::start(&config, &bootstrap);

    // The worker simulator as the CLI runs it, until it has run COUNT commands.
    let worker = {
        let config = config.clone();
        let bootstrap = bootstrap.clone();
        let count = COUNT.to_string();
        std::thread::spawn(move || {
            run_cli(
                &config,
                &bootstrap,
                &[
                    "worker-sim",
                    "--count",
                    &count,
                    "--runtime",
                    "uniform:20-80",
                    "--seed",
                    "3",
                    "--quiet",
                ],
            )
        })
    };

    // A burst of requests, from the library.
    let options = LoadgenOptions {
        count: COUNT as u64,
        rate: 0.0,
        seed: Some(SEED),
        cpu: Some("500m".into()),
        memory: Some("256Mi".into()),
        quiet: true,
        ..LoadgenOptions::default()
    };
    let summary = run_loadgen(options, &config.config(&bootstrap).kafka, &bootstrap)
        .await
        .expect("loadgen runs");
    assert_eq!((summary.sent, summary.acked, summary.errors), (60, 60, 0));
    let want: BTreeSet<String> = (0..COUNT as u64)
        .map(|i| execution_id(SEED, i).to_string())
        .collect();

    // Every request is accepted, commanded once and completed once.
    let events = collect_until(
        &config.events_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| of_type(m, "execution_completed").len() >= COUNT,
    )
    .await;
    let commands = collect_until(
        &config.commands_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| m.len() >= COUNT,
    )
    .await;
    let commanded = of_type(&commands, "create_pod_command");
    assert_eq!(commanded.len(), COUNT);
    assert_eq!(ids(&commanded), want);
    let completed = of_type(&events, "execution_completed");
    assert_eq!(completed.len(), COUNT);
    assert_eq!(ids(&completed), want);
    let accepted = of_type(&events, "execution_accepted");
    assert_eq!(ids(&accepted), want);
    assert!(of_type(&events, "execution_failed").is_empty());
    // Nothing twice: the topics hold exactly the requests, acceptances, completions and commands.
    assert_eq!(message_count(&config.events_topic()), 3 * COUNT as i64);
    assert_eq!(message_count(&config.commands_topic()), COUNT as i64);
    // The pool holds three, so most of the burst waited in the queue.
    let queued = accepted
        .iter()
        .filter(|a| a["queue_position"].as_u64() > Some(0))
        .count();
    assert!(
        queued >= COUNT / 2,
        "only {queued} were queued behind others"
    );
    for c in &completed {
        assert_eq!(c["metadata"]["service_name"], "worker-sim");
        assert_eq!(c["exit_code"], 0);
        let user = c["metadata"]["user_id"].as_str().unwrap_or_default();
        assert!(user.starts_with("loadgen-user-"), "{c}");
    }

    let output = worker.join().expect("the worker-sim thread");
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "{COUNT} create_pod_command from {}",
            config.commands_topic()
        )) && stdout.contains(&format!("{COUNT} completed, 0 failed")),
        "{}",
        text(&output)
    );
    assert!(daemon.terminate().success(), "{}", daemon.log().join("\n"));
}
