//! Chaos on real Apache Kafka with exactly-once on: a steady stream of requests (some invalid,
//! some cancelled), a worker completing every command, and the daemon killed with SIGKILL at
//! seeded random moments and restarted. In the `read_committed` view every request ends in
//! exactly one command, rejection or expiry (cancelled ones in at most one), nothing is lost
//! or duplicated, and the final pool holds exactly the allocations still active: none. Run in
//! both topic layouts: `shared` with numeric priorities, `per_event_type` with named ones.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator_core::events::EventType;
use rdkafka::Message;
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::{golden, request};
use support::kafka::{bootstrap_servers, produce_event, producer, subscribed_consumer, Isolation};

/// A small seeded generator (xorshift64*), so a failing run can be replayed with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn json(m: &rdkafka::message::BorrowedMessage<'_>) -> Value {
    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "current_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing_in_the_shared_layout() {
    chaos(
        TestConfig::fresh(),
        [0, 1, 5, 8, 10].map(Value::from),
        Value::from(3),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing_per_event_type() {
    let names = ["critical", "high", "normal", "low", "background"].map(Value::from);
    chaos(
        TestConfig::fresh().per_event_type(),
        names,
        Value::from("urgent"),
    )
    .await;
}

/// The chaos run on `config`'s layout: requests at `levels` in turn, every 7th at `invalid`.
async fn chaos(config: TestConfig, levels: [Value; 5], invalid: Value) {
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
    let requests = config.topic(EventType::ExecutionRequested);
    let cancels = config.topic(EventType::ExecutionCancelled);
    let completions = config.topic(EventType::ExecutionCompleted);
    let failures_topic = config.topic(EventType::ExecutionFailed);

    // The worker: completes every command it reads (read_committed).
    let stop_worker = Arc::new(AtomicBool::new(false));
    let stop_load = Arc::new(AtomicBool::new(false));
    let commands: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let worker = {
        let consumer = subscribed_consumer(
            &support::kafka::fresh_group(),
            Isolation::ReadCommitted,
            &[&config.commands_topic()],
        );
        let (stop, commands, completions) =
            (stop_worker.clone(), commands.clone(), completions.clone());
        tokio::spawn(async move {
            let p = producer();
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                else {
                    continue;
                };
                let id = json(&m)["execution_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                *commands.lock().unwrap().entry(id.clone()).or_default() += 1;
                produce_event(&p, &completions, &golden("execution_completed", &id)).await;
            }
        })
    };

    // The load: a request every 25 ms; every 7th is invalid, every 11th is cancelled.
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let cancelled: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let load = {
        let (stop, sent, cancelled, requests, cancels) = (
            stop_load.clone(),
            sent.clone(),
            cancelled.clone(),
            requests.clone(),
            cancels.clone(),
        );
        tokio::spawn(async move {
            let p = producer();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("chaos-{i}");
                let priority = if i % 7 == 3 {
                    invalid.clone()
                } else {
                    levels[(i % 5) as usize].clone()
                };
                produce_event(
                    &p,
                    &requests,
                    &request(&id, &format!("u{}", i % 13), priority),
                )
                .await;
                sent.lock().unwrap().push(id.clone());
                if i % 11 == 5 {
                    produce_event(&p, &cancels, &golden("execution_cancelled", &id)).await;
                    cancelled.lock().unwrap().insert(id);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let mut daemon = DaemonProcess::start(&config, &bootstrap);
    let mut restore_ms = Vec::new();
    for kill in 0..kills {
        // Let it work for a seeded while, then kill it without warning.
        let alive = Duration::from_millis(rng.between(200, 1500));
        tokio::time::sleep(alive).await;
        daemon.kill();
        daemon = DaemonProcess::start(&config, &bootstrap);
        let line = daemon.wait_for_log("State restored.", Duration::from_secs(60));
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
    stop_load.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let sent: Vec<String> = sent.lock().unwrap().clone();
    let cancelled = cancelled.lock().unwrap().clone();

    // Every request settles: read the outcomes (read_committed) until each has one.
    let reader = subscribed_consumer(
        &support::kafka::fresh_group(),
        Isolation::ReadCommitted,
        &[&failures_topic],
    );
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
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
    stop_worker.store(true, Ordering::Relaxed);
    worker.await.expect("worker task");

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
    assert!(duplicated.is_empty(), "duplicated outcomes: {duplicated:?}");
    assert!(lost.is_empty(), "lost requests: {lost:?}");
    assert!(rejected > 0, "the invalid requests were rejected");

    // The pool holds exactly the active allocations: every command was completed, so none.
    daemon.wait_for_empty_pool();
    assert!(daemon.terminate().success());
}

/// The next `execution_failed` the coordinator published, as (execution id, error type), if one
/// arrives within 200 ms.
async fn next_failure(reader: &rdkafka::consumer::StreamConsumer) -> Option<(String, String)> {
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
