//! The bench's own Kafka clients: topics per run, request payloads, the preloader, the paced
//! generator, the command collector, the completer and read-back of whole topics.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use coordinator_core::config::{KafkaConfig, TopicLayout};
use coordinator_core::events::EventType;
use futures::StreamExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{
    BaseRecord, FutureProducer, FutureRecord, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

/// Partitions of every topic of a run but the input (see [`RunTopics::with_input_partitions`]):
/// the daemon's default.
pub const PARTITIONS: i32 = 3;

/// Bench-wide epoch: send and receive times are microseconds since it, in one process.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The topics and group of one run: a prefix nobody else uses, in the layout under test.
#[derive(Debug, Clone)]
pub struct RunTopics {
    /// The run's `[kafka]` naming: `topic_prefix`, `group_id` and `topic_layout`; the rest
    /// default.
    pub kafka: KafkaConfig,
    /// Partitions of the topic requests arrive on.
    pub input_partitions: i32,
}

impl RunTopics {
    /// Fresh names in `layout`, tagged for the broker log.
    pub fn fresh(tag: &str, layout: TopicLayout) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            kafka: KafkaConfig {
                topic_prefix: format!("e2e-{tag}-{}.", &id[..10]),
                group_id: format!("e2e-{tag}-{}", &id[..10]),
                topic_layout: layout,
                ..KafkaConfig::default()
            },
            input_partitions: PARTITIONS,
        }
    }

    /// The same, with `partitions` on the input topic (in the `shared` layout, the one topic
    /// of events).
    pub fn with_input_partitions(mut self, partitions: i32) -> Self {
        self.input_partitions = partitions;
        self
    }

    /// The state topic.
    pub fn state(&self) -> String {
        self.kafka.state_topic_full()
    }

    /// `[kafka] topic_prefix`.
    pub fn prefix(&self) -> &str {
        &self.kafka.topic_prefix
    }

    /// `[kafka] group_id`.
    pub fn group(&self) -> &str {
        &self.kafka.group_id
    }

    /// `[kafka] topic_layout`.
    pub fn layout(&self) -> TopicLayout {
        self.kafka.topic_layout
    }

    /// Where requests are produced.
    pub fn requests(&self) -> String {
        self.kafka.topic_of(EventType::ExecutionRequested)
    }

    /// Where the daemon writes `execution_accepted`.
    pub fn accepted(&self) -> String {
        self.kafka.topic_of(EventType::ExecutionAccepted)
    }

    /// Where the daemon writes `create_pod_command` (and the passthrough its copies).
    pub fn commands(&self) -> String {
        self.kafka.topic_of(EventType::CreatePodCommand)
    }

    /// Every topic of the run, with whether it is compacted and its partitions: the layout's
    /// event topics, the DLQ and the state topic.
    fn all(&self) -> Vec<(String, bool, i32)> {
        let input = self.requests();
        let mut all: Vec<(String, bool, i32)> = self
            .kafka
            .all_topics_full()
            .into_iter()
            .map(|t| {
                let partitions = if t == input {
                    self.input_partitions
                } else {
                    PARTITIONS
                };
                (t, false, partitions)
            })
            .collect();
        all.push((self.kafka.state_topic_full(), true, PARTITIONS));
        all
    }

    /// Creates the run's topics as the daemon would (its state topic compacted), except that
    /// the event and command topics stamp LogAppendTime: the broker's clock times the runs.
    pub async fn create(&self, bootstrap: &str) -> anyhow::Result<()> {
        let admin = admin(bootstrap)?;
        let names = self.all();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|(name, compacted, partitions)| {
                let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
                if *compacted {
                    t.set("cleanup.policy", "compact")
                } else {
                    t.set("message.timestamp.type", "LogAppendTime")
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(topics.iter(), &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("creating {topic}: {code}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, _, partitions) in &names {
            loop {
                let metadata = admin
                    .inner()
                    .fetch_metadata(Some(name), Duration::from_secs(5))?;
                let ready = metadata.topics().iter().any(|t| {
                    t.error().is_none()
                        && t.partitions().len() == *partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                });
                if ready {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "topic {name} has no leader");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Metadata names a leader before that broker serves as one: until it does, reading a
        // partition's watermarks fails with NotLeaderForPartition.
        let reader = watermark_reader(bootstrap)?;
        for (name, _, partitions) in &names {
            for p in 0..*partitions {
                while let Err(e) = reader.fetch_watermarks(name, p, Duration::from_secs(5)) {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "partition {p} of {name} is not served: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Ok(())
    }

    /// Deletes the run's topics, so disk and broker memory stay bounded over many runs.
    pub async fn delete(&self, bootstrap: &str) {
        let Ok(admin) = admin(bootstrap) else { return };
        let names: Vec<String> = self.all().into_iter().map(|(n, ..)| n).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) = admin.delete_topics(&refs, &options).await {
            eprintln!("e2e: deleting topics of {}: {e}", self.prefix());
        }
    }
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")
}

/// Builds `execution_requested` payloads from the golden event: fresh ids, a user, a level.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    text: String,
}

const ID: &str = "@@EXECUTION_ID@@";
const EVENT: &str = "@@EVENT_ID@@";
const USER: &str = "@@USER@@";
const PRIORITY: &str = "\"@@PRIORITY@@\"";

impl RequestTemplate {
    /// The golden request asking `cpu`, with `script` instead of the golden one if given.
    pub fn new(script: Option<String>, cpu: &str) -> Self {
        let mut event: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/golden/execution_requested.json"
        ))
        .expect("the golden request is JSON");
        event["execution_id"] = ID.into();
        event["aggregate_id"] = ID.into();
        event["event_id"] = EVENT.into();
        event["metadata"]["user_id"] = USER.into();
        event["priority"] = PRIORITY.trim_matches('"').into();
        event["cpu_request"] = cpu.into();
        if let Some(script) = script {
            event["script"] = script.into();
        }
        Self {
            text: event.to_string(),
        }
    }

    /// One request's JSON.
    pub fn render(&self, execution_id: &str, user: &str, priority: u8) -> String {
        self.text
            .replace(ID, execution_id)
            .replace(EVENT, &uuid::Uuid::new_v4().to_string())
            .replace(USER, user)
            .replace(PRIORITY, &priority.to_string())
    }
}

/// The five levels, in dispatch order.
pub const LEVELS: [u8; 5] = [0, 1, 5, 8, 10];

/// What a bench execution id carries: its number, requested level and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Sequence number in its run.
    pub seq: u64,
    /// Requested priority.
    pub priority: u8,
    /// Microseconds since [`epoch`] when it was handed to the producer.
    pub sent_us: u64,
}

impl Tag {
    /// `e2e-<seq>-p<priority>-t<sent_us>`.
    pub fn execution_id(&self) -> String {
        format!("e2e-{:07}-p{}-t{}", self.seq, self.priority, self.sent_us)
    }

    /// Reads an id written by [`Tag::execution_id`].
    pub fn parse(id: &str) -> Option<Tag> {
        let mut parts = id.split('-');
        (parts.next()? == "e2e").then_some(())?;
        let seq = parts.next()?.parse().ok()?;
        let priority = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let sent_us = parts.next()?.strip_prefix('t')?.parse().ok()?;
        Some(Tag {
            seq,
            priority,
            sent_us,
        })
    }
}

/// The fields the bench reads from any event.
#[derive(Debug, Deserialize)]
pub struct EventIds<'a> {
    /// The execution.
    #[serde(borrow)]
    pub execution_id: Cow<'a, str>,
    /// Its type.
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
}

/// The load generator's producer: acknowledged by all replicas, sent at once (no linger).
fn generator_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0");
    c
}

