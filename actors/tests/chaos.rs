//! Chaos on real Apache Kafka with exactly-once on: a steady stream of requests from the
//! crate's `loadgen` (some invalid, some cancelled), its `worker-sim` completing every command,
//! and the daemon killed with SIGKILL at seeded random moments and restarted. In the
//! `read_committed` view every request ends in exactly one command, rejection or expiry
//! (cancelled ones in at most one), nothing is lost or duplicated, and the final pool holds
//! exactly the allocations still active: none. Run in both topic layouts: `shared` with numeric
//! priorities, `per_event_type` with named ones.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator_core::events::EventType;
use coordinator_core::priority::PriorityFormat;
use execution_coordinator::tools::loadgen::{self, execution_id, run_loadgen, LoadgenOptions};
use execution_coordinator::tools::worker_sim::{run_worker_sim, WorkerSimOptions};
use rdkafka::consumer::StreamConsumer;
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::golden;
use support::kafka::payload_json as json;
use support::kafka::{
    bootstrap_servers, fresh_group, produce_event, producer, subscribed_consumer, Isolation,
};
use support::{deadline, Rng, WAIT};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "current_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing_in_the_shared_layout() {
    chaos(TestConfig::fresh(), PriorityFormat::Number).await;
}

/// This one commits only every `transaction_interval` (the shared one commits early, the
/// default), so both ways of committing are killed at random moments.
#[tokio::test(flavor = "current_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing_per_event_type() {
    let config = TestConfig::fresh()
        .per_event_type()
        .set("kafka", "transaction_commit_early = false");
    chaos(config, PriorityFormat::Name).await;
}

/// Every 7th request carries a priority that is no level (`"urgent"`, or `3` by number).
const INVALID_EVERY: u64 = 7;

/// Every 11th request (the 6th, 17th, …) is cancelled once it is on the broker.
const CANCEL_EVERY: u64 = 11;

