//! `execution-coordinator simulate`: replays a workload trace (or a synthetic one, or a
//! deployment's own traffic from Kafka) through the core's queue, pool and pass planner on a
//! virtual clock and prints what happened. The replay itself is `coordinator_core::sim`; this
//! is the command line around it: reading files (`.swf` or gzipped `.swf.gz`), progress on
//! stderr, and the output: the table or JSON on stdout and, with `--report`, the HTML page of
//! [`crate::tools::report_html`]. The Kafka input is [`crate::tools::simulate_kafka`].

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use coordinator_core::planner::Policy;
use coordinator_core::sim::report::{side_by_side, summary, Report};
use coordinator_core::sim::settings::SimConfig;
use coordinator_core::sim::swf::{self, SwfJob};
use coordinator_core::sim::synth::{self, SynthParams, Workload};
use coordinator_core::sim::{self as core_sim, Replay};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tempfile::NamedTempFile;

use crate::tools::report_html::{self, Page};
use crate::tools::simulate_kafka::{KafkaInputOptions, KafkaWorkload};

/// The command line of `simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateOptions {
    /// The trace to replay: Standard Workload Format, `.swf` or gzipped `.swf.gz`.
    #[arg(
        long,
        required_unless_present_any = ["synthetic", "from_kafka"],
        conflicts_with = "synthetic"
    )]
    pub trace: Option<PathBuf>,
    /// The scheduling policy, over the config's `scheduler.policy`.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyArg>,
    /// More configs replayed on the same workload (repeatable): two tables are printed side
    /// by side, more one after the other; then a summary of all of them.
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// Print JSON instead of the text table.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML page with plots (wait CDF per level, queue depth and utilisation
    /// over time) and the table to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Estimate every execution's wait when it is queued, as the daemon does, and add the
    /// estimates' error to the table: the daemon's estimator against position × drain rate
    /// and a plan on timeouts, per level (over the config's `[simulate] estimate`).
    #[arg(long)]
    pub estimate: bool,
    /// Replay this many synthetic jobs instead of a trace.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Offered load of the synthetic workload (work submitted ÷ what the pool can do).
    #[arg(long, default_value_t = 0.9)]
    pub load: f64,
    /// Which synthetic workload: `hpc` (parallel jobs, seconds to hours) or `platform`
    /// (scripts of seconds to minutes, bursts, five levels, a few heavy users).
    #[arg(long, value_enum, default_value_t = WorkloadArg::Hpc)]
    pub workload: WorkloadArg,
    /// Replay only the first N jobs of the trace (with `--from-kafka`, the first N requests).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub kafka: KafkaInputOptions,
}

/// `--policy`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyArg {
    /// The blocked execution goes one level lower; the pass ends.
    Demote,
    /// The blocked execution keeps its place and blocks everything behind it.
    Strict,
    /// The blocked execution keeps its place with a reservation; what does not delay it
    /// starts.
    Backfill,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Demote => Policy::Demote,
            PolicyArg::Strict => Policy::Strict,
            PolicyArg::Backfill => Policy::Backfill,
        }
    }
}

/// `--workload`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadArg {
    /// Parallel jobs of 1 processor to a quarter of the pool, seconds to hours.
    Hpc,
    /// Scripts of seconds to minutes, in bursts, at five levels, with a few heavy users.
    Platform,
}

impl From<WorkloadArg> for Workload {
    fn from(w: WorkloadArg) -> Self {
        match w {
            WorkloadArg::Hpc => Workload::Hpc,
            WorkloadArg::Platform => Workload::Platform,
        }
    }
}

/// A problem with what the command was given (files, config, trace lines): exit code 64.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn read_config(path: &Path) -> Result<SimConfig, BadInput> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read config file {}: {e}", path.display())))?;
    SimConfig::from_toml_str(&text)
        .map_err(|e| BadInput(format!("invalid configuration {}:\n{e}", path.display())))
}

fn read_trace(path: &Path, limit: Option<usize>) -> Result<Vec<SwfJob>, BadInput> {
    let file = File::open(path)
        .map_err(|e| BadInput(format!("cannot open trace {}: {e}", path.display())))?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    swf::parse(reader, limit).map_err(|e| BadInput(format!("trace {}: {e}", path.display())))
}

/// The HTML page being written: a temporary file beside `path`, renamed onto it only once the
/// page is complete, so a run that fails leaves no page behind.
struct ReportFile {
    path: PathBuf,
    file: NamedTempFile,
}

