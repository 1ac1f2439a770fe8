//! What a replay measured: waits per level, bounded slowdown, utilisation, fairness, and the
//! waits the trace itself recorded, as a text table or JSON. The same outcome always gives
//! the same bytes: everything is computed in a fixed order and nothing reads a clock.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sim::bound::Checks;
use crate::sim::engine::{JobOutcome, Outcome};
use crate::sim::eta::{self, EtaError};
use crate::sim::settings::SimJob;
use crate::Priority;

/// The run time below which bounded slowdown counts a job as this long (τ), in ms.
pub const SLOWDOWN_BOUND_MS: u64 = 10_000;

/// Waits of a set of jobs, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waits {
    /// Jobs counted.
    pub jobs: u64,
    /// Mean wait.
    pub mean: f64,
    /// Median wait.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest wait.
    pub max: f64,
}

impl Waits {
    /// Nearest-rank percentiles of `waits_ms` (sorted here).
    pub fn of(waits_ms: &mut [u64]) -> Waits {
        waits_ms.sort_unstable();
        let n = waits_ms.len();
        let at = |q: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            waits_ms[rank - 1] as f64 / 1000.0
        };
        let sum: u128 = waits_ms.iter().map(|w| u128::from(*w)).sum();
        Waits {
            jobs: n as u64,
            mean: if n == 0 {
                0.0
            } else {
                sum as f64 / n as f64 / 1000.0
            },
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// One row of the table: the jobs submitted at one level (or all of them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelRow {
    /// `critical` … `background`, or `all`.
    pub level: String,
    /// Their waits (jobs that started).
    pub wait: Waits,
    /// Average bounded slowdown: max(1, (wait + run) / max(run, 10 s)).
    pub bounded_slowdown: f64,
}

/// Everything a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was simulated (the config's name).
    pub label: String,
    /// `demote`, `strict` or `backfill`.
    pub policy: String,
    /// Fair share's usage half-life in seconds; 0 when off.
    pub fair_share_half_life: f64,
    /// Jobs replayed.
    pub jobs: u64,
    /// Trace records that could not be replayed (no submit time, run time or processors).
    pub skipped: u64,
    /// Refused at admission (queue full, per-user limit).
    pub rejected: u64,
    /// Refused at admission as larger than the pool.
    pub never_fits: u64,
    /// Removed after waiting longer than the stale timeout.
    pub expired: u64,
    /// Jobs that ran past their requested time and were killed at it.
    pub killed_at_timeout: u64,
    /// Jobs that ran past their requested time and held their resources to the end
    /// (`[simulate] overruns = "run"`).
    pub overran: u64,
    /// Requests clamped to the per-execution caps.
    pub clamped: u64,
    /// Per level of submission, then `all`.
    pub levels: Vec<LevelRow>,
    /// CPU time used ÷ CPU time the pool had, from the first submission to the last end.
    pub utilisation: f64,
    /// Jain's fairness index of the users' mean waits (1 = all users wait alike).
    pub jain_user_wait: f64,
    /// Users with at least one job started.
    pub users: u64,
    /// From the first submission to the last end, seconds.
    pub span_seconds: f64,
    /// Scheduling passes run.
    pub passes: u64,
    /// Ticks of the scheduler with no event.
    pub ticks: u64,
    /// Requeues that lowered a level.
    pub demotions: u64,
    /// The waits the trace recorded for the same jobs, when it records them.
    pub recorded: Option<Waits>,
    /// The wait bound and the reservations, as checked during the replay.
    pub checks: Checks,
    /// How good the wait estimates were, when the replay estimated (`[simulate] estimate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta: Option<EtaError>,
}

