//! KafkaEgressActor: owns the producer; publishes events and answers with the broker's ack.
//!
//! With exactly-once on, every message goes into the open Kafka transaction together with the
//! input offsets it answers ([`IncludeOffset`]); the transaction ([`Transaction`]) is committed
//! every `transaction_interval`, once every message in it is delivered. A transactional egress
//! runs on a thread of its own, since commits block it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use thiserror::Error;
use tracing::{error, warn};

use crate::actors::InjectFault;
use crate::kafka::transaction::Transaction;
use crate::shutdown::Shutdown;
use crate::telemetry::stats::ActorStats;
use crate::telemetry::ProducerHealth;

/// Publish one message and answer once the broker acknowledged it (or it failed for good).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Delivered, PublishError>")]
pub struct Publish {
    /// Full topic name.
    pub topic: String,
    /// Message key (the execution id).
    pub key: String,
    /// Message value.
    pub payload: Payload,
    /// Message headers: names are the coordinator's own, values mostly too.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

/// What a message carries.
#[derive(Clone)]
pub enum Payload {
    /// Nothing: a tombstone, which deletes the key's record from a compacted topic.
    Tombstone,
    /// These bytes.
    Bytes(Vec<u8>),
    /// Bytes encoded only when the message is written. For a state record, which a later
    /// record of the same execution replaces within a transaction (an execution queued and
    /// commanded in one writes only `allocated`): when replaced, it is never encoded.
    Deferred(Arc<dyn Fn() -> Vec<u8> + Send + Sync>),
}

impl Payload {
    /// The bytes, encoding them if deferred; `None` for a tombstone.
    pub fn bytes(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Payload::Tombstone => None,
            Payload::Bytes(bytes) => Some(bytes.as_slice().into()),
            Payload::Deferred(encode) => Some(encode().into()),
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Tombstone => f.write_str("Tombstone"),
            Payload::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Payload::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// Hand messages to the producer in this order. Answers once all of them are in its queue (or,
/// with exactly-once, in the open transaction), with their broker acks to await, in order.
#[derive(Message, Debug)]
#[rtype(result = "Handed")]
pub struct PublishBatch(pub Vec<Publish>);

/// The broker's ack of one handed message.
pub type Ack = BoxFuture<'static, Result<Delivered, PublishError>>;

/// Messages handed to the producer: their acks, in the order given.
pub struct Handed(pub Vec<Ack>);

impl std::fmt::Debug for Handed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handed({} acks)", self.0.len())
    }
}

/// Flush everything buffered, waiting at most the given time.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Flush(pub Duration);

/// With exactly-once: commit this input offset in the transaction holding its effects.
/// Sent after every message the input event caused, so they are in the same or an earlier
/// transaction.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IncludeOffset {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// The offset to commit: the input message's offset + 1.
    pub next_offset: i64,
    /// The consumer's group metadata now (generation and member, for fencing).
    pub group: Option<ConsumerGroupMetadata>,
}

/// What became of a message the broker took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written at this partition and offset.
    Written {
        /// Partition written.
        partition: i32,
        /// Offset written.
        offset: i64,
    },
    /// With exactly-once: in the open transaction, acknowledged by its commit.
    InTransaction,
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
    /// A transaction failed before: nothing more is written until the daemon recovers.
    #[error("not written to {topic}: the egress stopped after a failed transaction ({reason})")]
    Poisoned {
        /// Topic it was for.
        topic: String,
        /// What failed.
        reason: String,
    },
}

impl Publish {
    /// This message with its payload encoded, if deferred: what the producer takes.
    pub(crate) fn encoded(mut self) -> Encoded {
        if let Payload::Deferred(encode) = &self.payload {
            self.payload = Payload::Bytes(encode());
        }
        Encoded(self)
    }

    /// A JSON message keyed by execution id.
    pub fn json(topic: &str, key: &str, payload: Payload) -> Self {
        Self {
            topic: topic.to_owned(),
            key: key.to_owned(),
            payload,
            // Room for the content type, the origin and a trace context.
            headers: Vec::with_capacity(4),
        }
    }
}

/// A message whose payload is encoded ([`Publish::encoded`]).
pub(crate) struct Encoded(Publish);

impl Encoded {
    /// The Kafka record of this message.
    pub(crate) fn record(&self) -> FutureRecord<'_, str, [u8]> {
        let msg = &self.0;
        let record = FutureRecord::to(&msg.topic)
            .key(msg.key.as_str())
            .headers(owned_headers(&msg.headers));
        match &msg.payload {
            Payload::Bytes(payload) => record.payload(payload.as_slice()),
            // `encoded` leaves nothing deferred.
            Payload::Tombstone | Payload::Deferred(_) => record,
        }
    }
}

