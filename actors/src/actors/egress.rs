//! KafkaEgressActor: owns the producer; publishes events and answers with the broker's ack.
//!
//! With exactly-once on, every message goes into the open Kafka transaction together with the
//! input offsets it answers ([`IncludeOffset`]); the transaction is committed every
//! `transaction_interval`. A failed commit leaves the daemon's memory ahead of what Kafka holds,
//! so it is reported on the fatal channel and the process restarts from the committed state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, warn};

use crate::actors::InjectFault;
use crate::daemon::Failure;
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
    /// Message value; `None` writes a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Message headers.
    pub headers: Vec<(String, String)>,
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

/// Set by the daemon when it abandons this tree: the egress commits nothing more (the open
/// transaction is aborted by the next owner's `init_transactions`), so no offset is committed
/// past an input whose effects were still on their way. A flag rather than a message: an egress
/// blocked in a transactional call of the Kafka client reads no mailbox, and sees the flag as
/// soon as the call returns.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    /// From now on the egress commits nothing.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the tree was abandoned.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
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

/// Where the broker stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition written.
    pub partition: i32,
    /// Offset written.
    pub offset: i64,
}

impl Delivered {
    /// With exactly-once: in the open transaction, acknowledged by its commit (no offset yet).
    pub const IN_TRANSACTION: Delivered = Delivered {
        partition: -1,
        offset: -1,
    };
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
    /// The Kafka record of this message.
    fn record(&self) -> FutureRecord<'_, str, [u8]> {
        let record = FutureRecord::to(&self.topic)
            .key(self.key.as_str())
            .headers(owned_headers(&self.headers));
        match &self.payload {
            Some(payload) => record.payload(payload.as_slice()),
            None => record,
        }
    }

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

/// Exactly-once bookkeeping: the open transaction and the offsets it will commit.
struct Transactions {
    interval: Duration,
    open: bool,
    /// Delivery reports of the open transaction's messages: awaited before the commit, whose
    /// own flush would otherwise wait in 100 ms polling slices.
    deliveries: Vec<DeliveryFuture>,
    offsets: BTreeMap<(String, i32), i64>,
    /// The state topic's name.
    state_topic: String,
    /// State records of the open transaction, by execution, produced just before it commits: a
    /// later record of an execution replaces an earlier one, since a restart reads only the
    /// last (an execution queued and commanded within one transaction writes `allocated` only).
    state: HashMap<String, Publish>,
    group: Option<ConsumerGroupMetadata>,
    committed: u64,
    /// Set once a transaction failed or was aborted: nothing more is produced or committed on
    /// top of it (its inputs' effects are lost, so later offsets must not be committed) until
    /// the daemon recovers with a new egress.
    poisoned: Option<String>,
    failures: UnboundedSender<Failure>,
    abandoned: Abandoned,
}

impl Transactions {
    /// Drops what the open transaction holds and refuses everything from now on, for `reason`.
    fn refuse_all(&mut self, reason: &str) {
        self.open = false;
        self.offsets.clear();
        self.deliveries.clear();
        self.state.clear();
        self.poisoned.get_or_insert_with(|| reason.to_owned());
    }
}

/// Messages the egress's mailbox takes before senders wait: high enough never to be reached.
const MAILBOX_CAPACITY: usize = 1 << 24;

/// The producer actor.
pub struct KafkaEgressActor {
    /// Set when exactly-once is on.
    transactions: Option<Transactions>,
    producer: FutureProducer<ProducerHealth>,
    /// How long a message may wait for room in the producer's queue.
    enqueue_timeout: Duration,
    stats: ActorStats,
    stats_interval: Duration,
    /// Messages handed and not yet acknowledged (at least once).
    pending: Arc<AtomicUsize>,
}

