//! `execution-coordinator`: CLI, config loading, logging, the actor tree and shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coordinator_core::config::{Config, KafkaConfig, LogFormat};
use coordinator_core::redact::Redactor;
use execution_coordinator::daemon::{Daemon, Recoveries};
use execution_coordinator::inspect::Inspection;
use execution_coordinator::kafka::broker_check::check_brokers;
use execution_coordinator::kafka::ensure_topics;
use execution_coordinator::kafka::librdkafka;
use execution_coordinator::kafka::ownership::{Ownership, StandbyEnd};
use execution_coordinator::kafka::EmbeddedBroker;
use execution_coordinator::misconfigured::Misconfigured;
use execution_coordinator::shutdown::{Failure, Shutdown};
use execution_coordinator::telemetry::log_output::Redacting;
use execution_coordinator::telemetry::{self, Readiness};
use execution_coordinator::tools::demo::run_demo;
use execution_coordinator::tools::loadgen::{run_loadgen, LoadgenOptions};
use execution_coordinator::tools::simulate::{run_simulate, SimulateOptions};
use execution_coordinator::tools::worker_sim::{
    run_worker_sim, RuntimeDistribution, WorkerSimOptions,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system far better than glibc's allocator under the
/// daemon's churn of small allocations (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a configuration error (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// How long the start waits for a real cluster to accept or refuse the client.
const BROKER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "execution-coordinator",
    version,
    about = "Admits script executions from Kafka: priority queue, resource pool, pod commands."
)]
struct Cli {
    /// Configuration file (TOML). Without it, `config.toml` is read if present, else defaults.
    #[arg(long, short, global = true, env = "EXECUTION_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and print the effective values.
    CheckConfig,
    /// Publish `execution_requested` events to the input topic: a load generator.
    Loadgen {
        /// Broker to publish to, instead of `kafka.bootstrap_servers` (e.g. the embedded
        /// broker's address that `run` prints).
        #[arg(long)]
        bootstrap: Option<String>,
        #[command(flatten)]
        options: LoadgenOptions,
    },
    /// The daemon (on the embedded broker unless `kafka.bootstrap_servers` is set) with a load
    /// generator and a simulated worker in the same process; Ctrl-C prints a summary.
    Demo {
        /// Requests per second from the load generator.
        #[arg(long, default_value_t = 120.0)]
        rate: f64,
        /// Requests in all (0 = until Ctrl-C). The default outruns the default pool for 20 s,
        /// then the queue drains.
        #[arg(long, default_value_t = 2400)]
        count: u64,
        /// Simulated run time of an execution (const:MS, uniform:LO-HI, exp:MEAN).
        #[arg(long, default_value = "uniform:200-2000")]
        runtime: RuntimeDistribution,
        /// Fraction of executions the worker reports failed.
        #[arg(long, default_value_t = 0.05)]
        fail_rate: f64,
        /// Seed of the load and the run times.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Consume `create_pod_command` and publish each execution's outcome after a simulated
    /// run time: a stand-in for the Kubernetes worker.
    WorkerSim {
        /// Broker to use, instead of `kafka.bootstrap_servers` (e.g. the embedded broker's
        /// address that `run` prints).
        #[arg(long)]
        bootstrap: Option<String>,
        #[command(flatten)]
        options: WorkerSimOptions,
    },
    /// Replay a workload trace (Standard Workload Format, `.swf` or `.swf.gz`), a synthetic
    /// workload or, with `--from-kafka`, the Integr8sCode events on the config's topics
    /// through the queue, pool and scheduling policy on a virtual clock, and print
    /// waits per level, slowdown, utilisation and fairness. `--config` is the pool and
    /// policy to simulate (e.g. `traces/kth-sp2.toml`), with an optional `[simulate]` section.
    Simulate {
        #[command(flatten)]
        options: SimulateOptions,
    },
}

/// `simulate`: its config is its own (with a `[simulate]` section), read by the command.
fn simulate(options: &SimulateOptions, config: Option<&std::path::Path>) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match run_simulate(options, config, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read config file {}: {e}", p.display()))?,
        None => std::fs::read_to_string("config.toml").unwrap_or_default(),
    };
    let config = Config::from_toml_str(&text, std::env::vars()).map_err(|e| e.to_string())?;
    // What this build of librdkafka cannot use fails here, not at the first connection.
    librdkafka::check_properties(&config.kafka, std::env::vars()).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Logs to stdout with every secret of `[kafka.properties]` redacted, librdkafka's lines too.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.daemon.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let redactor = Arc::new(Redactor::for_kafka(&config.kafka));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting::new(redactor, std::io::stdout));
    match config.daemon.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas, and the
/// first touch of each 2 MiB page then zeroes all of it, on the main thread under load
/// (BENCHMARKS.md has the profile and the throughput with and without).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integer arguments only and changes a flag of
    // this process; it cannot touch memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    if let Some(Command::Simulate { options }) = &cli.command {
        return simulate(options, cli.config.as_deref());
    }
    let config = match load_config(cli.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Simulate { options } => simulate(&options, cli.config.as_deref()),
        Command::CheckConfig => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            println!("# {}", librdkafka::build());
            print!("{}", config.to_toml_string());
            ExitCode::SUCCESS
        }
        Command::Loadgen { bootstrap, options } => {
            let stop = options.stop.clone();
            run_client(&config, bootstrap, stop, |kafka, bootstrap| async move {
                let summary = run_loadgen(options, &kafka, &bootstrap).await?;
                let ok = summary.errors == 0;
                Ok((summary, ok))
            })
        }
        Command::WorkerSim { bootstrap, options } => {
            let stop = options.stop.clone();
            run_client(&config, bootstrap, stop, |kafka, bootstrap| async move {
                let summary = run_worker_sim(options, &kafka, &bootstrap).await?;
                let ok = summary.errors == 0;
                Ok((summary, ok))
            })
        }
        Command::Demo {
            rate,
            count,
            runtime,
            fail_rate,
            seed,
        } => {
            init_logging(&config);
            let loadgen = LoadgenOptions {
                rate,
                count,
                seed: Some(seed),
                users: 25,
                quiet: true,
                ..LoadgenOptions::default()
            };
            let worker = WorkerSimOptions {
                runtime,
                fail_rate,
                seed: Some(seed),
                quiet: true,
                ..WorkerSimOptions::default()
            };
            match run(config, Some((loadgen, worker))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = format!("{e:#}"), "Demo failed.");
                    failure_code(&e)
                }
            }
        }
        Command::Run => {
            init_logging(&config);
            match run(config, None) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = format!("{e:#}"), "Coordinator failed.");
                    failure_code(&e)
                }
            }
        }
    }
}