impl std::ops::Deref for Encoded {
    type Target = Publish;

    fn deref(&self) -> &Publish {
        &self.0
    }
}

/// Messages the egress's mailbox takes before senders wait: high enough never to be reached.
const MAILBOX_CAPACITY: usize = 1 << 24;

/// The producer actor.
pub struct KafkaEgressActor {
    /// With exactly-once: the transaction every message goes into.
    transaction: Option<Transaction>,
    /// How often the open transaction is committed.
    transaction_interval: Duration,
    /// Commit as soon as a pass's commands are in and the mailbox is drained.
    commit_early: bool,
    /// An early commit is scheduled and has not run yet.
    early_commit_due: bool,
    producer: FutureProducer<ProducerHealth>,
    /// How long a message may wait for room in the producer's queue.
    enqueue_timeout: Duration,
    stats: ActorStats,
    stats_interval: Duration,
    /// Messages handed and not yet acknowledged (at least once).
    pending: Arc<AtomicUsize>,
}

/// Exactly-once: what the egress commits with, and how often.
pub struct Transactional {
    /// How often the open transaction is committed.
    pub interval: Duration,
    /// Also commit once a pass's commands are in and nothing else waits (`[kafka]
    /// transaction_commit_early`).
    pub commit_early: bool,
    /// The state topic, whose records are coalesced per execution within a transaction.
    pub state_topic: String,
    /// The tree's shutdown: a failed transaction requests it, and once it is requested (a
    /// failure elsewhere, or the tree abandoned) nothing more is committed.
    pub shutdown: Shutdown,
}

impl KafkaEgressActor {
    /// Starts the egress around `producer` under a supervisor, logging stats every
    /// `stats_interval`; a message waits at most `enqueue_timeout` for room in the producer's
    /// queue. At least once (`transactional` is `None`) it runs on the caller's arbiter. With
    /// exactly-once (`producer` has a `transactional.id`, `init_transactions` done) it runs on
    /// an arbiter of its own, returned too, since every commit blocks its thread.
    pub fn start(
        producer: FutureProducer<ProducerHealth>,
        enqueue_timeout: Duration,
        stats_interval: Duration,
        transactional: Option<Transactional>,
    ) -> (Addr<Self>, Option<Arbiter>) {
        let Some(t) = transactional else {
            let actor = Self::new(producer, enqueue_timeout, stats_interval, None, false);
            return (Supervisor::start(move |_| actor), None);
        };
        let arbiter = Arbiter::new();
        let addr = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            let transaction =
                Transaction::new(producer.clone(), enqueue_timeout, t.state_topic, t.shutdown);
            Self::new(
                producer,
                enqueue_timeout,
                stats_interval,
                Some((transaction, t.interval)),
                t.commit_early,
            )
        });
        (addr, Some(arbiter))
    }

    fn new(
        producer: FutureProducer<ProducerHealth>,
        enqueue_timeout: Duration,
        stats_interval: Duration,
        transaction: Option<(Transaction, Duration)>,
        commit_early: bool,
    ) -> Self {
        let (transaction, transaction_interval) = match transaction {
            Some((t, interval)) => (Some(t), interval),
            None => (None, Duration::MAX),
        };
        Self {
            transaction,
            transaction_interval,
            commit_early,
            early_commit_due: false,
            producer,
            enqueue_timeout,
            stats: ActorStats::new("kafka_egress"),
            stats_interval,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Waits (holding the mailbox, so nothing joins the transaction meanwhile) until every
    /// message of the open transaction is delivered and the producer has let go of them, then
    /// commits it; a failed delivery aborts it instead.
    fn commit_when_delivered(&mut self, ctx: &mut Context<Self>) {
        let Some(deliveries) = self.transaction.as_mut().and_then(Transaction::complete) else {
            return;
        };
        let deadline = Instant::now() + self.enqueue_timeout;
        ctx.wait(
            async move {
                let failed = join_all(deliveries)
                    .await
                    .into_iter()
                    .find_map(|r| match r {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e.to_string()),
                        Err(_) => Some("delivery report lost".to_owned()),
                    });
                failed
            }
            .into_actor(self)
            .then(move |failed, act, _| {
                let producer = act.producer.clone();
                async move {
                    // A delivery report resolves a moment before the producer drops the
                    // message; the commit's own flush would wait in polling slices.
                    while producer.in_flight_count() > 0 && Instant::now() < deadline {
                        actix_rt::time::sleep(Duration::from_micros(200)).await;
                    }
                    failed
                }
                .into_actor(act)
            })
            .map(|failed, act, _| {
                if let Some(txn) = act.transaction.as_mut() {
                    match failed {
                        None => {
                            if !txn.commit() {
                                act.stats.error();
                            }
                        }
                        Some(error) => {
                            act.stats.error();
                            txn.delivery_failed(&error);
                        }
                    }
                }
            }),
        );
    }

    /// With `commit_early`: commits the open transaction once the mailbox is drained (spawned
    /// futures run after the mailbox's messages), unless a commit comes first.
    fn schedule_early_commit(&mut self, ctx: &mut Context<Self>) {
        if !self.commit_early || self.early_commit_due {
            return;
        }
        self.early_commit_due = true;
        ctx.spawn(ActorFutureExt::map(
            fut::ready(()),
            |(), act: &mut Self, ctx: &mut Context<Self>| {
                act.early_commit_due = false;
                act.commit_when_delivered(ctx);
            },
        ));
    }

    /// Commits the open transaction now, if there is one.
    fn commit_now(&mut self) {
        if let Some(txn) = self.transaction.as_mut() {
            if !txn.commit() {
                self.stats.error();
            }
        }
    }
}

