//! Results: saved as JSON under `target/e2e-bench/`, printed as one Markdown table, together
//! with the core criterion results when asked (`E2E_BENCH_ROLE=report`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use coordinator_core::config::TopicLayout;
use serde::{Deserialize, Serialize};

use crate::procs::out_dir;
use crate::stats::{ms, Percentiles};
use crate::{layout_name, Mode, Plan};

/// One throughput run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThroughputRun {
    /// Requests per second, first to last command appended.
    pub rate: f64,
    /// Commands measured (fewer than N when the run was capped).
    pub commanded: usize,
    /// First to last command appended, ms.
    pub span_ms: u64,
    /// CPU time of the pipe's process (start to last command) per 1,000 requests, ms.
    pub cpu_ms_per_1k: f64,
    /// What the pipe wrote, per kind (`execution_accepted`, `create_pod_command`, a state
    /// record's `queued`, `allocated`, …): messages and payload bytes.
    #[serde(default)]
    pub written: BTreeMap<String, (u64, u64)>,
}

/// Throughput with `n` preloaded requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Delivery mode.
    pub mode: Mode,
    /// Requests preloaded.
    pub n: usize,
    /// Partitions of the input topic.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Daemon runs, in order.
    pub daemon: Vec<ThroughputRun>,
    /// Passthrough runs, in order.
    pub passthrough: Vec<ThroughputRun>,
    /// daemon / passthrough per round.
    pub ratios: Vec<f64>,
    /// Median of `ratios`.
    pub median_ratio: f64,
    /// Equivalent-pipe runs, in order.
    #[serde(default)]
    pub equivalent: Vec<ThroughputRun>,
    /// daemon / equivalent pipe per round.
    #[serde(default)]
    pub equivalent_ratios: Vec<f64>,
    /// Median of `equivalent_ratios`.
    #[serde(default)]
    pub median_equivalent_ratio: f64,
}

/// One latency run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyRun {
    /// Requests sent.
    pub sent: u64,
    /// Requests sent after the warm-up.
    pub measured: u64,
    /// Of those, commands received within the grace after the last request.
    pub received: u64,
    /// After the warm-up.
    pub percentiles: Percentiles,
    /// CPU of the pipe's process over the run, % of one core.
    pub cpu_percent: f64,
    /// The daemon's committed transactions after the warm-up, with exactly-once.
    #[serde(default)]
    pub transactions: Option<Phases>,
}

/// Committed transactions over a window, and the mean of each of their phases
/// (`execution_coordinator_transaction_seconds{phase}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phases {
    /// Commits per second.
    pub per_s: f64,
    /// First message → start of the commit, mean ms.
    pub open_ms: f64,
    /// Waiting for delivery reports, mean ms.
    pub deliveries_ms: f64,
    /// State records, offsets and the commit round trip, mean ms.
    pub commit_ms: f64,
}

/// Latency at a steady rate, samples of all rounds pooled per pipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Delivery mode.
    pub mode: Mode,
    /// Requests per second.
    pub rate: u32,
    /// Partitions of the input topic.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Daemon, pooled.
    pub daemon: Percentiles,
    /// Passthrough, pooled.
    pub passthrough: Percentiles,
    /// Daemon runs.
    pub daemon_runs: Vec<LatencyRun>,
    /// Passthrough runs.
    pub passthrough_runs: Vec<LatencyRun>,
    /// Equivalent pipe, pooled.
    #[serde(default)]
    pub equivalent: Percentiles,
    /// Equivalent-pipe runs.
    #[serde(default)]
    pub equivalent_runs: Vec<LatencyRun>,
}

/// The saturation bench.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SaturationResult {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Delivery mode.
    pub mode: Mode,
    /// Requests preloaded.
    pub n: usize,
    /// Of those, commanded before the run cap.
    pub commanded: usize,
    /// Executions the pool holds at once.
    pub slots: u32,
    /// Simulated run time, ms.
    pub run_time_ms: u64,
    /// Commands per second while saturated.
    pub dispatched_per_s: f64,
    /// Commands plus requeues ("insufficient") per second while saturated.
    pub decisions_per_s: f64,
    /// Accepted → commanded per requested level (broker append times, ms resolution).
    pub wait_by_priority: Vec<(u8, Percentiles)>,
    /// Queue depth during the blocked window.
    pub queued_while_blocked: u64,
    /// Daemon CPU, ms per s, with nothing to do.
    pub idle_cpu_ms_per_s: f64,
    /// Daemon CPU, ms per s, with the head of a full queue waiting for resources.
    pub blocked_cpu_ms_per_s: f64,
    /// Requeues per second in the blocked window (the scheduler's tick).
    pub blocked_requeues_per_s: f64,
}