impl Report {
    /// Measures `outcome`, the replay of `jobs` under `policy` (with fair share's half-life
    /// in seconds, 0 when off).
    pub fn new(
        label: &str,
        policy: &str,
        fair_share_half_life: f64,
        jobs: &[SimJob],
        skipped: u64,
        outcome: &Outcome,
    ) -> Report {
        let mut waits: [Vec<u64>; 5] = Default::default();
        let mut slowdown = [0f64; 5];
        let mut users: BTreeMap<i64, (u128, u64)> = BTreeMap::new();
        let mut recorded = Vec::new();
        let (mut rejected, mut never_fits, mut expired, mut killed) = (0, 0, 0, 0);
        let mut overran = 0;
        let mut cpu_ms: u128 = 0;
        let first_submit = jobs.iter().map(|j| j.submit_ms).min().unwrap_or(0);
        for (job, outcome) in jobs.iter().zip(&outcome.jobs) {
            if let Some(w) = job.recorded_wait_ms {
                recorded.push(w);
            }
            match *outcome {
                JobOutcome::Started { start, resources } => {
                    let level = job.priority.index();
                    let wait = start - job.submit_ms;
                    let run = job.held_ms();
                    waits[level].push(wait);
                    slowdown[level] +=
                        ((wait + run) as f64 / run.max(SLOWDOWN_BOUND_MS) as f64).max(1.0);
                    let u = users.entry(job.user).or_default();
                    u.0 += u128::from(wait);
                    u.1 += 1;
                    cpu_ms += u128::from(resources.cpu_millis) * u128::from(run);
                    if job.killed() {
                        killed += 1;
                    }
                    if job.overruns {
                        overran += 1;
                    }
                }
                JobOutcome::Rejected => rejected += 1,
                JobOutcome::NeverFits => never_fits += 1,
                JobOutcome::Expired => expired += 1,
                JobOutcome::Queued => {}
            }
        }
        let mut levels = Vec::with_capacity(6);
        let mut all = Vec::new();
        for level in Priority::ALL {
            let i = level.index();
            all.extend_from_slice(&waits[i]);
            let n = waits[i].len();
            levels.push(LevelRow {
                level: level.name().to_owned(),
                bounded_slowdown: if n == 0 { 0.0 } else { slowdown[i] / n as f64 },
                wait: Waits::of(&mut waits[i]),
            });
        }
        let n = all.len();
        levels.push(LevelRow {
            level: "all".to_owned(),
            bounded_slowdown: if n == 0 {
                0.0
            } else {
                slowdown.iter().sum::<f64>() / n as f64
            },
            wait: Waits::of(&mut all),
        });
        let span_ms = outcome.end_ms.saturating_sub(first_submit);
        let capacity = u128::from(outcome.capacity.cpu_millis) * u128::from(span_ms);
        let means: Vec<f64> = users
            .values()
            .map(|(sum, n)| *sum as f64 / *n as f64)
            .collect();
        let sum: f64 = means.iter().sum();
        let squares: f64 = means.iter().map(|m| m * m).sum();
        let jain = if squares == 0.0 {
            1.0
        } else {
            sum * sum / (means.len() as f64 * squares)
        };
        Report {
            label: label.to_owned(),
            policy: policy.to_owned(),
            fair_share_half_life,
            jobs: jobs.len() as u64,
            skipped,
            rejected,
            never_fits,
            expired,
            killed_at_timeout: killed,
            overran,
            clamped: outcome.clamped,
            levels,
            utilisation: if capacity == 0 {
                0.0
            } else {
                cpu_ms as f64 / capacity as f64
            },
            jain_user_wait: jain,
            users: users.len() as u64,
            span_seconds: span_ms as f64 / 1000.0,
            passes: outcome.passes,
            ticks: outcome.ticks,
            demotions: outcome.demotions,
            recorded: (!recorded.is_empty()).then(|| Waits::of(&mut recorded)),
            checks: outcome.checks,
            eta: (!outcome.told.is_empty()).then(|| {
                // Learn on the first half of the workload, score on the second.
                let last = jobs.iter().map(|j| j.submit_ms).max().unwrap_or(0);
                let from = first_submit + last.saturating_sub(first_submit) / 2;
                eta::score(jobs, outcome, &outcome.told, from)
            }),
        }
    }

