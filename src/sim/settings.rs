//! The simulator's configuration: the daemon's own sections (`[queue]`, `[scheduler]`,
//! `[resources]`, …) plus a `[simulate]` section that says how trace records become
//! executions, and the mapping itself.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Config;
use crate::queue::Millis;
use crate::sim::swf::SwfJob;
use crate::Priority;

/// Where an execution's priority comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrioritySource {
    /// A seeded draw from `mix`, the same for the same job and seed.
    Mix,
    /// Every execution is NORMAL.
    Normal,
    /// The level `queue_priority` gives the job's queue number; jobs whose queue is unknown
    /// or not in the table are drawn from `mix`.
    Queue,
}

/// What becomes of a job whose trace run time is longer than its requested time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overruns {
    /// It is killed at its timeout, as the platform's pod monitor does.
    Kill,
    /// It runs its whole recorded run time, past its timeout, holding its resources: what
    /// the logged machine let it do. Reservations and wait bounds, which count on timeouts,
    /// can then be missed; the report says how often.
    Run,
}

/// The `[simulate]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// Seed of the priority mix (and of a synthetic trace). Default 1.
    pub seed: u64,
    /// Where priorities come from. Default `mix`.
    pub priority: PrioritySource,
    /// Relative weights of critical, high, normal, low and background in the mix.
    /// Default `[5, 15, 60, 15, 5]`.
    pub mix: [u32; 5],
    /// Queue number → level name, for `priority = "queue"`.
    pub queue_priority: BTreeMap<String, String>,
    /// Memory in MiB of a job whose trace records none. Default 0: memory does not constrain
    /// a trace that does not record it.
    pub default_memory_mb: u64,
    /// Processors of a job whose trace records neither allocated nor requested processors;
    /// 0 skips such jobs. Default 1.
    pub default_procs: u64,
    /// Millicores of one trace processor. Default 1000 (a processor is a core).
    pub cpu_millis_per_proc: u64,
    /// A job that ran longer than it requested: `kill` at its timeout, or let it `run`.
    /// Default `kill`.
    pub overruns: Overruns,
    /// Estimate every execution's wait when it is queued, as the daemon does, and report how
    /// good the estimates were (learned on the first half, scored on the second). Slower on
    /// deep queues. Default false.
    pub estimate: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            seed: 1,
            priority: PrioritySource::Mix,
            mix: [5, 15, 60, 15, 5],
            queue_priority: BTreeMap::new(),
            default_memory_mb: 0,
            default_procs: 1,
            cpu_millis_per_proc: 1000,
            overruns: Overruns::Kill,
            estimate: false,
        }
    }
}

/// A simulation's configuration: the daemon's sections and the `[simulate]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The daemon's configuration, validated as the daemon validates it.
    pub config: Config,
    /// How the trace is mapped.
    pub settings: SimSettings,
    /// `queue_priority` with parsed keys and levels.
    queue_levels: BTreeMap<i64, Priority>,
}

