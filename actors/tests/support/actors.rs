//! Test doubles and fixtures for the actor tests: a collector standing in for the Kafka egress,
//! a proxy counting the scheduler's `Take` calls, requests built from the golden event, and
//! polling with a deadline (never a sleep before an assertion).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::{EventType, ExecutionRequested, WirePriority};
use coordinator_core::pool::{Allocation, Insufficient, PoolSpec, Resources};
use coordinator_core::priority::PriorityFormat;
use coordinator_core::queue::Rejection;
use coordinator_core::Priority;
use execution_coordinator::actors::egress::{
    Ack, Delivered, Handed, Publish, PublishBatch, PublishError,
};
use execution_coordinator::actors::queue::{Lease, Take};
use execution_coordinator::actors::resource::Reserve;
use futures::FutureExt;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::golden::golden_file;
use super::WAIT;

/// Pause between two probes while polling.
const POLL: Duration = Duration::from_millis(2);

/// Polls `probe` until it answers `Some`, failing the test with `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Topic names as the actors resolve them from the default `[kafka]` section.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `execution_accepted`.
    pub accepted: String,
    /// `execution_failed`.
    pub failed: String,
    /// `create_pod_command`.
    pub commands: String,
    /// Queued / allocated / tombstone records.
    pub state: String,
}

impl Topics {
    /// The default topics.
    pub fn new(kafka: &KafkaConfig) -> Self {
        Self {
            accepted: kafka.topic_of(EventType::ExecutionAccepted),
            failed: kafka.topic_of(EventType::ExecutionFailed),
            commands: kafka.topic_of(EventType::CreatePodCommand),
            state: kafka.state_topic_full(),
        }
    }
}

/// One `Publish` the collector handled.
#[derive(Debug, Clone)]
pub struct Published {
    /// Topic written to.
    pub topic: String,
    /// Message key (the execution id).
    pub key: String,
    /// Decoded JSON payload; `None` for a tombstone.
    pub payload: Option<Value>,
    /// Whether the collector answered `Ok` (false when failing the topic).
    pub delivered: bool,
}

#[derive(Default)]
struct Log {
    published: Vec<Published>,
    failing: HashSet<String>,
    /// Topics whose publishes wait for [`Sink::open`].
    held: HashSet<String>,
    gate: Option<Arc<Semaphore>>,
    waiting: usize,
}

/// The test's handle on what the collector saw, and its switch for failing topics.
#[derive(Clone, Default)]
pub struct Sink {
    log: Arc<Mutex<Log>>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every publish handled so far, in handling order.
    pub fn all(&self) -> Vec<Published> {
        self.lock().published.clone()
    }

    /// Publishes to `topic` that were answered `Ok`, in handling order.
    pub fn delivered_to(&self, topic: &str) -> Vec<Published> {
        self.lock()
            .published
            .iter()
            .filter(|p| p.delivered && p.topic == topic)
            .cloned()
            .collect()
    }

    /// Keys of the publishes to `topic` answered `Ok`, in handling order.
    pub fn keys(&self, topic: &str) -> Vec<String> {
        self.delivered_to(topic)
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    /// From now on every publish to `topic` is answered with a delivery error.
    pub fn fail(&self, topic: &str) {
        self.lock().failing.insert(topic.to_owned());
    }

    /// Publishes succeed again.
    pub fn heal(&self) {
        self.lock().failing.clear();
    }

    /// From now on publishes to `topic` are not answered until [`Sink::open`].
    pub fn hold(&self, topic: &str) {
        let mut log = self.lock();
        log.held.insert(topic.to_owned());
        log.gate.get_or_insert_with(|| Arc::new(Semaphore::new(0)));
    }

    /// Publishes held now and waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Answers every held publish (delivered or failed as the topic stands then) and stops
    /// holding.
    pub fn open(&self) {
        let mut log = self.lock();
        log.held.clear();
        if let Some(gate) = &log.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
        log.gate = None;
    }

    /// Records `msg` and answers it as the failing topics stand now.
    fn answer(&self, msg: Publish) -> Result<Delivered, PublishError> {
        let payload = msg.payload.bytes().map(|bytes| {
            serde_json::from_slice::<Value>(&bytes).expect("every payload published is JSON")
        });
        let mut log = self.lock();
        let delivered = !log.failing.contains(&msg.topic);
        log.published.push(Published {
            topic: msg.topic.clone(),
            key: msg.key,
            payload,
            delivered,
        });
        if !delivered {
            return Err(PublishError::Kafka {
                topic: msg.topic,
                source: KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
            });
        }
        let offset = log.published.iter().filter(|p| p.delivered).count() as i64 - 1;
        Ok(Delivered::Written {
            partition: 0,
            offset,
        })
    }
}

/// Stands in for `KafkaEgressActor`: records every `Publish` and answers as the test says.
pub struct Collector {
    sink: Sink,
}

impl Collector {
    /// A collector recording into `sink`.
    pub fn start(sink: Sink) -> Addr<Collector> {
        Collector { sink }.start()
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Collector {
    /// Records `msg` (now, or once the gate opens when its topic is held) and answers its ack.
    fn ack(&self, msg: Publish) -> Ack {
        let gate = {
            let mut log = self.sink.lock();
            match (&log.gate, log.held.contains(&msg.topic)) {
                (Some(gate), true) => {
                    let gate = gate.clone();
                    log.waiting += 1;
                    Some(gate)
                }
                _ => None,
            }
        };
        let Some(gate) = gate else {
            // Recorded now, so the log is in handling order.
            return std::future::ready(self.sink.answer(msg)).boxed();
        };
        let sink = self.sink.clone();
        async move {
            let _ = gate.acquire().await.map(|permit| permit.forget());
            sink.lock().waiting -= 1;
            sink.answer(msg)
        }
        .boxed()
    }
}

impl Handler<Publish> for Collector {
    type Result = ResponseFuture<Result<Delivered, PublishError>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        self.ack(msg)
    }
}

impl Handler<PublishBatch> for Collector {
    type Result = MessageResult<PublishBatch>;

