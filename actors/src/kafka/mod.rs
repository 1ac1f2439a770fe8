//! Kafka plumbing shared by the actors and the binary: client settings from config, topic
//! creation, the consumer context that commits on revocation, and the embedded broker.

pub mod broker_check;
pub mod librdkafka;
pub mod ownership;
pub mod trace;
pub mod transaction;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::EventType;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use tracing::{info, warn};

/// Settings common to every client: bootstrap servers and the pass-through properties.
pub fn client_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        // A broker back from an outage may answer metadata with "unknown topic" for a while;
        // librdkafka then leaves that topic alone until the next periodic refresh, 5 minutes by
        // default. One small metadata request every 10 s keeps that outage short.
        .set("topic.metadata.refresh.interval.ms", "10000");
    for (key, value) in &kafka.properties {
        c.set(key, value);
    }
    c
}

/// The idempotent producer's settings.
pub fn producer_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = client_config(kafka, bootstrap);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("statistics.interval.ms", "1000")
        .set(
            "message.max.bytes",
            kafka.producer_message_max_bytes().to_string(),
        )
        .set(
            "message.timeout.ms",
            kafka.delivery_timeout.as_millis().to_string(),
        );
    // Pass-through properties win over our defaults, except the guarantees above.
    for (key, value) in &kafka.properties {
        if !matches!(key.as_str(), "enable.idempotence" | "acks") {
            c.set(key, value);
        }
    }
    c
}

/// The daemon's producer: idempotent, and transactional with `exactly_once`.
pub fn daemon_producer_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = producer_config(kafka, bootstrap);
    if kafka.exactly_once {
        c.set("transactional.id", kafka.effective_transactional_id())
            // A new transaction right after a commit gets CONCURRENT_TRANSACTIONS retries.
            .set("retry.backoff.ms", "10");
    }
    c
}

/// The input consumer's settings: manual offset store and commit.
pub fn consumer_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = client_config(kafka, bootstrap);
    c.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "5000")
        // Prefetch at most 16 MiB (librdkafka's default is 64 MiB): the backlog belongs in
        // the broker, and the daemon's memory goes to its queue. `[kafka.properties]` may raise it.
        .set("queued.max.messages.kbytes", "16384")
        .set(
            "message.max.bytes",
            (kafka.max_message_bytes + 4096).to_string(),
        );
    if let Some(id) = &kafka.group_instance_id {
        c.set("group.instance.id", id);
    }
    if kafka.uses_embedded_broker() {
        // The mock cluster holds an empty fetch for fetch.wait.max.ms even when data arrives.
        c.set("fetch.wait.max.ms", "10");
    }
    for (key, value) in &kafka.properties {
        if !matches!(
            key.as_str(),
            "enable.auto.commit" | "enable.auto.offset.store" | "group.id"
        ) {
            c.set(key, value);
        }
    }
    c
}

/// A record batch's own bytes around its one record (header and record framing), which the
/// topic's `max.message.bytes` counts too.
const BATCH_OVERHEAD: usize = 1024;

