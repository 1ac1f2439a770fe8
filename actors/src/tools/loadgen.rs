//! The load generator: publishes Integr8sCode `execution_requested` events to the coordinator's
//! input topic at a set rate, with a seeded mix of users, priorities and languages.
//!
//! The same seed gives the same sequence of requests (execution ids, users, priorities,
//! languages, scripts), whatever the rate or count, so a run can be replayed exactly.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::{
    EventMetadata, EventType, ExecutionRequested, WirePriority, EVENT_VERSION,
};
use coordinator_core::priority::PriorityFormat;
use coordinator_core::quantity;
use coordinator_core::Priority;
use futures::stream::{FuturesUnordered, StreamExt as _};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::timestamp;
use crate::kafka::producer_config;

/// `metadata.service_name` of the generated requests.
pub const SERVICE_NAME: &str = "loadgen";

/// Namespace of the UUIDv5 ids of generated events: `Uuid::new_v5(&Uuid::NAMESPACE_URL,
/// b"urn:integr8scode:execution-coordinator:loadgen")`. Changing it changes every generated id.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x3d1f_9f5c_1b0e_5c8a_9a47_07a1_d1b6_8e21);

/// Sends awaiting their broker acknowledgement, at most; beyond it the generator waits for acks.
const MAX_IN_FLIGHT: usize = 10_000;

/// How long the startup check waits for the topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the progress line is written, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to generate and how fast. The fields are the `loadgen` subcommand's options;
/// [`LoadgenOptions::default`] gives their defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenOptions {
    /// Requests per second; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Requests to send; 0 sends until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Distinct users (`metadata.user_id`) the requests are spread over, evenly at random.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Weights of the priority levels, `LEVEL=WEIGHT,…`; a level by name (critical, high,
    /// normal, low, background) or by value (0, 1, 5, 8, 10).
    #[arg(long, default_value = "critical=1,high=2,normal=5,low=1,background=1")]
    pub priority_mix: Mix<Priority>,
    /// How `priority` is written: `name` (`"normal"`, Integr8sCode since 2026-01-29) or
    /// `number` (`5`, its older releases).
    #[arg(long, default_value = "name", value_parser = parse_priority_format)]
    pub priority_format: PriorityFormat,
    /// Every Nth request (the Nth, 2Nth, …) carries a priority that is no level (`"urgent"`,
    /// or `3` by number), which the coordinator rejects; 0 sends none. The rest of the
    /// sequence is the same as without it.
    #[arg(long, default_value_t = 0)]
    pub invalid_every: u64,
    /// Weights of the languages, `LANGUAGE=WEIGHT,…`; python, javascript, go, java, rust, cpp,
    /// r, ruby and bash get their Integr8sCode image, any other name a `NAME:latest` image.
    #[arg(long, default_value = "python=5,javascript=2,go=2,java=1")]
    pub language_mix: Mix<String>,
    /// Size of each script in bytes (a hello-world padded with comments).
    #[arg(long, default_value_t = 256)]
    pub script_bytes: usize,
    /// `cpu_request` (and `cpu_limit`) of every request, e.g. `500m`; omitted, the coordinator
    /// reserves its language default.
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<String>,
    /// `memory_request` (and `memory_limit`) of every request, e.g. `256Mi`; omitted, the
    /// coordinator reserves its language default.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<String>,
    /// `timeout_seconds` of every request.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
    /// Seed of the sequence: the same seed gives the same ids, users, priorities and languages.
    /// Random (and printed in the summary) when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Topic to publish to; default the config's topic of `execution_requested` (layout and
    /// prefix applied).
    #[arg(long)]
    pub topic: Option<String>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Sending stops when this is cancelled (the CLI cancels it on Ctrl-C / SIGTERM); sent
    /// requests are still awaited.
    #[arg(skip)]
    pub stop: CancellationToken,
}

impl Default for LoadgenOptions {
    /// The subcommand's defaults: one source of truth, the `#[arg]` attributes above.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            options: LoadgenOptions,
        }
        <Defaults as clap::Parser>::try_parse_from(["loadgen"])
            .map(|d| d.options)
            .expect("the loadgen defaults parse (checked by a unit test)")
    }
}

/// A weighted choice among values, written `name=weight,…` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix<T> {
    entries: Vec<(T, u32)>,
}

