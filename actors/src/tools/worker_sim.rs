//! The worker simulator: consumes `create_pod_command` like Integr8sCode's Kubernetes worker
//! and, after a run time drawn from a distribution, publishes `execution_completed` (or
//! `execution_failed` with `script_error`), so the coordinator releases the resources.
//!
//! Executions run concurrently, each on its own timer. A command's offset is stored only once
//! its outcome is acknowledged and every earlier command of its partition is done too, so a
//! command left running when the simulator stops is delivered again to the next one.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::{
    CreatePodCommand, ErrorType, EventMetadata, EventType, ExecutionCompleted, ExecutionFailed,
    ResourceUsage, EVENT_VERSION,
};
use coordinator_core::quantity;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::{event_id, timestamp};
use crate::kafka::{client_config, is_nothing_to_commit, producer_config};

/// `metadata.service_name` of the outcomes it publishes.
pub const SERVICE_NAME: &str = "worker-sim";

/// How often the progress line is written, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How the simulated executions behave. The fields are the `worker-sim` subcommand's options;
/// [`WorkerSimOptions::default`] gives their defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerSimOptions {
    /// Run time of each execution in milliseconds: `exp:MEAN`, `uniform:MIN-MAX` or `const:MS`.
    #[arg(long, default_value = "exp:200")]
    pub runtime: RuntimeDistribution,
    /// Fraction of executions that fail with `script_error` (exit code 1), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Take this many commands, publish their outcomes, and stop; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Seed: the same seed gives each execution the same run time and outcome. Random (and
    /// printed in the summary) when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Consumer group; default `<kafka.group_id>-worker-sim`.
    #[arg(long)]
    pub group: Option<String>,
    /// On Ctrl-C, how long running executions may still finish; those that do not are left
    /// uncommitted, so the next worker-sim of the group runs them again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Taking commands stops when this is cancelled (the CLI cancels it on Ctrl-C / SIGTERM).
    #[arg(skip)]
    pub stop: CancellationToken,
}

impl Default for WorkerSimOptions {
    /// The subcommand's defaults: one source of truth, the `#[arg]` attributes above.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            options: WorkerSimOptions,
        }
        <Defaults as clap::Parser>::try_parse_from(["worker-sim"])
            .map(|d| d.options)
            .expect("the worker-sim defaults parse (checked by a unit test)")
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?}: expected a fraction from 0 to 1")),
    }
}

/// A distribution of run times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuntimeDistribution {
    /// Exponential with this mean: many short runs, a long tail.
    Exponential {
        /// Mean run time, ms.
        mean_ms: f64,
    },
    /// Uniform between two bounds, inclusive.
    Uniform {
        /// Shortest run time, ms.
        min_ms: u64,
        /// Longest run time, ms.
        max_ms: u64,
    },
    /// Always the same.
    Constant {
        /// The run time, ms.
        ms: u64,
    },
}

impl RuntimeDistribution {
    /// One run time drawn with `rng`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match *self {
            RuntimeDistribution::Exponential { mean_ms } => {
                // Inverse CDF; 1 - u is in (0, 1], so the logarithm is finite.
                let u: f64 = rng.random();
                Duration::from_secs_f64(-mean_ms * (1.0 - u).ln() / 1000.0)
            }
            RuntimeDistribution::Uniform { min_ms, max_ms } => {
                Duration::from_millis(rng.random_range(min_ms..=max_ms))
            }
            RuntimeDistribution::Constant { ms } => Duration::from_millis(ms),
        }
    }
}

impl FromStr for RuntimeDistribution {
    type Err = String;

    /// `exp:200`, `uniform:100-500`, `const:100` (milliseconds).
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("{text:?}: expected exp:MEAN_MS, uniform:MIN_MS-MAX_MS or const:MS");
        let (kind, args) = text.trim().split_once(':').ok_or_else(usage)?;
        let ms = |s: &str| s.trim().parse::<u64>().map_err(|_| usage());
        match kind.trim() {
            "exp" => match args.trim().parse::<f64>() {
                Ok(mean_ms) if mean_ms.is_finite() && mean_ms >= 0.0 => {
                    Ok(RuntimeDistribution::Exponential { mean_ms })
                }
                _ => Err(usage()),
            },
            "uniform" => {
                let (min, max) = args.split_once('-').ok_or_else(usage)?;
                let (min_ms, max_ms) = (ms(min)?, ms(max)?);
                if min_ms > max_ms {
                    return Err(format!("{text:?}: the minimum is above the maximum"));
                }
                Ok(RuntimeDistribution::Uniform { min_ms, max_ms })
            }
            "const" => Ok(RuntimeDistribution::Constant { ms: ms(args)? }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for RuntimeDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeDistribution::Exponential { mean_ms } => write!(f, "exp:{mean_ms}"),
            RuntimeDistribution::Uniform { min_ms, max_ms } => {
                write!(f, "uniform:{min_ms}-{max_ms}")
            }
            RuntimeDistribution::Constant { ms } => write!(f, "const:{ms}"),
        }
    }
}