/// The daemon with a standing queue: throughput and latency of requests that start at once,
/// while `queued` executions wait behind a blocker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BacklogResult {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Delivery mode.
    pub mode: Mode,
    /// Executions waiting throughout.
    pub queued: usize,
    /// The queue depth the daemon reported once they were in.
    pub depth: u64,
    /// Requests preloaded for the throughput part.
    pub n: usize,
    /// Their rate, first to last command appended, req/s.
    pub rate: f64,
    /// CPU of the daemon over the throughput part, ms per 1,000 requests.
    pub cpu_ms_per_1k: f64,
    /// Steady rate of the latency part, requests/s.
    pub latency_rate: u32,
    /// Request → command over the latency part.
    pub latency: Percentiles,
    /// Latency requests commanded of those measured.
    pub received: u64,
    /// Latency requests measured (after the warm-up).
    pub measured: u64,
}

/// The memory bench for one queue size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Delivery mode.
    pub mode: Mode,
    /// Requests sent to the queue.
    pub n: usize,
    /// Queue depth reported by the daemon.
    pub queued: u64,
    /// VmRSS before any request, bytes.
    pub idle_rss: u64,
    /// VmRSS with `n` queued, bytes.
    pub rss: u64,
    /// VmHWM, bytes.
    pub peak_rss: u64,
    /// `n` × 1 KiB.
    pub script_bytes: u64,
    /// Bytes of the requests on the wire.
    pub request_bytes: u64,
    /// 2 × `script_bytes` + 50 MiB.
    pub limit: u64,
    /// Requests queued per second while loading.
    pub ingest_per_s: f64,
}

/// Everything one bench run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// When it ran (RFC 3339, UTC).
    pub date: String,
    /// CPU, cores and memory of the machine.
    pub machine: String,
    /// `git describe` of the tree that ran, with "-dirty" for uncommitted changes.
    pub revision: String,
    /// Quick mode.
    pub quick: bool,
    /// The daemon ran with `transaction_commit_early`.
    #[serde(default)]
    pub commit_early: bool,
    /// Wall time of the whole run, s.
    pub elapsed_secs: u64,
    /// Throughput per mode, N and layout.
    pub throughput: Vec<ThroughputResult>,
    /// Latency per mode, rate and layout.
    pub latency: Vec<LatencyResult>,
    /// Saturation per mode and layout.
    pub saturation: Vec<SaturationResult>,
    /// Memory per mode, N and layout.
    pub memory: Vec<MemoryResult>,
    /// The daemon with a standing queue, per mode, layout and queue size.
    #[serde(default)]
    pub backlog: Vec<BacklogResult>,
}

impl Results {
    /// Empty results stamped with the date and machine.
    pub fn new(plan: &Plan) -> Self {
        Self {
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            machine: machine(),
            revision: revision(),
            quick: plan.quick,
            commit_early: plan.commit_early,
            ..Default::default()
        }
    }

    /// Writes `target/e2e-bench/results.json`.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = out_dir()?.join("results.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }

    fn load() -> anyhow::Result<Self> {
        let path = out_dir()?.join("results.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("no end-to-end results at {}", path.display()))?;
        Ok(serde_json::from_slice(&text)?)
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let med = |v: Vec<f64>| crate::stats::median(&v);
        for t in &self.throughput {
            let rate = |runs: &[ThroughputRun]| med(runs.iter().map(|r| r.rate).collect());
            let cpu = |runs: &[ThroughputRun]| med(runs.iter().map(|r| r.cpu_ms_per_1k).collect());
            let capped = t
                .daemon
                .iter()
                .chain(&t.passthrough)
                .any(|r| r.commanded < t.n);
            let measured: Vec<String> = t
                .daemon
                .iter()
                .map(|r| thousands(r.commanded as f64))
                .collect();
            rows.push(
                Row::new(
                    "throughput",
                    format!(
                        "{}: {} preloaded, req/s, median of {}{}",
                        label_on(t.layout, t.mode, t.partitions),
                        thousands(t.n as f64),
                        t.ratios.len(),
                        if capped {
                            format!(
                                " (capped: daemon measured on {} commands)",
                                measured.join(", ")
                            )
                        } else {
                            String::new()
                        }
                    ),
                    thousands(rate(&t.daemon)),
                    thousands(rate(&t.passthrough)),
                    format!(
                        "{} of equivalent (rounds {}); {} of 1-in-1-out",
                        ratio(t.median_equivalent_ratio),
                        rounds(&t.equivalent_ratios),
                        ratio(t.median_ratio),
                    ),
                    "≥ 0.70 of equivalent".into(),
                    verdict(t.median_equivalent_ratio >= 0.70),
                )
                .with_equivalent(format!(
                    "{} (spread {})",
                    thousands(rate(&t.equivalent)),
                    spread(&t.equivalent)
                )),
            );
            if let (Some(d), Some(e)) = (t.daemon.first(), t.equivalent.first()) {
                rows.push(
                    Row::new(
                        "throughput",
                        format!(
                            "{}: {} preloaded, written per request (messages × mean bytes), first round",
                            label_on(t.layout, t.mode, t.partitions),
                            thousands(t.n as f64)
                        ),
                        written(d, t.n),
                        t.passthrough.first().map_or_else(String::new, |p| written(p, t.n)),
                        String::new(),
                        String::new(),
                        String::new(),
                    )
                    .with_equivalent(written(e, t.n)),
                );
            }
            let (dc, pc, ec) = (cpu(&t.daemon), cpu(&t.passthrough), cpu(&t.equivalent));
            rows.push(
                Row::new(
                    "throughput",
                    format!(
                        "{}: {} preloaded, CPU ms per 1,000 requests",
                        label_on(t.layout, t.mode, t.partitions),
                        thousands(t.n as f64)
                    ),
                    format!("{dc:.0}"),
                    format!("{pc:.0}"),
                    format!("{:.1}× equivalent; {:.1}× 1-in-1-out", dc / ec, dc / pc),
                    String::new(),
                    String::new(),
                )
                .with_equivalent(format!("{ec:.0}")),
            );
        }
        for l in &self.latency {
            let cpu = |runs: &[LatencyRun]| med(runs.iter().map(|r| r.cpu_percent).collect());
            let behind = |runs: &[LatencyRun]| {
                let (measured, received) = runs
                    .iter()
                    .fold((0, 0), |(m, r), run| (m + run.measured, r + run.received));
                if received < measured {
                    format!(
                        "; only {} of {} commanded within {} s of the last request",
                        thousands(received as f64),
                        thousands(measured as f64),
                        crate::scenarios::GRACE.as_secs()
                    )
                } else {
                    String::new()
                }
            };
            let complete = |runs: &[LatencyRun]| runs.iter().all(|r| r.received >= r.measured);
            let (target, met) = if l.rate == 1_000 {
                (
                    "p99 ≤ 1.3× equivalent; ≤ 5 ms".to_owned(),
                    format!(
                        "{}; {}",
                        verdict(
                            l.daemon.p99_us as f64 <= 1.3 * l.equivalent.p99_us as f64
                                && complete(&l.daemon_runs)
                        ),
                        verdict(l.daemon.p99_us <= 5_000 && complete(&l.daemon_runs))
                    ),
                )
            } else {
                (String::new(), String::new())
            };
            rows.push(
                Row::new(
                    "latency",
                    format!(
                        "{}: {}/s steady, request → command p50 / p99 / p99.9",
                        label_on(l.layout, l.mode, l.partitions),
                        thousands(l.rate as f64),
                    ),
                    format!("{}{}", summary(&l.daemon), behind(&l.daemon_runs)),
                    format!("{}{}", summary(&l.passthrough), behind(&l.passthrough_runs)),
                    if l.daemon.count > 0 && l.passthrough.count > 0 {
                        format!(
                            "p99 {:.1}× equivalent; {:.1}× 1-in-1-out",
                            l.daemon.p99_us as f64 / l.equivalent.p99_us.max(1) as f64,
                            l.daemon.p99_us as f64 / l.passthrough.p99_us.max(1) as f64
                        )
                    } else {
                        String::new()
                    },
                    target,
                    met,
                )
                .with_equivalent(format!(
                    "{}{}",
                    summary(&l.equivalent),
                    behind(&l.equivalent_runs)
                )),
            );
            rows.push(
                Row::new(
                    "latency",
                    format!(
                        "{}: {}/s steady, CPU of the pipe's process (% of one core)",
                        label_on(l.layout, l.mode, l.partitions),
                        thousands(l.rate as f64)
                    ),
                    format!("{:.0}%", cpu(&l.daemon_runs)),
                    format!("{:.0}%", cpu(&l.passthrough_runs)),
                    String::new(),
                    String::new(),
                    String::new(),
                )
                .with_equivalent(format!("{:.0}%", cpu(&l.equivalent_runs))),
            );
            let per_1k = |runs: &[LatencyRun]| cpu(runs) * 10.0 / l.rate as f64 * 1000.0;
            rows.push(
                Row::new(
                    "latency",
                    format!(
                        "{}: {}/s steady, CPU ms per 1,000 requests",
                        label_on(l.layout, l.mode, l.partitions),
                        thousands(l.rate as f64)
                    ),
                    format!("{:.0}", per_1k(&l.daemon_runs)),
                    format!("{:.0}", per_1k(&l.passthrough_runs)),
                    String::new(),
                    String::new(),
                    String::new(),
                )
                .with_equivalent(format!("{:.0}", per_1k(&l.equivalent_runs))),
            );
            let phases: Vec<&Phases> = l
                .daemon_runs
                .iter()
                .filter_map(|r| r.transactions.as_ref())
                .collect();
            if !phases.is_empty() {
                let mean = |f: fn(&Phases) -> f64| med(phases.iter().map(|p| f(p)).collect());
                rows.push(Row::new(
                    "latency",
                    format!(
                        "{}: {}/s steady, the daemon's transactions: commits/s; mean ms open (interval wait) · awaiting deliveries · commit round trip",
                        label_on(l.layout, l.mode, l.partitions),
                        thousands(l.rate as f64)
                    ),
                    format!(
                        "{:.0}/s; {:.1} · {:.1} · {:.1}",
                        mean(|p| p.per_s),
                        mean(|p| p.open_ms),
                        mean(|p| p.deliveries_ms),
                        mean(|p| p.commit_ms)
                    ),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ));
            }
        }
        for b in &self.backlog {
            let empty = self
                .backlog
                .iter()
                .find(|e| e.layout == b.layout && e.mode == b.mode && e.queued == 0);
            let against_empty = match empty {
                Some(e) if b.queued > 0 => format!(
                    "{} of the rate with none queued; p99 {:.1}×",
                    ratio(b.rate / e.rate.max(1.0)),
                    b.latency.p99_us as f64 / e.latency.p99_us.max(1) as f64
                ),
                _ => String::new(),
            };
            rows.push(Row::new(
                "growth",
                format!(
                    "{}: {} queued behind a blocker: {} preloaded req/s · CPU ms per 1,000 · {}/s p50 / p99 / p99.9",
                    label(b.layout, b.mode),
                    thousands(b.queued as f64),
                    thousands(b.n as f64),
                    thousands(b.latency_rate as f64)
                ),
                format!(
                    "{} · {:.0} · {}{}",
                    thousands(b.rate),
                    b.cpu_ms_per_1k,
                    summary(&b.latency),
                    if b.received < b.measured {
                        format!(" (only {} of {} commanded)", b.received, b.measured)
                    } else {
                        String::new()
                    }
                ),
                String::new(),
                against_empty,
                if b.queued > 0 {
                    "rate ≥ 0.70×, p99 ≤ 1.5× of none queued".into()
                } else {
                    String::new()
                },
                match empty {
                    Some(e) if b.queued > 0 => verdict(
                        b.rate >= 0.7 * e.rate
                            && b.latency.p99_us as f64 <= 1.5 * e.latency.p99_us as f64
                            && b.received >= b.measured,
                    ),
                    _ => String::new(),
                },
            ));
        }
        for s in &self.saturation {
            rows.push(Row::new(
                "saturation",
                format!(
                    "{}: {} requests (5 levels), pool of {}, {} ms runs: commands/s; decisions/s incl. requeues{}",
                    label(s.layout, s.mode),
                    thousands(s.n as f64),
                    s.slots,
                    s.run_time_ms,
                    if s.commanded < s.n {
                        format!(" (capped: {} commanded)", s.commanded)
                    } else {
                        String::new()
                    }
                ),
                format!("{:.0}; {:.0}", s.dispatched_per_s, s.decisions_per_s),
                format!(
                    "ceiling {:.0}/s",
                    s.slots as f64 * 1000.0 / s.run_time_ms as f64
                ),
                String::new(),
                String::new(),
                String::new(),
            ));
            let names = ["CRITICAL", "HIGH", "NORMAL", "LOW", "BACKGROUND"];
            let waits: Vec<String> = s
                .wait_by_priority
                .iter()
                .zip(names)
                .map(|((_, p), name)| format!("{name} {}/{}", ms(p.p50_us), ms(p.p99_us)))
                .collect();
            rows.push(Row::new(
                "saturation",
                format!(
                    "{}: queue wait p50/p99 ms by requested level",
                    label(s.layout, s.mode)
                ),
                waits.join(", "),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ));
            rows.push(Row::new(
                "saturation",
                format!(
                    "{}: daemon CPU ms/s, idle vs head blocked ({} queued, {:.1} requeues/s)",
                    label(s.layout, s.mode),
                    s.queued_while_blocked,
                    s.blocked_requeues_per_s
                ),
                format!(
                    "{:.1} vs {:.1}",
                    s.idle_cpu_ms_per_s, s.blocked_cpu_ms_per_s
                ),
                String::new(),
                String::new(),
                "no spin".into(),
                verdict(s.blocked_cpu_ms_per_s <= s.idle_cpu_ms_per_s + 20.0),
            ));
        }
        for m in &self.memory {
            rows.push(Row::new(
                "memory",
                format!(
                    "{}: {} queued 1 KiB scripts, RSS (idle {}, peak {}, ingest {}/s)",
                    label(m.layout, m.mode),
                    thousands(m.n as f64),
                    mib(m.idle_rss),
                    mib(m.peak_rss),
                    thousands(m.ingest_per_s)
                ),
                mib(m.rss),
                format!(
                    "scripts {}, requests {}",
                    mib(m.script_bytes),
                    mib(m.request_bytes)
                ),
                format!(
                    "{} B per queued",
                    thousands(m.rss.saturating_sub(m.idle_rss) as f64 / m.n as f64)
                ),
                format!("≤ {}", mib(m.limit)),
                verdict(m.rss <= m.limit),
            ));
        }
        rows
    }

    /// The end-to-end table with its header lines.
    pub fn markdown(&self) -> String {
        format!(
            "Machine: {}. Date: {}. Tree: {}. Whole e2e run: {} s{}.\n\n{}",
            self.machine,
            self.date,
            self.revision,
            self.elapsed_secs,
            match (self.quick, self.commit_early) {
                (false, false) => "",
                (true, false) => " (quick mode)",
                (false, true) => " (daemon with transaction_commit_early)",
                (true, true) => " (quick mode; daemon with transaction_commit_early)",
            },
            table(&self.rows())
        )
    }
}

/// One line of the table.
pub struct Row([String; 8]);

impl Row {
    #[allow(clippy::too_many_arguments)]
    fn new(
        bench: &str,
        case: String,
        coordinator: String,
        baseline: String,
        ratio: String,
        target: String,
        met: String,
    ) -> Self {
        Self([
            bench.to_owned(),
            case,
            coordinator,
            String::new(),
            baseline,
            ratio,
            target,
            met,
        ])
    }
}

impl Row {
    /// The equivalent pipe's figure.
    fn with_equivalent(mut self, equivalent: String) -> Self {
        self.0[3] = equivalent;
        self
    }
}

fn table(rows: &[Row]) -> String {
    let header = [
        "bench",
        "case",
        "coordinator",
        "equivalent pipe",
        "1-in-1-out pipe / payload",
        "ratio",
        "target",
        "met",
    ];
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.0.join(" | ")));
    }
    out
}