    /// The policy as a column head: `backfill`, or `backfill+fs` with fair share.
    pub fn policy_name(&self) -> String {
        if self.fair_share_half_life > 0.0 {
            format!("{}+fs", self.policy)
        } else {
            self.policy.clone()
        }
    }

    /// The report as text lines (no trailing newlines), all of one width.
    pub fn lines(&self) -> Vec<String> {
        let fair = if self.fair_share_half_life > 0.0 {
            format!(", fair share {}", duration(self.fair_share_half_life))
        } else {
            String::new()
        };
        let mut out = vec![
            format!("{} · policy {}{fair}", self.label, self.policy),
            format!(
                "{} jobs, {} skipped, {} rejected, {} never fit, {} expired",
                self.jobs, self.skipped, self.rejected, self.never_fits, self.expired
            ),
            format!(
                "{:<10} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
                "level", "jobs", "mean", "p50", "p90", "p99", "max", "bsld"
            ),
        ];
        for row in &self.levels {
            let w = &row.wait;
            out.push(format!(
                "{:<10} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7.2}",
                row.level,
                w.jobs,
                duration(w.mean),
                duration(w.p50),
                duration(w.p90),
                duration(w.p99),
                duration(w.max),
                row.bounded_slowdown
            ));
        }
        if let Some(r) = &self.recorded {
            out.push(format!(
                "{:<10} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
                "trace",
                r.jobs,
                duration(r.mean),
                duration(r.p50),
                duration(r.p90),
                duration(r.p99),
                duration(r.max),
                "-"
            ));
        }
        out.push(format!(
            "utilisation {:.1}%, killed at timeout {}, ran past timeout {}, clamped {}",
            self.utilisation * 100.0,
            self.killed_at_timeout,
            self.overran,
            self.clamped
        ));
        let c = &self.checks;
        out.push(format!(
            "waited past max_wait {}, bound violations {} (+{} trace overruns), \
             past max_wait + longest timeout {}",
            c.overdue, c.bound_violations, c.trace_overruns, c.beyond_longest_timeout
        ));
        out.push(format!(
            "reservations held {}, broken {} (+{} by trace overruns)",
            c.reserved, c.reservations_broken, c.reservations_broken_by_overruns
        ));
        out.push(format!(
            "Jain index of per-user mean wait {:.3} ({} users)",
            self.jain_user_wait, self.users
        ));
        out.push(format!(
            "span {}, {} passes, {} ticks, {} demotions",
            duration(self.span_seconds),
            self.passes,
            self.ticks,
            self.demotions
        ));
        if let Some(eta) = &self.eta {
            out.extend(eta_lines(eta));
        }
        let width = out.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        out.into_iter()
            .map(|l| {
                let pad = width - l.chars().count();
                format!("{l}{}", " ".repeat(pad))
            })
            .collect()
    }

    /// The text table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for line in self.lines() {
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// The ETA error table: per level, ours (coverage of the 90% bound, median absolute error,
/// pinball loss) beside the baselines' loss, raw and calibrated.
fn eta_lines(eta: &EtaError) -> Vec<String> {
    let mut out = vec![
        "ETA error (second half; loss = pinball at 0.5 and 0.9, mean)".to_owned(),
        format!(
            "{:<10} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}",
            "level", "jobs", "cover", "mae", "loss", "tmo", "tmo+c", "drain", "drn+c", "ratio"
        ),
    ];
    let levels = Priority::ALL.iter().map(|p| p.name()).chain(["all"]);
    for (name, s) in levels.zip(eta.levels.iter().chain([&eta.all])) {
        let best = s.best_baseline();
        out.push(format!(
            "{:<10} {:>6} {:>5.1}% {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}",
            name,
            s.n,
            s.ours.coverage * 100.0,
            duration(s.ours.median_abs_error_s),
            duration(s.ours.pinball_s),
            duration(s.timeouts.pinball_s),
            duration(s.timeouts_calibrated.pinball_s),
            duration(s.drain.pinball_s),
            duration(s.drain_calibrated.pinball_s),
            if s.n == 0 || best == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.2}", s.ours.pinball_s / best)
            },
        ));
    }
    out
}