/// The levels of preloaded requests.
#[derive(Debug, Clone, Copy)]
pub enum Levels {
    /// Cycling through [`LEVELS`].
    Mixed,
    /// All at this one.
    Only(u8),
}

/// NORMAL, the level of the bench's plain requests.
pub const NORMAL: Levels = Levels::Only(5);

/// Produces `count` requests (at `levels`, users cycling over 100) to `topic` and waits until
/// all are acknowledged. Returns the bytes produced.
pub async fn preload(
    bootstrap: &str,
    topic: &str,
    template: &RequestTemplate,
    first_seq: u64,
    count: usize,
    levels: Levels,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = generator_config(bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("creating the preload producer")?;
    let bytes = AtomicU64::new(0);
    let sends = (0..count as u64).map(|i| {
        let seq = first_seq + i;
        let priority = match levels {
            Levels::Mixed => LEVELS[(seq % 5) as usize],
            Levels::Only(level) => level,
        };
        let id = Tag {
            seq,
            priority,
            sent_us: now_us(),
        }
        .execution_id();
        let payload = template.render(&id, &format!("user-{:03}", seq % 100), priority);
        bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&id).payload(&payload),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    let failures = futures::stream::iter(sends)
        .buffer_unordered(20_000)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    anyhow::ensure!(
        failures == 0,
        "{failures} preloaded requests not acknowledged"
    );
    Ok(bytes.into_inner())
}

/// Counts failed deliveries of the paced generator.
#[derive(Default, Clone)]
struct CountErrors(Arc<AtomicU64>);

impl ClientContext for CountErrors {}

impl ProducerContext for CountErrors {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends `rate` requests per second for `duration` from this thread, each stamped with its
/// send time just before it is handed to the producer. Returns (sent, failed).
pub fn paced(
    bootstrap: &str,
    topic: &str,
    template: &RequestTemplate,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<(u64, u64)> {
    let errors = CountErrors::default();
    let producer: ThreadedProducer<CountErrors> = generator_config(bootstrap)
        .create_with_context(errors.clone())
        .context("creating the generator producer")?;
    let total = (rate as u64 * duration.as_millis() as u64) / 1000;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_micros() as u64 * rate as u64) / 1_000_000 + 1).min(total);
        while sent < due {
            let id = Tag {
                seq: sent,
                priority: 5,
                sent_us: now_us(),
            }
            .execution_id();
            let payload = template.render(&id, &format!("user-{:03}", sent % 100), 5);
            let mut record = BaseRecord::to(topic).key(&id).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => anyhow::bail!("producing a request: {e}"),
                }
            }
            sent += 1;
        }
        let next = start + Duration::from_micros(sent * 1_000_000 / rate as u64);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    use rdkafka::producer::Producer as _;
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the generator")?;
    Ok((sent, errors.0.load(Ordering::Relaxed)))
}

