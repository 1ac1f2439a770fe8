//! The replay simulator: a workload replayed through the daemon's own queue, pool and pass
//! planner on a virtual clock, and what its decisions did to waits, slowdown, utilisation
//! and fairness.
//!
//! - [`swf`]: reads Standard Workload Format traces.
//! - [`settings`]: the simulator's config (the daemon's sections plus `[simulate]`) and how a
//!   trace record becomes an execution.
//! - [`engine`]: the event-driven replay.
//! - [`timeline`]: queue depth and resources in use over the replay, in bounded memory.
//! - [`eta`]: wait estimates made as executions are queued, and how good they were.
//! - [`bound`]: the wait bound and reservations, checked on every execution.
//! - [`report`]: the measures, as a text table or JSON.
//! - [`synth`]: a seeded synthetic workload for scale runs.
//! - [`traffic`]: a deployment's own Integr8sCode events, read back from its topics, as
//!   executions.

pub mod bound;
pub mod engine;
pub mod eta;
pub mod report;
pub mod settings;
pub mod swf;
pub mod synth;
pub mod timeline;
pub mod traffic;

use crate::planner::Policy;
use engine::Outcome;
use report::Report;
use settings::{SimConfig, SimJob};
use swf::SwfJob;

/// Maps `records` with `config`, replays them under `policy` (or the config's own) and
/// measures the outcome. `label` names the run in the report.
pub fn simulate(
    records: &[SwfJob],
    config: &SimConfig,
    policy: Option<Policy>,
    label: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Report {
    let (jobs, skipped) = map_all(records, config);
    replay(jobs, skipped, config, policy, label, progress).report
}

/// One replay with everything behind its report: the executions and what became of each.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The executions replayed, in the order they were given.
    pub jobs: Vec<SimJob>,
    /// What the replay did with them.
    pub outcome: Outcome,
    /// What it measured.
    pub report: Report,
}

/// Replays `jobs` (already mapped; `skipped` inputs were not) under `policy` (or the config's
/// own) and measures the outcome, keeping the executions and what became of each beside the
/// report.
pub fn replay(
    jobs: Vec<SimJob>,
    skipped: u64,
    config: &SimConfig,
    policy: Option<Policy>,
    label: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Replay {
    let policy = policy.unwrap_or(config.config.scheduler.policy);
    let outcome = if config.settings.estimate {
        engine::run_estimating(&jobs, &config.config, policy, progress)
    } else {
        engine::run(&jobs, &config.config, policy, progress)
    };
    let half_life = match policy {
        Policy::Backfill => config.config.scheduler.fair_share_half_life.as_secs_f64(),
        _ => 0.0,
    };
    let report = Report::new(label, policy.name(), half_life, &jobs, skipped, &outcome);
    Replay {
        jobs,
        outcome,
        report,
    }
}

/// The executions the records become, and how many records were skipped.
pub fn map_all(records: &[SwfJob], config: &SimConfig) -> (Vec<SimJob>, u64) {
    let mut skipped = 0;
    let jobs = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match config.map(i, r) {
            Ok(job) => Some(job),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    (jobs, skipped)
}

#[cfg(test)]
mod tests;
