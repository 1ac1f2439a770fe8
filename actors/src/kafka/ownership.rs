//! Which instance of a deployment owns the queue and pool. Every instance joins the consumer
//! group "<group_id>-owner" on the one-partition ownership topic; the group's coordinator
//! assigns that partition to one member, which owns, and the others wait as hot standbys. When
//! the owner stops it leaves the group and a standby is assigned at once; when it dies, after
//! the group's session timeout. Nothing is read or written on the topic: the assignment is the
//! lease. Transactions still fence a former owner that has not noticed (`init_transactions`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use coordinator_core::config::{Config, KafkaConfig};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::daemon::{MAX_RESTART_BACKOFF, RESTART_BACKOFF};
use crate::kafka::client_config;
use crate::misconfigured::Misconfigured;
use crate::shutdown::Shutdown;
use crate::state::restore::StateTail;
use crate::telemetry::Readiness;

/// How long the group waits for a silent member before giving its partition to another:
/// the longest a standby waits after the owner dies (brokers refuse less than 6 s by default).
const SESSION_TIMEOUT_MS: &str = "6000";

/// How long leaving the ownership group may take at exit.
const LEAVE_WITHIN: Duration = Duration::from_secs(10);

/// How long a topic the operator made (`create_topics = false`) may take to show in the
/// brokers' metadata before the daemon says it is missing.
const TOPIC_VISIBLE_WITHIN: Duration = Duration::from_secs(20);

/// How a standby ended.
pub enum StandbyEnd {
    /// This instance owns now; the state topic as read so far, if the reader could be opened.
    Owner(Option<StateTail>),
    /// Stopping was asked.
    Stopped,
}

/// This instance's claim on the ownership topic's partition.
pub struct Ownership {
    owned: watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Sets `owned` on every assignment and revocation.
struct Lease {
    owned: watch::Sender<bool>,
}

impl ClientContext for Lease {}

impl ConsumerContext for Lease {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The topic has one partition, so an (incremental) assignment that names any gives
        // ownership and a revocation that names any takes it. The consumer is not asked for
        // its whole assignment here: while it closes, that request waits on the group
        // coordinator, which waits for this callback, and the thread never returns.
        let owned = match rebalance {
            Rebalance::Assign(partitions) if partitions.count() > 0 => true,
            Rebalance::Revoke(partitions) if partitions.count() > 0 => false,
            Rebalance::Error(e) => {
                warn!(error = %e, "Ownership group rebalance error.");
                return;
            }
            _ => return,
        };
        if *self.owned.borrow() != owned {
            info!(owner = owned, "Ownership changed.");
        }
        self.owned.send_replace(owned);
    }
}