/// The chaos run on `config`'s layout: `loadgen` sends requests at every level in turn, with
/// priorities in `format`, a few invalid; `worker-sim` completes every command at once.
async fn chaos(config: TestConfig, format: PriorityFormat) {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_C0DE);
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut rng = Rng(seed | 1);
    let bootstrap = bootstrap_servers();
    let config = config
        .set("kafka", "exactly_once = true")
        .set("kafka", "transaction_interval = \"20ms\"")
        .set("kafka", "group_instance_id = \"chaos-coordinator\"")
        // Room for 4 executions of 500m at a time, so work queues up between kills.
        .set("resources", "total_cpu_cores = 2.2")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.2")
        .set("queue", "stale_timeout = \"30s\"")
        .set("scheduler", "scheduling_interval = \"100ms\"");
    let kafka = config.config(&bootstrap).kafka;
    let failures_topic = config.topic(EventType::ExecutionFailed);

    // The daemon first: it creates the topics the load generator checks for.
    let mut daemon = DaemonProcess::start(&config, &bootstrap);

    // Every command in the read_committed view, counted per execution.
    let stop_worker = CancellationToken::new();
    let commands: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let observer = {
        let consumer = subscribed_consumer(
            &fresh_group(),
            Isolation::ReadCommitted,
            &[&config.commands_topic()],
        );
        let (stop, commands) = (stop_worker.clone(), commands.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                else {
                    continue;
                };
                let id = json(&m)["execution_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                *commands.lock().unwrap().entry(id).or_default() += 1;
            }
        })
    };
    // The worker: completes every command it reads (read_committed), at once.
    let worker = {
        let options = WorkerSimOptions {
            runtime: "const:0".parse().expect("a runtime distribution"),
            fail_rate: 0.0,
            seed: Some(seed),
            quiet: true,
            stop: stop_worker.clone(),
            ..WorkerSimOptions::default()
        };
        let (kafka, bootstrap) = (kafka.clone(), bootstrap.clone());
        tokio::spawn(async move { run_worker_sim(options, &kafka, &bootstrap).await })
    };

    // The load: a request every 25 ms at each level in turn; every 7th is invalid.
    let stop_load = CancellationToken::new();
    let load = {
        let options = LoadgenOptions {
            rate: 40.0,
            count: 0,
            users: 13,
            priority_mix: "critical=1,high=1,normal=1,low=1,background=1"
                .parse()
                .expect("a priority mix"),
            priority_format: format,
            invalid_every: INVALID_EVERY,
            language_mix: "python=1".parse().expect("a language mix"),
            cpu: Some("500m".to_owned()),
            memory: Some("256Mi".to_owned()),
            seed: Some(seed),
            quiet: true,
            stop: stop_load.clone(),
            ..LoadgenOptions::default()
        };
        let (kafka, bootstrap) = (kafka.clone(), bootstrap.clone());
        tokio::spawn(async move { run_loadgen(options, &kafka, &bootstrap).await })
    };
    // Every 11th is cancelled once it is on the broker.
    let published = Arc::new(AtomicU64::new(u64::MAX));
    let canceller = tokio::spawn(cancel_every(
        CANCEL_EVERY,
        config.topic(EventType::ExecutionRequested),
        config.topic(EventType::ExecutionCancelled),
        published.clone(),
    ));

    let mut restore_ms = Vec::new();
    // Every killed daemon's log, to say what each did with a request that went wrong.
    let mut logs: Vec<Vec<String>> = Vec::new();
    for kill in 0..kills {
        // Let it work for a seeded while, then kill it without warning.
        let alive = Duration::from_millis(rng.between(200, 1500));
        tokio::time::sleep(alive).await;
        daemon.kill();
        logs.push(daemon.log());
        // Started off the runtime's thread, so the load and the worker go on meanwhile.
        let (next, line) = {
            let (config, bootstrap) = (config.clone(), bootstrap.clone());
            tokio::task::spawn_blocking(move || {
                let daemon = DaemonProcess::start(&config, &bootstrap);
                let line = daemon.wait_for_log("State restored.", WAIT);
                (daemon, line)
            })
            .await
            .expect("restarting the daemon")
        };
        daemon = next;
        if let Some(ms) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("elapsed_ms="))
            .and_then(|v| v.parse::<u64>().ok())
        {
            restore_ms.push(ms);
        }
        eprintln!("chaos: kill {} after {alive:?}", kill + 1);
    }
    // Some load after the last restart too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_load.cancel();
    let summary = load
        .await
        .expect("load task")
        .unwrap_or_else(|e| panic!("loadgen failed: {e:#}"));
    assert_eq!(summary.errors, 0, "every request was delivered: {summary}");
    let sent: Vec<String> = (0..summary.sent)
        .map(|i| execution_id(seed, i).to_string())
        .collect();
    published.store(summary.sent, Ordering::Relaxed);
    let cancelled = canceller.await.expect("canceller task");

    // Every request settles: read the outcomes (read_committed) until each has one.
    let reader = subscribed_consumer(&fresh_group(), Isolation::ReadCommitted, &[&failures_topic]);
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let settled = |failures: &BTreeMap<String, Vec<String>>| {
            let commands = commands.lock().unwrap();
            sent.iter().all(|id| {
                cancelled.contains(id) || commands.contains_key(id) || failures.contains_key(id)
            })
        };
        if settled(&failures) {
            break;
        }
        if Instant::now() > deadline {
            let commands = commands.lock().unwrap();
            let open: Vec<&String> = sent
                .iter()
                .filter(|id| {
                    !cancelled.contains(*id)
                        && !commands.contains_key(*id)
                        && !failures.contains_key(*id)
                })
                .collect();
            let log = daemon.log();
            panic!(
                "{} of {} requests never settled: {open:?}\nlast daemon log:\n{}",
                open.len(),
                sent.len(),
                log[log.len().saturating_sub(40)..].join("\n")
            );
        }
        if let Some((id, kind)) = next_failure(&reader).await {
            failures.entry(id).or_default().push(kind);
        }
    }
    // Drain what else is committed for a moment, so a late duplicate would be seen.
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        if let Some((id, kind)) = next_failure(&reader).await {
            failures.entry(id).or_default().push(kind);
        }
    }
    stop_worker.cancel();
    observer.await.expect("command observer task");
    let worked = worker
        .await
        .expect("worker task")
        .unwrap_or_else(|e| panic!("worker-sim failed: {e:#}"));
    eprintln!("chaos: {worked}");

    let commands = commands.lock().unwrap().clone();
    let (mut lost, mut duplicated) = (Vec::new(), Vec::new());
    for id in &sent {
        let outcomes =
            commands.get(id).copied().unwrap_or(0) + failures.get(id).map_or(0, Vec::len);
        if outcomes > 1 {
            duplicated.push((id.clone(), commands.get(id), failures.get(id)));
        }
        if outcomes == 0 && !cancelled.contains(id) {
            lost.push(id.clone());
        }
    }
    let rejected = failures
        .values()
        .filter(|f| f.contains(&"system_error".to_owned()))
        .count();
    eprintln!(
        "chaos summary: seed={seed:#x} kills={kills} requests={} commands={} rejections={rejected} \
         cancelled={} duplicates={} lost={} restore_ms={restore_ms:?}",
        sent.len(),
        commands.values().sum::<usize>(),
        cancelled.len(),
        duplicated.len(),
        lost.len(),
    );
    if !duplicated.is_empty() || !lost.is_empty() {
        logs.push(daemon.log());
        let ids: Vec<&String> = duplicated.iter().map(|d| &d.0).chain(&lost).collect();
        eprintln!("chaos: what each daemon logged about {ids:?}, with its starts and stops:");
        for (n, log) in logs.iter().enumerate() {
            for line in log.iter().filter(|l| {
                ids.iter().any(|id| l.contains(id.as_str()))
                    || [
                        "State restored",
                        "Standby",
                        "Owner now",
                        "transactions initialised",
                        "Recovering",
                        "Transaction",
                        "Partitions",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
            }) {
                eprintln!("  daemon {}: {line}", n + 1);
            }
        }
    }
    assert!(duplicated.is_empty(), "duplicated outcomes: {duplicated:?}");
    assert!(lost.is_empty(), "lost requests: {lost:?}");
    assert!(rejected > 0, "the invalid requests were rejected");

    // The pool holds exactly the active allocations: every command was completed, so none.
    daemon.wait_for_empty_pool();
    assert!(daemon.terminate().success());
}