/// What happens to one execution: decided from the seed and the execution id alone, so the
/// same seed gives the same outcome whatever order commands arrive in.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedRun {
    /// How long the execution runs.
    pub runtime: Duration,
    /// Whether it fails with `script_error`.
    pub fails: bool,
    /// Peak memory it reports, as a fraction of what was reserved.
    pub memory_fraction: f64,
}

impl SimulatedRun {
    /// The run of `execution_id` under `seed`.
    pub fn draw(options: &WorkerSimOptions, seed: u64, execution_id: &str) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(execution_id.as_bytes()));
        let runtime = options.runtime.sample(&mut rng);
        let fails = rng.random::<f64>() < options.fail_rate;
        let memory_fraction = rng.random_range(0.1..0.9);
        SimulatedRun {
            runtime,
            fails,
            memory_fraction,
        }
    }

    /// The event the worker publishes when the run ends: `execution_completed`, or
    /// `execution_failed` with `script_error`, carrying the command's user and correlation id.
    pub fn outcome(&self, command: &CreatePodCommand) -> Outcome {
        let metadata = EventMetadata {
            service_name: SERVICE_NAME.to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            ip_address: None,
            user_agent: None,
            ..command.metadata.clone()
        };
        let cpu_millis = quantity::parse_cpu_millis(&command.cpu_request).unwrap_or(0);
        let memory_mib = quantity::parse_memory_mib(&command.memory_request).unwrap_or(0);
        let wall = self.runtime.as_secs_f64();
        let usage = ResourceUsage {
            execution_time_wall_seconds: wall,
            // At 100 ticks a second, busy at half the reserved CPU.
            cpu_time_jiffies: (wall * 100.0 * cpu_millis as f64 / 2000.0).round() as i64,
            clk_tck_hertz: 100,
            peak_memory_kb: (memory_mib as f64 * 1024.0 * self.memory_fraction).round() as i64,
        };
        let id = command.execution_id.clone();
        if self.fails {
            let message = format!(
                "Script exited with code 1 after {:.3}s (simulated by worker-sim).",
                wall
            );
            Outcome::Failed(ExecutionFailed {
                event_id: event_id(),
                event_type: EventType::ExecutionFailed,
                event_version: EVENT_VERSION.to_owned(),
                timestamp: timestamp(),
                aggregate_id: Some(id.clone()),
                metadata,
                execution_id: id,
                exit_code: 1,
                error_type: ErrorType::ScriptError,
                error_message: message,
                resource_usage: Some(usage),
                stdout: String::new(),
                stderr: "Error: simulated script failure (worker-sim)\n".to_owned(),
            })
        } else {
            Outcome::Completed(ExecutionCompleted {
                event_id: event_id(),
                event_type: EventType::ExecutionCompleted,
                event_version: EVENT_VERSION.to_owned(),
                timestamp: timestamp(),
                aggregate_id: Some(id.clone()),
                metadata,
                execution_id: id,
                exit_code: 0,
                resource_usage: Some(usage),
                stdout: format!(
                    "Hello from {} {} (worker-sim)\n",
                    command.language, command.language_version
                ),
                stderr: String::new(),
            })
        }
    }
}

/// The event that ends an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit code 0.
    Completed(ExecutionCompleted),
    /// `script_error`, exit code 1.
    Failed(ExecutionFailed),
}

impl Outcome {
    /// The event's type, which names its topic in the per-event-type layout.
    pub fn event_type(&self) -> EventType {
        match self {
            Outcome::Completed(_) => EventType::ExecutionCompleted,
            Outcome::Failed(_) => EventType::ExecutionFailed,
        }
    }