impl<T> Mix<T> {
    /// A mix of these values and weights; `None` when empty or every weight is zero.
    pub fn new(entries: Vec<(T, u32)>) -> Option<Self> {
        entries
            .iter()
            .any(|(_, w)| *w > 0)
            .then_some(Mix { entries })
    }

    /// The values and their weights, as given.
    pub fn entries(&self) -> &[(T, u32)] {
        &self.entries
    }

    fn parse_with(
        text: &str,
        what: &str,
        parse_name: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Self, String>
    where
        T: PartialEq + fmt::Debug,
    {
        let mut entries: Vec<(T, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected {what}=WEIGHT"))?;
            let value = parse_name(name.trim())?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            if entries.iter().any(|(v, _)| *v == value) {
                return Err(format!("{what} {:?} is given twice", name.trim()));
            }
            entries.push((value, weight));
        }
        Mix::new(entries).ok_or_else(|| format!("{text:?}: at least one weight must be above 0"))
    }
}

impl FromStr for Mix<Priority> {
    type Err = String;

    /// `critical=1,high=2,normal=5,low=1,background=1`; levels by name or wire value.
    fn from_str(text: &str) -> Result<Self, String> {
        Mix::parse_with(text, "PRIORITY", |name| {
            Priority::ALL
                .into_iter()
                .find(|p| p.name().eq_ignore_ascii_case(name) || p.value().to_string() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown priority {name:?}: expected critical, high, normal, low, \
                         background or 0, 1, 5, 8, 10"
                    )
                })
        })
    }
}

impl FromStr for Mix<String> {
    type Err = String;

    /// `python=5,go=2,java=1`; any language name, lower-cased.
    fn from_str(text: &str) -> Result<Self, String> {
        Mix::parse_with(text, "LANGUAGE", |name| {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.'));
            if ok {
                Ok(name.to_ascii_lowercase())
            } else {
                Err(format!("invalid language name {name:?}"))
            }
        })
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!("{text:?}: expected requests per second, 0 or more")),
    }
}

fn parse_priority_format(text: &str) -> Result<PriorityFormat, String> {
    match text {
        "name" => Ok(PriorityFormat::Name),
        "number" => Ok(PriorityFormat::Number),
        _ => Err(format!("{text:?}: expected name or number")),
    }
}