/// Kafka headers from (name, value) pairs.
fn owned_headers(pairs: &[(&'static str, Cow<'static, str>)]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
    for (key, value) in pairs {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

impl Actor for KafkaEgressActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A message in the mailbox is handed over (its sender moves on); what bounds the
        // backlog is the senders' own limits (unacked events, commands awaiting acks).
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.stats_interval, |act, _| {
            act.stats.report(act.pending.load(Ordering::Relaxed));
        });
        if self.transaction.is_some() {
            ctx.run_interval(self.transaction_interval, |act, ctx| {
                act.commit_when_delivered(ctx)
            });
        }
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        // Nothing buffered may be lost when the actor goes: commit or flush what is queued.
        self.commit_now();
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

impl KafkaEgressActor {
    /// Hands `msg` to the producer (or the open transaction) now; returns its ack. When the
    /// producer's queue is full the message waits for room, at most `enqueue_timeout`.
    fn hand(&mut self, msg: Publish) -> Ack {
        if let Some(txn) = self.transaction.as_mut() {
            return std::future::ready(txn.produce(msg)).boxed();
        }
        let msg = msg.encoded();
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        let handed = match self.producer.send_result(msg.record()) {
            Ok(delivery) => Ok(delivery),
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => Err(None),
            Err((e, _)) => Err(Some(e)),
        };
        let producer = self.producer.clone();
        let timeout = self.enqueue_timeout;
        async move {
            let result = match handed {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(delivery)) => Ok(delivery),
                    Ok(Err((e, _))) => Err(e),
                    Err(_) => Err(KafkaError::Canceled),
                },
                // Full queue: wait for room (rdkafka retries until the timeout).
                Err(None) => producer
                    .send(msg.record(), Timeout::After(timeout))
                    .await
                    .map_err(|(e, _)| e),
                Err(Some(e)) => Err(e),
            };
            pending.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(delivery) => Ok(Delivered::Written {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err(source) => {
                    error!(topic = %msg.topic, key = %msg.key, error = %source, "Message not delivered.");
                    Err(PublishError::Kafka {
                        topic: msg.topic.clone(),
                        source,
                    })
                }
            }
        }
        .boxed()
    }
}

impl Handler<Publish> for KafkaEgressActor {
    type Result = ResponseFuture<Result<Delivered, PublishError>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let ack = self.hand(msg);
        self.stats.record(started);
        ack
    }
}

impl Handler<PublishBatch> for KafkaEgressActor {
    type Result = MessageResult<PublishBatch>;

    fn handle(&mut self, msg: PublishBatch, ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let acks = msg.0.into_iter().map(|m| self.hand(m)).collect();
        self.stats.record(started);
        if self.transaction.as_ref().is_some_and(Transaction::is_open) {
            self.schedule_early_commit(ctx);
        }
        MessageResult(Handed(acks))
    }
}

impl Handler<Flush> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, msg: Flush, _ctx: &mut Self::Context) {
        self.commit_now();
        if let Err(e) = self.producer.flush(Timeout::After(msg.0)) {
            warn!(error = %e, "Producer flush did not finish in time.");
        }
    }
}

impl Handler<IncludeOffset> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, msg: IncludeOffset, _ctx: &mut Self::Context) {
        if let Some(txn) = self.transaction.as_mut() {
            txn.include_offset(msg.topic, msg.partition, msg.next_offset, msg.group);
        }
    }
}

impl Handler<InjectFault> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