impl KafkaEgressActor {
    /// An actor around an idempotent producer, logging stats every `stats_interval`.
    pub fn new(
        producer: FutureProducer<ProducerHealth>,
        enqueue_timeout: Duration,
        stats_interval: Duration,
    ) -> Self {
        Self {
            transactions: None,
            producer,
            enqueue_timeout,
            stats: ActorStats::new("kafka_egress"),
            stats_interval,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Exactly-once: `producer` has a `transactional.id` and `init_transactions` done; the open
    /// transaction is committed every `interval`; a failed or aborted one poisons the egress and
    /// is reported to `failures`. Records for `state_topic` are coalesced per execution within a
    /// transaction.
    pub fn transactional(
        producer: FutureProducer<ProducerHealth>,
        enqueue_timeout: Duration,
        stats_interval: Duration,
        interval: Duration,
        state_topic: String,
        failures: UnboundedSender<Failure>,
        abandoned: Abandoned,
    ) -> Self {
        let mut actor = Self::new(producer, enqueue_timeout, stats_interval);
        actor.transactions = Some(Transactions {
            interval,
            open: false,
            deliveries: Vec::new(),
            offsets: BTreeMap::new(),
            state_topic,
            state: HashMap::new(),
            group: None,
            committed: 0,
            poisoned: None,
            failures,
            abandoned,
        });
        actor
    }

    /// Commits the open transaction with its offsets. On failure: abort, poison, and report it
    /// (the daemon's memory now holds effects Kafka does not).
    fn commit(&mut self) {
        let Some(txn) = self.transactions.as_mut() else {
            return;
        };
        if txn.abandoned.is_set() {
            txn.refuse_all("the tree was abandoned");
        }
        if !txn.open || txn.poisoned.is_some() {
            return;
        }
        let mut result = self.produce_coalesced_state();
        let Some(txn) = self.transactions.as_mut() else {
            return;
        };
        let timeout = Timeout::After(self.enqueue_timeout);
        if result.is_ok() && !txn.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &txn.offsets {
                if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                    result = Err(e);
                }
            }
            if result.is_ok() {
                result = match &txn.group {
                    Some(group) => self
                        .producer
                        .send_offsets_to_transaction(&tpl, group, timeout),
                    None => Ok(()),
                };
            }
        }
        if result.is_ok() {
            // A delivery future resolves before librdkafka drops the message from its queue;
            // commit_transaction's own flush would then poll in 100 ms slices. Wait here.
            let deadline = Instant::now() + self.enqueue_timeout;
            while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            result = loop {
                match self.producer.commit_transaction(timeout) {
                    Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                        if txn.abandoned.is_set() {
                            break Err(KafkaError::Transaction(e));
                        }
                        warn!(error = %e, "Transaction commit will be retried.");
                    }
                    other => break other,
                }
            };
        }
        match result {
            Ok(()) => {
                txn.open = false;
                txn.offsets.clear();
                txn.deliveries.clear();
                txn.committed += 1;
            }
            Err(e) => {
                self.stats.error();
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                error!(error = %e, fatal, "Transaction not committed; the coordinator recovers from the committed state.");
                if !fatal {
                    let _ = self.producer.abort_transaction(timeout);
                }
                let reason = format!("transaction not committed: {e}");
                let failure = if fatal {
                    Failure::Fatal(reason)
                } else {
                    Failure::Recoverable(reason)
                };
                self.poison(failure);
            }
        }
    }

    /// Drops what the open transaction held, refuses everything from now on, and reports
    /// `failure` to the daemon.
    fn poison(&mut self, failure: Failure) {
        if let Some(txn) = self.transactions.as_mut() {
            if txn.poisoned.is_none() {
                let _ = txn.failures.send(failure.clone());
            }
            txn.refuse_all(&failure.to_string());
        }
    }

    /// Waits (holding the mailbox, so nothing joins the transaction meanwhile) until every
    /// message of the open transaction is delivered, then commits it; a failed delivery aborts
    /// it instead.
    fn commit_when_delivered(&mut self, ctx: &mut Context<Self>) {
        let Some(txn) = self.transactions.as_mut() else {
            return;
        };
        if !txn.open || txn.poisoned.is_some() {
            return;
        }
        if let Err(e) = self.produce_coalesced_state() {
            self.abort(&format!("state record not produced: {e}"));
            return;
        }
        let Some(txn) = self.transactions.as_mut() else {
            return;
        };
        let deliveries = std::mem::take(&mut txn.deliveries);
        ctx.wait(
            join_all(deliveries)
                .into_actor(self)
                .map(|reports, act, _| {
                    let failed = reports.into_iter().find_map(|r| match r {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e.to_string()),
                        Err(_) => Some("delivery report lost".to_owned()),
                    });
                    match failed {
                        None => act.commit(),
                        Some(error) => act.abort(&error),
                    }
                }),
        );
    }

    /// Produces the open transaction's coalesced state records into it. A full producer queue
    /// is waited out rather than committed early: the offsets these records answer are already
    /// in the transaction.
    fn produce_coalesced_state(&mut self) -> Result<(), KafkaError> {
        let Some(txn) = self.transactions.as_mut() else {
            return Ok(());
        };
        if txn.state.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut txn.state);
        let deadline = Instant::now() + self.enqueue_timeout;
        for msg in records.into_values() {
            let mut record = msg.record();
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        txn.deliveries.push(delivery);
                        break;
                    }
                    Err((e, returned))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                        record = returned;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Aborts the open transaction after a failed delivery, poisons the egress and reports it.
    fn abort(&mut self, error: &str) {
        self.stats.error();
        error!(
            error,
            "A message of the open transaction was not delivered; aborting it."
        );
        let aborted = self
            .producer
            .abort_transaction(Timeout::After(self.enqueue_timeout));
        let reason = format!("transaction aborted: {error}");
        let failure = match aborted {
            Err(KafkaError::Transaction(t)) if t.is_fatal() => Failure::Fatal(reason),
            _ => Failure::Recoverable(reason),
        };
        self.poison(failure);
    }

    /// Opens a transaction unless one is open; refuses once poisoned.
    fn ensure_open(&mut self) -> Result<(), KafkaError> {
        if let Some(txn) = self.transactions.as_mut() {
            if txn.abandoned.is_set() {
                txn.refuse_all("the tree was abandoned");
            }
            if txn.poisoned.is_some() {
                return Err(KafkaError::MessageProduction(RDKafkaErrorCode::State));
            }
            if !txn.open {
                self.producer.begin_transaction()?;
                txn.open = true;
            }
        }
        Ok(())
    }

    /// Exactly-once: produces `msg` into the open transaction (opening one if needed).
    fn produce_in_transaction(&mut self, msg: &Publish) -> Result<Delivered, PublishError> {
        let failed = |source: KafkaError| PublishError::Kafka {
            topic: msg.topic.clone(),
            source,
        };
        self.ensure_open().map_err(failed)?;
        let mut record = msg.record();
        loop {
            match self.producer.send_result(record) {
                // The delivery report is awaited before the commit, not here.
                Ok(delivery) => {
                    if let Some(txn) = self.transactions.as_mut() {
                        txn.deliveries.push(delivery);
                    }
                    return Ok(Delivered::IN_TRANSACTION);
                }
                Err((e, returned))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    // Make room: the commit flushes what the transaction holds.
                    self.commit();
                    self.ensure_open().map_err(failed)?;
                    record = returned;
                }
                Err((e, _)) => {
                    // The transaction already holds offsets whose effects include this one.
                    self.poison(Failure::Recoverable(format!(
                        "a message of the open transaction was not produced: {e}"
                    )));
                    return Err(failed(e));
                }
            }
        }
    }
}

