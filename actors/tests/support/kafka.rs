//! Helpers for tests against a real Kafka broker, after rust-rdkafka's `tests/utils.rs`:
//! topics, producing, consuming and collecting until a condition holds.
//!
//! The broker comes from `KAFKA_BOOTSTRAP_SERVERS`, which `make test` sets after starting Apache
//! Kafka with `scripts/kafka.sh up`. Every test takes its own topics and consumer groups, and waits
//! by polling with a deadline, never by sleeping.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{deadline, WAIT};

/// The variable that names the broker for the Kafka tests.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Bootstrap servers of the test broker. Panics when unset: these tests need a real broker and
/// must fail loudly rather than pass without one.
pub fn bootstrap_servers() -> String {
    match std::env::var(BOOTSTRAP_ENV) {
        Ok(servers) if !servers.trim().is_empty() => servers,
        _ => panic!(
            "{BOOTSTRAP_ENV} is not set: the Kafka tests need a real Apache Kafka broker. \
             Run them through `make test` (it starts one with scripts/kafka.sh), or start one with \
             `make kafka-up` and export {BOOTSTRAP_ENV}=$(scripts/kafka.sh bootstrap)."
        ),
    }
}

/// A name no other test or run uses: `{prefix}-{uuid}`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// A fresh consumer group name.
pub fn fresh_group() -> String {
    unique_name("test-group")
}

/// Client config for the test broker with `extra` properties applied on top.
pub fn client_config(extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers());
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

/// Creates a topic with `partitions` partitions (replication 1) and waits until the broker serves
/// its metadata with a leader for every partition, so producers and subscribers see it at once.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(&[])
        .create()
        .expect("cannot create the Kafka admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Timeout::After(WAIT)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics {name} failed: {e}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("CreateTopics {topic} failed: {code}"),
        }
    }
    let deadline = deadline();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let metadata = admin.inner().fetch_metadata(Some(name), remaining);
        if let Ok(metadata) = &metadata {
            let ready = metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            });
            if ready {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} has no leader within {WAIT:?} (last metadata: {:?})",
            metadata.map(|m| m.topics().len())
        );
    }
}

/// Creates a fresh single-partition topic named after `prefix` and returns its name.
pub async fn fresh_topic(prefix: &str) -> String {
    let name = unique_name(prefix);
    create_topic(&name, 1).await;
    name
}

/// An idempotent producer with `acks=all`, as the daemon's.
pub fn producer() -> FutureProducer {
    client_config(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()
        .expect("cannot create the Kafka producer")
}

/// A transactional producer with a fresh `transactional.id`, transactions initialised.
pub fn transactional_producer() -> FutureProducer {
    use rdkafka::producer::Producer;
    let transactional_id = unique_name("test-txn");
    let producer: FutureProducer = client_config(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("transactional.id", &transactional_id),
    ])
    .create()
    .expect("cannot create the transactional Kafka producer");
    producer
        .init_transactions(WAIT)
        .unwrap_or_else(|e| panic!("InitProducerId for {transactional_id} failed: {e}"));
    producer
}

/// Produces `event` as JSON to `topic` with key = its `execution_id` and waits for the
/// broker's acknowledgement. Returns (partition, offset).
pub async fn produce_event(producer: &FutureProducer, topic: &str, event: &Value) -> (i32, i64) {
    let key = event["execution_id"]
        .as_str()
        .expect("the event has no string execution_id to use as key");
    let payload = serde_json::to_vec(event).expect("a JSON value always serialises");
    produce(producer, topic, Some(key.as_bytes()), &payload).await
}

/// Produces one message and waits for the broker's acknowledgement. Returns (partition, offset).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
) -> (i32, i64) {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    let delivery = producer
        .send(record, WAIT)
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic} failed: {e}"));
    (delivery.partition, delivery.offset)
}