    fn handle(&mut self, msg: PublishBatch, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(Handed(msg.0.into_iter().map(|m| self.ack(m)).collect()))
    }
}

/// Sits between the scheduler and the pool and holds every `Reserve` until the test
/// lets it through, so a test can act while a scheduling is in progress.
pub struct AllocateGate {
    pool: Recipient<Reserve>,
    gate: Arc<Semaphore>,
    seen: Arc<AtomicU64>,
}

impl AllocateGate {
    /// A closed gate in front of `pool`; `seen` counts the requests that reached it.
    pub fn start(
        pool: Recipient<Reserve>,
        gate: Arc<Semaphore>,
        seen: Arc<AtomicU64>,
    ) -> Addr<AllocateGate> {
        AllocateGate { pool, gate, seen }.start()
    }
}

impl Actor for AllocateGate {
    type Context = Context<Self>;
}

impl Handler<Reserve> for AllocateGate {
    type Result = ResponseFuture<Vec<Result<Allocation, Insufficient>>>;

    fn handle(&mut self, msg: Reserve, _ctx: &mut Self::Context) -> Self::Result {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let pool = self.pool.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let _ = gate.acquire().await.map(|permit| permit.forget());
            pool.send(msg).await.expect("the pool actor answers")
        })
    }
}

/// Sits between the scheduler and the queue and counts the scheduler's `Take` calls.
pub struct DequeueCounter {
    queue: Recipient<Take>,
    calls: Arc<AtomicU64>,
}

impl DequeueCounter {
    /// A proxy to `queue`; `calls` counts what passes through.
    pub fn start(queue: Recipient<Take>, calls: Arc<AtomicU64>) -> Addr<DequeueCounter> {
        DequeueCounter { queue, calls }.start()
    }
}

impl Actor for DequeueCounter {
    type Context = Context<Self>;
}

impl Handler<Take> for DequeueCounter {
    type Result = ResponseFuture<Vec<Lease>>;

    fn handle(&mut self, msg: Take, _ctx: &mut Self::Context) -> Self::Result {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let queue = self.queue.clone();
        Box::pin(async move { queue.send(msg).await.unwrap_or_default() })
    }
}

/// The golden `execution_requested` event with this id, level and user.
pub fn request(execution_id: &str, priority: Priority, user: &str) -> ExecutionRequested {
    let mut request: ExecutionRequested =
        serde_json::from_value(golden_file("execution_requested"))
            .expect("the golden execution_requested event decodes");
    request.execution_id = execution_id.to_owned();
    request.aggregate_id = Some(execution_id.to_owned());
    request.event_id = format!("event-{execution_id}");
    request.priority = WirePriority::of(priority, PriorityFormat::Number);
    request.metadata.user_id = Some(user.to_owned());
    request
}

/// A pool of exactly `cpu_millis` / `memory_mib` usable (no overcommit, no reserve), with caps
/// of 4 cores and 8 GiB per execution.
pub fn pool(cpu_millis: u64, memory_mib: u64) -> PoolSpec {
    PoolSpec {
        total: Resources::new(cpu_millis, memory_mib, 0),
        reserve: Resources::default(),
        cap: Resources::new(4_000, 8_192, 1),
        default_request: Resources::new(500, 512, 0),
        language_defaults: BTreeMap::new(),
    }
}

/// Unwraps an `Enqueue` answer, naming the execution when it was refused.
pub fn admitted<T>(id: &str, answer: Result<Result<T, Rejection>, MailboxError>) -> T {
    match answer {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(rejection)) => panic!("{id} was refused: {rejection}"),
        Err(e) => panic!("the queue actor did not answer for {id}: {e}"),
    }
}