/// Reports side by side, one column each.
pub fn side_by_side(reports: &[Report]) -> String {
    let columns: Vec<Vec<String>> = reports.iter().map(Report::lines).collect();
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0);
    let mut s = String::new();
    for i in 0..rows {
        let line: Vec<String> = columns
            .iter()
            .map(|c| {
                c.get(i)
                    .cloned()
                    .unwrap_or_else(|| " ".repeat(c.first().map_or(0, |l| l.chars().count())))
            })
            .collect();
        s.push_str(line.join("   │   ").trim_end());
        s.push('\n');
    }
    s
}

/// The headline figures of several reports, one column each: waits p50/p99 per level, the
/// slowdown, utilisation, the longest wait, the checks and fairness.
pub fn summary(reports: &[Report]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![(
        "policy".to_owned(),
        reports.iter().map(Report::policy_name).collect(),
    )];
    let column = |f: &dyn Fn(&Report) -> String| reports.iter().map(f).collect::<Vec<_>>();
    for (i, level) in Priority::ALL.iter().enumerate() {
        rows.push((
            format!("{} p50 / p99", level.name()),
            column(&|r| {
                let w = &r.levels[i].wait;
                format!("{} / {}", duration(w.p50), duration(w.p99))
            }),
        ));
    }
    rows.push((
        "all p50 / p99".to_owned(),
        column(&|r| {
            let w = &r.levels[5].wait;
            format!("{} / {}", duration(w.p50), duration(w.p99))
        }),
    ));
    rows.push((
        "max wait".to_owned(),
        column(&|r| duration(r.levels[5].wait.max)),
    ));
    rows.push((
        "avg bounded slowdown".to_owned(),
        column(&|r| format!("{:.2}", r.levels[5].bounded_slowdown)),
    ));
    rows.push((
        "utilisation".to_owned(),
        column(&|r| format!("{:.1}%", r.utilisation * 100.0)),
    ));
    rows.push((
        "bound violations (+overruns)".to_owned(),
        column(&|r| {
            format!(
                "{} (+{})",
                r.checks.bound_violations, r.checks.trace_overruns
            )
        }),
    ));
    rows.push((
        "past max_wait + longest timeout".to_owned(),
        column(&|r| r.checks.beyond_longest_timeout.to_string()),
    ));
    rows.push((
        "reservations broken".to_owned(),
        column(&|r| {
            format!(
                "{} (+{})",
                r.checks.reservations_broken, r.checks.reservations_broken_by_overruns
            )
        }),
    ));
    rows.push((
        "Jain (user mean wait)".to_owned(),
        column(&|r| format!("{:.3}", r.jain_user_wait)),
    ));
    rows.push((
        "expired / rejected".to_owned(),
        column(&|r| format!("{} / {}", r.expired, r.rejected)),
    ));
    let head = rows
        .iter()
        .map(|(h, _)| h.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..reports.len())
        .map(|c| {
            rows.iter()
                .map(|(_, v)| v[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for (h, values) in &rows {
        let mut line = format!("{h:<head$}");
        for (v, w) in values.iter().zip(&widths) {
            line.push_str(&format!("  {v:>w$}"));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// A duration in seconds, short: `42s`, `12.5m`, `3.2h`, `1.4d`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.0}s")
    } else if secs < 3600.0 {
        format!("{:.1}m", secs / 60.0)
    } else if secs < 86_400.0 {
        format!("{:.1}h", secs / 3600.0)
    } else {
        format!("{:.1}d", secs / 86_400.0)
    }
}