/// Runs the daemon until SIGINT/SIGTERM; with `demo`, the load generator and the simulated
/// worker run beside it and a summary is printed at the end.
fn run(config: Config, demo: Option<(LoadgenOptions, WorkerSimOptions)>) -> anyhow::Result<()> {
    for w in config.warnings() {
        warn!(warning = %w, "Configuration warning.");
    }
    let build = librdkafka::build();
    info!(librdkafka = %build.version, features = %build.features, "Kafka client library.");
    let system = actix::System::new();
    let mut config = config;
    let embedded = system.block_on(async move {
        // The embedded broker lives as long as the daemon.
        let (bootstrap, _embedded) = match &config.kafka.bootstrap_servers {
            Some(servers) => (servers.clone(), None),
            None => {
                let broker = EmbeddedBroker::start(&config.kafka)?;
                let bootstrap = broker.bootstrap_servers();
                println!("Embedded Kafka broker (librdkafka mock cluster) listening on {bootstrap}");
                println!("Watch it with: kcat -b {bootstrap} -C -t {}", config.kafka.topic_of(coordinator_core::events::EventType::CreatePodCommand));
                info!(%bootstrap, "Embedded Kafka broker started.");
                // The mock cluster has no CreateTopics; EmbeddedBroker created them.
                config.kafka.create_topics = false;
                (bootstrap, Some(broker))
            }
        };
        if _embedded.is_none() {
            let (kafka, bootstrap) = (config.kafka.clone(), bootstrap.clone());
            let timeout = kafka.delivery_timeout.min(BROKER_CHECK_TIMEOUT);
            actix_rt::task::spawn_blocking(move || check_brokers(&kafka, &bootstrap, timeout))
                .await
                .context("broker check task")??;
        }
        let grace = config.daemon.shutdown_grace;
        let kafka = config.kafka.clone();
        // What outlives a recovery: readiness, what the inspection API answers from, the
        // metrics listener, the signal.
        let readiness = Arc::new(Readiness::default());
        let inspection = Arc::new(Inspection::default());
        if let Some(addr) = config.daemon.metrics_socket_addr() {
            telemetry::serve(addr, readiness.clone(), inspection.clone())?;
        }
        let signal = Shutdown::new();
        {
            let signal = signal.clone();
            actix_rt::spawn(async move {
                wait_for_signal().await;
                info!("Signal received; stopping.");
                signal.request();
            });
        }
        let recoveries = Recoveries::start(config.daemon.stats_interval);
        if config.kafka.create_topics {
            ensure_topics(&config.kafka, &bootstrap).await?;
        }
        let mut ownership = Ownership::join(&config.kafka, &bootstrap)?;
        let mut demo = demo;
        let mut started_once = false;
        loop {
            // Until this instance owns the queue and pool, it keeps the state current.
            let tail = if ownership.is_owner() {
                None
            } else {
                match ownership.standby(&config, &bootstrap, &readiness, &signal).await? {
                    StandbyEnd::Owner(tail) => tail,
                    StandbyEnd::Stopped => return anyhow::Ok(_embedded),
                }
            };
            // The first start fails loudly; later ones (after a recovery or a takeover) retry.
            let started = if !started_once {
                tokio::select! {
                    daemon = Daemon::start(config.clone(), bootstrap.clone(), readiness.clone(), inspection.clone(), tail) => {
                        Some(daemon.context("starting the coordinator")?)
                    }
                    _ = signal.requested() => None,
                }
            } else {
                Daemon::restart(&config, &bootstrap, &readiness, &inspection, tail, &signal).await
            };
            started_once = true;
            let Some(daemon) = started else {
                info!("Stopped during startup.");
                return anyhow::Ok(_embedded);
            };
            readiness.recovering.store(false, std::sync::atomic::Ordering::Relaxed);
            let demo_run = {
                let signal = signal.clone();
                let daemon = &daemon;
                let (kafka, bootstrap) = (&kafka, &bootstrap);
                let demo = demo.take();
                async move {
                    match demo {
                        Some((loadgen, worker)) => Some(
                            run_demo(daemon, kafka, bootstrap, loadgen, worker, signal.token())
                                .await,
                        ),
                        None => {
                            signal.requested().await;
                            None
                        }
                    }
                }
            };
            let failure = tokio::select! {
                summary = demo_run => {
                    if let Some(summary) = summary {
                        println!("{summary}");
                    }
                    None
                }
                failure = daemon.shutdown.requested() => Some(failure.unwrap_or_else(|| {
                    Failure::Recoverable("the actor tree was asked to stop".to_owned())
                })),
                _ = ownership.lost() => Some(Failure::Recoverable(
                    "another instance owns the queue and pool now".to_owned(),
                )),
            };
            match failure {
                None => {
                    daemon.shutdown(grace).await;
                    daemon.stop_threads();
                    break;
                }
                Some(Failure::Fatal(reason)) => {
                    daemon.stop_threads();
                    anyhow::bail!("stopping without a clean shutdown: {reason}");
                }
                Some(Failure::Recoverable(reason)) => {
                    // Memory is ahead of what Kafka committed: abandon the tree and rebuild it
                    // from the committed state, in this process.
                    readiness.recovering.store(true, std::sync::atomic::Ordering::Relaxed);
                    let count = recoveries.add();
                    warn!(recoveries = count, %reason, "Recovering: the actors are rebuilt from the committed state.");
                    daemon.abandon().await;
                }
            }
        }
        anyhow::Ok(_embedded)
    })?;
    // Clients first, then the embedded broker they talk to.
    drop(system);
    drop(embedded);
    info!("Exiting.");
    Ok(())
}