/// The next `execution_failed` the coordinator published, as (execution id, error type), if one
/// arrives within 200 ms.
async fn next_failure(reader: &StreamConsumer) -> Option<(String, String)> {
    let m = tokio::time::timeout(Duration::from_millis(200), reader.recv())
        .await
        .ok()?
        .ok()?;
    let event = json(&m);
    let ours = event["event_type"] == "execution_failed"
        && event["metadata"]["service_name"] == "execution-coordinator";
    ours.then(|| {
        let field = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
        (field("execution_id"), field("error_type"))
    })
}

/// Reads the requests the load generator publishes to `requests`, in order, and cancels every
/// `every`th of them (the `every / 2`th, then each `every` later) on `cancels`, until it has
/// seen `published` of them (unknown, `u64::MAX`, while the load runs). Answers the cancelled.
async fn cancel_every(
    every: u64,
    requests: String,
    cancels: String,
    published: Arc<AtomicU64>,
) -> BTreeSet<String> {
    let reader = subscribed_consumer(&fresh_group(), Isolation::ReadCommitted, &[&requests]);
    let p = producer();
    let (mut seen, mut cancelled) = (0u64, BTreeSet::new());
    let mut until = None;
    loop {
        let total = published.load(Ordering::Relaxed);
        if seen >= total {
            return cancelled;
        }
        if total != u64::MAX {
            let until = *until.get_or_insert_with(deadline);
            assert!(
                Instant::now() < until,
                "the canceller saw {seen} of the {total} requests within {WAIT:?}"
            );
        }
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), reader.recv()).await
        else {
            continue;
        };
        let event = json(&m);
        if event["event_type"] != "execution_requested"
            || event["metadata"]["service_name"] != loadgen::SERVICE_NAME
        {
            continue; // in the shared layout, every other event travels here too
        }
        if seen % every == every / 2 {
            let id = event["execution_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            produce_event(&p, &cancels, &golden("execution_cancelled", &id)).await;
            cancelled.insert(id);
        }
        seen += 1;
    }
}