fn parse_cpu(text: &str) -> Result<String, String> {
    quantity::parse_cpu_millis(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_memory(text: &str) -> Result<String, String> {
    quantity::parse_memory_mib(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// The image, command and file name a language runs with, as the Integr8sCode API sends them.
struct Runtime {
    version: &'static str,
    image: String,
    command: Vec<String>,
    filename: String,
    comment: &'static str,
    hello: &'static str,
}

fn runtime(language: &str) -> Runtime {
    let known = |version, image: &str, command: &[&str], filename: &str, comment, hello| Runtime {
        version,
        image: image.to_owned(),
        command: command.iter().map(|s| s.to_string()).collect(),
        filename: filename.to_owned(),
        comment,
        hello,
    };
    match language {
        "python" => known(
            "3.11",
            "python:3.11-slim",
            &["python", "/scripts/main.py"],
            "main.py",
            "#",
            "print(\"Hello from loadgen\")\n",
        ),
        "javascript" | "node" => known(
            "20",
            "node:20-alpine",
            &["node", "/scripts/main.js"],
            "main.js",
            "//",
            "console.log(\"Hello from loadgen\");\n",
        ),
        "go" => known(
            "1.22",
            "golang:1.22-alpine",
            &["go", "run", "/scripts/main.go"],
            "main.go",
            "//",
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"Hello from loadgen\") }\n",
        ),
        "java" => known(
            "21",
            "eclipse-temurin:21-jdk",
            &["java", "/scripts/Main.java"],
            "Main.java",
            "//",
            "class Main { public static void main(String[] a) { System.out.println(\"Hello from loadgen\"); } }\n",
        ),
        "rust" => known(
            "1.85",
            "rust:1.85-slim",
            &["sh", "-c", "rustc -O -o /tmp/main /scripts/main.rs && /tmp/main"],
            "main.rs",
            "//",
            "fn main() { println!(\"Hello from loadgen\"); }\n",
        ),
        "cpp" => known(
            "13",
            "gcc:13",
            &["sh", "-c", "g++ -O2 -o /tmp/main /scripts/main.cpp && /tmp/main"],
            "main.cpp",
            "//",
            "#include <cstdio>\nint main() { std::puts(\"Hello from loadgen\"); }\n",
        ),
        "r" => known(
            "4.4",
            "r-base:4.4.1",
            &["Rscript", "/scripts/main.R"],
            "main.R",
            "#",
            "cat(\"Hello from loadgen\\n\")\n",
        ),
        "ruby" => known(
            "3.3",
            "ruby:3.3-alpine",
            &["ruby", "/scripts/main.rb"],
            "main.rb",
            "#",
            "puts \"Hello from loadgen\"\n",
        ),
        "bash" => known(
            "5.2",
            "bash:5.2",
            &["bash", "/scripts/main.sh"],
            "main.sh",
            "#",
            "echo \"Hello from loadgen\"\n",
        ),
        other => Runtime {
            version: "latest",
            image: format!("{other}:latest"),
            command: vec![other.to_owned(), format!("/scripts/main.{other}")],
            filename: format!("main.{other}"),
            comment: "#",
            hello: "",
        },
    }
}

/// A script of exactly `bytes` bytes: the language's hello-world, then comment lines.
fn script(runtime: &Runtime, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 80);
    text.push_str(runtime.hello);
    while text.len() < bytes {
        text.push_str(runtime.comment);
        text.push_str(" padding written by execution-coordinator loadgen\n");
    }
    // Every character is ASCII, so any length is a character boundary.
    text.truncate(bytes);
    text
}

/// The execution id of request `index` of the sequence with `seed`: a UUIDv5, so replays with
/// the same seed publish the same ids.
pub fn execution_id(seed: u64, index: u64) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{seed}/{index}").as_bytes())
}

/// The user id of user `n` (0-based) of a run.
pub fn user_id(n: u32) -> String {
    format!("loadgen-user-{n:04}")
}

/// Generates the sequence of requests of a seed. Pure: no clock except the timestamp passed in.
#[derive(Debug, Clone)]
pub struct RequestGenerator {
    seed: u64,
    index: u64,
    rng: ChaCha8Rng,
    users: u32,
    priorities: Vec<Priority>,
    priority_index: WeightedIndex<u32>,
    priority_format: PriorityFormat,
    invalid_every: u64,
    languages: Vec<String>,
    language_index: WeightedIndex<u32>,
    script_bytes: usize,
    cpu: Option<String>,
    memory: Option<String>,
    timeout_seconds: u64,
}

impl RequestGenerator {
    /// The generator of `options`, drawing from `seed`.
    pub fn new(options: &LoadgenOptions, seed: u64) -> anyhow::Result<Self> {
        let (priorities, weights): (Vec<_>, Vec<_>) =
            options.priority_mix.entries().iter().cloned().unzip();
        let priority_index = WeightedIndex::new(weights).context("invalid --priority-mix")?;
        let (languages, weights): (Vec<_>, Vec<_>) =
            options.language_mix.entries().iter().cloned().unzip();
        let language_index = WeightedIndex::new(weights).context("invalid --language-mix")?;
        anyhow::ensure!(options.users >= 1, "--users must be at least 1");
        Ok(Self {
            seed,
            index: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            users: options.users,
            priorities,
            priority_index,
            priority_format: options.priority_format,
            invalid_every: options.invalid_every,
            languages,
            language_index,
            script_bytes: options.script_bytes,
            cpu: options.cpu.clone(),
            memory: options.memory.clone(),
            timeout_seconds: options.timeout_seconds,
        })
    }

    /// Index of the next request (0-based).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The next request of the sequence, stamped `timestamp`.
    pub fn next_request(&mut self, timestamp: String) -> ExecutionRequested {
        let index = self.index;
        self.index += 1;
        let user = self.rng.random_range(0..self.users);
        let priority = self.priorities[self.priority_index.sample(&mut self.rng)];
        let language = self.languages[self.language_index.sample(&mut self.rng)].clone();
        let id = execution_id(self.seed, index).to_string();
        let derived = |what: &str| {
            Uuid::new_v5(
                &ID_NAMESPACE,
                format!("{}/{index}/{what}", self.seed).as_bytes(),
            )
            .to_string()
        };
        let runtime = runtime(&language);
        let invalid = self.invalid_every != 0 && (index + 1) % self.invalid_every == 0;
        let priority = match (invalid, self.priority_format) {
            (false, format) => WirePriority::of(priority, format),
            (true, PriorityFormat::Name) => WirePriority::Name("urgent".to_owned()),
            (true, PriorityFormat::Number) => WirePriority::Number(3),
        };
        ExecutionRequested {
            event_id: derived("event"),
            event_type: EventType::ExecutionRequested,
            event_version: EVENT_VERSION.to_owned(),
            timestamp,
            aggregate_id: Some(id.clone()),
            metadata: EventMetadata {
                service_name: SERVICE_NAME.to_owned(),
                service_version: env!("CARGO_PKG_VERSION").to_owned(),
                correlation_id: derived("correlation"),
                user_id: Some(user_id(user)),
                ip_address: None,
                user_agent: Some(
                    concat!("execution-coordinator-loadgen/", env!("CARGO_PKG_VERSION")).to_owned(),
                ),
                environment: "test".to_owned(),
            },
            execution_id: id,
            script: script(&runtime, self.script_bytes),
            language_version: runtime.version.to_owned(),
            runtime_image: runtime.image,
            runtime_command: runtime.command,
            runtime_filename: runtime.filename,
            language,
            timeout_seconds: self.timeout_seconds,
            cpu_limit: self.cpu.clone(),
            memory_limit: self.memory.clone(),
            cpu_request: self.cpu.clone(),
            memory_request: self.memory.clone(),
            priority,
            gpu_request: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadgenSummary {
    /// The topic published to.
    pub topic: String,
    /// The seed of the sequence (the one given, or the one drawn).
    pub seed: u64,
    /// Requests handed to the producer.
    pub sent: u64,
    /// Requests the broker acknowledged.
    pub acked: u64,
    /// Requests that failed to be produced or delivered.
    pub errors: u64,
    /// The first error, for the summary.
    pub first_error: Option<String>,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Requests sent per priority level, in dispatch order.
    pub by_priority: [u64; 5],
    /// Requests sent per language.
    pub by_language: BTreeMap<String, u64>,
}

impl fmt::Display for LoadgenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        };
        writeln!(
            f,
            "loadgen: {} execution_requested sent to {} in {secs:.2}s ({rate:.0}/s): {} acked, {} errors (seed {})",
            self.sent, self.topic, self.acked, self.errors, self.seed
        )?;
        let priorities: Vec<String> = Priority::ALL
            .iter()
            .map(|p| format!("{} {}", p.name(), self.by_priority[p.index()]))
            .collect();
        let languages: Vec<String> = self
            .by_language
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        write!(
            f,
            "  priorities: {}; languages: {}",
            priorities.join(", "),
            languages.join(", ")
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "\n  first error: {e}")?;
        }
        Ok(())
    }
}

/// Counts of a run in progress, and the progress line.
struct Counters {
    sent: u64,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    last_report: (Instant, u64),
}

impl Counters {
    fn error(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn delivered(
        &mut self,
        result: Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
    ) {
        match result {
            Ok(Ok(_)) => self.acked += 1,
            Ok(Err((e, _))) => self.error(e),
            Err(_) => self.error("the producer dropped the delivery report"),
        }
    }

    fn report(&mut self, in_flight: usize) {
        let now = Instant::now();
        let (then, sent_then) = self.last_report;
        let secs = now.duration_since(then).as_secs_f64().max(1e-3);
        let rate = (self.sent - sent_then) as f64 / secs;
        eprintln!(
            "loadgen: {} sent ({rate:.0}/s), {} acked, {} errors, {in_flight} in flight",
            self.sent, self.acked, self.errors
        );
        self.last_report = (now, self.sent);
    }
}

/// Fails at once, naming the topic, when the broker cannot be reached or lacks the topic,
/// rather than letting every request time out.
async fn check_topic(
    producer: &FutureProducer,
    topic: &str,
    bootstrap: &str,
) -> anyhow::Result<()> {
    let (client, name) = (producer.clone(), topic.to_owned());
    let metadata = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&name), METADATA_TIMEOUT)
    })
    .await
    .context("fetching topic metadata")?
    .with_context(|| format!("fetching the metadata of {topic} from {bootstrap}"))?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        Some(t) => anyhow::bail!(
            "topic {topic} is not available on {bootstrap} ({}): start the coordinator first \
             (it creates its topics) or create it",
            t.error()
                .map(|e| RDKafkaErrorCode::from(e).to_string())
                .unwrap_or_else(|| "no partitions".to_owned())
        ),
        None => anyhow::bail!("{bootstrap} returned no metadata for topic {topic}"),
    }
}