/// The input partitions of results saved before they were recorded: the bench's default.
fn default_partitions() -> i32 {
    crate::kafka_io::PARTITIONS
}

/// [`label`], with ", 12 input partitions" for a run on other than the default 3.
fn label_on(layout: TopicLayout, mode: Mode, partitions: i32) -> String {
    if partitions == crate::kafka_io::PARTITIONS {
        label(layout, mode)
    } else {
        format!("{}, {partitions} input partitions", label(layout, mode))
    }
}

/// "per_event_type, exactly-once": the layout and mode a row was measured in.
fn label(layout: TopicLayout, mode: Mode) -> String {
    format!("{}, {}", layout_name(layout), mode.name())
}

/// Percentiles, or a dash when nothing sent after the warm-up was commanded in time.
fn summary(p: &Percentiles) -> String {
    if p.count == 0 {
        "–".to_owned()
    } else {
        p.summary()
    }
}

/// Per-round ratios, comma-separated.
fn rounds(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| ratio(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lowest–highest rate of `runs`.
fn spread(runs: &[ThroughputRun]) -> String {
    let lo = runs.iter().map(|r| r.rate).fold(f64::INFINITY, f64::min);
    let hi = runs.iter().map(|r| r.rate).fold(0.0, f64::max);
    format!("{}–{}", thousands(lo), thousands(hi))
}

/// "execution_accepted 1.00 × 646 B, create_pod_command 1.00 × 910 B": what `run` wrote per
/// request of `n`.
fn written(run: &ThroughputRun, n: usize) -> String {
    run.written
        .iter()
        .map(|(kind, (messages, bytes))| {
            format!(
                "{kind} {:.2} × {} B",
                *messages as f64 / n.max(1) as f64,
                bytes / (*messages).max(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ratio(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.3}")
    } else {
        format!("{r:.2}")
    }
}

fn verdict(ok: bool) -> String {
    if ok { "yes" } else { "**no**" }.to_owned()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The tree's revision: `git describe --always --dirty`.
fn revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--exclude", "*"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// "CPU model, N cores, M GiB RAM, kernel".
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// One criterion benchmark: id and median time per iteration.
struct CriterionBench {
    id: String,
    median_ns: f64,
    elements: Option<u64>,
}

fn criterion_results(root: &Path, since: Option<SystemTime>) -> Vec<CriterionBench> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some(b) = read_criterion(&path, since) {
                    out.push(b);
                }
            } else if path.file_name().is_none_or(|n| n != "report") {
                dirs.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn read_criterion(dir: &Path, since: Option<SystemTime>) -> Option<CriterionBench> {
    let estimates = dir.join("estimates.json");
    if let Some(since) = since {
        let modified = std::fs::metadata(&estimates).ok()?.modified().ok()?;
        if modified < since {
            return None;
        }
    }
    let benchmark: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("benchmark.json")).ok()?).ok()?;
    let estimates: serde_json::Value =
        serde_json::from_slice(&std::fs::read(estimates).ok()?).ok()?;
    Some(CriterionBench {
        id: benchmark["full_id"].as_str()?.to_owned(),
        median_ns: estimates["median"]["point_estimate"].as_f64()?,
        elements: benchmark["throughput"]["Elements"].as_u64(),
    })
}

fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Prints one table: the core criterion results (those written since `BENCH_STARTED`, unix
/// seconds, when set) and the last end-to-end results.
pub fn print_combined() -> anyhow::Result<()> {
    let since = std::env::var("BENCH_STARTED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    let target = out_dir()?
        .parent()
        .context("target directory")?
        .to_path_buf();
    let mut rows: Vec<Row> = criterion_results(&target.join("criterion"), since)
        .into_iter()
        .map(|b| {
            let per_op = match b.elements {
                Some(n) if n > 1 => format!(
                    "{} per op ({} ops/s)",
                    duration(b.median_ns / n as f64),
                    thousands(n as f64 * 1e9 / b.median_ns)
                ),
                _ => format!("{} per op", duration(b.median_ns)),
            };
            Row::new(
                "core",
                b.id,
                per_op,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            )
        })
        .collect();
    let results = Results::load()?;
    rows.extend(results.rows());
    println!(
        "Machine: {}. End-to-end run: {}, tree {} ({} s{}); core: criterion medians.\n",
        results.machine,
        results.date,
        results.revision,
        results.elapsed_secs,
        if results.quick { ", quick mode" } else { "" }
    );
    print!("{}", table(&rows));
    Ok(())
}