impl ReportFile {
    /// Creates the temporary file now, so an unwritable path fails before the replay.
    fn create(path: &Path) -> Result<ReportFile, BadInput> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let file = tempfile::Builder::new()
            .prefix(".simulate-report-")
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(|e| report_error(path, e))?;
        Ok(ReportFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn write(mut self, page: &str) -> Result<(), BadInput> {
        self.file
            .write_all(page.as_bytes())
            .and_then(|()| self.file.as_file().sync_all())
            .map_err(|e| report_error(&self.path, e))?;
        self.file
            .persist(&self.path)
            .map(drop)
            .map_err(|e| report_error(&self.path, e.error))
    }
}

fn report_error(path: &Path, e: std::io::Error) -> BadInput {
    BadInput(format!("cannot write the report {}: {e}", path.display()))
}

fn progress_bar(label: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    bar
}

/// Runs `simulate` with `config` (the global `--config`); the text or JSON goes to `out`.
pub fn run_simulate(
    options: &SimulateOptions,
    config: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), BadInput> {
    let config_path = config.ok_or_else(|| {
        BadInput("simulate needs --config FILE.toml (e.g. traces/kth-sp2.toml)".to_owned())
    })?;
    let mut configs = vec![(config_path.to_path_buf(), read_config(config_path)?)];
    for other in &options.compare {
        configs.push((other.clone(), read_config(other)?));
    }
    if options.estimate {
        for (_, config) in &mut configs {
            config.settings.estimate = true;
        }
    }
    let report_file = options
        .report
        .as_deref()
        .map(ReportFile::create)
        .transpose()?;
    let traffic = if options.kafka.from_kafka {
        let stderr = &mut std::io::stderr();
        Some(KafkaWorkload::read(
            &options.kafka,
            &configs[0].1,
            options.limit,
            stderr,
        )?)
    } else {
        options.kafka.check_unused()?;
        None
    };
    let records = match (&options.trace, options.synthetic) {
        _ if traffic.is_some() => Vec::new(),
        (_, Some(jobs)) => {
            if !(options.load.is_finite() && options.load > 0.0) {
                return Err(BadInput(format!(
                    "--load must be a number above 0 (got {})",
                    options.load
                )));
            }
            synth::generate(&SynthParams {
                jobs,
                seed: options.seed,
                procs: configs[0].1.pool_procs(),
                load: options.load,
                workload: options.workload.into(),
            })
        }
        (Some(trace), None) => read_trace(trace, options.limit)?,
        (None, None) => {
            return Err(BadInput(
                "simulate needs --trace FILE, --synthetic N or --from-kafka".into(),
            ))
        }
    };
    let policy = options.policy.map(Policy::from);
    let mut runs: Vec<Replay> = Vec::new();
    for (path, config) in &configs {
        let label = path.display().to_string();
        let bar = progress_bar(&label);
        let progress = &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let run = match &traffic {
            Some(traffic) => traffic.simulate(config, policy, &label, progress),
            None => {
                let (jobs, skipped) = core_sim::map_all(&records, config);
                core_sim::replay(jobs, skipped, config, policy, &label, progress)
            }
        };
        bar.finish_and_clear();
        runs.push(run);
    }
    let reports: Vec<Report> = runs.iter().map(|r| r.report.clone()).collect();
    let table = if reports.len() == 1 {
        reports[0].to_text()
    } else if reports.len() == 2 {
        side_by_side(&reports) + "\n" + &summary(&reports)
    } else {
        let tables: Vec<String> = reports.iter().map(Report::to_text).collect();
        tables.join("\n") + "\n" + &summary(&reports)
    };
    if let Some(file) = report_file {
        let page = report_html::render(&Page {
            workload: &workload(options),
            runs: &runs,
            table: &table,
        })
        .map_err(|e| BadInput(format!("cannot draw the report: {}", e.0)))?;
        file.write(&page)?;
    }
    let text = if options.json {
        let value = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        value.map(|s| s + "\n").unwrap_or_default()
    } else {
        table
    };
    out.write_all(text.as_bytes())
        .map_err(|e| BadInput(format!("cannot write the report: {e}")))
}

/// What the page calls the workload: the trace, the Kafka traffic or the synthetic workload's
/// parameters, as the command line gave them.
fn workload(options: &SimulateOptions) -> String {
    if options.kafka.from_kafka {
        let kafka = &options.kafka;
        let mut s = "the Integr8sCode traffic on the config's Kafka topics".to_owned();
        for (word, value) in [
            ("at", &kafka.bootstrap),
            ("since", &kafka.since),
            ("until", &kafka.until),
        ] {
            if let Some(value) = value {
                s.push_str(&format!(" {word} {value}"));
            }
        }
        if let Some(limit) = options.limit {
            s.push_str(&format!(" (first {limit} requests)"));
        }
        return s;
    }
    match (&options.trace, options.synthetic) {
        (_, Some(jobs)) => format!(
            "a synthetic workload ({jobs} jobs, seed {}, load {})",
            options.seed, options.load
        ),
        (Some(trace), None) => {
            let name = trace.display();
            match options.limit {
                Some(limit) => format!("{name} (first {limit} jobs)"),
                None => name.to_string(),
            }
        }
        (None, None) => String::new(),
    }
}
