//! Prometheus metrics and the health endpoints on `metrics_addr`: `/metrics`, `/healthz`
//! (process alive) and `/readyz` (consumer assigned and producer connected). The same listener
//! serves the inspection API and the status page ([`crate::inspect`]).

pub mod log_output;
pub mod sample;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use coordinator_core::pool::PoolStats;
use coordinator_core::Priority;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rdkafka::client::ClientContext;
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;
use tracing::{info, warn};

use crate::inspect::api::Api;
use crate::inspect::Inspection;

/// Metric names, all prefixed `execution_coordinator_` (Prometheus conventions).
pub mod name {
    /// Gauge, label `priority`.
    pub const QUEUE_DEPTH: &str = "execution_coordinator_queue_depth";
    /// Histogram, label `priority`.
    pub const QUEUE_WAIT: &str = "execution_coordinator_queue_wait_seconds";
    /// Histogram: a scheduling pass, dequeue to its commands handed to the producer.
    pub const SCHEDULING: &str = "execution_coordinator_scheduling_duration_seconds";
    /// Counter.
    pub const ACCEPTED: &str = "execution_coordinator_accepted_total";
    /// Counter.
    pub const COMMANDED: &str = "execution_coordinator_commanded_total";
    /// Counter, label `reason`.
    pub const REJECTED: &str = "execution_coordinator_rejected_total";
    /// Counter.
    pub const REQUEUED: &str = "execution_coordinator_requeued_total";
    /// Counter.
    pub const EXPIRED: &str = "execution_coordinator_expired_total";
    /// Counter.
    pub const DUPLICATES: &str = "execution_coordinator_duplicates_total";
    /// Counter.
    pub const DEAD_LETTERED: &str = "execution_coordinator_dead_lettered_total";
    /// Gauge, labels `resource` (cpu in cores, memory in bytes, gpu) and `state` (used, total).
    pub const POOL: &str = "execution_coordinator_pool";
    /// Gauge.
    pub const ACTIVE_ALLOCATIONS: &str = "execution_coordinator_active_allocations";
    /// Counter, label `actor`.
    pub const RESTARTS: &str = "execution_coordinator_actor_restarts_total";
    /// Gauge, labels `topic`, `partition`.
    pub const CONSUMER_LAG: &str = "execution_coordinator_consumer_lag_messages";
    /// Counter: the actor tree rebuilt from the committed state after a failed transaction or
    /// unacknowledged effects.
    pub const RECOVERIES: &str = "execution_coordinator_recoveries_total";
    /// Histogram: the phases of each committed transaction (`phase`: `open`, from its first
    /// message to the start of its commit; `deliveries`, waiting for its messages' delivery
    /// reports; `commit`, its state records, offsets and the commit round trip).
    pub const TRANSACTION: &str = "execution_coordinator_transaction_seconds";
}

/// The series Integr8sCode's own coordinator exported (`app/core/metrics/coordinator.py` of its
/// last release with one), under the names its Grafana dashboards query, with the same meaning:
/// an operator's existing panels keep working.
pub mod integr8scode {
    /// Histogram: a scheduling pass (the same values as `execution_coordinator_scheduling_…`).
    pub const SCHEDULING: &str = "coordinator_scheduling_duration_seconds";
    /// Histogram, label `priority`: enqueue to command (as `execution_coordinator_queue_wait_…`).
    pub const QUEUE_WAIT: &str = "coordinator_queue_wait_time_seconds";
    /// Gauge: executions holding resources (as `execution_coordinator_active_allocations`).
    pub const ACTIVE: &str = "coordinator_executions_active";
    /// Counter, label `status`: `queued` (accepted), `scheduled` (commanded), `error` (the
    /// command was not written) and `queue_full` (refused by the queue's size or the user's
    /// limit).
    pub const SCHEDULED: &str = "coordinator_executions_scheduled_total";
    /// Gauge: executions queued, all levels together.
    pub const QUEUE_DEPTH: &str = "execution_queue_depth";
    /// The values of [`SCHEDULED`]'s `status`.
    pub const STATUSES: [&str; 4] = ["queued", "scheduled", "error", "queue_full"];
}

/// The reasons of `execution_coordinator_rejected_total`.
pub const REJECTION_REASONS: [&str; 5] = [
    "queue_full",
    "user_limit",
    "invalid",
    "never_fits",
    "too_large",
];

/// The actors of `execution_coordinator_actor_restarts_total`.
pub const ACTORS: [&str; 5] = [
    "queue",
    "resource",
    "scheduler",
    "kafka_ingress",
    "kafka_egress",
];