fn reader_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c
}

/// A consumer subscribed to `topic` in a fresh group, returned once it holds its partitions.
pub fn subscribed(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer =
        reader_config(bootstrap, &format!("e2e-reader-{}", uuid::Uuid::new_v4()))
            .create()
            .context("creating a reader")?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            m?;
            anyhow::bail!("{topic} is not empty before the run");
        }
        if consumer.assignment()?.count() > 0 {
            return Ok(consumer);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no assignment on {topic} within 30 s"
        );
    }
}

/// One received command: which request, and when it arrived here.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The request's tag.
    pub tag: Tag,
    /// Microseconds since [`epoch`] when this process received it.
    pub received_us: u64,
}

/// Receives commands on `consumer` (on this thread) until `expected` distinct requests have
/// arrived or `stop` is set and `grace` has passed since.
pub fn collect(
    consumer: &BaseConsumer,
    expected: u64,
    stop: &AtomicBool,
    grace: Duration,
) -> anyhow::Result<Vec<Arrival>> {
    let mut seen = vec![false; expected as usize];
    let mut arrivals = Vec::with_capacity(expected as usize);
    let mut stop_seen: Option<Instant> = None;
    while (arrivals.len() as u64) < expected {
        if stop.load(Ordering::Relaxed) {
            let at = *stop_seen.get_or_insert_with(Instant::now);
            if at.elapsed() > grace {
                break;
            }
        }
        let Some(message) = consumer.poll(Duration::from_millis(20)) else {
            continue;
        };
        let received_us = now_us();
        let message = message?;
        let Some(payload) = message.payload() else {
            continue;
        };
        let ids: EventIds<'_> =
            serde_json::from_slice(payload).context("a command that is not JSON")?;
        let Some(tag) = Tag::parse(&ids.execution_id) else {
            continue;
        };
        if let Some(slot) = seen.get_mut(tag.seq as usize) {
            if !*slot {
                *slot = true;
                arrivals.push(Arrival { tag, received_us });
            }
        }
    }
    Ok(arrivals)
}

/// How many partitions `topic` has.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(count > 0, "{topic} has no partitions");
    Ok(count as i32)
}