/// Publishes the requests of `opts` to the input topic of `kafka` on the broker at `bootstrap`
/// with the idempotent producer, until `opts.count` are sent or `opts.stop` is cancelled, then
/// waits for every acknowledgement. Paced with tokio's timer: request `i` is due at
/// `start + i / rate`.
pub async fn run_loadgen(
    opts: LoadgenOptions,
    kafka: &KafkaConfig,
    bootstrap: &str,
) -> anyhow::Result<LoadgenSummary> {
    let seed = opts.seed.unwrap_or_else(rand::random);
    let mut generator = RequestGenerator::new(&opts, seed)?;
    let topic = match &opts.topic {
        Some(topic) => topic.clone(),
        None => kafka.topic_of(EventType::ExecutionRequested),
    };
    // No statistics: they are for the daemon's metrics, and the default context logs them.
    let producer: FutureProducer = producer_config(kafka, bootstrap)
        .set("statistics.interval.ms", "0")
        .create()
        .context("creating the Kafka producer")?;
    check_topic(&producer, &topic, bootstrap).await?;

    let start = Instant::now();
    let mut counters = Counters {
        sent: 0,
        acked: 0,
        errors: 0,
        first_error: None,
        last_report: (start, 0),
    };
    let mut by_priority = [0u64; 5];
    let mut by_language: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_flight: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    let mut progress = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    progress.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let period = (opts.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / opts.rate));

    while opts.count == 0 || generator.index() < opts.count {
        let due = period.map(|p| start + p.mul_f64(generator.index() as f64));
        let pace = async {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
        };
        tokio::select! {
            biased;
            _ = opts.stop.cancelled() => break,
            _ = progress.tick() => {
                if !opts.quiet {
                    counters.report(in_flight.len());
                }
                continue;
            }
            Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                counters.delivered(result);
                continue;
            }
            _ = pace, if in_flight.len() < MAX_IN_FLIGHT => {}
        }

        let request = generator.next_request(timestamp());
        let payload = request.to_json_bytes();
        let mut record = FutureRecord::to(&topic)
            .key(request.execution_id.as_bytes())
            .payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    counters.sent += 1;
                    if let Ok(p) = request.priority_level() {
                        by_priority[p.index()] += 1;
                    }
                    *by_language.entry(request.language.clone()).or_default() += 1;
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if !in_flight.is_empty() =>
                {
                    // The producer's queue is full: wait for an acknowledgement, then retry.
                    record = back;
                    if let Some(result) = in_flight.next().await {
                        counters.delivered(result);
                    }
                }
                Err((e, _)) => {
                    counters.error(e);
                    break;
                }
            }
        }
    }

    // Every message gets a delivery report within `message.timeout.ms`, so this ends.
    while !in_flight.is_empty() {
        tokio::select! {
            biased;
            _ = progress.tick() => {
                if !opts.quiet {
                    counters.report(in_flight.len());
                }
            }
            Some(result) = in_flight.next() => counters.delivered(result),
        }
    }
    let _ = producer.flush(kafka.delivery_timeout);
    Ok(LoadgenSummary {
        topic,
        seed,
        sent: counters.sent,
        acked: counters.acked,
        errors: counters.errors,
        first_error: counters.first_error,
        elapsed: start.elapsed(),
        by_priority,
        by_language,
    })
}

