//! A fault drill for the broker fault tests: the daemon as a child process on a private broker
//! (`broker/mod.rs`) in its default exactly-once mode, requests at 100/s, a worker completing
//! every command it reads, a reader of the coordinator's failures, all in the `read_committed`
//! view; and, once a test has injected its fault, the checks every test shares: each request
//! answered exactly once (a cancelled one at most once), none lost, the pool back to zero, the
//! daemon still running. What it saw is printed as one summary line and the logs are saved in
//! `target/tmp/broker_faults/<test>-<seed>/`.
#![allow(dead_code)]

mod forensics;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator_core::events::EventType;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{BrokerSettings, PrivateBroker};
use crate::support::daemon::{DaemonProcess, TestConfig};
use crate::support::golden::{golden, request};
use crate::support::kafka::payload_json as json;
use crate::support::Rng;

/// Priorities of the valid requests, in turn.
const LEVELS: [&str; 5] = ["critical", "high", "normal", "low", "background"];

/// The priority of every 7th request: not one, so it is rejected.
const INVALID: &str = "urgent";

/// What the daemon logs when it rebuilds its actors in process.
const RECOVERING: &str = "Recovering: the actors are rebuilt from the committed state.";

/// What the daemon logs when it exits on an error.
const EXITED: &str = "Coordinator failed.";

/// Largest message the test's producer writes (librdkafka `message.max.bytes`).
const PRODUCER_MAX_BYTES: usize = 16 << 20;

/// How long a request may take to be answered once the load has stopped: an outage leaves a
/// backlog of thousands, worked off by a debug build on a shared machine.
const SETTLE: Duration = Duration::from_secs(180);

/// The seed of this run: `FAULT_SEED`, decimal or 0x-hex.
pub fn seed() -> u64 {
    let Ok(text) = std::env::var("FAULT_SEED") else {
        return 0x5EED_FA17;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("FAULT_SEED={text:?} is not a number: {e}"))
}

/// A request the test sent, and what may answer it.
#[derive(Debug, Clone)]
pub struct Sent {
    id: String,
    /// Its priority is not one: only a rejection answers it.
    invalid: bool,
    /// A cancellation followed it: at most one answer.
    cancelled: bool,
}

impl Sent {
    /// A valid request the test sent itself, not cancelled.
    pub fn apart(id: &str) -> Self {
        Sent {
            id: id.to_owned(),
            invalid: false,
            cancelled: false,
        }
    }
}

/// What the readers saw committed, by execution id: "command" or "failed:<error_type>".
#[derive(Default)]
struct Outcomes {
    by_id: Mutex<BTreeMap<String, Vec<String>>>,
    /// Messages a reader got again at an offset it had read (its own repeat, not a duplicate).
    repeats: AtomicUsize,
    changed: Notify,
}

impl Outcomes {
    fn record(&self, id: &str, what: String) {
        self.by_id
            .lock()
            .expect("outcomes")
            .entry(id.to_owned())
            .or_default()
            .push(what);
        self.changed.notify_waiters();
    }

    /// Whether every request in `requests` has the answer it needs (see [`unanswered`]).
    fn all_answered(&self, requests: &[Sent]) -> bool {
        let by_id = self.by_id.lock().expect("outcomes");
        requests
            .iter()
            .all(|r| r.cancelled || by_id.contains_key(&r.id))
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        self.by_id.lock().expect("outcomes").clone()
    }

    fn total(&self) -> usize {
        self.by_id
            .lock()
            .expect("outcomes")
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// A runtime on a thread of its own for the load, the worker, the readers and the deliveries,
/// so they keep their pace while the test's thread blocks (starting a broker or a daemon).
struct Background {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the background runtime");
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || runtime.block_on(stop.cancelled()))
        };
        Background {
            handle,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    /// Stops the thread; the tasks still there are dropped with the runtime.
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A producer whose sends do not wait for the broker (so the load keeps its rate while the
/// broker is away): deliveries are awaited apart, and any failure fails the test.
#[derive(Clone)]
pub struct Sender {
    producer: FutureProducer,
    background: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    settled: Arc<Notify>,
}

impl Sender {
    fn new(broker: &PrivateBroker, background: &Background) -> Self {
        let max_bytes = PRODUCER_MAX_BYTES.to_string();
        let producer = broker
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "5"),
                ("message.max.bytes", &max_bytes),
            ])
            .create()
            .expect("the test's producer");
        Sender {
            producer,
            background: background.handle.clone(),
            in_flight: Arc::default(),
            failed: Arc::default(),
            settled: Arc::default(),
        }
    }