/// Registers every counter at zero, with each label value it can take, so `/metrics` lists the
/// whole set from the start (a dashboard's panel shows 0, not "no data", and a rate over a
/// counter that appears later does not miss its first increments).
fn register_counters() {
    for metric in [
        name::ACCEPTED,
        name::COMMANDED,
        name::REQUEUED,
        name::EXPIRED,
        name::DUPLICATES,
        name::DEAD_LETTERED,
        name::RECOVERIES,
    ] {
        counter!(metric).absolute(0);
    }
    for reason in REJECTION_REASONS {
        counter!(name::REJECTED, "reason" => reason).absolute(0);
    }
    for actor in ACTORS {
        counter!(name::RESTARTS, "actor" => actor).absolute(0);
    }
    for status in integr8scode::STATUSES {
        counter!(integr8scode::SCHEDULED, "status" => status).absolute(0);
    }
}

/// Counts one execution under Integr8sCode's `coordinator_executions_scheduled_total{status}`.
pub fn scheduled_status(status: &'static str) {
    counter!(integr8scode::SCHEDULED, "status" => status).increment(1);
}

/// Queue depth per level and in all, the gauges looked up once (a lookup by name and label on
/// every queue change showed in the profile).
pub struct QueueDepthGauges {
    levels: [Gauge; 5],
    total: Gauge,
}

impl QueueDepthGauges {
    /// The gauges of the installed recorder (no-ops without one).
    pub fn new() -> Self {
        Self {
            levels: Priority::ALL.map(|p| gauge!(name::QUEUE_DEPTH, "priority" => p.name())),
            total: gauge!(integr8scode::QUEUE_DEPTH),
        }
    }

    /// Sets the depth of each level.
    pub fn set(&self, depth: &[usize; 5]) {
        for (gauge, depth) in self.levels.iter().zip(depth) {
            gauge.set(*depth as f64);
        }
        self.total.set(depth.iter().sum::<usize>() as f64);
    }
}

impl Default for QueueDepthGauges {
    fn default() -> Self {
        Self::new()
    }
}

/// What every command records: queue wait per level and the commanded counter, under the
/// coordinator's names and Integr8sCode's, looked up once.
pub struct CommandMetrics {
    waits: [(Histogram, Histogram); 5],
    commanded: (Counter, Counter),
    failed: Counter,
}

impl CommandMetrics {
    /// The handles of the installed recorder (no-ops without one).
    pub fn new() -> Self {
        Self {
            waits: Priority::ALL.map(|p| {
                (
                    histogram!(name::QUEUE_WAIT, "priority" => p.name()),
                    histogram!(integr8scode::QUEUE_WAIT, "priority" => p.name()),
                )
            }),
            commanded: (
                counter!(name::COMMANDED),
                counter!(integr8scode::SCHEDULED, "status" => "scheduled"),
            ),
            failed: counter!(integr8scode::SCHEDULED, "status" => "error"),
        }
    }

    /// One command acknowledged for an execution that waited `waited` at `priority`.
    pub fn commanded(&self, priority: Priority, waited: Duration) {
        let (ours, theirs) = &self.waits[priority.index()];
        ours.record(waited.as_secs_f64());
        theirs.record(waited.as_secs_f64());
        self.commanded.0.increment(1);
        self.commanded.1.increment(1);
    }

    /// One command the broker did not take (the execution goes back to the queue).
    pub fn failed(&self) {
        self.failed.increment(1);
    }
}

impl Default for CommandMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One scheduling pass, dequeue to its commands handed to the producer.
pub fn scheduling_duration(took: Duration) {
    histogram!(name::SCHEDULING).record(took.as_secs_f64());
    histogram!(integr8scode::SCHEDULING).record(took.as_secs_f64());
}

/// The phases of one committed transaction (see [`name::TRANSACTION`]).
pub fn transaction_phases(open: Duration, deliveries: Duration, commit: Duration) {
    histogram!(name::TRANSACTION, "phase" => "open").record(open.as_secs_f64());
    histogram!(name::TRANSACTION, "phase" => "deliveries").record(deliveries.as_secs_f64());
    histogram!(name::TRANSACTION, "phase" => "commit").record(commit.as_secs_f64());
}

/// Counts one event of a counter without labels.
pub fn count(metric: &'static str) {
    counter!(metric).increment(1);
}

/// Counts one rejection for `reason` (one of [`REJECTION_REASONS`]).
pub fn rejected(reason: &'static str) {
    counter!(name::REJECTED, "reason" => reason).increment(1);
    if matches!(reason, "queue_full" | "user_limit") {
        scheduled_status("queue_full");
    }
}

/// Counts one supervisor restart of `actor`.
pub fn restarted(actor: &'static str) {
    counter!(name::RESTARTS, "actor" => actor).increment(1);
}

/// Pool used and total per resource, and active allocations; the gauges looked up once.
pub struct PoolGauges {
    /// (used, total) per resource: cpu_cores, memory_bytes, gpus.
    resources: [(Gauge, Gauge); 3],
    /// Active allocations, under both names.
    active: (Gauge, Gauge),
}

