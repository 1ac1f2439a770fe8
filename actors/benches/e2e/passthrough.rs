//! The reference pipes: the limit of this broker and machine for the daemon's job. They consume
//! the input topics of the config's `topic_layout` and write what their [`Shape`] says per
//! input (`E2E_PIPE_SHAPE`): one same-sized message to the commands topic, or the daemon's own
//! traffic per request (accepted, command, state records). They use the daemon's own consumer
//! and producer settings and client contexts, on a single-threaded runtime like the daemon's
//! actix System, and the daemon's delivery guarantee:
//!
//! - `exactly_once = true`: outputs go into a transaction with the offsets of their inputs; the
//!   open transaction is committed every `transaction_interval`, as the daemon's egress does;
//! - `exactly_once = false`: each offset is stored once its outputs are acknowledged, in order,
//!   and offsets are committed every `commit_interval`, as the daemon's ingress does.
//!
//! Nothing else: no decoding, no queue, no scheduling.
//!
//! Run as `E2E_BENCH_ROLE=passthrough <this binary> CONFIG`; SIGTERM stops it cleanly.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coordinator_core::config::Config;
use execution_coordinator::kafka::{
    consumer_config, daemon_producer_config, is_nothing_to_commit, CommitOnRevoke,
};
use execution_coordinator::telemetry::ProducerHealth;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::signal::unix::{signal, SignalKind};

use crate::shape::{Output, Shape, Topics};

/// Outputs in flight, at most; the daemon's ingress allows as many unacknowledged events.
const MAX_UNACKED: usize = 10_000;

/// Entry point of the passthrough child process.
pub fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: E2E_BENCH_ROLE=passthrough e2e CONFIG")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let config =
        Config::from_toml_str(&text, std::env::vars()).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.daemon.log_level))
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(pipe(config, Shape::from_env()?))
}

type Ack = LocalBoxFuture<'static, (String, i32, i64, bool)>;

async fn pipe(config: Config, shape: Shape) -> anyhow::Result<()> {
    let kafka = config.kafka;
    let bootstrap = kafka
        .bootstrap_servers
        .clone()
        .context("the passthrough needs kafka.bootstrap_servers")?;
    let consumer: StreamConsumer<CommitOnRevoke> = consumer_config(&kafka, &bootstrap)
        .create_with_context(CommitOnRevoke::new(Arc::new(AtomicBool::new(false))))
        .context("creating the consumer")?;
    let producer: FutureProducer<ProducerHealth> = daemon_producer_config(&kafka, &bootstrap)
        .create_with_context(ProducerHealth::default())
        .context("creating the producer")?;
    let mut txn = if kafka.exactly_once {
        producer
            .init_transactions(kafka.delivery_timeout)
            .context("initialising transactions")?;
        Some(Transaction::default())
    } else {
        None
    };
    let mut txn_tick = tokio::time::interval(kafka.transaction_interval);
    txn_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let topics = kafka.input_topics_full();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).context("subscribing")?;
    let outputs_to = Topics {
        commands: kafka.topic_of(coordinator_core::events::EventType::CreatePodCommand),
        accepted: kafka.topic_of(coordinator_core::events::EventType::ExecutionAccepted),
        state: kafka.state_topic_full(),
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut unacked: FuturesOrdered<Ack> = FuturesOrdered::new();
    let mut commit_tick = tokio::time::interval(kafka.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream = consumer.stream();
    let mut failed = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = term.recv() => break,
            Some((topic, partition, offset, ok)) = unacked.next(), if !unacked.is_empty() => {
                if ok {
                    let _ = consumer.store_offset(&topic, partition, offset);
                } else {
                    failed += 1;
                }
            }
            _ = commit_tick.tick(), if txn.is_none() => commit(&consumer, CommitMode::Async),
            _ = txn_tick.tick(), if txn.is_some() => {
                if let Some(txn) = txn.as_mut() {
                    txn.commit(&producer, &consumer, kafka.delivery_timeout)?;
                }
            }
            message = stream.next(), if unacked.len() < MAX_UNACKED => {
                let Some(message) = message else { break };
                let m = match message {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("passthrough: consumer error: {e}");
                        continue;
                    }
                };
                let outputs = shape.outputs(&m, &outputs_to, txn.is_some());
                if let Some(txn) = txn.as_mut() {
                    for output in outputs {
                        txn.produce(&producer, &consumer, output, kafka.delivery_timeout)?;
                    }
                    txn.offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                    continue;
                }
                let source = (m.topic().to_owned(), m.partition(), m.offset());
                let acks: Vec<_> = outputs
                    .into_iter()
                    .map(|output| forward(&producer, output, kafka.delivery_timeout))
                    .collect();
                unacked.push_back(
                    async move {
                        let ok = futures::future::join_all(acks).await.into_iter().all(|ok| ok);
                        (source.0, source.1, source.2, ok)
                    }
                    .boxed_local(),
                );
            }
        }
    }
    drop(stream);
    while let Some((topic, partition, offset, ok)) = unacked.next().await {
        if ok {
            let _ = consumer.store_offset(&topic, partition, offset);
        } else {
            failed += 1;
        }
    }
    match txn.as_mut() {
        Some(txn) => txn.commit(&producer, &consumer, kafka.delivery_timeout)?,
        None => commit(&consumer, CommitMode::Sync),
    }
    anyhow::ensure!(failed == 0, "{failed} outputs not acknowledged");
    Ok(())
}