    /// Hands one message to the producer and returns at once.
    pub fn send(&self, topic: &str, key: &[u8], payload: &[u8]) {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        let delivery = self
            .producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("the test's producer refused a message: {e}"));
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        let what = format!("{topic} key {}", String::from_utf8_lossy(key));
        self.background.spawn(async move {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => this
                    .failed
                    .lock()
                    .expect("failed")
                    .push(format!("{what}: {e}")),
                Err(_) => this
                    .failed
                    .lock()
                    .expect("failed")
                    .push(format!("{what}: dropped")),
            }
            this.in_flight.fetch_sub(1, Ordering::SeqCst);
            this.settled.notify_waiters();
        });
    }

    /// `event` as JSON, keyed by its execution id.
    fn send_event(&self, topic: &str, event: &Value) {
        let key = event["execution_id"].as_str().unwrap_or_default();
        let payload = serde_json::to_vec(event).expect("JSON");
        self.send(topic, key.as_bytes(), &payload);
    }

    /// Waits until the broker has acknowledged everything sent; panics if one failed.
    async fn delivered(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let settled = self.settled.notified();
            let left = self.in_flight.load(Ordering::SeqCst);
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                panic!("{left} message(s) of the test not acknowledged within {within:?}");
            }
        }
        let failed = self.failed.lock().expect("failed");
        assert!(failed.is_empty(), "the test's producer failed: {failed:?}");
    }
}

/// A consumer of partition 0 of `topic` from its beginning, `read_committed`, outside any
/// group (no rebalance ever makes it read anything twice).
fn reader(broker: &PrivateBroker, topic: &str) -> StreamConsumer {
    reader_with(broker, topic, "read_committed")
}

/// [`reader`] at `isolation` (`read_committed` or `read_uncommitted`).
fn reader_with(broker: &PrivateBroker, topic: &str, isolation: &str) -> StreamConsumer {
    let group = format!("reader-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = broker
        .client_config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("isolation.level", isolation),
            ("reconnect.backoff.max.ms", "1000"),
            // A broker just back from a pause can answer a metadata request with "unknown
            // topic"; librdkafka then leaves the partition unfetched until its next periodic
            // refresh (5 minutes by default), past every deadline here.
            ("topic.metadata.refresh.interval.ms", "1000"),
        ])
        .create()
        .expect("the test's consumer");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition 0");
    consumer
        .assign(&partitions)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    consumer
}

/// Reads `consumer` until `stop`, calling `each` once per offset.
async fn read_each(
    consumer: Arc<StreamConsumer>,
    outcomes: Arc<Outcomes>,
    stop: CancellationToken,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) {
    let mut seen = BTreeSet::new();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            m = consumer.recv() => m,
        };
        // Errors are the broker being away; the consumer goes on by itself.
        let Ok(m) = message else { continue };
        if !seen.insert(m.offset()) {
            outcomes.repeats.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        each(&m);
    }
}