/// Messages now in `topic` (sum of high watermarks).
pub fn message_count(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let mut total = 0;
    for p in 0..partitions_of(consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// A consumer for watermarks only.
pub fn watermark_reader(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    reader_config(bootstrap, "e2e-watermarks")
        .create()
        .context("creating the watermark reader")
}

/// Waits until `topic` holds at least `count` messages (transaction markers included: a
/// necessary condition, not a sufficient one); false when `timeout` passes first.
pub async fn wait_for_count(
    bootstrap: &str,
    topic: &str,
    count: i64,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let reader = watermark_reader(bootstrap)?;
    let deadline = Instant::now() + timeout;
    loop {
        if message_count(&reader, topic)? >= count {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until consumer group `group` is stable with a member (e.g. worker-sim subscribed).
pub async fn wait_group_stable(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let reader = watermark_reader(bootstrap)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let groups = reader.fetch_group_list(Some(group), Duration::from_secs(10))?;
        let stable = groups
            .groups()
            .iter()
            .any(|g| g.state() == "Stable" && !g.members().is_empty());
        if stable {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "group {group} not stable within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An event as read back: its type, tag and broker append time (ms).
#[derive(Debug, Clone)]
pub struct Stored {
    /// `event_type`.
    pub event_type: String,
    /// The tag of its execution.
    pub tag: Tag,
    /// LogAppendTime, ms since the UNIX epoch.
    pub appended_ms: i64,
}

/// Reads `topic` (read_committed) from the beginning, keeping events of bench executions,
/// until `expect` distinct executions were seen, or — without `expect` — up to the end the
/// topic had when called.
pub fn read_back(
    bootstrap: &str,
    topic: &str,
    expect: Option<usize>,
) -> anyhow::Result<Vec<Stored>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    scan(bootstrap, topic, expect.is_none(), |message| {
        let ids = message
            .payload()
            .and_then(|payload| serde_json::from_slice::<EventIds<'_>>(payload).ok());
        if let Some((ids, tag)) =
            ids.and_then(|ids| Tag::parse(&ids.execution_id).map(|t| (ids, t)))
        {
            seen.insert(tag.seq);
            out.push(Stored {
                event_type: ids.event_type.into_owned(),
                tag,
                appended_ms: message.timestamp().to_millis().unwrap_or(0),
            });
        }
        expect.is_some_and(|n| seen.len() >= n)
    })
    .with_context(|| format!("{} executions seen, expected {expect:?}", seen.len()))?;
    Ok(out)
}

/// What kind of message the bench sees: its `event_type`, or a state record's `state`.
#[derive(Debug, Deserialize)]
struct Kind<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<Cow<'a, str>>,
}

/// Messages and payload bytes of `topic` per kind (`event_type`, or `state` for a state
/// record; `other` for anything else), read (read_committed) to the end it had when called.
pub fn sizes(
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let mut out = std::collections::BTreeMap::<String, (u64, u64)>::new();
    scan(bootstrap, topic, true, |message| {
        let payload = message.payload().unwrap_or_default();
        let kind = serde_json::from_slice::<Kind<'_>>(payload)
            .ok()
            .and_then(|k| k.event_type.or(k.state))
            .map_or_else(|| "other".to_owned(), Cow::into_owned);
        let entry = out.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += payload.len() as u64;
        false
    })?;
    Ok(out)
}

/// Hands every message of `topic` (read_committed, from the beginning) to `done` until it
/// answers true or — when `to_end` — the end the topic had when called is reached
/// (transaction markers count in the watermarks but are never delivered, so the end is found
/// by position). Without `to_end` it reads on past that end until `done` (or 120 s).
fn scan(
    bootstrap: &str,
    topic: &str,
    to_end: bool,
    mut done: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = reader_config(bootstrap, "e2e-read-back")
        .create()
        .context("creating a reader")?;
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions_of(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high > low {
            ends.push((p, high));
        }
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(to_end && ends.is_empty()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic} not read back within 120 s"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            let position = consumer.position()?;
            ends.retain(|(p, high)| {
                !matches!(
                    position.find_partition(topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(at)) if at >= *high
                )
            });
            continue;
        };
        let message = message?;
        if let Some(i) = ends.iter().position(|(p, _)| *p == message.partition()) {
            if message.offset() + 1 >= ends[i].1 {
                ends.remove(i);
            }
        }
        if done(&message) {
            break;
        }
    }
    Ok(())
}

/// Runs `f` on a thread of its own; the receiver yields its result.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<mpsc::Receiver<anyhow::Result<T>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("spawning a bench thread")?;
    Ok(rx)
}

/// Waits (without blocking the runtime) for a thread started by [`spawn`].
pub async fn join<T>(rx: mpsc::Receiver<anyhow::Result<T>>) -> anyhow::Result<T> {
    loop {
        match rx.try_recv() {
            Ok(result) => return result,
            Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(mpsc::TryRecvError::Disconnected) => anyhow::bail!("a bench thread panicked"),
        }
    }
}
