//! End-to-end benchmarks through a real Apache Kafka broker (the targets are in BENCHMARKS.md).
//!
//! The daemon (release binary, a child process) and two reference pipes (this binary again,
//! `E2E_BENCH_ROLE=passthrough`, with the daemon's own consumer and producer settings) run
//! against the broker of `KAFKA_BOOTSTRAP_SERVERS`, one after the other, each on fresh topics,
//! the order reversed every round. The **equivalent** pipe consumes and writes per request what
//! the daemon does (accepted, command, state records, its own echo in the `shared` layout;
//! `shape.rs`), the **1-in-1-out** pipe one same-sized message per input:
//!
//! - **throughput**: N requests preloaded, requests/s from the first to the last command
//!   appended (the commands topic uses LogAppendTime), daemon and passthrough alternating;
//! - **latency**: a steady request rate, produce → consume of the command, per message;
//! - **saturation**: a pool with room for 18, a completer finishing each execution after a run
//!   time; scheduling decisions/s, queue wait per priority, CPU while the head is blocked;
//! - **memory**: resident memory with N queued 1 KiB scripts behind a blocker;
//! - **backlog**: the daemon alone with 0, 1k, 10k and 100k executions standing in its queue
//!   behind a blocker, throughput and latency of requests that start at once;
//! - **partitions**: throughput and latency of the daemon and both pipes on 12 and 48 input
//!   partitions (the rest run on 3), one round each.
//!
//! Every scenario runs in each topic layout of `E2E_LAYOUTS` × each delivery mode of
//! `E2E_MODES` (default all four), the two layouts of one case back to back:
//!
//! - layouts (`[kafka] topic_layout`): `per_event_type` (the shipped default: requests on
//!   `execution_requested`, commands on `create_pod_command`, the daemon's `execution_accepted`
//!   on a topic of its own) and `shared` (everything on `execution_events`, where the daemon's
//!   own events come back to it, commands on `saga_commands`); requests, commands, the
//!   completer and the passthrough all use the layout's topics (`KafkaConfig::topic_of`);
//! - modes: `exactly-once` (`[kafka] exactly_once = true`, the shipped default) and
//!   `at-least-once`; the passthrough follows the same mode (transactions, or stored offsets).
//!
//! `make bench` runs it (see `scripts/bench-e2e.sh`). Knobs, all optional:
//! `E2E_QUICK=1` (small N, one round, short windows), `E2E_SCENARIOS=throughput,latency,…`,
//! `E2E_LAYOUTS=per_event_type,shared`, `E2E_MODES=exactly-once,at-least-once`,
//! `E2E_THROUGHPUT_N=10000,100000` (at-least-once), `E2E_THROUGHPUT_N_EOS=10000`
//! (exactly-once), `E2E_ROUNDS=…` (pairs per N, alternating order; at most 2 for N ≥ 100k), `E2E_RUN_CAP_SECS=…` (a throughput run that has not
//! finished by then is measured on what it did), `E2E_LATENCY_RATES=1000,5000`,
//! `E2E_LATENCY_SECS=…`, `E2E_LATENCY_ROUNDS=…`, `E2E_SATURATION_N=…`,
//! `E2E_MEMORY_N=10000,100000`, `E2E_CPU_WINDOW_SECS=…`, `E2E_BACKLOG_QUEUED=0,1000,10000,100000`,
//! `E2E_BACKLOG_N=…`, `E2E_PARTITIONS=12,48`, `E2E_GROWTH_LAYOUTS=per_event_type` (the
//! layouts of the backlog and partitions benches), `E2E_COMMIT_EARLY=1` (the daemon with
//! `[kafka] transaction_commit_early = true`). Profiling: `E2E_PERF=1` attaches `perf record` to every daemon
//! (data under `target/e2e-bench/`), `E2E_DAEMON_WRAPPER="valgrind --tool=massif …"` wraps it.
//! `E2E_BENCH_ROLE=report` prints the combined table (core criterion results + the last
//! end-to-end results) without running anything.