/// The worker: completes every command `consumer` reads.
fn worker(
    background: &Background,
    consumer: Arc<StreamConsumer>,
    config: &TestConfig,
    sender: Sender,
    outcomes: Arc<Outcomes>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let completions = config.topic(EventType::ExecutionCompleted);
    let recorder = outcomes.clone();
    background
        .handle
        .spawn(read_each(consumer, outcomes, stop, move |m| {
            let id = json(m)["execution_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            recorder.record(&id, "command".into());
            sender.send_event(&completions, &golden("execution_completed", &id));
        }))
}

/// Records every `execution_failed` of the coordinator's that `consumer` reads.
fn failures(
    background: &Background,
    consumer: Arc<StreamConsumer>,
    outcomes: Arc<Outcomes>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let recorder = outcomes.clone();
    background
        .handle
        .spawn(read_each(consumer, outcomes, stop, move |m| {
            let event = json(m);
            let ours = event["event_type"] == "execution_failed"
                && event["metadata"]["service_name"] == "execution-coordinator";
            if ours {
                let id = event["execution_id"].as_str().unwrap_or_default();
                let kind = event["error_type"].as_str().unwrap_or_default();
                recorder.record(id, format!("failed:{kind}"));
            }
        }))
}

/// Requests at 100/s until stopped: priorities in turn, every 7th invalid, every 11th
/// followed by its cancellation.
struct Load {
    stop: CancellationToken,
    sent: watch::Receiver<usize>,
    task: JoinHandle<Vec<Sent>>,
}

impl Load {
    fn start(
        background: &Background,
        config: &TestConfig,
        prefix: &'static str,
        sender: Sender,
    ) -> Self {
        let stop = CancellationToken::new();
        let (count, sent) = watch::channel(0);
        let requests = config.topic(EventType::ExecutionRequested);
        let cancels = config.topic(EventType::ExecutionCancelled);
        let task = {
            let stop = stop.clone();
            background.handle.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent = Vec::new();
                for i in 0usize.. {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let id = format!("{prefix}-{i}");
                    let invalid = i % 7 == 3;
                    let priority = if invalid { INVALID } else { LEVELS[i % 5] };
                    let user = format!("u{}", i % 13);
                    sender.send_event(&requests, &request(&id, &user, priority));
                    let cancelled = i % 11 == 5;
                    if cancelled {
                        sender.send_event(&cancels, &golden("execution_cancelled", &id));
                    }
                    sent.push(Sent {
                        id,
                        invalid,
                        cancelled,
                    });
                    count.send_replace(i + 1);
                }
                sent
            })
        };
        Load { stop, sent, task }
    }

    fn count(&self) -> usize {
        *self.sent.borrow()
    }

    async fn until_sent(&mut self, n: usize) {
        self.sent.wait_for(|&c| c >= n).await.expect("load task");
    }

    async fn stop(self) -> Vec<Sent> {
        self.stop.cancel();
        self.task.await.expect("load task")
    }
}

/// One fault drill: the private broker, the daemon (and those it replaced), the load, the
/// worker and the failure reader.
pub struct Drill {
    name: &'static str,
    seed: u64,
    /// Draws the fault's moment and length from the seed.
    pub rng: Rng,
    started: Instant,
    pub broker: PrivateBroker,
    pub config: TestConfig,
    /// Every daemon started, the running one last.
    daemons: Vec<DaemonProcess>,
    /// The test's producer.
    pub sender: Sender,
    outcomes: Arc<Outcomes>,
    load: Option<Load>,
    stop_readers: CancellationToken,
    readers: Vec<JoinHandle<()>>,
    /// The readers' consumers by topic: the commands', the failures'.
    positions: Vec<(String, Arc<StreamConsumer>)>,
    /// Requests sent apart from the load, checked with its own.
    pub extra: Vec<Sent>,
    /// What happened when, for the summary and the saved log.
    notes: Vec<String>,
    /// Last, so it stops after everything that spawned on it.
    _background: Background,
}

impl Drill {
    /// The broker, then the daemon (exactly-once, as by default), then the worker, the failure
    /// reader and the load.
    pub async fn start(name: &'static str, settings: BrokerSettings) -> Self {
        let seed = seed();
        let started = Instant::now();
        let broker = PrivateBroker::start(settings);
        let broker_ready = started.elapsed();
        let config = TestConfig::fresh()
            .per_event_type()
            .set("kafka", "exactly_once = true")
            // An outage leaves thousands of requests of 13 users waiting.
            .set("queue", "max_executions_per_user = 100000")
            .set("scheduler", "scheduling_interval = \"100ms\"");
        let daemon = DaemonProcess::start(&config, &broker.bootstrap());
        let background = Background::start();
        let sender = Sender::new(&broker, &background);
        let outcomes = Arc::new(Outcomes::default());
        let stop_readers = CancellationToken::new();
        let positions: Vec<(String, Arc<StreamConsumer>)> = [
            config.commands_topic(),
            config.topic(EventType::ExecutionFailed),
        ]
        .into_iter()
        .map(|topic| {
            let consumer = Arc::new(reader(&broker, &topic));
            (topic, consumer)
        })
        .collect();
        let readers = vec![
            worker(
                &background,
                positions[0].1.clone(),
                &config,
                sender.clone(),
                outcomes.clone(),
                stop_readers.clone(),
            ),
            failures(
                &background,
                positions[1].1.clone(),
                outcomes.clone(),
                stop_readers.clone(),
            ),
        ];
        let load = Load::start(&background, &config, name, sender.clone());
        let mut drill = Drill {
            name,
            seed,
            rng: Rng::new(seed),
            started,
            broker,
            config,
            daemons: vec![daemon],
            sender,
            outcomes,
            load: Some(load),
            stop_readers,
            readers,
            positions,
            extra: Vec::new(),
            notes: Vec::new(),
            _background: background,
        };
        drill.note(format!(
            "broker on {} ready after {broker_ready:?}; daemon consuming",
            drill.broker.bootstrap()
        ));
        drill
    }