    /// The JSON message body.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        match self {
            Outcome::Completed(e) => e.to_json_bytes(),
            Outcome::Failed(e) => e.to_json_bytes(),
        }
    }
}

/// FNV-1a: a stable hash of the execution id to seed its run (std's hashers may change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSimSummary {
    /// The commands topic read.
    pub commands_topic: String,
    /// The topics written: completions, then failures (the same topic in the shared layout).
    pub events_topic: String,
    /// The seed (the one given, or the one drawn).
    pub seed: u64,
    /// Commands taken and run.
    pub commands: u64,
    /// Commands for an execution already running here (redeliveries), not run twice.
    pub duplicates: u64,
    /// Messages on the commands topic that are not `create_pod_command`.
    pub skipped: u64,
    /// `execution_completed` published and acknowledged.
    pub completed: u64,
    /// `execution_failed` published and acknowledged.
    pub failed: u64,
    /// Outcomes the broker did not acknowledge.
    pub errors: u64,
    /// Errors the consumer reported (e.g. the topic does not exist yet); it keeps trying.
    pub consumer_errors: u64,
    /// Executions still running at the stop, left for the next worker-sim of the group.
    pub abandoned: u64,
    /// Run time of the simulator.
    pub elapsed: Duration,
}

impl fmt::Display for WorkerSimSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "worker-sim: {} create_pod_command from {} in {:.2}s: {} completed, {} failed to {} (seed {})",
            self.commands,
            self.commands_topic,
            self.elapsed.as_secs_f64(),
            self.completed,
            self.failed,
            self.events_topic,
            self.seed
        )?;
        write!(
            f,
            "  {} duplicates, {} other messages skipped, {} undelivered, {} consumer errors, {} abandoned at stop",
            self.duplicates, self.skipped, self.errors, self.consumer_errors, self.abandoned
        )
    }
}

/// The offsets of one partition's commands that are still running.
#[derive(Debug, Default)]
struct PartitionProgress {
    running: BTreeSet<i64>,
    next: i64,
}

impl PartitionProgress {
    /// The offset below which every command is done.
    fn done_below(&self) -> i64 {
        self.running.first().copied().unwrap_or(self.next)
    }
}

/// A finished execution, reported by its task.
struct Finished {
    partition: i32,
    offset: i64,
    execution_id: String,
    failed: bool,
    delivery: Result<(), String>,
}