mod kafka_io;
mod passthrough;
mod procs;
mod report;
mod scenarios;
mod shape;
mod stats;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use coordinator_core::config::TopicLayout;
use kafka_io::PARTITIONS;
use serde::{Deserialize, Serialize};

/// The daemon's delivery guarantee (`[kafka] exactly_once`), which the passthrough follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Outputs and input offsets in Kafka transactions (the shipped default).
    #[default]
    ExactlyOnce,
    /// Idempotent producer, offsets stored once effects are acknowledged.
    AtLeastOnce,
}

impl Mode {
    /// The config line that selects it.
    pub fn config_line(self) -> &'static str {
        match self {
            Mode::ExactlyOnce => "exactly_once = true",
            Mode::AtLeastOnce => "exactly_once = false",
        }
    }

    /// Its name in tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ExactlyOnce => "exactly-once",
            Mode::AtLeastOnce => "at-least-once",
        }
    }
}

/// A topic layout's name in `E2E_LAYOUTS`, tables and file names: the config's own spelling.
pub fn layout_name(layout: TopicLayout) -> &'static str {
    match layout {
        TopicLayout::PerEventType => "per_event_type",
        TopicLayout::Shared => "shared",
    }
}

/// Settings of one bench run, from the environment.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Broker bootstrap servers.
    pub bootstrap: String,
    /// Small sizes and short windows.
    pub quick: bool,
    /// Scenarios to run.
    pub scenarios: Vec<String>,
    /// Topic layouts to run every scenario in.
    pub layouts: Vec<TopicLayout>,
    /// Delivery modes to run every scenario in.
    pub modes: Vec<Mode>,
    /// Preloaded requests per throughput case, at-least-once.
    pub throughput_n: Vec<usize>,
    /// Preloaded requests per throughput case, exactly-once.
    pub throughput_n_eos: Vec<usize>,
    /// Daemon/passthrough pairs per throughput case (per N: ≥ 100k gets at most 2).
    pub rounds: usize,
    /// Longest a throughput run may take before it is measured on what it did.
    pub run_cap_secs: u64,
    /// Steady request rates of the latency bench.
    pub latency_rates: Vec<u32>,
    /// Seconds measured per latency run (after a 4 s warm-up).
    pub latency_secs: u64,
    /// Daemon/passthrough pairs per latency rate.
    pub latency_rounds: usize,
    /// Requests preloaded in the saturation bench.
    pub saturation_n: usize,
    /// Seconds of each CPU window (idle, blocked).
    pub cpu_window_secs: u64,
    /// Queued executions in the memory bench.
    pub memory_n: Vec<usize>,
    /// Executions standing in the queue in the backlog bench (0 is its reference).
    pub backlog_queued: Vec<usize>,
    /// Requests preloaded in the backlog bench's throughput part.
    pub backlog_n: usize,
    /// Input partitions of the partitions bench (the other benches use 3).
    pub partitions: Vec<i32>,
    /// `[kafka] transaction_commit_early = true` for the daemon (`E2E_COMMIT_EARLY=1`).
    pub commit_early: bool,
    /// Topic layouts of the backlog and partitions benches.
    pub growth_layouts: Vec<TopicLayout>,
}

fn env_list<T: std::str::FromStr>(name: &str, default: Vec<T>) -> anyhow::Result<Vec<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse::<T>()
                    .map_err(|_| anyhow::anyhow!("{name}: cannot read {s:?}"))
            })
            .collect(),
        _ => Ok(default),
    }
}

/// The comma-separated words of `name` as written (no `_` digit separators dropped), or
/// `default` when unset.
fn env_words(name: &str, default: &[&str]) -> Vec<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_owned()).collect(),
        _ => default.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The topic layouts named in `name`, or `default`.
fn env_layouts(name: &str, default: &[&str]) -> anyhow::Result<Vec<TopicLayout>> {
    env_words(name, default)
        .iter()
        .map(|l| {
            [TopicLayout::PerEventType, TopicLayout::Shared]
                .into_iter()
                .find(|layout| layout_name(*layout) == l)
                .with_context(|| format!("{name}: unknown layout {l:?} (per_event_type, shared)"))
        })
        .collect()
}

