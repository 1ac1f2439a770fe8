//! `make run`: the daemon on the embedded broker together with the load generator and the
//! simulated worker, so the queue fills, the pool saturates, executions complete and queued
//! work flows through; Ctrl-C stops everything and prints a one-screen summary.

use std::fmt;
use std::time::{Duration, Instant};

use coordinator_core::config::KafkaConfig;
use coordinator_core::Priority;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::actors::ingress::{IngressCounters, IngressStatsQuery};
use crate::actors::queue::{ExpiredCount, QueueStatsQuery};
use crate::actors::scheduler::{QueueWaits, SchedulerStats, SchedulerStatsQuery, WaitSummary};
use crate::daemon::Daemon;
use crate::tools::loadgen::{run_loadgen, LoadgenOptions, LoadgenSummary};
use crate::tools::worker_sim::{run_worker_sim, WorkerSimOptions, WorkerSimSummary};

/// What the demo ran and what the coordinator did.
#[derive(Debug)]
pub struct DemoSummary {
    /// How long it ran.
    pub elapsed: Duration,
    /// The ingress counters (accepted, rejected by reason, …).
    pub ingress: IngressCounters,
    /// The scheduler counters (commanded, requeued, …).
    pub scheduler: SchedulerStats,
    /// Executions expired in the queue.
    pub expired: u64,
    /// Still queued at the end.
    pub queued: usize,
    /// Queue wait per level.
    pub waits: [WaitSummary; 5],
    /// The load generator's own figures.
    pub loadgen: Option<LoadgenSummary>,
    /// The simulated worker's own figures.
    pub worker: Option<WorkerSimSummary>,
}

/// Runs `loadgen` and `worker-sim` against the running `daemon` until `stop` is cancelled,
/// then stops them (load first, so the worker can finish what was commanded) and sums up.
pub async fn run_demo(
    daemon: &Daemon,
    kafka: &KafkaConfig,
    bootstrap: &str,
    loadgen: LoadgenOptions,
    worker: WorkerSimOptions,
    stop: CancellationToken,
) -> DemoSummary {
    let started = Instant::now();
    let load_stop = loadgen.stop.clone();
    let worker_stop = worker.stop.clone();
    let load = {
        let (kafka, bootstrap) = (kafka.clone(), bootstrap.to_owned());
        actix_rt::spawn(async move { run_loadgen(loadgen, &kafka, &bootstrap).await })
    };
    let work = {
        let (kafka, bootstrap) = (kafka.clone(), bootstrap.to_owned());
        actix_rt::spawn(async move { run_worker_sim(worker, &kafka, &bootstrap).await })
    };
    stop.cancelled().await;
    info!("Stopping the demo: load first, then the worker.");
    load_stop.cancel();
    let loadgen = load.await.ok().and_then(Result::ok);
    worker_stop.cancel();
    let worker = work.await.ok().and_then(Result::ok);
    DemoSummary {
        elapsed: started.elapsed(),
        ingress: daemon
            .ingress
            .send(IngressStatsQuery)
            .await
            .unwrap_or_default(),
        scheduler: daemon
            .scheduler
            .send(SchedulerStatsQuery)
            .await
            .unwrap_or_default(),
        expired: daemon.queue.send(ExpiredCount).await.unwrap_or_default(),
        queued: daemon
            .queue
            .send(QueueStatsQuery)
            .await
            .map(|s| s.total)
            .unwrap_or_default(),
        waits: daemon.scheduler.send(QueueWaits).await.unwrap_or_default(),
        loadgen,
        worker,
    }
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.ingress;
        writeln!(
            f,
            "── execution-coordinator demo: {:.1} s ──",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "requests consumed {:>8}   accepted {:>8}   commanded {:>8}   still queued {:>6}",
            i.consumed, i.accepted, self.scheduler.dispatched, self.queued
        )?;
        writeln!(
            f,
            "rejected: queue full {}, user limit {}, invalid {}, never fits {}, too large {}   expired {}",
            i.rejected_queue_full,
            i.rejected_user_limit,
            i.rejected_invalid,
            i.rejected_never_fits,
            i.rejected_too_large,
            self.expired
        )?;
        writeln!(
            f,
            "released (completed/failed) {}   cancelled {}   requeued (pool full) {}   duplicates {}   dead-lettered {}",
            i.released,
            i.cancelled_queued + i.cancelled_active,
            self.scheduler.requeued,
            i.duplicates,
            i.dead_lettered
        )?;
        writeln!(
            f,
            "queue wait by the level asked for (commanded, p50, p99, commanded at a lower level):"
        )?;
        for p in Priority::ALL {
            let w = self.waits[p.index()];
            writeln!(
                f,
                "  {:<10} {:>8}   p50 {:>9}   p99 {:>9}   demoted {:>6}",
                p.name(),
                w.count,
                format!("{:.1} ms", w.p50.as_secs_f64() * 1e3),
                format!("{:.1} ms", w.p99.as_secs_f64() * 1e3),
                w.demoted
            )?;
        }
        if let Some(l) = &self.loadgen {
            writeln!(f, "{l}")?;
        }
        if let Some(w) = &self.worker {
            write!(f, "{w}")?;
        }
        Ok(())
    }
}