    /// Kills the running daemon with SIGKILL and starts another at once with the same config;
    /// returns when it consumes (has its partitions).
    pub fn kill_and_restart_daemon(&mut self) {
        self.daemon().kill();
        let daemon = DaemonProcess::start(&self.config, &self.broker.bootstrap());
        self.daemons.push(daemon);
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> &mut DaemonProcess {
        self.daemons.last_mut().expect("a daemon")
    }

    /// Prints `what` with the time since the start, and keeps it for the saved notes.
    pub fn note(&mut self, what: String) {
        let line = format!(
            "{}: {:>6.1}s {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        self.notes.push(line);
    }

    /// Waits until `n` requests have been answered: the daemon is working under load.
    pub async fn until_answered(&mut self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let outcomes = self.outcomes.clone();
        loop {
            let changed = outcomes.changed.notified();
            if outcomes.total() >= n {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                self.fail(&format!(
                    "only {} of {n} requests answered before the fault",
                    self.outcomes.total()
                ));
            }
        }
        self.note(format!("{} requests answered", self.outcomes.total()));
    }

    /// Lets the load send `n` more requests (at most 100/s).
    pub async fn load_for(&mut self, n: usize) {
        let load = self.load.as_mut().expect("load running");
        let target = load.count() + n;
        load.until_sent(target).await;
    }

    /// Stops the load, waits until every request is answered, checks and prints the tallies,
    /// checks the pool is back to zero and stops the daemon with SIGTERM.
    pub async fn finish(mut self) {
        self.finish_keeping_readers().await;
        self.terminate();
    }

    /// [`Drill::finish`] but for the SIGTERM; returns what the readers saw, by execution id:
    /// "command" or "failed:<error_type>".
    pub async fn finish_keeping_readers(&mut self) -> BTreeMap<String, Vec<String>> {
        let mut requests = self.load.take().expect("load running").stop().await;
        requests.extend(self.extra.iter().cloned());
        self.sender.delivered(Duration::from_secs(120)).await;
        self.note(format!("load stopped after {} requests", requests.len()));

        // Every request is answered; the worker completes every command meanwhile.
        let deadline = tokio::time::Instant::now() + SETTLE;
        let outcomes = self.outcomes.clone();
        loop {
            let changed = outcomes.changed.notified();
            if outcomes.all_answered(&requests) {
                break;
            }
            self.check_alive();
            let tick = tokio::time::Instant::now() + Duration::from_secs(1);
            if tokio::time::timeout_at(tick.min(deadline), changed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                break;
            }
        }
        self.note("every request answered (or the deadline passed)".into());

        // The pool holds exactly the active allocations: every command was completed, so none.
        let addr = self.daemon().metrics_addr();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let (mut active, mut used);
        loop {
            poll.tick().await;
            let body = self.metrics(&addr);
            active = series(&body, "execution_coordinator_active_allocations");
            used = series(
                &body,
                "execution_coordinator_pool{resource=\"cpu_cores\",state=\"used\"}",
            );
            let drained = active == Some(0.0) && used == Some(0.0);
            if drained || Instant::now() > deadline {
                break;
            }
        }
        let body = self.metrics(&addr);
        let recoveries_metric =
            series(&body, "execution_coordinator_recoveries_total").unwrap_or(0.0);

        // Whatever else was committed reaches the readers before they stop, so a late
        // duplicate is seen.
        let behind = self.caught_up().await;
        self.stop_readers.cancel();
        for reader in self.readers.drain(..) {
            reader.await.expect("reader task");
        }

        let outcomes = self.outcomes.snapshot();
        let lost = unanswered(&requests, &outcomes);
        let duplicated: Vec<(&String, &Vec<String>)> = requests
            .iter()
            .filter_map(|r| outcomes.get(&r.id).map(|o| (&r.id, o)))
            .filter(|(_, o)| o.len() > 1)
            .collect();
        let commanded_invalid: Vec<&String> = requests
            .iter()
            .filter(|r| {
                r.invalid
                    && outcomes
                        .get(&r.id)
                        .is_some_and(|o| o.contains(&"command".to_owned()))
            })
            .map(|r| &r.id)
            .collect();
        let commands = outcomes
            .values()
            .flatten()
            .filter(|o| *o == "command")
            .count();
        let rejections = outcomes
            .values()
            .flatten()
            .filter(|o| *o != "command")
            .count();
        let recoveries: usize = self
            .daemons
            .iter()
            .map(|d| d.log().iter().filter(|l| l.contains(RECOVERING)).count())
            .sum();
        let summary = format!(
            "broker_faults summary: test={} seed={:#x} requests={} commands={commands} \
             rejections={rejections} cancelled={} recoveries={recoveries} (metric {recoveries_metric}) \
             lost={} duplicated={} reader_repeats={} behind={behind:?} elapsed={:.1}s",
            self.name,
            self.seed,
            requests.len(),
            requests.iter().filter(|r| r.cancelled).count(),
            lost.len(),
            duplicated.len(),
            self.outcomes.repeats.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64(),
        );
        eprintln!("{summary}");
        self.notes.push(summary);

        if !lost.is_empty() || !duplicated.is_empty() {
            let ids: BTreeSet<String> = lost
                .iter()
                .chain(duplicated.iter().map(|(id, _)| *id))
                .take(20)
                .cloned()
                .collect();
            let evidence = self.evidence(&ids).await;
            self.fail(&format!(
                "lost {lost:?}\nduplicated {duplicated:?}\nwhat the broker holds of them \
                 (first 20):\n{evidence}"
            ));
        }
        assert!(
            commanded_invalid.is_empty(),
            "invalid requests were commanded: {commanded_invalid:?}"
        );
        assert!(rejections > 0, "the invalid requests were rejected");
        if !behind.is_empty() {
            self.fail(&format!("the readers did not reach the end: {behind:?}"));
        }
        if active != Some(0.0) || used != Some(0.0) {
            let evidence = self.evidence(&BTreeSet::new()).await;
            self.fail(&format!(
                "pool not back to zero once the worker completed everything: \
                 active={active:?} cpu used={used:?}\n{evidence}"
            ));
        }
        self.check_alive();
        outcomes
    }

    /// What the broker holds of `ids` and of the executions the state topic leaves allocated
    /// (20 at most), kept for the saved notes too.
    async fn evidence(&mut self, ids: &BTreeSet<String>) -> String {
        let held = forensics::still_allocated(&self.broker, &self.config).await;
        let mut ids = ids.clone();
        ids.extend(held.iter().take(20).cloned());
        let report = forensics::report(&self.broker, &self.config, &ids).await;
        let evidence =
            format!("executions the committed state leaves allocated: {held:?}\n{report}");
        self.notes.push(evidence.clone());
        evidence
    }

    /// Panics if a daemon logged that it exited, or the running one does not answer.
    fn check_alive(&self) {
        if self
            .daemons
            .iter()
            .any(|d| d.log().iter().any(|l| l.contains(EXITED)))
        {
            self.fail("the daemon exited");
        }
    }

    /// Waits until both readers have read their topic to its end as it is now (the daemon is
    /// idle: no transaction open). Returns how far behind each is when the deadline passes.
    async fn caught_up(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut behind = Vec::new();
        for (topic, consumer) in &self.positions {
            if let Err(lag) = at_end(consumer, topic, deadline).await {
                behind.push(lag);
            }
        }
        behind
    }

    /// `/metrics` of the running daemon; fails the test (it exited) when it does not answer.
    fn metrics(&self, addr: &str) -> String {
        use std::io::{Read, Write};
        let fetched = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(stream, "GET /metrics HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok(body)
        })();
        match fetched {
            Ok(body) => body,
            Err(e) => self.fail(&format!(
                "the daemon does not answer /metrics on {addr}: {e}"
            )),
        }
    }

    /// SIGTERM: the daemon, still running after everything, stops cleanly.
    pub fn terminate(&mut self) {
        let status = self.daemon().terminate();
        if !status.success() {
            self.fail(&format!("the daemon ended with {status} on SIGTERM"));
        }
    }

    /// Saves the logs and panics with `why` and the end of the running daemon's log (without
    /// the periodic stats lines, which the saved log keeps).
    pub fn fail(&self, why: &str) -> ! {
        let saved = self.save_logs();
        let log: Vec<String> = self
            .daemons
            .last()
            .map(DaemonProcess::log)
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !l.contains(" actor_stats: "))
            .collect();
        panic!(
            "{} (seed {:#x}): {why}\nlast daemon log lines but stats:\n{}\nlogs saved in {}",
            self.name,
            self.seed,
            log[log.len().saturating_sub(40)..].join("\n"),
            saved.display()
        );
    }

