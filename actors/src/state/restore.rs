//! The state topic read into memory: the latest record of every execution. Read from the
//! beginning to the end at start; kept current by a standby, so that taking over reads only
//! the records written since its last look.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use coordinator_core::config::KafkaConfig;
use coordinator_core::pool::ResourcePool;
use coordinator_core::pool::{Allocation, Resources};
use coordinator_core::queue::{ExecutionQueue, QueuedExecution};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::kafka::client_config;
use crate::state::pending::Pending;
use crate::state::record::StateRecord;

/// Queue entries and allocations read back from the state topic, to be put into a new queue
/// and pool with [`RestoredState::apply`].
#[derive(Debug, Default)]
pub struct RestoredState {
    /// Executions still queued, in arrival order.
    pub queued: Vec<QueuedExecution<Pending>>,
    /// Allocations still held.
    pub allocated: Vec<Allocation>,
    /// Executions finished recently, oldest first (for duplicate detection).
    pub finished: Vec<String>,
    /// Records read.
    pub records: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// How long reading the state topic to its end may take at start or takeover.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// What [`RestoredState::apply`] put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Executions queued again.
    pub queued: usize,
    /// Allocations held again.
    pub allocated: usize,
}

impl RestoredState {
    /// Puts the restored executions into `queue` (queued ones in arrival order; finished and
    /// allocated ones remembered for duplicate detection) and the allocations into `pool`.
    /// What no longer fits (an id or arrival taken, an allocation larger than the pool as
    /// configured now) is skipped with a warning.
    pub fn apply(self, queue: &mut ExecutionQueue<Pending>, pool: &mut ResourcePool) -> Applied {
        let mut applied = Applied {
            queued: 0,
            allocated: 0,
        };
        for entry in self.queued {
            let id = entry.execution_id.clone();
            if queue.restore(entry).is_some() {
                applied.queued += 1;
            } else {
                warn!(execution_id = %id, "Restored queue entry skipped: id or arrival taken.");
            }
        }
        for id in &self.finished {
            queue.remember_finished(id);
        }
        for allocation in self.allocated {
            queue.remember_finished(&allocation.execution_id);
            match pool.allocate(&allocation.execution_id, allocation.resources) {
                Ok(_) => applied.allocated += 1,
                Err(e) => {
                    warn!(execution_id = %allocation.execution_id, error = %e, "Restored allocation exceeds the pool as configured now; kept out of the books.");
                }
            }
        }
        applied
    }
}

/// How long a metadata request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The latest record of every execution on the state topic, read `read_committed`.
pub struct StateTail {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    /// Execution id → its latest record, decoded as it is read (so a takeover only moves them
    /// into the queue and pool); `None` for a tombstone or an unreadable record.
    latest: HashMap<String, Option<Latest>>,
    records: u64,
}

/// One execution's latest state record, decoded.
enum Latest {
    Queued(QueuedExecution<Pending>),
    Allocated(Resources),
    Finished(u64),
}

impl Latest {
    /// The record of `execution_id` in `payload`, or `None` (logged) when it does not decode.
    fn decode(execution_id: &str, payload: &[u8]) -> Option<Self> {
        match serde_json::from_slice::<StateRecord>(payload) {
            Ok(StateRecord::Queued {
                priority,
                arrival,
                enqueued_at,
                requeues,
                cpu_millis,
                memory_mib,
                gpu,
                request,
                trace,
            }) => Some(Latest::Queued(QueuedExecution {
                user_id: request.metadata.user_key().to_owned(),
                execution_id: execution_id.to_owned(),
                priority,
                arrival,
                enqueued_at,
                requeues,
                payload: Pending::new(&request, Resources::new(cpu_millis, memory_mib, gpu), trace),
            })),
            Ok(StateRecord::Allocated {
                cpu_millis,
                memory_mib,
                gpu,
            }) => Some(Latest::Allocated(Resources::new(
                cpu_millis, memory_mib, gpu,
            ))),
            Ok(StateRecord::Finished { finished_at }) => Some(Latest::Finished(finished_at)),
            Err(e) => {
                warn!(%execution_id, error = %e, "Unreadable state record skipped.");
                None
            }
        }
    }
}