/// Which messages a consumer sees: `ReadCommitted` hides those of open and aborted transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    fn as_config(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A consumer in `group` reading from the earliest offset, with auto commit off (offsets are
/// committed by the test, as by the daemon) and `extra` properties on top.
pub fn consumer(group: &str, isolation: Isolation, extra: &[(&str, &str)]) -> StreamConsumer {
    let mut config = client_config(&[
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", isolation.as_config()),
        ("session.timeout.ms", "10000"),
    ]);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("cannot create the Kafka consumer")
}

/// A consumer in `group` subscribed to `topics`.
pub fn subscribed_consumer(group: &str, isolation: Isolation, topics: &[&str]) -> StreamConsumer {
    let consumer = consumer(group, isolation, &[]);
    consumer
        .subscribe(topics)
        .unwrap_or_else(|e| panic!("subscribing to {topics:?} failed: {e}"));
    consumer
}

/// One consumed message, owned, so it outlives the consumer that read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Received {
    /// The key as UTF-8 (lossy), or "" when absent.
    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }

    /// The payload parsed as JSON; panics with the raw text when it is not JSON.
    pub fn json(&self) -> Value {
        let payload = self.payload.as_deref().unwrap_or_default();
        serde_json::from_slice(payload).unwrap_or_else(|e| {
            panic!(
                "message {}/{}@{} is not JSON ({e}): {}",
                self.topic,
                self.partition,
                self.offset,
                String::from_utf8_lossy(payload)
            )
        })
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

fn to_received<M: Message>(message: &M) -> Received {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Received {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// The payload of `message` as JSON, or `Null` when it is not JSON (or has none).
pub fn payload_json<M: Message>(message: &M) -> Value {
    serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null)
}

/// Why a collection ended without its predicate holding.
#[derive(Debug)]
pub enum CollectError {
    /// The deadline passed; what had arrived until then.
    Deadline(Vec<Received>),
    /// The consumer reported an error; what had arrived until then.
    Kafka(KafkaError, Vec<Received>),
}

/// Polls `consumer` until `done` holds over everything received so far, or `deadline` passes.
/// Each wait is a poll bounded by the deadline; nothing sleeps.
pub async fn poll_until(
    consumer: &StreamConsumer,
    deadline: Instant,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Result<Vec<Received>, CollectError> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::from_std(deadline);
    while !done(&received) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => received.push(to_received(&message)),
            Ok(Err(e)) => return Err(CollectError::Kafka(e, received)),
            Err(_elapsed) => return Err(CollectError::Deadline(received)),
        }
    }
    Ok(received)
}

/// Reads `topic` from the beginning in a fresh consumer group until `done` holds over the
/// messages collected, or `deadline` passes (then panics, listing what did arrive).
pub async fn collect_until(
    topic: &str,
    isolation: Isolation,
    deadline: Instant,
    done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let consumer = subscribed_consumer(&fresh_group(), isolation, &[topic]);
    match poll_until(&consumer, deadline, done).await {
        Ok(received) => received,
        Err(CollectError::Deadline(received)) => panic!(
            "deadline passed reading {topic} ({isolation:?}) before the condition held; received: {}",
            describe(&received)
        ),
        Err(CollectError::Kafka(e, received)) => panic!(
            "consumer error reading {topic} ({isolation:?}): {e}; received: {}",
            describe(&received)
        ),
    }
}

/// Commits, synchronously, the offset after each message in `messages` (the highest per partition).
pub fn commit_after(consumer: &StreamConsumer, messages: &[Received]) {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for message in messages {
        let offset = next
            .entry((message.topic.as_str(), message.partition))
            .or_default();
        *offset = (*offset).max(message.offset + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a valid offset");
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("committing {offsets:?} failed: {e}"));
}

/// One line per message: topic/partition@offset key=… payload (truncated), for failure messages.
pub fn describe(messages: &[Received]) -> String {
    if messages.is_empty() {
        return "nothing".to_owned();
    }
    messages
        .iter()
        .map(|m| {
            let payload = String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default());
            let payload: String = payload.chars().take(120).collect();
            format!(
                "\n  {}/{}@{} key={} {payload}",
                m.topic,
                m.partition,
                m.offset,
                m.key_str()
            )
        })
        .collect()
}