    /// Writes every daemon's log, the broker's and the notes to
    /// `target/tmp/broker_faults/<test>-<seed>/`.
    fn save_logs(&self) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("broker_faults")
            .join(format!("{}-{:#x}", self.name, self.seed));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        for (i, daemon) in self.daemons.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("daemon-{i}.log")), daemon.log().join("\n"));
        }
        let _ = std::fs::write(dir.join("broker.log"), self.broker.log_text());
        let _ = std::fs::write(dir.join("notes.txt"), self.notes.join("\n"));
        dir
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        self.save_logs();
        self.stop_readers.cancel();
    }
}

/// Requests without the answer they need: none yet, unless cancelled.
fn unanswered(requests: &[Sent], outcomes: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    requests
        .iter()
        .filter(|r| !r.cancelled && !outcomes.contains_key(&r.id))
        .map(|r| r.id.clone())
        .collect()
}

/// The value of one Prometheus series in `body`.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
}

/// One message read back, owned.
pub struct Copy {
    pub key: String,
    pub payload: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Copy {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl std::fmt::Debug for Copy {
    /// Key, size and headers: payloads here are up to a megabyte.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copy")
            .field("key", &self.key)
            .field("bytes", &self.payload.len())
            .field("headers", &self.headers)
            .finish()
    }
}

/// Every message of `topic` (`read_committed`, partition 0) from the beginning: read until
/// `done` holds over them, then on to the end of the topic.
pub async fn read_all(
    broker: &PrivateBroker,
    topic: &str,
    done: impl Fn(&[Copy]) -> bool,
) -> Vec<Copy> {
    let consumer = reader(broker, topic);
    let mut copies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let copy = |m: &BorrowedMessage<'_>| Copy {
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    while !done(&copies) {
        let until = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => copies.push(copy(&m)),
            Ok(Err(_)) => {}
            Err(_) => panic!(
                "reading {topic}: the deadline passed with {:?}",
                copies.iter().map(|c| &c.key).collect::<Vec<_>>()
            ),
        }
    }
    if let Err(lag) = read_to_end(&consumer, topic, deadline, |m| copies.push(copy(m))).await {
        panic!("reading {topic}: {lag}");
    }
    copies
}