/// Kafka headers from (name, value) pairs.
fn owned_headers(pairs: &[(String, String)]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
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
        if let Some(interval) = self.transactions.as_ref().map(|t| t.interval) {
            ctx.run_interval(interval, |act, ctx| act.commit_when_delivered(ctx));
        }
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        // Nothing buffered may be lost when the actor goes: commit or flush what is queued.
        self.commit();
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
        if let Some(txn) = self.transactions.as_mut() {
            if let Some(reason) = &txn.poisoned {
                let refused = PublishError::Poisoned {
                    topic: msg.topic,
                    reason: reason.clone(),
                };
                return std::future::ready(Err(refused)).boxed();
            }
            if msg.topic == txn.state_topic {
                // Coalesced with the execution's other state records; produced at the commit.
                if let Err(source) = self.ensure_open() {
                    let failed = PublishError::Kafka {
                        topic: msg.topic,
                        source,
                    };
                    return std::future::ready(Err(failed)).boxed();
                }
                if let Some(txn) = self.transactions.as_mut() {
                    txn.state.insert(msg.key.clone(), msg);
                }
                return std::future::ready(Ok(Delivered::IN_TRANSACTION)).boxed();
            }
            return std::future::ready(self.produce_in_transaction(&msg)).boxed();
        }
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
                Ok(delivery) => Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err(source) => {
                    error!(topic = %msg.topic, key = %msg.key, error = %source, "Message not delivered.");
                    Err(PublishError::Kafka {
                        topic: msg.topic,
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

    fn handle(&mut self, msg: PublishBatch, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let acks = msg.0.into_iter().map(|m| self.hand(m)).collect();
        self.stats.record(started);
        MessageResult(Handed(acks))
    }
}

impl Handler<Flush> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, msg: Flush, _ctx: &mut Self::Context) {
        self.commit();
        if let Err(e) = self.producer.flush(Timeout::After(msg.0)) {
            warn!(error = %e, "Producer flush did not finish in time.");
        }
    }
}

impl Handler<IncludeOffset> for KafkaEgressActor {
    type Result = ();

    fn handle(&mut self, msg: IncludeOffset, _ctx: &mut Self::Context) {
        if let Some(txn) = self.transactions.as_mut() {
            if txn.poisoned.is_some() {
                return;
            }
            let next = txn
                .offsets
                .entry((msg.topic, msg.partition))
                .or_insert(msg.next_offset);
            *next = (*next).max(msg.next_offset);
            if msg.group.is_some() {
                txn.group = msg.group;
            }
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