fn env_one<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    Ok(env_list(name, vec![default])?
        .into_iter()
        .next()
        .expect("env_list returns at least the default"))
}

impl Plan {
    fn from_env() -> anyhow::Result<Self> {
        let bootstrap = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(s) if !s.trim().is_empty() => s,
            _ => anyhow::bail!(
                "KAFKA_BOOTSTRAP_SERVERS is not set: the end-to-end benchmarks need a real Apache \
                 Kafka broker. Run them through `make bench` (it starts one), or start one with \
                 `make kafka-up` and export KAFKA_BOOTSTRAP_SERVERS=$(scripts/kafka.sh bootstrap)."
            ),
        };
        let quick = std::env::var("E2E_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let all = [
            "throughput",
            "latency",
            "saturation",
            "memory",
            "backlog",
            "partitions",
        ];
        let scenarios: Vec<String> =
            env_list("E2E_SCENARIOS", all.iter().map(|s| s.to_string()).collect())?;
        for s in &scenarios {
            anyhow::ensure!(
                all.contains(&s.as_str()),
                "E2E_SCENARIOS: unknown scenario {s:?} (expected some of {all:?})"
            );
        }
        let modes: Vec<String> = env_list(
            "E2E_MODES",
            vec!["exactly-once".to_owned(), "at-least-once".to_owned()],
        )?;
        let modes = modes
            .iter()
            .map(|m| match m.as_str() {
                "exactly-once" => Ok(Mode::ExactlyOnce),
                "at-least-once" => Ok(Mode::AtLeastOnce),
                other => {
                    anyhow::bail!("E2E_MODES: unknown mode {other:?} (exactly-once, at-least-once)")
                }
            })
            .collect::<anyhow::Result<Vec<Mode>>>()?;
        let layouts = env_layouts("E2E_LAYOUTS", &["per_event_type", "shared"])?;
        let growth_layouts = env_layouts("E2E_GROWTH_LAYOUTS", &["per_event_type"])?;
        Ok(Self {
            bootstrap,
            quick,
            scenarios,
            layouts,
            modes,
            throughput_n_eos: env_list(
                "E2E_THROUGHPUT_N_EOS",
                if quick { vec![2_000] } else { vec![10_000] },
            )?,
            run_cap_secs: env_one("E2E_RUN_CAP_SECS", if quick { 20 } else { 40 })?,
            throughput_n: env_list(
                "E2E_THROUGHPUT_N",
                if quick {
                    vec![2_000, 10_000]
                } else {
                    vec![10_000, 100_000]
                },
            )?,
            rounds: env_one("E2E_ROUNDS", if quick { 1 } else { 3 })?,
            latency_rates: env_list("E2E_LATENCY_RATES", vec![1_000, 5_000])?,
            latency_secs: env_one("E2E_LATENCY_SECS", if quick { 4 } else { 10 })?,
            latency_rounds: env_one("E2E_LATENCY_ROUNDS", if quick { 1 } else { 2 })?,
            saturation_n: env_one("E2E_SATURATION_N", if quick { 600 } else { 2_000 })?,
            cpu_window_secs: env_one("E2E_CPU_WINDOW_SECS", if quick { 3 } else { 5 })?,
            backlog_queued: env_list("E2E_BACKLOG_QUEUED", vec![0, 1_000, 10_000, 100_000])?,
            backlog_n: env_one("E2E_BACKLOG_N", if quick { 2_000 } else { 10_000 })?,
            partitions: env_list("E2E_PARTITIONS", vec![12, 48])?,
            growth_layouts,
            commit_early: std::env::var("E2E_COMMIT_EARLY")
                .is_ok_and(|v| v != "0" && !v.is_empty()),
            memory_n: env_list(
                "E2E_MEMORY_N",
                if quick {
                    vec![10_000]
                } else {
                    vec![10_000, 100_000]
                },
            )?,
        })
    }

    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