/// Reads `consumer` (assigned partition 0 of `topic`), calling `each` per message, until its
/// position reaches the end the topic has now; or says how far it got by `deadline`.
async fn read_to_end(
    consumer: &StreamConsumer,
    topic: &str,
    deadline: Instant,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), String> {
    let (start, end) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(|e| format!("{topic}: no end offset ({e})"))?;
    if end <= start {
        return Ok(());
    }
    loop {
        // A poll, bounded so the position is looked at again when nothing comes (the end may
        // be a transaction marker, which no message shows).
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await {
            each(&m);
            if m.offset() + 1 < end {
                continue;
            }
        }
        let position = position(consumer, topic);
        if position >= end {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{topic}: at {position} of {end}"));
        }
    }
}

/// The next offset `consumer` reads in partition 0 of `topic` (-1 before the first).
fn position(consumer: &StreamConsumer, topic: &str) -> i64 {
    consumer
        .position()
        .ok()
        .and_then(|p| p.find_partition(topic, 0).and_then(|p| p.offset().to_raw()))
        .unwrap_or(-1)
}

/// Waits until `consumer`'s position in partition 0 of `topic` reaches the end the topic has
/// now (its high watermark; the last stable offset too, with no transaction open), or says how
/// far it got by `deadline`.
async fn at_end(consumer: &StreamConsumer, topic: &str, deadline: Instant) -> Result<(), String> {
    let (start, end) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(|e| format!("{topic}: no end offset ({e})"))?;
    if end <= start {
        return Ok(());
    }
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let position = position(consumer, topic);
        if position >= end {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{topic}: at {position} of {end}"));
        }
    }
}