#[cfg(test)]
mod tests {
    use coordinator_core::events::{decode_input, InputEvent};

    use super::*;

    fn generator(seed: u64) -> RequestGenerator {
        RequestGenerator::new(&LoadgenOptions::default(), seed).unwrap()
    }

    #[test]
    fn defaults_parse() {
        let o = LoadgenOptions::default();
        assert_eq!(o.rate, 100.0);
        assert_eq!(o.count, 0);
        assert_eq!(o.users, 10);
        assert_eq!(o.priority_mix.entries().len(), 5);
        assert_eq!(o.priority_format, PriorityFormat::Name);
        assert_eq!(o.invalid_every, 0);
        assert_eq!(o.script_bytes, 256);
        assert_eq!(o.cpu, None);
        assert_eq!(o.seed, None);
    }

    #[test]
    fn mixes_parse_names_values_and_reject_nonsense() {
        let m: Mix<Priority> = "critical=1, 5=3,background=0".parse().unwrap();
        assert_eq!(
            m.entries(),
            &[
                (Priority::Critical, 1),
                (Priority::Normal, 3),
                (Priority::Background, 0)
            ]
        );
        for bad in ["urgent=1", "high", "high=x", "high=1,1=2", "low=0", ""] {
            assert!(bad.parse::<Mix<Priority>>().is_err(), "{bad:?}");
        }
        let l: Mix<String> = "Python=5,go=2".parse().unwrap();
        assert_eq!(
            l.entries(),
            &[("python".to_owned(), 5), ("go".to_owned(), 2)]
        );
        assert!("py thon=1".parse::<Mix<String>>().is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b, mut c) = (generator(7), generator(7), generator(8));
        let mut differs = false;
        for _ in 0..200 {
            let (x, y, z) = (
                a.next_request("t".into()),
                b.next_request("t".into()),
                c.next_request("t".into()),
            );
            assert_eq!(x, y);
            differs |= x.execution_id != z.execution_id;
        }
        assert!(differs);
        assert_eq!(
            generator(7).next_request("t".into()).execution_id,
            execution_id(7, 0).to_string()
        );
    }

