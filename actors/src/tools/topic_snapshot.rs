//! Reads topics from their beginning up to the end each partition had when the read started,
//! so the read ends even while producers keep writing. The consumer is the reader's own: it
//! assigns partitions under a fresh group id, never subscribes and never commits, so no group
//! is joined and the daemon's consumer group and offsets are left alone. It reads
//! `read_committed`, as the daemon does: events of aborted transactions are not seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coordinator_core::config::KafkaConfig;
use coordinator_core::redact::Redactor;
use coordinator_core::sim::traffic::Message as TopicMessage;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

use crate::kafka::broker_check::Refusals;
use crate::kafka::client_config;

/// How long one poll waits before the reader looks at its deadline again.
const SLICE: Duration = Duration::from_millis(100);

/// Why the topics could not be read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// librdkafka refused the client's settings.
    #[error("cannot create a Kafka consumer: {0}")]
    Client(String),
    /// No broker answered in time.
    #[error("no Kafka broker at {bootstrap} answered within {timeout}; last error: {last}")]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// How long the reader waited.
        timeout: String,
        /// librdkafka's last error, secrets redacted.
        last: String,
    },
    /// A broker refused the client's TLS or SASL credentials.
    #[error("the Kafka brokers at {bootstrap} refused this client: {reason}")]
    Refused {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// librdkafka's reason, secrets redacted.
        reason: String,
    },
    /// The brokers answered, but this topic cannot be read (no permission, an error).
    #[error("cannot read topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What the brokers or librdkafka said.
        reason: String,
    },
    /// Partitions stopped short of their end and nothing arrived for a whole timeout.
    #[error(
        "reading topic {topic} stalled: nothing arrived for {timeout} while partitions {partitions} \
         were short of their end; last error: {last}"
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// The partitions not read to their end, e.g. `0, 2`.
        partitions: String,
        /// How long the reader waited.
        timeout: String,
        /// librdkafka's last error, secrets redacted.
        last: String,
    },
}

/// What was read from one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRead {
    /// The topic.
    pub topic: String,
    /// Messages handed on.
    pub messages: u64,
    /// True when the topic does not exist (it is read as empty).
    pub missing: bool,
}

/// Reads each of `topics` from its beginning to the end it had when its read started, handing
/// every message to `each`. `timeout` bounds each wait: for the brokers to answer, and for the
/// next message while a partition is short of its end.
pub fn read_topics(
    kafka: &KafkaConfig,
    bootstrap: &str,
    topics: &[String],
    timeout: Duration,
    each: &mut dyn FnMut(TopicMessage<'_>),
) -> Result<Vec<TopicRead>, SnapshotError> {
    let reader = Reader {
        kafka,
        bootstrap,
        timeout,
        redactor: Redactor::for_kafka(kafka),
    };
    topics.iter().map(|t| reader.read(t, each)).collect()
}

impl ConsumerContext for Refusals {}

struct Reader<'a> {
    kafka: &'a KafkaConfig,
    bootstrap: &'a str,
    timeout: Duration,
    redactor: Redactor,
}

impl Reader<'_> {
    /// One consumer per topic, so an end-of-partition event names one partition only.
    fn consumer(&self) -> Result<BaseConsumer<Refusals>, SnapshotError> {
        let mut c = client_config(self.kafka, self.bootstrap);
        // Required by librdkafka to assign partitions; never joined and never committed to.
        c.set(
            "group.id",
            format!("{}-simulate-{}", self.kafka.group_id, uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
        c.create_with_context(Refusals::default())
            .map_err(|e| SnapshotError::Client(self.redact(&e.to_string())))
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.redact(text).into_owned()
    }

    fn timeout_text(&self) -> String {
        humantime::format_duration(self.timeout).to_string()
    }

    /// Why the brokers did not answer: a refusal if one was reported, else unreachable.
    fn no_answer(&self, consumer: &BaseConsumer<Refusals>, error: &KafkaError) -> SnapshotError {
        let seen = consumer.context().take();
        if let Some(reason) = seen.refusal {
            return SnapshotError::Refused {
                bootstrap: self.bootstrap.to_owned(),
                reason: self.redact(&reason),
            };
        }
        SnapshotError::Unreachable {
            bootstrap: self.bootstrap.to_owned(),
            timeout: self.timeout_text(),
            last: self.redact(&seen.last.unwrap_or_else(|| error.to_string())),
        }
    }

    fn read(
        &self,
        topic: &str,
        each: &mut dyn FnMut(TopicMessage<'_>),
    ) -> Result<TopicRead, SnapshotError> {
        let consumer = self.consumer()?;
        let topic_error = |reason: String| SnapshotError::Topic {
            topic: topic.to_owned(),
            reason,
        };
        let metadata = consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.no_answer(&consumer, &e))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(topic_error("the brokers did not describe it".to_owned()));
        };
        if let Some(error) = found.error() {
            let code = RDKafkaErrorCode::from(error);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Ok(TopicRead {
                    topic: topic.to_owned(),
                    messages: 0,
                    missing: true,
                });
            }
            return Err(topic_error(code.to_string()));
        }

        // The end of each partition now: the read stops there.
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in found.partitions() {
            let id = partition.id();
            let (low, high) = consumer
                .fetch_watermarks(topic, id, self.timeout)
                .map_err(|e| match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                        topic_error(self.redact(&e.to_string()))
                    }
                    _ => self.no_answer(&consumer, &e),
                })?;
            if high > low {
                ends.insert(id, high);
                assignment
                    .add_partition_offset(topic, id, Offset::Offset(low))
                    .map_err(|e| topic_error(e.to_string()))?;
            }
        }
        let mut read = TopicRead {
            topic: topic.to_owned(),
            messages: 0,
            missing: false,
        };
        if ends.is_empty() {
            return Ok(read);
        }
        consumer
            .assign(&assignment)
            .map_err(|e| topic_error(self.redact(&e.to_string())))?;

        let mut last_progress = Instant::now();
        let mut last_error = None;
        while !ends.is_empty() {
            match consumer.poll(SLICE) {
                Some(Ok(message)) => {
                    last_progress = Instant::now();
                    let partition = message.partition();
                    let Some(&end) = ends.get(&partition) else {
                        continue;
                    };
                    if message.offset() < end {
                        read.messages += 1;
                        each(TopicMessage {
                            topic,
                            partition,
                            offset: message.offset(),
                            timestamp_ms: message.timestamp().to_millis(),
                            payload: message.payload(),
                        });
                    }
                    if message.offset() >= end - 1 {
                        ends.remove(&partition);
                    }
                }
                // The end as `read_committed` sees it: what follows is not committed yet.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    last_progress = Instant::now();
                    ends.remove(&partition);
                }
                Some(Err(e)) => {
                    if let KafkaError::MessageConsumptionFatal(_)
                    | KafkaError::MessageConsumption(
                        RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::UnknownTopicOrPartition,
                    ) = e
                    {
                        return Err(topic_error(self.redact(&e.to_string())));
                    }
                    last_error = Some(e.to_string());
                }
                None => {}
            }
            if last_progress.elapsed() >= self.timeout {
                let seen = consumer.context().take();
                let partitions: Vec<String> = ends.keys().map(i32::to_string).collect();
                return Err(SnapshotError::Stalled {
                    topic: topic.to_owned(),
                    partitions: partitions.join(", "),
                    timeout: self.timeout_text(),
                    last: self.redact(
                        &seen
                            .last
                            .or(last_error)
                            .unwrap_or_else(|| "none".to_owned()),
                    ),
                });
            }
        }
        Ok(read)
    }
}