/// Creates missing topics (existing ones are left as they are). The state topic is compacted.
/// Every topic the coordinator writes to takes messages as large as its producer writes
/// (`max.message.bytes`); topics it only reads keep the broker's default.
pub async fn ensure_topics(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, bootstrap)
        .create()
        .context("creating the Kafka admin client")?;
    let state = kafka.state_topic_full();
    let names: Vec<String> = kafka.all_topics_full();
    let written = written_topics(kafka);
    let max_bytes = (kafka.producer_message_max_bytes() + BATCH_OVERHEAD).to_string();
    let mut topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, kafka.topic_partitions, TopicReplication::Fixed(1));
            if written.contains(t) {
                topic.set("max.message.bytes", &max_bytes)
            } else {
                topic
            }
        })
        .collect();
    topics.push(
        NewTopic::new(&state, kafka.topic_partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max_bytes),
    );
    let ownership = kafka.ownership_topic_full();
    topics.push(NewTopic::new(&ownership, 1, TopicReplication::Fixed(1)));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter(), &options)
        .await
        .context("creating topics")?;
    for result in results {
        match result {
            Ok(topic) => info!(topic = %topic, "Topic created."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("could not create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The topics the coordinator writes to (events, commands, DLQ, state), sorted.
fn written_topics(kafka: &KafkaConfig) -> Vec<String> {
    let mut topics: Vec<String> = EventType::PRODUCED
        .into_iter()
        .map(|t| kafka.topic_of(t))
        .chain([kafka.dlq_topic_full(), kafka.state_topic_full()])
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

/// The largest message the coordinator can write: the producer's `message.max.bytes`, or less
/// where a topic it writes to takes less (`max.message.bytes` of topics that existed before,
/// or were made by someone else). When the brokers do not say (no describe permission, the
/// embedded broker), the producer's limit.
pub async fn writable_limit(kafka: &KafkaConfig, bootstrap: &str) -> usize {
    let producer_max = kafka.producer_message_max_bytes();
    if kafka.uses_embedded_broker() {
        // The mock cluster answers no DescribeConfigs, and its topics are the daemon's own.
        return producer_max;
    }
    let admin: AdminClient<DefaultClientContext> = match client_config(kafka, bootstrap).create() {
        Ok(admin) => admin,
        Err(e) => {
            warn!(error = %e, "No admin client to read the topics' message size limit; assuming the producer's.");
            return producer_max;
        }
    };
    let topics = written_topics(kafka);
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = match admin.describe_configs(specifiers.iter(), &options).await {
        Ok(described) => described,
        Err(e) => {
            warn!(error = %e, "Could not read the topics' message size limit; assuming the producer's.");
            return producer_max;
        }
    };
    let mut limit = producer_max;
    for resource in described.into_iter().flatten() {
        let topic_max = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(topic_max) = topic_max {
            let fits = topic_max.saturating_sub(BATCH_OVERHEAD);
            if fits < limit {
                warn!(topic = ?resource.specifier, max_message_bytes = topic_max, "A topic takes smaller messages than the producer writes; requests are admitted only if their outputs fit it.");
                limit = fits;
            }
        }
    }
    limit
}

/// The input consumer's context: commits stored offsets before partitions are taken away, and
/// keeps `assigned` (for `/readyz`) true while it holds partitions.
pub struct CommitOnRevoke {
    /// True while the consumer holds at least one partition.
    pub assigned: Arc<AtomicBool>,
    /// Assignments so far: the group generation may have changed when this moves.
    pub assignments: AtomicU64,
}

impl CommitOnRevoke {
    /// A context reporting its assignment state to `assigned`.
    pub fn new(assigned: Arc<AtomicBool>) -> Self {
        Self {
            assigned,
            assignments: AtomicU64::new(0),
        }
    }
}

impl ClientContext for CommitOnRevoke {
    fn stats(&self, statistics: Statistics) {
        crate::telemetry::consumer_lag(&statistics);
    }
}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    if !is_nothing_to_commit(&e) {
                        warn!(error = %e, "Commit on revocation failed.");
                    }
                }
                self.assigned.store(false, Ordering::Relaxed);
                info!(partitions = partitions.count(), "Partitions revoked.");
            }
            Rebalance::Assign(partitions) => {
                self.assignments.fetch_add(1, Ordering::Relaxed);
                self.assigned
                    .store(partitions.count() > 0, Ordering::Relaxed);
                info!(partitions = partitions.count(), "Partitions assigned.");
            }
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            if !is_nothing_to_commit(&e) {
                warn!(error = %e, "Offset commit failed.");
            }
        }
    }
}

/// "No offset to commit" is not an error worth a warning.
pub fn is_nothing_to_commit(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset)
}

/// librdkafka's in-process mock cluster, started when no bootstrap servers are configured.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with every topic of `kafka` created.
    pub fn start(kafka: &KafkaConfig) -> anyhow::Result<Self> {
        let cluster = MockCluster::new(1).context("starting the embedded Kafka mock cluster")?;
        let mut topics = kafka.all_topics_full();
        topics.push(kafka.state_topic_full());
        for topic in &topics {
            cluster
                .create_topic(topic, kafka.topic_partitions, 1)
                .with_context(|| format!("creating topic {topic} on the embedded broker"))?;
        }
        let ownership = kafka.ownership_topic_full();
        cluster
            .create_topic(&ownership, 1, 1)
            .with_context(|| format!("creating topic {ownership} on the embedded broker"))?;
        Ok(Self { cluster })
    }

    /// Its bootstrap address, for the daemon and for kcat.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster, for fault injection.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