    #[test]
    fn invalid_every_and_the_number_format_change_only_the_priority() {
        for (format, invalid) in [
            (PriorityFormat::Name, WirePriority::Name("urgent".into())),
            (PriorityFormat::Number, WirePriority::Number(3)),
        ] {
            let options = LoadgenOptions {
                priority_format: format,
                invalid_every: 3,
                ..LoadgenOptions::default()
            };
            let (mut plain, mut varied) =
                (generator(5), RequestGenerator::new(&options, 5).unwrap());
            for index in 0..30 {
                let (mut expected, got) = (
                    plain.next_request("t".into()),
                    varied.next_request("t".into()),
                );
                expected.priority = if index % 3 == 2 {
                    invalid.clone()
                } else {
                    WirePriority::of(expected.priority_level().unwrap(), format)
                };
                assert_eq!(got, expected, "request {index}");
                assert_eq!(got.priority_level().is_err(), index % 3 == 2);
            }
        }
    }

    #[test]
    fn requests_decode_and_follow_the_mix() {
        let options = LoadgenOptions {
            priority_mix: "critical=1,normal=3".parse().unwrap(),
            language_mix: "go=1".parse().unwrap(),
            users: 3,
            cpu: Some("250m".into()),
            memory: Some("64Mi".into()),
            script_bytes: 1000,
            ..LoadgenOptions::default()
        };
        let mut g = RequestGenerator::new(&options, 1).unwrap();
        let mut critical = 0;
        let mut users = std::collections::BTreeSet::new();
        for _ in 0..4000 {
            let r = g.next_request(timestamp());
            let InputEvent::Requested(d) = decode_input(&r.to_json_bytes(), 1 << 20).unwrap()
            else {
                panic!("not a request")
            };
            assert_eq!(d, r);
            assert_eq!(d.script.len(), 1000);
            assert_eq!(d.language, "go");
            assert_eq!(d.cpu_request_millis(), Ok(Some(250)));
            assert_eq!(d.memory_request_mib(), Ok(Some(64)));
            match d.priority_level().unwrap() {
                Priority::Critical => critical += 1,
                Priority::Normal => {}
                other => panic!("unexpected priority {other}"),
            }
            users.insert(d.metadata.user_id.unwrap());
        }
        // 1 in 4 expected: 1000 ± well over 5 standard deviations (27).
        assert!((850..1150).contains(&critical), "{critical}");
        assert_eq!(users.len(), 3);
    }

    #[test]
    fn scripts_have_the_exact_size_in_every_language() {
        for language in [
            "python",
            "javascript",
            "go",
            "java",
            "rust",
            "cpp",
            "r",
            "ruby",
            "bash",
            "cobol",
        ] {
            let rt = runtime(language);
            for bytes in [0, 10, 256, 4096] {
                assert_eq!(script(&rt, bytes).len(), bytes, "{language}");
            }
        }
        assert!(script(&runtime("python"), 4096).starts_with("print("));
    }
}