impl SimConfig {
    /// Parses a simulator config: the daemon's TOML with an optional `[simulate]` section.
    /// Environment overrides are not applied, so a run depends on the file alone.
    pub fn from_toml_str(text: &str) -> Result<SimConfig, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let settings = match table.remove("simulate") {
            Some(value) => SimSettings::deserialize(value)
                .map_err(|e| format!("[simulate]: {}", e.message()))?,
            None => SimSettings::default(),
        };
        if settings.cpu_millis_per_proc == 0 {
            return Err("[simulate] cpu_millis_per_proc: must be at least 1".to_owned());
        }
        if settings.mix.iter().all(|w| *w == 0) {
            return Err("[simulate] mix: at least one weight must be above 0".to_owned());
        }
        let mut queue_levels = BTreeMap::new();
        for (queue, level) in &settings.queue_priority {
            let number: i64 = queue.trim().parse().map_err(|_| {
                format!("[simulate] queue_priority: `{queue}` is not a queue number")
            })?;
            let level = Priority::from_name(level)
                .map_err(|e| format!("[simulate] queue_priority.{queue}: {e}"))?;
            queue_levels.insert(number, level);
        }
        let rest = toml::to_string(&table).map_err(|e| e.to_string())?;
        let config = Config::from_toml_str(&rest, std::iter::empty()).map_err(|e| e.to_string())?;
        Ok(SimConfig {
            config,
            settings,
            queue_levels,
        })
    }

    /// The execution a trace record becomes, or why it is skipped.
    pub fn map(&self, index: usize, job: &SwfJob) -> Result<SimJob, Skip> {
        if job.submit < 0.0 {
            return Err(Skip::NoSubmitTime);
        }
        if job.runtime < 0.0 {
            return Err(Skip::NoRuntime);
        }
        let procs = if job.procs > 0 {
            job.procs
        } else if job.req_procs > 0 {
            job.req_procs
        } else if self.settings.default_procs > 0 {
            self.settings.default_procs as i64
        } else {
            return Err(Skip::NoProcessors);
        };
        let per_proc_kb = if job.mem_kb > 0.0 {
            Some(job.mem_kb)
        } else if job.req_mem_kb > 0.0 {
            Some(job.req_mem_kb)
        } else {
            None
        };
        let memory_mib = per_proc_kb.map_or(self.settings.default_memory_mb, |kb| {
            (kb * procs as f64 / 1024.0).ceil() as u64
        });
        let runtime_ms = secs_to_millis(job.runtime);
        let timeout_ms = if job.req_time > 0.0 {
            secs_to_millis(job.req_time)
        } else {
            runtime_ms
        }
        .max(1000);
        let priority = match self.settings.priority {
            PrioritySource::Normal => Priority::Normal,
            PrioritySource::Mix => self.draw(index),
            PrioritySource::Queue => match self.queue_levels.get(&job.queue) {
                Some(level) if job.queue >= 0 => *level,
                _ => self.draw(index),
            },
        };
        Ok(SimJob {
            submit_ms: secs_to_millis(job.submit),
            runtime_ms,
            timeout_ms,
            cpu_millis: procs as u64 * self.settings.cpu_millis_per_proc,
            memory_mib,
            priority,
            user: job.user,
            recorded_wait_ms: (job.wait >= 0.0).then(|| secs_to_millis(job.wait)),
            overruns: self.settings.overruns == Overruns::Run && runtime_ms > timeout_ms,
        })
    }

    /// The pool's usable cpu in trace processors: what a synthetic workload's load is
    /// measured against.
    pub fn pool_procs(&self) -> u64 {
        let usable = crate::pool::PoolSpec::from_config(&self.config.resources).usable();
        (usable.cpu_millis / self.settings.cpu_millis_per_proc).max(1)
    }

    /// The seeded level of the `index`-th record: depends on the seed and the index only.
    fn draw(&self, index: usize) -> Priority {
        let total: u64 = self.settings.mix.iter().map(|w| u64::from(*w)).sum();
        let mut x =
            splitmix64(self.settings.seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407))
                % total;
        for (level, weight) in Priority::ALL.iter().zip(self.settings.mix) {
            if x < u64::from(weight) {
                return *level;
            }
            x -= u64::from(weight);
        }
        Priority::Background
    }
}

/// Why a trace record is not simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Submit time unknown.
    NoSubmitTime,
    /// Run time unknown.
    NoRuntime,
    /// Neither allocated nor requested processors known, and `default_procs` is 0.
    NoProcessors,
}

/// One execution of a simulation, in the pool's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimJob {
    /// When it is submitted.
    pub submit_ms: Millis,
    /// How long the worker runs it when it is not cut short.
    pub runtime_ms: u64,
    /// Its `timeout_seconds`: it is killed when it runs this long.
    pub timeout_ms: u64,
    /// Millicores: `cpu_millis_per_proc` per processor.
    pub cpu_millis: u64,
    /// MiB.
    pub memory_mib: u64,
    /// The level it is submitted at.
    pub priority: Priority,
    /// The trace's user number (-1 unknown).
    pub user: i64,
    /// The wait the logged system gave it.
    pub recorded_wait_ms: Option<u64>,
    /// It runs past its timeout (`overruns = "run"` and a run time above the request).
    pub overruns: bool,
}

impl SimJob {
    /// How long it holds its resources: its run time, cut at its timeout unless it overruns.
    pub fn held_ms(&self) -> u64 {
        if self.overruns {
            self.runtime_ms
        } else {
            self.runtime_ms.min(self.timeout_ms)
        }
    }

    /// True when it runs past its timeout and is killed there.
    pub fn killed(&self) -> bool {
        !self.overruns && self.runtime_ms > self.timeout_ms
    }
}

fn secs_to_millis(secs: f64) -> Millis {
    (secs.max(0.0) * 1000.0).round() as Millis
}

/// A 64-bit mixing function: a small, fast, seedable hash with good spread.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