/// The broker of `loadgen` and `worker-sim`: `--bootstrap`, else the config's; `None` (after
/// saying why) when neither is set, since they cannot start an embedded broker of their own.
fn client_bootstrap(config: &Config, bootstrap: Option<String>) -> Option<String> {
    let bootstrap = bootstrap.or_else(|| config.kafka.bootstrap_servers.clone());
    if bootstrap.is_none() {
        eprintln!(
            "no broker: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers \
             (`execution-coordinator run` prints the address of its embedded broker)"
        );
    }
    bootstrap
}

/// Runs `work` on a single-threaded tokio runtime; SIGINT/SIGTERM cancel `stop`.
fn block_on_until_signal<T>(
    stop: CancellationToken,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        work.await
    })
}

/// The exit code of a daemon that failed: the configuration error's when restarting cannot
/// heal the cause ([`Misconfigured`]), 1 otherwise.
fn failure_code(e: &anyhow::Error) -> ExitCode {
    if Misconfigured::is_cause_of(e) {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// Runs a client tool (`loadgen`, `worker-sim`) against `--bootstrap` or the config's brokers
/// until it ends or a signal cancels `stop`; prints its summary (or the error, redacted) and
/// succeeds when the tool says its run was clean.
fn run_client<S, F>(
    config: &Config,
    bootstrap: Option<String>,
    stop: CancellationToken,
    run: impl FnOnce(KafkaConfig, String) -> F,
) -> ExitCode
where
    S: std::fmt::Display,
    F: std::future::Future<Output = anyhow::Result<(S, bool)>>,
{
    let Some(bootstrap) = client_bootstrap(config, bootstrap) else {
        return ExitCode::from(EXIT_CONFIG);
    };
    init_logging(config);
    let redactor = Redactor::for_kafka(&config.kafka);
    match block_on_until_signal(stop, run(config.kafka.clone(), bootstrap)) {
        Ok((summary, ok)) => {
            println!("{summary}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {}", redactor.redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