fn run_benches() -> anyhow::Result<()> {
    let plan = Plan::from_env()?;
    let started = Instant::now();
    eprintln!(
        "e2e: broker {}, scenarios {:?}, layouts {:?}, modes {:?}{}{}",
        plan.bootstrap,
        plan.scenarios,
        plan.layouts
            .iter()
            .map(|l| layout_name(*l))
            .collect::<Vec<_>>(),
        plan.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        if plan.quick { " (quick)" } else { "" },
        if plan.commit_early {
            ", daemon with transaction_commit_early"
        } else {
            ""
        }
    );
    procs::build_check()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut results = report::Results::new(&plan);
    runtime.block_on(async {
        // The layouts of one case run back to back, so their figures are side by side.
        for &mode in &plan.modes {
            if plan.runs("throughput") {
                let sizes = match mode {
                    Mode::ExactlyOnce => &plan.throughput_n_eos,
                    Mode::AtLeastOnce => &plan.throughput_n,
                };
                for &n in sizes {
                    let rounds = if n >= 100_000 {
                        plan.rounds.min(2)
                    } else {
                        plan.rounds
                    };
                    for &layout in &plan.layouts {
                        let result =
                            scenarios::throughput(&plan, layout, mode, n, rounds, PARTITIONS)
                                .await?;
                        results.throughput.push(result);
                    }
                }
            }
            if plan.runs("latency") {
                for &rate in &plan.latency_rates {
                    for &layout in &plan.layouts {
                        results
                            .latency
                            .push(scenarios::latency(&plan, layout, mode, rate, plan.latency_rounds, PARTITIONS).await?);
                    }
                }
            }
            if plan.runs("partitions") {
                // One round each, at the first size and rate: the partition count's effect on
                // both pipes and the daemon, beside the rows above (3 partitions).
                let n = match mode {
                    Mode::ExactlyOnce => plan.throughput_n_eos[0],
                    Mode::AtLeastOnce => plan.throughput_n[0],
                };
                for &partitions in &plan.partitions {
                    for &layout in &plan.growth_layouts {
                        results.throughput.push(
                            scenarios::throughput(&plan, layout, mode, n, 1, partitions).await?,
                        );
                        results.latency.push(
                            scenarios::latency(
                                &plan,
                                layout,
                                mode,
                                plan.latency_rates[0],
                                1,
                                partitions,
                            )
                            .await?,
                        );
                    }
                }
            }
            if plan.runs("backlog") {
                for &layout in &plan.growth_layouts {
                    for &queued in &plan.backlog_queued {
                        let result = scenarios::backlog(
                            &plan,
                            layout,
                            mode,
                            queued,
                            plan.backlog_n,
                            plan.latency_rates[0],
                        )
                        .await?;
                        eprintln!(
                            "e2e: backlog {} {} {queued} queued: {:.0} req/s, {:.0} CPU ms per 1,000, {}/s {}",
                            layout_name(layout),
                            mode.name(),
                            result.rate,
                            result.cpu_ms_per_1k,
                            result.latency_rate,
                            result.latency.summary()
                        );
                        results.backlog.push(result);
                    }
                }
            }
            if plan.runs("saturation") {
                for &layout in &plan.layouts {
                    results
                        .saturation
                        .push(scenarios::saturation(&plan, layout, mode).await?);
                }
            }
            if plan.runs("memory") {
                for &n in &plan.memory_n {
                    for &layout in &plan.layouts {
                        results
                            .memory
                            .push(scenarios::memory(&plan, layout, mode, n).await?);
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    results.elapsed_secs = started.elapsed().as_secs();
    let path = results.save()?;
    println!("\n{}", results.markdown());
    eprintln!(
        "e2e: done in {} s; results in {}",
        results.elapsed_secs,
        path.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = match std::env::var("E2E_BENCH_ROLE").as_deref() {
        Ok("passthrough") => passthrough::main(),
        Ok("report") => report::print_combined(),
        _ => run_benches(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
