//! KafkaEgressActor: owns the producer; publishes events and answers with the broker's ack.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use thiserror::Error;
use tracing::{error, warn};

use crate::stats::ActorStats;
use crate::telemetry::ProducerHealth;
use crate::{InjectFault, ReportStats};

/// Publish one message and answer once the broker acknowledged it (or it failed for good).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Delivered, PublishError>")]
pub struct Publish {
    /// Full topic name.
    pub topic: String,
    /// Message key (the execution id).
    pub key: String,
    /// Message value; `None` writes a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Message headers.
    pub headers: Vec<(String, String)>,
}

/// Flush everything buffered, waiting at most the given time.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Flush(pub Duration);

/// Where the broker stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition written.
    pub partition: i32,
    /// Offset written.
    pub offset: i64,
}

/// A message the broker did not take.
#[derive(Debug, Clone, Error)]
pub enum PublishError {
    /// The producer reported a failure (after its own retries).
    #[error("delivery to {topic} failed: {source}")]
    Kafka {
        /// Topic written to.
        topic: String,
        /// The producer's error.
        source: KafkaError,
    },
}

impl Publish {
    /// A JSON event keyed by execution id.
    pub fn json(topic: &str, key: &str, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: key.to_owned(),
            payload: Some(payload),
            headers: Vec::new(),
        }
    }
}

/// The producer actor.
pub struct KafkaEgressActor {
    producer: FutureProducer<ProducerHealth>,
    /// How long a message may wait for room in the producer's queue.
    enqueue_timeout: Duration,
    stats: ActorStats,
    stats_interval: Duration,
    pending: Rc<Cell<usize>>,
}

impl KafkaEgressActor {
    /// An actor around an idempotent producer, logging stats every `stats_interval`.
    pub fn new(
        producer: FutureProducer<ProducerHealth>,
        enqueue_timeout: Duration,
        stats_interval: Duration,
    ) -> Self {
        Self {
            producer,
            enqueue_timeout,
            stats: ActorStats::new("kafka_egress"),
            stats_interval,
            pending: Rc::new(Cell::new(0)),
        }
    }
}

impl Actor for KafkaEgressActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.stats_interval, |act, _| {
            act.stats.report(act.pending.get());
        });
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        // Nothing buffered may be lost when the actor goes: flush what is queued.
        if let Err(e) = self.producer.flush(Timeout::After(Duration::from_secs(5))) {
            warn!(error = %e, "Producer flush on stop did not finish.");
        }
        Running::Stop
    }
}

impl Supervised for KafkaEgressActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(
            actor = "kafka_egress",
            restarts = self.stats.restarts(),
            "Actor restarted."
        );
    }
}

impl Handler<Publish> for KafkaEgressActor {
    type Result = ResponseFuture<Result<Delivered, PublishError>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        self.stats.record(started);
        let producer = self.producer.clone();
        let timeout = self.enqueue_timeout;
        let pending = self.pending.clone();
        pending.set(pending.get() + 1);
        Box::pin(async move {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &msg.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&msg.topic)
                .key(msg.key.as_str())
                .headers(headers);
            if let Some(payload) = &msg.payload {
                record = record.payload(payload.as_slice());
            }
            let result = producer.send(record, Timeout::After(timeout)).await;
            pending.set(pending.get() - 1);
            match result {
                Ok(delivery) => Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err((source, _)) => {
                    error!(topic = %msg.topic, key = %msg.key, error = %source, "Message not delivered.");
                    Err(PublishError::Kafka {
                        topic: msg.topic.clone(),
                        source,
                    })
                }
            }
        })
    }
}

impl Handler<Flush> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, msg: Flush, _ctx: &mut Self::Context) {
        if let Err(e) = self.producer.flush(Timeout::After(msg.0)) {
            warn!(error = %e, "Producer flush did not finish in time.");
        }
    }
}

impl Handler<ReportStats> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, _msg: ReportStats, _ctx: &mut Self::Context) {
        self.stats.report(self.pending.get());
    }
}

impl Handler<InjectFault> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