/// Consumes `create_pod_command` from the commands topic of `kafka` on the broker at
/// `bootstrap` and publishes an outcome for each to the events topic after its simulated run
/// time, until `opts.count` commands are done or `opts.stop` is cancelled.
pub async fn run_worker_sim(
    opts: WorkerSimOptions,
    kafka: &KafkaConfig,
    bootstrap: &str,
) -> anyhow::Result<WorkerSimSummary> {
    let seed = opts.seed.unwrap_or_else(rand::random);
    let commands_topic = kafka.topic_of(EventType::CreatePodCommand);
    let completed_topic = kafka.topic_of(EventType::ExecutionCompleted);
    let failed_topic = kafka.topic_of(EventType::ExecutionFailed);
    let events_topic = if completed_topic == failed_topic {
        completed_topic.clone()
    } else {
        format!("{completed_topic}/{failed_topic}")
    };
    let group = opts
        .group
        .clone()
        .unwrap_or_else(|| format!("{}-worker-sim", kafka.group_id));
    let consumer: StreamConsumer = client_config(kafka, bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        // The embedded broker (librdkafka's mock cluster) holds an empty fetch this long even
        // when a command arrives meanwhile; on Kafka it only bounds idle long-polls.
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&commands_topic])
        .with_context(|| format!("subscribing to {commands_topic}"))?;
    let producer: Arc<FutureProducer> = Arc::new(
        // No statistics: they are for the daemon's metrics, and the default context logs them.
        producer_config(kafka, bootstrap)
            .set("statistics.interval.ms", "0")
            .create()
            .context("creating the Kafka producer")?,
    );

    let start = Instant::now();
    let mut summary = WorkerSimSummary {
        commands_topic: commands_topic.clone(),
        events_topic: events_topic.clone(),
        seed,
        commands: 0,
        duplicates: 0,
        skipped: 0,
        completed: 0,
        failed: 0,
        errors: 0,
        consumer_errors: 0,
        abandoned: 0,
        elapsed: Duration::ZERO,
    };
    let mut partitions: BTreeMap<i32, PartitionProgress> = BTreeMap::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut taking = !opts.stop.is_cancelled();
    // Set when taking stops on Ctrl-C: running executions are abandoned after it.
    let mut drain_deadline: Option<Instant> = None;
    let mut progress = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    progress.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_report = (start, 0u64);

    let store = |partitions: &mut BTreeMap<i32, PartitionProgress>, partition: i32| {
        if let Some(p) = partitions.get(&partition) {
            let below = p.done_below();
            // store_offset stores the offset after the one given.
            if below > 0 {
                let _ = consumer.store_offset(&commands_topic, partition, below - 1);
            }
        }
    };

    loop {
        if !taking && tasks.is_empty() {
            break;
        }
        let drain_expired = async {
            match drain_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = opts.stop.cancelled(), if drain_deadline.is_none() => {
                taking = false;
                drain_deadline = Some(Instant::now() + opts.drain_timeout);
            }
            _ = progress.tick() => {
                if !opts.quiet {
                    let now = Instant::now();
                    let done = summary.completed + summary.failed;
                    let secs = now.duration_since(last_report.0).as_secs_f64().max(1e-3);
                    eprintln!(
                        "worker-sim: {} commands, {} running, {} completed, {} failed ({:.0}/s), {} errors",
                        summary.commands,
                        tasks.len(),
                        summary.completed,
                        summary.failed,
                        (done - last_report.1) as f64 / secs,
                        summary.errors
                    );
                    last_report = (now, done);
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                // Tasks never panic, and are aborted only after this loop.
                let Ok(finished) = joined else { continue };
                running.remove(&finished.execution_id);
                match finished.delivery {
                    Ok(()) if finished.failed => summary.failed += 1,
                    Ok(()) => summary.completed += 1,
                    Err(e) => {
                        summary.errors += 1;
                        warn!(execution_id = %finished.execution_id, error = %e, "Outcome not delivered.");
                    }
                }
                if let Some(p) = partitions.get_mut(&finished.partition) {
                    p.running.remove(&finished.offset);
                }
                store(&mut partitions, finished.partition);
            }
            _ = drain_expired => break,
            received = consumer.recv(), if taking => {
                let message = match received {
                    Ok(message) => message,
                    Err(e) => {
                        summary.consumer_errors += 1;
                        warn!(error = %e, "Consumer error.");
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let p = partitions.entry(partition).or_default();
                p.next = p.next.max(offset + 1);
                let command = message
                    .payload()
                    .and_then(|bytes| serde_json::from_slice::<CreatePodCommand>(bytes).ok())
                    .filter(|c| c.event_type == EventType::CreatePodCommand);
                let Some(command) = command else {
                    summary.skipped += 1;
                    store(&mut partitions, partition);
                    continue;
                };
                if !running.insert(command.execution_id.clone()) {
                    summary.duplicates += 1;
                    store(&mut partitions, partition);
                    continue;
                }
                p.running.insert(offset);
                summary.commands += 1;
                if opts.count != 0 && summary.commands >= opts.count {
                    taking = false;
                }
                let run = SimulatedRun::draw(&opts, seed, &command.execution_id);
                let producer = producer.clone();
                let (completed_topic, failed_topic) = (completed_topic.clone(), failed_topic.clone());
                let delivery_timeout = kafka.delivery_timeout;
                tasks.spawn(async move {
                    tokio::time::sleep(run.runtime).await;
                    let outcome = run.outcome(&command);
                    let payload = outcome.to_json_bytes();
                    let topic = match outcome.event_type() {
                        EventType::ExecutionFailed => &failed_topic,
                        _ => &completed_topic,
                    };
                    let record = FutureRecord::to(topic)
                        .key(command.execution_id.as_bytes())
                        .payload(&payload);
                    let delivery = producer
                        .send(record, delivery_timeout)
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| e.to_string());
                    Finished {
                        partition,
                        offset,
                        execution_id: command.execution_id,
                        failed: run.fails,
                        delivery,
                    }
                });
            }
        }
    }

    summary.abandoned = tasks.len() as u64;
    tasks.shutdown().await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        if !is_nothing_to_commit(&e) {
            warn!(error = %e, "Committing the worker-sim offsets failed.");
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use coordinator_core::events::{decode_input, InputEvent};
    use coordinator_core::priority::PriorityFormat;
    use coordinator_core::Priority;

    use super::*;

    fn command() -> CreatePodCommand {
        let request: coordinator_core::events::ExecutionRequested = serde_json::from_str(
            include_str!("../../../tests/golden/execution_requested.json"),
        )
        .unwrap();
        CreatePodCommand::for_request(
            &request,
            500,
            256,
            (Priority::High, PriorityFormat::Name),
            "e".into(),
            "t".into(),
        )
    }

    #[test]
    fn defaults_parse() {
        let o = WorkerSimOptions::default();
        assert_eq!(
            o.runtime,
            RuntimeDistribution::Exponential { mean_ms: 200.0 }
        );
        assert_eq!(o.fail_rate, 0.0);
        assert_eq!(o.count, 0);
        assert_eq!(o.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn distributions_parse_and_stay_in_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let u: RuntimeDistribution = "uniform:100-300".parse().unwrap();
        let c: RuntimeDistribution = "const:42".parse().unwrap();
        let e: RuntimeDistribution = "exp:200".parse().unwrap();
        let mut total = Duration::ZERO;
        for _ in 0..10_000 {
            let d = u.sample(&mut rng);
            assert!((100..=300).contains(&d.as_millis()), "{d:?}");
            assert_eq!(c.sample(&mut rng), Duration::from_millis(42));
            total += e.sample(&mut rng);
        }
        let mean = total.as_secs_f64() / 10_000.0;
        assert!((0.18..0.22).contains(&mean), "{mean}");
        for text in ["uniform:100-300", "const:42", "exp:200"] {
            assert_eq!(
                text.parse::<RuntimeDistribution>().unwrap().to_string(),
                text
            );
        }
        for bad in [
            "exp",
            "exp:-1",
            "uniform:5-1",
            "uniform:5",
            "normal:3",
            "const:x",
        ] {
            assert!(bad.parse::<RuntimeDistribution>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_same_seed_and_execution_give_the_same_run() {
        let options = WorkerSimOptions {
            fail_rate: 0.5,
            ..WorkerSimOptions::default()
        };
        assert_eq!(
            SimulatedRun::draw(&options, 3, "exec-1"),
            SimulatedRun::draw(&options, 3, "exec-1")
        );
        let fails = (0..2000)
            .filter(|i| SimulatedRun::draw(&options, 3, &format!("exec-{i}")).fails)
            .count();
        assert!((850..1150).contains(&fails), "{fails}");
    }

    #[test]
    fn outcomes_decode_with_the_commands_user_and_correlation() {
        let command = command();
        for fails in [false, true] {
            let run = SimulatedRun {
                runtime: Duration::from_millis(1500),
                fails,
                memory_fraction: 0.5,
            };
            let bytes = run.outcome(&command).to_json_bytes();
            let event = decode_input(&bytes, 1 << 20).unwrap();
            assert_eq!(event.execution_id(), Some(command.execution_id.as_str()));
            let (metadata, usage) = match event {
                InputEvent::Completed(c) if !fails => {
                    assert_eq!(c.exit_code, 0);
                    (c.metadata, c.resource_usage.unwrap())
                }
                InputEvent::Failed(f) if fails => {
                    assert_eq!(f.error_type, ErrorType::ScriptError);
                    assert_eq!(f.exit_code, 1);
                    (f.metadata, f.resource_usage.unwrap())
                }
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(metadata.service_name, SERVICE_NAME);
            assert_eq!(metadata.correlation_id, command.metadata.correlation_id);
            assert_eq!(metadata.user_id, command.metadata.user_id);
            assert_eq!(usage.execution_time_wall_seconds, 1.5);
            assert_eq!(usage.peak_memory_kb, 128 * 1024);
        }
    }

    #[test]
    fn offsets_are_done_below_the_oldest_running_command() {
        let mut p = PartitionProgress::default();
        assert_eq!(p.done_below(), 0);
        p.next = 5;
        p.running.extend([2, 4]);
        assert_eq!(p.done_below(), 2);
        p.running.remove(&2);
        assert_eq!(p.done_below(), 4);
        p.running.remove(&4);
        assert_eq!(p.done_below(), 5);
    }
}