/// The open transaction and the input offsets it will commit (exactly-once).
#[derive(Default)]
struct Transaction {
    open: bool,
    offsets: BTreeMap<(String, i32), i64>,
}

impl Transaction {
    /// Produces one output into the open transaction (opening one if needed); the delivery
    /// report is not awaited, the commit reports failures — as the daemon's egress does.
    fn produce(
        &mut self,
        producer: &FutureProducer<ProducerHealth>,
        consumer: &StreamConsumer<CommitOnRevoke>,
        output: Output<'_>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut record = record(&output);
        loop {
            if !self.open {
                producer.begin_transaction()?;
                self.open = true;
            }
            match producer.send_result(record) {
                Ok(_delivery) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    self.commit(producer, consumer, timeout)?;
                    record = returned;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Commits the open transaction with the offsets of the inputs it answers.
    fn commit(
        &mut self,
        producer: &FutureProducer<ProducerHealth>,
        consumer: &StreamConsumer<CommitOnRevoke>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        if !self.open {
            return Ok(());
        }
        if !self.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &self.offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
            }
            let group = consumer
                .group_metadata()
                .context("no consumer group metadata")?;
            producer.send_offsets_to_transaction(&tpl, &group, timeout)?;
        }
        // rust-rdkafka's commit_transaction flushes first, and its flush polls in slices of up
        // to 100 ms, while the FutureProducer's own thread takes the delivery reports: with a
        // message still in flight it sleeps the whole slice. Wait for the deliveries here.
        let deadline = std::time::Instant::now() + timeout;
        while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        producer.commit_transaction(timeout)?;
        self.open = false;
        self.offsets.clear();
        Ok(())
    }
}

/// The record of `output`.
fn record<'a>(output: &'a Output<'_>) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(output.topic).payload(output.payload.as_ref());
    if let Some(key) = output.key {
        record = record.key(key);
    }
    if let Some(headers) = &output.headers {
        record = record.headers(headers.clone());
    }
    record
}

/// Enqueues one output now (librdkafka copies key and payload) and returns its ack. When the
/// producer's queue is full, copies the message and retries like the daemon's egress does.
fn forward(
    producer: &FutureProducer<ProducerHealth>,
    output: Output<'_>,
    timeout: std::time::Duration,
) -> LocalBoxFuture<'static, bool> {
    match producer.send_result(record(&output)) {
        Ok(delivery) => async move { matches!(delivery.await, Ok(Ok(_))) }.boxed_local(),
        Err(_) => {
            let producer = producer.clone();
            let topic = output.topic.to_owned();
            let key = output.key.map(<[u8]>::to_vec);
            let payload = output.payload.into_owned();
            let headers: Option<OwnedHeaders> = output.headers;
            async move {
                let owned = Output {
                    topic: &topic,
                    key: key.as_deref(),
                    payload: payload.into(),
                    headers,
                };
                producer.send(record(&owned), timeout).await.is_ok()
            }
            .boxed_local()
        }
    }
}

fn commit(consumer: &StreamConsumer<CommitOnRevoke>, mode: CommitMode) {
    if let Err(e) = consumer.commit_consumer_state(mode) {
        if !is_nothing_to_commit(&e) {
            eprintln!("passthrough: commit failed: {e}");
        }
    }
}
