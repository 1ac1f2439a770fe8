//! The egress's side of exactly-once: one Kafka transaction open at a time, holding the
//! messages the daemon wrote and the input offsets they answer, committed together.
//!
//! A transaction that fails (a message not produced or not delivered, a commit refused) leaves
//! the daemon's memory ahead of what Kafka holds. It is aborted, and the transaction refuses
//! everything from then on ("poisoned"): a later commit would carry offsets past inputs whose
//! effects were lost. The failure requests the tree's [`Shutdown`], and the daemon rebuilds the
//! actors from the committed state. Once the tree's shutdown is requested, for whatever reason
//! (a failure elsewhere, the tree abandoned), nothing more is committed: the open transaction
//! is aborted by the next owner's `init_transactions`. The flag is read before every begin and
//! commit and between commit retries, so an egress blocked in a transactional call (it reads no
//! mailbox then) sees it as soon as the call returns.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, warn};

use crate::actors::egress::{Delivered, Publish, PublishError};
use crate::shutdown::{Failure, Shutdown};
use crate::telemetry::{self, ProducerHealth};

/// The open transaction (if any) of a transactional producer, and what it will commit.
pub struct Transaction {
    producer: FutureProducer<ProducerHealth>,
    /// How long a call into the transaction may take.
    timeout: Duration,
    open: bool,
    /// Delivery reports of the open transaction's messages, awaited before the commit.
    deliveries: Vec<DeliveryFuture>,
    /// Input (topic, partition) → the offset to commit.
    offsets: BTreeMap<(String, i32), i64>,
    /// The consumer's group metadata, for fencing.
    group: Option<ConsumerGroupMetadata>,
    state_topic: String,
    /// State records of the open transaction, by execution, produced just before it commits: a
    /// later record of an execution replaces an earlier one, since a restart reads only the
    /// last (an execution queued and commanded within one transaction writes `allocated` only).
    state: HashMap<String, Publish>,
    /// Transactions committed.
    committed: u64,
    /// When the open transaction began, and when its commit was started (deliveries awaited
    /// from then): the phases the commit metric times.
    opened_at: Option<Instant>,
    completing_at: Option<Instant>,
    /// Why everything is refused, once a transaction failed or the tree was abandoned.
    poisoned: Option<String>,
    /// The tree's shutdown.
    shutdown: Shutdown,
}