impl PoolGauges {
    /// The gauges of the installed recorder (no-ops without one).
    pub fn new() -> Self {
        Self {
            resources: ["cpu_cores", "memory_bytes", "gpus"].map(|resource| {
                (
                    gauge!(name::POOL, "resource" => resource, "state" => "used"),
                    gauge!(name::POOL, "resource" => resource, "state" => "total"),
                )
            }),
            active: (
                gauge!(name::ACTIVE_ALLOCATIONS),
                gauge!(integr8scode::ACTIVE),
            ),
        }
    }

    /// Sets every gauge from `stats`.
    pub fn set(&self, stats: &PoolStats) {
        let mib = 1024.0 * 1024.0;
        let values = [
            (
                stats.used.cpu_millis as f64 / 1000.0,
                stats.total.cpu_millis as f64 / 1000.0,
            ),
            (
                stats.used.memory_mib as f64 * mib,
                stats.total.memory_mib as f64 * mib,
            ),
            (stats.used.gpu as f64, stats.total.gpu as f64),
        ];
        for ((used, total), (u, t)) in self.resources.iter().zip(values) {
            used.set(u);
            total.set(t);
        }
        self.active.0.set(stats.active_allocations as f64);
        self.active.1.set(stats.active_allocations as f64);
    }
}

impl Default for PoolGauges {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/readyz` answers from.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The input consumer holds a partition assignment.
    pub consumer_assigned: Arc<AtomicBool>,
    /// The producer has a broker connection up.
    pub producer_connected: Arc<AtomicBool>,
    /// The actor tree is being rebuilt after a failure.
    pub recovering: AtomicBool,
    /// Another instance owns the queue and pool; this one is a standby.
    pub standby: AtomicBool,
}

impl Readiness {
    /// Both conditions hold and no recovery runs.
    pub fn ready(&self) -> bool {
        self.consumer_assigned.load(Ordering::Relaxed)
            && self.producer_connected.load(Ordering::Relaxed)
            && !self.recovering.load(Ordering::Relaxed)
            && !self.standby.load(Ordering::Relaxed)
    }
}

/// The producer's context: reads librdkafka statistics to know whether a broker is up.
#[derive(Clone, Default)]
pub struct ProducerHealth {
    /// Set while some broker connection is UP.
    pub connected: Arc<AtomicBool>,
}

impl ClientContext for ProducerHealth {
    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.connected.store(up, Ordering::Relaxed);
    }
}

impl ProducerContext for ProducerHealth {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Consumer lag per assigned partition, from librdkafka statistics: messages up to the last
/// stable offset (what a `read_committed` consumer can read) not yet consumed. Measured from
/// the consumer's position, because with exactly-once the offsets are committed by the
/// producer's transactions and librdkafka's own `consumer_lag` (from the committed offset it
/// fetched at assignment) stays unknown; that one is the fallback before anything is consumed.
pub fn consumer_lag(statistics: &Statistics) {
    for (topic, t) in &statistics.topics {
        for (partition, p) in &t.partitions {
            let lag = if p.app_offset >= 0 && p.ls_offset >= 0 {
                (p.ls_offset - p.app_offset).max(0)
            } else {
                p.consumer_lag
            };
            if *partition >= 0 && lag >= 0 {
                gauge!(name::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

/// The process-wide Prometheus recorder (installed once).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ],
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    register_counters();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a thread of its own, and the
/// inspection API and the status page from what `inspection` holds.
pub fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    inspection: Arc<Inspection>,
) -> anyhow::Result<SocketAddr> {
    let handle = recorder()?;
    let api = Api::start(inspection, readiness.clone())?;
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("metrics listener address")?;
    info!(addr = %bound, "Metrics and health endpoints listening.");
    info!(url = %format!("http://{bound}/"), "Status page and inspection API (/v1/queue, /v1/executions/{{id}}, /v1/history) served.");
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for mut request in server.incoming_requests() {
                let (status, body, content_type) = match request.url() {
                    "/metrics" => {
                        handle.run_upkeep();
                        (200, handle.render(), "text/plain; version=0.0.4")
                    }
                    "/healthz" => (200, "ok\n".to_owned(), "text/plain"),
                    "/readyz" if readiness.ready() => (200, "ready\n".to_owned(), "text/plain"),
                    "/readyz" => {
                        let why = format!(
                            "not ready: consumer_assigned={} producer_connected={} recovering={} standby={}\n",
                            readiness.consumer_assigned.load(Ordering::Relaxed),
                            readiness.producer_connected.load(Ordering::Relaxed),
                            readiness.recovering.load(Ordering::Relaxed),
                            readiness.standby.load(Ordering::Relaxed)
                        );
                        (503, why, "text/plain")
                    }
                    _ => match api.serve(request) {
                        None => continue,
                        Some(unknown) => {
                            request = unknown;
                            (404, "not found\n".to_owned(), "text/plain")
                        }
                    },
                };
                let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                    .expect("static header is valid");
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                if let Err(e) = request.respond(response) {
                    warn!(error = %e, "Metrics response failed.");
                }
            }
        })
        .context("spawning the metrics thread")?;
    Ok(bound)
}