/// Waits until the brokers' metadata shows `topic` with a partition. Metadata can lag a
/// topic created a moment before, so "unknown" is asked again until the deadline.
fn wait_until_visible<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + TOPIC_VISIBLE_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let metadata = consumer
            .fetch_metadata(Some(topic), left.max(Duration::from_secs(1)))
            .with_context(|| format!("reading metadata of the ownership topic {topic}"))?;
        let visible = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if visible {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Misconfigured(format!(
                "the ownership topic {topic} does not exist (waited {}): create it with one \
                 partition, or set kafka.create_topics = true",
                humantime::format_duration(TOPIC_VISIBLE_WITHIN)
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Ownership {
    /// Joins the ownership group of `kafka` on `bootstrap`; a thread of its own keeps the
    /// membership alive. The topic must exist: when this instance does not create its topics
    /// and the topic does not appear within [`TOPIC_VISIBLE_WITHIN`], joining fails with what
    /// to do (a group on a missing topic never assigns anyone, and the daemon would wait as a
    /// standby for good).
    pub fn join(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(false);
        let mut config = client_config(kafka, bootstrap);
        config
            .set("group.id", format!("{}-owner", kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            // Incremental rebalances: the owner keeps the partition while members come and go.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("heartbeat.interval.ms", "1000");
        if let Some(id) = &kafka.group_instance_id {
            config.set("group.instance.id", format!("{id}-owner"));
        }
        let consumer: BaseConsumer<Lease> = config
            .create_with_context(Lease { owned: tx })
            .context("creating the ownership group member")?;
        let topic = kafka.ownership_topic_full();
        if !kafka.create_topics {
            wait_until_visible(&consumer, &topic)?;
        }
        consumer
            .subscribe(&[&topic])
            .with_context(|| format!("joining the ownership group on {topic}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ownership".into())
                .spawn(move || {
                    // Polling serves the rebalances; nothing is ever on the topic.
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                            warn!(error = %e, "Ownership group member error.");
                        }
                    }
                    // Dropping the member leaves the group: a standby is assigned at once.
                    drop(consumer);
                })
                .context("spawning the ownership thread")?
        };
        Ok(Self {
            owned: rx,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether this instance owns now.
    pub fn is_owner(&self) -> bool {
        *self.owned.borrow()
    }

    /// Answers once this instance owns.
    pub async fn owned(&mut self) {
        let _ = self.owned.wait_for(|owned| *owned).await;
    }

    /// Answers once this instance no longer owns.
    pub async fn lost(&mut self) {
        let _ = self.owned.wait_for(|owned| !*owned).await;
    }

    /// Waits as a hot standby until this instance owns the queue and pool, keeping the state topic
    /// read; answers with the state as read, or [`StandbyEnd::Stopped`] when `stop` is
    /// requested first. Brokers that cannot be reached are waited out, never an error.
    pub async fn standby(
        &mut self,
        config: &Config,
        bootstrap: &str,
        readiness: &Readiness,
        stop: &Shutdown,
    ) -> anyhow::Result<StandbyEnd> {
        readiness.standby.store(true, Ordering::Relaxed);
        // The brokers may be away (this instance may have lost ownership because they were):
        // opening the reader is tried again until it works, this instance owns, or it stops.
        let mut backoff = RESTART_BACKOFF;
        let mut tail = loop {
            let (kafka, servers) = (config.kafka.clone(), bootstrap.to_owned());
            let opened = actix_rt::task::spawn_blocking(move || StateTail::open(&kafka, &servers))
                .await
                .context("state reader task")?;
            match opened {
                Ok(tail) => break tail,
                Err(e) => {
                    warn!(error = %format!("{e:#}"), retry_in = %humantime::format_duration(backoff), "Standby could not open the state topic; trying again.");
                }
            }
            if self.is_owner() {
                readiness.standby.store(false, Ordering::Relaxed);
                return Ok(StandbyEnd::Owner(None));
            }
            tokio::select! {
                _ = self.owned() => {}
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.requested() => return Ok(StandbyEnd::Stopped),
            }
            backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
        };
        let (mut announced, mut caught_up) = (false, false);
        loop {
            // A slice of reading, off the actors' thread; the owner may be mid-transaction, so the
            // end is not required. Behind, it reads on at once; at the end, it looks again soon.
            let (kept, read) = actix_rt::task::spawn_blocking(move || {
                let read = tail.catch_up_for(Duration::from_millis(500));
                (tail, read)
            })
            .await
            .map_err(|e| anyhow::anyhow!("state reader task: {e}"))?;
            tail = kept;
            let (at_end, idle) = match read {
                Ok((_, at_end)) => (at_end, at_end),
                Err(e) => {
                    // The brokers may be away a while; the owner's start reads to the end, or fails.
                    warn!(error = %format!("{e:#}"), "Standby could not read the state topic; trying again.");
                    (false, true)
                }
            };
            if at_end && !caught_up {
                caught_up = true;
                info!(
                    records = tail.records(),
                    "Standby caught up with the state topic."
                );
            }
            if self.is_owner() {
                readiness.standby.store(false, Ordering::Relaxed);
                info!(
                    records = tail.records(),
                    "Owner now: taking the queue and pool."
                );
                return Ok(StandbyEnd::Owner(Some(tail)));
            }
            if !announced {
                announced = true;
                info!("Standby: keeping the state current until this instance owns the queue and pool.");
            }
            if idle {
                tokio::select! {
                    _ = self.owned() => {}
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = stop.requested() => return Ok(StandbyEnd::Stopped),
                }
            } else if stop.is_requested() {
                return Ok(StandbyEnd::Stopped);
            }
        }
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Bounded, like the actor threads: a member that cannot leave (brokers away) is
            // left behind, and the group gives its partition away after the session timeout.
            let started = std::time::Instant::now();
            while !thread.is_finished() && started.elapsed() < LEAVE_WITHIN {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Left the ownership group."
                );
            } else {
                warn!(
                    waited = %humantime::format_duration(LEAVE_WITHIN),
                    "The ownership group member did not leave in time; left behind."
                );
            }
        }
    }
}