impl Transaction {
    /// Transactions of `producer` (its `init_transactions` done); calls wait at most
    /// `timeout`; records for `state_topic` are coalesced per execution; a failure requests
    /// `shutdown`, and once it is requested nothing more is committed.
    pub fn new(
        producer: FutureProducer<ProducerHealth>,
        timeout: Duration,
        state_topic: String,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            producer,
            timeout,
            open: false,
            deliveries: Vec::new(),
            offsets: BTreeMap::new(),
            group: None,
            state_topic,
            state: HashMap::new(),
            committed: 0,
            opened_at: None,
            completing_at: None,
            poisoned: None,
            shutdown,
        }
    }

    /// Whether a transaction is open and can still be committed.
    pub fn is_open(&self) -> bool {
        self.open && self.poisoned.is_none()
    }

    /// Transactions committed so far.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Why nothing more is taken, if so.
    fn refusal(&mut self) -> Option<&str> {
        if self.shutdown.is_requested() && self.poisoned.is_none() {
            self.reset("the tree is stopping".to_owned());
        }
        self.poisoned.as_deref()
    }

    /// Puts `msg` into the open transaction (opening one if needed). State records wait for
    /// the commit, coalesced; others are produced now, their delivery awaited before the commit.
    /// A full producer queue commits what the transaction holds to make room.
    pub fn produce(&mut self, msg: Publish) -> Result<Delivered, PublishError> {
        if let Some(reason) = self.refusal() {
            return Err(PublishError::Poisoned {
                topic: msg.topic,
                reason: reason.to_owned(),
            });
        }
        if let Err(source) = self.ensure_open() {
            return Err(PublishError::Kafka {
                topic: msg.topic,
                source,
            });
        }
        if msg.topic == self.state_topic {
            self.state.insert(msg.key.clone(), msg);
            return Ok(Delivered::InTransaction);
        }
        let msg = msg.encoded();
        let mut record = msg.record();
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.deliveries.push(delivery);
                    return Ok(Delivered::InTransaction);
                }
                Err((e, returned))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    // Make room: the commit flushes what the transaction holds. If it failed,
                    // nothing more goes in.
                    self.commit();
                    if let Some(reason) = self.refusal() {
                        return Err(PublishError::Poisoned {
                            topic: msg.topic.clone(),
                            reason: reason.to_owned(),
                        });
                    }
                    if let Err(source) = self.ensure_open() {
                        return Err(PublishError::Kafka {
                            topic: msg.topic.clone(),
                            source,
                        });
                    }
                    record = returned;
                }
                Err((e, _)) => {
                    // The transaction already holds offsets whose effects include this one.
                    self.fail(
                        format!("a message of the open transaction was not produced: {e}"),
                        false,
                    );
                    return Err(PublishError::Kafka {
                        topic: msg.topic.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Commits `next_offset` of the input (`topic`, `partition`) with the open transaction.
    pub fn include_offset(
        &mut self,
        topic: String,
        partition: i32,
        next_offset: i64,
        group: Option<ConsumerGroupMetadata>,
    ) {
        if self.refusal().is_some() {
            return;
        }
        let next = self
            .offsets
            .entry((topic, partition))
            .or_insert(next_offset);
        *next = (*next).max(next_offset);
        if group.is_some() {
            self.group = group;
        }
    }

    /// Produces the coalesced state records and hands over the delivery reports of the open
    /// transaction, to be awaited before [`Transaction::commit`]. `None` when no transaction
    /// is open (or it just failed).
    pub fn complete(&mut self) -> Option<Vec<DeliveryFuture>> {
        if self.refusal().is_some() || !self.open {
            return None;
        }
        if let Err(e) = self.produce_state() {
            self.fail(format!("state record not produced: {e}"), false);
            return None;
        }
        self.completing_at = Some(Instant::now());
        Some(std::mem::take(&mut self.deliveries))
    }

    /// A delivery of the open transaction failed: abort it.
    pub fn delivery_failed(&mut self, error: &str) {
        error!(
            error,
            "A message of the open transaction was not delivered; aborting it."
        );
        self.fail(format!("transaction aborted: {error}"), false);
    }

    /// Commits the open transaction with its offsets, blocking until the brokers answer. On
    /// failure (false) the transaction is aborted and everything refused from then on.
    pub fn commit(&mut self) -> bool {
        if self.refusal().is_some() || !self.open {
            return true;
        }
        let timeout = Timeout::After(self.timeout);
        let commit_started = Instant::now();
        let mut result = self.produce_state();
        if result.is_ok() && !self.offsets.is_empty() {
            result = self.send_offsets(timeout);
        }
        if result.is_ok() {
            // Let the producer drop what was delivered, so the commit's own flush finds
            // nothing to wait for.
            let deadline = Instant::now() + self.timeout;
            if self.producer.in_flight_count() > 0 {
                let _ = self.producer.flush(Timeout::After(
                    deadline.saturating_duration_since(Instant::now()),
                ));
            }
            result = loop {
                match self.producer.commit_transaction(timeout) {
                    Err(KafkaError::Transaction(e))
                        if e.is_retriable() && !self.shutdown.is_requested() =>
                    {
                        warn!(error = %e, "Transaction commit will be retried.");
                    }
                    other => break other,
                }
            };
        }
        match result {
            Ok(()) => {
                let opened = self.opened_at.take().unwrap_or(commit_started);
                let completing = self.completing_at.take().unwrap_or(commit_started);
                telemetry::transaction_phases(
                    completing.saturating_duration_since(opened),
                    commit_started.saturating_duration_since(completing),
                    commit_started.elapsed(),
                );
                self.open = false;
                self.offsets.clear();
                self.deliveries.clear();
                self.committed += 1;
                true
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                error!(error = %e, fatal, "Transaction not committed; the coordinator recovers from the committed state.");
                self.fail(format!("transaction not committed: {e}"), fatal);
                false
            }
        }
    }

    fn send_offsets(&self, timeout: Timeout) -> Result<(), KafkaError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        self.producer
            .send_offsets_to_transaction(&tpl, group, timeout)
    }

    /// Opens a transaction unless one is open.
    fn ensure_open(&mut self) -> Result<(), KafkaError> {
        if !self.open {
            self.producer.begin_transaction()?;
            self.open = true;
            self.opened_at = Some(Instant::now());
            self.completing_at = None;
        }
        Ok(())
    }

    /// Produces the coalesced state records into the open transaction. A full producer queue
    /// is waited out (its deliveries drain meanwhile) rather than committed early: the offsets
    /// these records answer are already in the transaction.
    fn produce_state(&mut self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.timeout;
        for msg in std::mem::take(&mut self.state).into_values() {
            let msg = msg.encoded();
            let mut record = msg.record();
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.deliveries.push(delivery);
                        break;
                    }
                    Err((e, returned))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        // Room comes as deliveries complete: wait for some, not for a tick.
                        let _ = self
                            .producer
                            .flush(Timeout::After(Duration::from_millis(1)));
                        record = returned;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Aborts the open transaction (unless the error was `fatal`, after which the producer
    /// takes no call), drops what it held, refuses everything from now on and reports why.
    fn fail(&mut self, reason: String, mut fatal: bool) {
        if !fatal && self.open {
            if let Err(e) = self
                .producer
                .abort_transaction(Timeout::After(self.timeout))
            {
                warn!(error = %e, "Aborting the failed transaction failed too; the next owner's init_transactions aborts it.");
                fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
            }
        }
        let failure = if fatal {
            Failure::Fatal(reason.clone())
        } else {
            Failure::Recoverable(reason.clone())
        };
        if self.poisoned.is_none() {
            self.shutdown.fail(failure);
        }
        self.reset(reason);
    }

    /// Drops what the open transaction holds and refuses everything from now on.
    fn reset(&mut self, reason: String) {
        self.open = false;
        self.offsets.clear();
        self.deliveries.clear();
        self.state.clear();
        self.poisoned.get_or_insert(reason);
    }
}