impl StateTail {
    /// A reader of every partition of the state topic of `kafka`, from its beginning; nothing is
    /// read yet.
    pub fn open(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<Self> {
        let topic = kafka.state_topic_full();
        let mut config = client_config(kafka, bootstrap);
        config
            .set("group.id", format!("{}-state-restore", kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = config.create().context("creating the state reader")?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .with_context(|| format!("reading metadata of state topic {topic}"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Self {
            consumer,
            topic,
            partitions,
            latest: HashMap::new(),
            records: 0,
        })
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Reads up to the end of every partition as it is now, within `timeout`; answers the
    /// records read. With `read_committed` the end waits for a transaction in progress, so a
    /// standby catching up while the owner works gives a short timeout and calls again
    /// ([`StateTail::catch_up_for`]); a takeover, after fencing the old owner, reads to the end.
    pub fn catch_up(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        match self.read(timeout)? {
            (read, true) => Ok(read),
            (_, false) => anyhow::bail!(
                "state topic {} not read to its end within {}",
                self.topic,
                humantime::format_duration(timeout)
            ),
        }
    }

    /// Reads what is there for at most `timeout`, without requiring the end; answers the
    /// records read and whether the end was reached.
    pub fn catch_up_for(&mut self, timeout: Duration) -> anyhow::Result<(u64, bool)> {
        self.read(timeout)
    }

    /// (records read, whether the end was reached).
    fn read(&mut self, timeout: Duration) -> anyhow::Result<(u64, bool)> {
        let deadline = Instant::now() + timeout;
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        for p in &self.partitions {
            let (low, high) = self.watermarks(*p, deadline)?;
            if high > low && self.position(*p).is_none_or(|pos| pos < high) {
                remaining.insert(*p, high);
            }
        }
        let mut read = 0u64;
        while !remaining.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.records += read;
                return Ok((read, false));
            }
            let Some(message) = self.consumer.poll(left.min(Duration::from_millis(100))) else {
                // With read_committed the end may sit past aborted or control records.
                remaining.retain(|p, end| self.position(*p).is_none_or(|pos| pos < *end));
                continue;
            };
            let message = message.context("reading the state topic")?;
            read += 1;
            if let Some(key) = message.key() {
                let execution_id = String::from_utf8_lossy(key).into_owned();
                let latest = message
                    .payload()
                    .and_then(|payload| Latest::decode(&execution_id, payload));
                self.latest.insert(execution_id, latest);
            }
            let partition = message.partition();
            if remaining
                .get(&partition)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                remaining.remove(&partition);
            }
        }
        self.records += read;
        Ok((read, true))
    }

    /// The low and high watermarks of `partition`. A topic just created may have no leader
    /// yet, and a broker may be restarting: asked again until `deadline`.
    fn watermarks(&self, partition: i32, deadline: Instant) -> anyhow::Result<(i64, i64)> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A request gets a few seconds even when the read's own deadline is nearer: a busy
            // broker answers metadata slowly.
            match self.consumer.fetch_watermarks(
                &self.topic,
                partition,
                left.max(Duration::from_secs(5)),
            ) {
                Ok(marks) => return Ok(marks),
                Err(e) if !left.is_zero() => {
                    debug!(topic = %self.topic, partition, error = %e, "Watermarks not available yet.");
                    std::thread::sleep(Duration::from_millis(50).min(left));
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("reading watermarks of {}/{partition}", self.topic)
                    })
                }
            }
        }
    }

    /// The consumer's position in `partition`, once it has one.
    fn position(&self, partition: i32) -> Option<i64> {
        let tpl = self.consumer.position().ok()?;
        match tpl.find_partition(&self.topic, partition)?.offset() {
            Offset::Offset(pos) => Some(pos),
            _ => None,
        }
    }

    /// What was queued and allocated, and finished recently, as of the records read (`started`
    /// is when the reading began, for the log).
    pub fn into_restored(self, started: Instant) -> RestoredState {
        let mut state = RestoredState {
            records: self.records,
            ..RestoredState::default()
        };
        let mut finished: Vec<(u64, String)> = Vec::new();
        for (execution_id, latest) in self.latest {
            match latest {
                Some(Latest::Queued(entry)) => state.queued.push(entry),
                Some(Latest::Allocated(resources)) => state.allocated.push(Allocation {
                    execution_id,
                    resources,
                }),
                Some(Latest::Finished(finished_at)) => finished.push((finished_at, execution_id)),
                None => {}
            }
        }
        state.queued.sort_by_key(|e| e.arrival);
        finished.sort();
        state.finished = finished.into_iter().map(|(_, id)| id).collect();
        state.elapsed = started.elapsed();
        info!(
            records = state.records,
            queued = state.queued.len(),
            allocated = state.allocated.len(),
            finished = state.finished.len(),
            elapsed_ms = state.elapsed.as_millis() as u64,
            "State restored."
        );
        state
    }
}
