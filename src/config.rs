//! The daemon's configuration: every knob with its default, parsed from TOML plus
//! `EXECUTION_COORDINATOR__SECTION__KEY` environment overrides, and validated all at once.
//!
//! Reading the file and the process environment is the binary's job; this module only turns text
//! and an iterator of `(name, value)` pairs into a [`Config`] or a list of every problem found
//! ([`ConfigErrors`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::events::EventType;
use crate::planner::Policy;
use crate::priority::PriorityFormat;
use crate::redact::{holds_secret_value, Redactor};
use crate::Priority;

/// Environment variables starting with this prefix override the file:
/// `EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE=500` sets `[queue] max_queue_size`.
pub const ENV_PREFIX: &str = "EXECUTION_COORDINATOR__";

/// What [`KafkaConfig::redacted_properties`] and [`Config::to_toml_string`] print instead of a
/// secret.
pub const REDACTED: &str = "<redacted>";

/// What the producer may write beyond `max_message_bytes` by default: room for the
/// coordinator's envelope around what it copies from an input (see [`OUTPUT_ENVELOPE`]).
pub const OUTPUT_HEADROOM: usize = 16 * 1024;

/// The most an output adds to the input it copies: its own envelope, saga id, metadata,
/// state fields and headers (well under 2 KiB; the rest is margin). Requests whose outputs
/// would not fit the writable size are refused up front.
pub const OUTPUT_ENVELOPE: usize = 4 * 1024;

/// Durations above this overflow timers (`Instant + Duration` panics), so they are refused.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The whole configuration, one field per TOML section.
///
/// Build it with [`Config::from_toml_str`], which applies environment overrides and runs
/// [`Config::validate`]; deserializing it directly skips both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[queue]`: admission limits, stale expiry and duplicate detection.
    pub queue: QueueConfig,
    /// `[scheduler]`: how often and how many executions are dispatched at once.
    pub scheduler: SchedulerConfig,
    /// `[resources]`: the CPU/memory/GPU pool, reserves, caps and language defaults.
    pub resources: ResourcesConfig,
    /// `[kafka]`: brokers, consumer group, topics and librdkafka pass-through.
    pub kafka: KafkaConfig,
    /// `[daemon]`: logging, stats stream, shutdown and metrics listener.
    pub daemon: DaemonConfig,
    /// `[wire]`: how the coordinator writes the fields whose form changed between
    /// Integr8sCode releases.
    pub wire: WireConfig,
}

/// `[wire]`: the form of what the coordinator writes. What it reads is accepted in every form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireConfig {
    /// How `priority` is written in `execution_accepted` and `create_pod_command`: "name"
    /// (`"normal"`, what Integr8sCode's services validate since 2026-01-29) or "number" (`5`,
    /// older releases). Requests are read in either form. Default "name".
    pub priority_format: PriorityFormat,
}

/// Which topic each event type travels on (`kafka.topic_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicLayout {
    /// The topic is named after the event type (`execution_requested`, `execution_accepted`,
    /// `create_pod_command`, …): Integr8sCode since 2026-02-20, its last release with a
    /// coordinator included.
    #[default]
    PerEventType,
    /// The older layout: every event on `execution_events`, commands on `saga_commands`.
    Shared,
}

/// `[kafka.topics]`: the topic of an event type where the layout's name will not do; unset
/// entries take the layout's. `topic_prefix` applies to these too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_requested: Option<String>,
    /// Consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_cancelled: Option<String>,
    /// Consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_completed: Option<String>,
    /// Consumed (from the worker) and produced (rejections, expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_failed: Option<String>,
    /// Consumed (from the pod monitor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_timeout: Option<String>,
    /// Produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_accepted: Option<String>,
    /// Produced, for the Kubernetes worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_pod_command: Option<String>,
}

impl TopicNames {
    /// The override for `event_type`, if set.
    pub fn get(&self, event_type: EventType) -> Option<&str> {
        match event_type {
            EventType::ExecutionRequested => self.execution_requested.as_deref(),
            EventType::ExecutionCancelled => self.execution_cancelled.as_deref(),
            EventType::ExecutionCompleted => self.execution_completed.as_deref(),
            EventType::ExecutionFailed => self.execution_failed.as_deref(),
            EventType::ExecutionTimeout => self.execution_timeout.as_deref(),
            EventType::ExecutionAccepted => self.execution_accepted.as_deref(),
            EventType::CreatePodCommand => self.create_pod_command.as_deref(),
        }
    }
}

/// `[queue]`: what is admitted and for how long it may wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queued executions at most; a request arriving at a full queue is rejected
    /// (`resource_limit`, "queue is full"). Default 10000.
    pub max_queue_size: usize,
    /// Queued executions at most per `metadata.user_id` (missing → "anonymous"), so one user
    /// cannot fill the queue. Default 100.
    pub max_executions_per_user: usize,
    /// An execution queued longer than this is removed and reported as `execution_failed`
    /// (`timeout`) instead of being dispatched late. Default 1h.
    #[serde(with = "humantime_serde")]
    pub stale_timeout: Duration,
    /// How often the stale sweeper runs; expiry can be late by up to this much. Default 10s.
    #[serde(with = "humantime_serde")]
    pub stale_sweep_interval: Duration,
    /// When the pool has no room, requeue the execution one priority level lower (never below
    /// BACKGROUND) so others get a chance; `false` keeps its level. Default true.
    pub requeue_demotes: bool,
    /// How many finished execution ids are remembered so a redelivered request is recognised as
    /// a duplicate (bounded memory, oldest forgotten first). Default 100000.
    pub dedup_capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_queue_size: 10_000,
            max_executions_per_user: 100,
            stale_timeout: Duration::from_secs(3600),
            stale_sweep_interval: Duration::from_secs(10),
            requeue_demotes: true,
            dedup_capacity: 100_000,
        }
    }
}

/// `[scheduler]`: the dispatch loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Executions being scheduled at once (dequeued, allocating, command not yet handed to the
    /// producer); one pass takes up to this many in dispatch order. Default 10.
    pub max_concurrent_scheduling: usize,
    /// Period of the scheduler's timer; arrivals and releases also wake it at once, so this only
    /// bounds how late a missed wake-up is noticed. Default 500ms.
    #[serde(with = "humantime_serde")]
    pub scheduling_interval: Duration,
    /// What a pass does with an execution that does not fit: `demote` (one level lower, the
    /// pass ends), `strict` (it keeps its place and blocks the executions behind it) or
    /// `backfill` (it keeps its place with a reservation; executions behind it start when they
    /// do not delay the reservation). Default `backfill`, the policy that measured best on the
    /// replays (README, "Scheduling policy").
    pub policy: Policy,
    /// Under `backfill`: how many executions a pass looks at, in dispatch order, for one that
    /// can start without delaying a reservation. Default 100.
    pub backfill_depth: usize,
    /// Under `backfill`: how many executions that do not fit get a reservation in one pass,
    /// in order, each planned around the earlier ones. 1 is EASY backfilling; larger values
    /// protect more of the queue and backfill less. Default 1.
    pub reservations: usize,
    /// Under `backfill`: how long an execution of each level may wait. Of the executions that
    /// have waited theirs, the one whose deadline is earliest goes to the front of the queue
    /// (and so to the reservation). Each must be below `queue.stale_timeout`.
    pub max_wait: MaxWait,
    /// Under `backfill`: the half-life of the usage that orders users within a level (fair
    /// share). Each start charges its user cpu cores × timeout seconds; the charge halves
    /// every half-life. `0s` turns fair share off: FIFO within a level. Default 0s.
    #[serde(with = "humantime_serde")]
    pub fair_share_half_life: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_scheduling: 10,
            scheduling_interval: Duration::from_millis(500),
            policy: Policy::Backfill,
            backfill_depth: 100,
            reservations: 1,
            max_wait: MaxWait::default(),
            fair_share_half_life: Duration::ZERO,
        }
    }
}

/// `[scheduler.max_wait]`: the wait of each level after which, under `backfill`, its
/// executions are promoted to the front of the queue, earliest deadline first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxWait {
    /// CRITICAL. Default 2m.
    #[serde(with = "humantime_serde")]
    pub critical: Duration,
    /// HIGH. Default 5m.
    #[serde(with = "humantime_serde")]
    pub high: Duration,
    /// NORMAL. Default 15m.
    #[serde(with = "humantime_serde")]
    pub normal: Duration,
    /// LOW. Default 30m.
    #[serde(with = "humantime_serde")]
    pub low: Duration,
    /// BACKGROUND. Default 45m.
    #[serde(with = "humantime_serde")]
    pub background: Duration,
}

impl Default for MaxWait {
    fn default() -> Self {
        Self {
            critical: Duration::from_secs(120),
            high: Duration::from_secs(300),
            normal: Duration::from_secs(900),
            low: Duration::from_secs(1800),
            background: Duration::from_secs(2700),
        }
    }
}

impl MaxWait {
    /// These waits with every level not in `given` (left at its default) lowered to half of
    /// `stale_timeout` when it is not below it: a shorter stale timeout alone never makes the
    /// defaults invalid, while a `max_wait` set by hand is validated as written.
    pub fn below_stale_timeout(mut self, stale_timeout: Duration, given: &[Priority]) -> Self {
        for level in Priority::ALL {
            let wait = match level {
                Priority::Critical => &mut self.critical,
                Priority::High => &mut self.high,
                Priority::Normal => &mut self.normal,
                Priority::Low => &mut self.low,
                Priority::Background => &mut self.background,
            };
            if !given.contains(&level) && *wait >= stale_timeout {
                *wait = stale_timeout / 2;
            }
        }
        self
    }

    /// The same wait for every level.
    pub fn all(wait: Duration) -> Self {
        Self {
            critical: wait,
            high: wait,
            normal: wait,
            low: wait,
            background: wait,
        }
    }

    /// The wait of `level`.
    pub fn of(&self, level: Priority) -> Duration {
        match level {
            Priority::Critical => self.critical,
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
            Priority::Background => self.background,
        }
    }
}

/// `[resources]`: the pool executions are admitted into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesConfig {
    /// CPU cores of the cluster the executions run on, before overcommit. Default 32.0.
    pub total_cpu_cores: f64,
    /// Memory of that cluster in MiB, before overcommit. Default 65536.
    pub total_memory_mb: u64,
    /// GPUs of that cluster, before overcommit. Default 0.
    pub total_gpu_count: u64,
    /// Every total is multiplied by this: most scripts use less than they request. At least 1.0
    /// (to hold capacity back, lower the totals or raise the reserves). Default 1.2.
    pub overcommit_factor: f64,
    /// CPU cores kept free for the platform itself; the reserve is the smaller of this and 10% of
    /// the overcommitted pool. Default 2.0.
    pub min_available_cpu_cores: f64,
    /// Memory in MiB kept free, likewise capped at 10% of the pool. Default 4096.
    pub min_available_memory_mb: u64,
    /// Most CPU cores one execution gets; larger requests are clamped to this. Default 4.0.
    pub max_cpu_per_execution: f64,
    /// Most memory in MiB one execution gets; larger requests are clamped. Default 8192.
    pub max_memory_per_execution_mb: u64,
    /// Most GPUs one execution gets; 0 means executions never get a GPU. Default 1.
    pub max_gpu_per_execution: u64,
    /// CPU cores reserved for a request that names none and whose language has no entry in
    /// `language_defaults`. Default 0.5.
    pub default_cpu_cores: f64,
    /// Memory in MiB reserved in that case. Default 512.
    pub default_memory_mb: u64,
    /// Request per language (lower-case name) when the event names no `cpu_request` /
    /// `memory_request`. Entries given in the file override the built-in entry of the same name
    /// field by field and the other built-in entries are kept; a language without a built-in entry
    /// must give both fields. Default python 0.5/512, javascript 0.5/512, go 0.25/256,
    /// rust 0.5/512, java 1.0/1024, cpp 0.5/512, r 1.0/2048.
    #[serde(deserialize_with = "merge_language_defaults")]
    pub language_defaults: BTreeMap<String, LanguageDefault>,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        Self {
            total_cpu_cores: 32.0,
            total_memory_mb: 65_536,
            total_gpu_count: 0,
            overcommit_factor: 1.2,
            min_available_cpu_cores: 2.0,
            min_available_memory_mb: 4_096,
            max_cpu_per_execution: 4.0,
            max_memory_per_execution_mb: 8_192,
            max_gpu_per_execution: 1,
            default_cpu_cores: 0.5,
            default_memory_mb: 512,
            language_defaults: builtin_language_defaults(),
        }
    }
}

/// The resources one execution of a language gets when its event names none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageDefault {
    /// CPU cores (fractions allowed, e.g. 0.25 = 250m).
    pub cpu_cores: f64,
    /// Memory in MiB.
    pub memory_mb: u64,
}

/// The language defaults table.
fn builtin_language_defaults() -> BTreeMap<String, LanguageDefault> {
    [
        ("python", 0.5, 512),
        ("javascript", 0.5, 512),
        ("go", 0.25, 256),
        ("rust", 0.5, 512),
        ("java", 1.0, 1024),
        ("cpp", 0.5, 512),
        ("r", 1.0, 2048),
    ]
    .into_iter()
    .map(|(name, cpu_cores, memory_mb)| {
        (
            name.to_owned(),
            LanguageDefault {
                cpu_cores,
                memory_mb,
            },
        )
    })
    .collect()
}

/// One `language_defaults` entry as written by the user: either field may be left to the built-in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LanguageDefaultOverride {
    cpu_cores: Option<f64>,
    memory_mb: Option<u64>,
}

/// Merges the user's `language_defaults` over the built-in table (names lower-cased).
fn merge_language_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, LanguageDefault>, D::Error> {
    use serde::de::Error as _;
    let given = BTreeMap::<String, LanguageDefaultOverride>::deserialize(deserializer)?;
    let mut merged = builtin_language_defaults();
    let mut seen = std::collections::BTreeSet::new();
    for (name, entry) in given {
        let key = name.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(D::Error::custom("a language name must not be empty"));
        }
        if !seen.insert(key.clone()) {
            return Err(D::Error::custom(format!(
                "language `{key}` is given twice (names are case-insensitive)"
            )));
        }
        let builtin = merged.get(&key).copied();
        let cpu_cores = entry.cpu_cores.or(builtin.map(|b| b.cpu_cores));
        let memory_mb = entry.memory_mb.or(builtin.map(|b| b.memory_mb));
        match (cpu_cores, memory_mb) {
            (Some(cpu_cores), Some(memory_mb)) => {
                merged.insert(
                    key,
                    LanguageDefault {
                        cpu_cores,
                        memory_mb,
                    },
                );
            }
            (None, _) => {
                return Err(D::Error::custom(format!(
                    "language `{key}` has no built-in default, so it needs `cpu_cores`"
                )))
            }
            (_, None) => {
                return Err(D::Error::custom(format!(
                    "language `{key}` has no built-in default, so it needs `memory_mb`"
                )))
            }
        }
    }
    Ok(merged)
}

/// `[kafka]`: where events come from and go to.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of the brokers. Unset: the daemon starts an embedded
    /// broker (librdkafka's mock cluster) and prints its address. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// Consumer group; every coordinator instance of one deployment shares it.
    /// Default "execution-coordinator".
    pub group_id: String,
    /// Prepended to every topic name below (e.g. "staging."), so deployments can share a cluster.
    /// Default "" (none).
    pub topic_prefix: String,
    /// Which topic each event type travels on: "per_event_type" (the topic is the event type,
    /// Integr8sCode since 2026-02-20) or "shared" (`execution_events` and `saga_commands`).
    /// Default "per_event_type".
    pub topic_layout: TopicLayout,
    /// The topic of an event type, where the layout's name will not do. Default: none.
    pub topics: TopicNames,
    /// Where undecodable or oversize input goes, with headers naming its origin and the error.
    /// Must not be an input topic. Default "dead_letter_queue".
    pub dlq_topic: String,
    /// Compacted topic, keyed by execution id, where the coordinator records each execution's
    /// state (queued, allocated, gone) and from which a restarted coordinator rebuilds its
    /// queue and pool. Default "execution_coordinator_state".
    pub state_topic: String,
    /// One-partition topic whose assignment in the group "<group_id>-owner" says which instance
    /// of a deployment owns the queue and pool; the others are hot standbys. Nothing is written
    /// to it. Default "execution_coordinator_owner".
    pub ownership_topic: String,
    /// Create missing topics at startup with `topic_partitions` partitions; turn off where the
    /// cluster forbids it and topics are provisioned separately. Default true.
    pub create_topics: bool,
    /// Partitions of topics the daemon creates. Default 3.
    pub topic_partitions: i32,
    /// How often stored consumer offsets are committed (also on shutdown and revocation).
    /// Default 5s.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Larger input messages go to the DLQ undecoded (a truncated copy), protecting memory.
    /// The producer writes messages of up to this plus 16 KiB (librdkafka `message.max.bytes`,
    /// unless `[kafka.properties]` sets it) and the topics the daemon creates take as much
    /// (`max.message.bytes`), so what it admits can always be passed on. Default 1048576 (1 MiB).
    pub max_message_bytes: usize,
    /// How long the producer keeps retrying a message before reporting it failed
    /// (librdkafka `message.timeout.ms`). Default 30s.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Exactly-once: every output (events, commands, state records, DLQ copies) and the input
    /// offsets they answer are written in Kafka transactions, so `read_committed` readers never
    /// see a duplicate or a loss across crashes; a restarted or zombie instance is fenced by the
    /// `transactional_id`. Costs up to `transaction_interval` of latency. Default true; false
    /// gives at-least-once (idempotent producer, offsets committed after acknowledgement).
    pub exactly_once: bool,
    /// The stable `transactional.id` with `exactly_once`; "" means "<group_id>-coordinator".
    /// Every instance that may take over from another must use the same one. Default "".
    pub transactional_id: String,
    /// With `exactly_once`, how often the open transaction is committed. Default 10ms.
    #[serde(with = "humantime_serde")]
    pub transaction_interval: Duration,
    /// With `exactly_once`, also commit as soon as a scheduling pass's commands are in the open
    /// transaction and nothing else waits for the egress, instead of at the next
    /// `transaction_interval`: a command becomes visible one commit round trip after it is
    /// handed, at the cost of more (smaller) transactions, each writing commit markers to every
    /// partition it touched. Under load the interval still bounds how long one stays open.
    /// Default true.
    pub transaction_commit_early: bool,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id takes
    /// its partitions back at once instead of waiting for the session timeout. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    /// Extra librdkafka properties passed through to the consumer and producer, e.g.
    /// `"security.protocol" = "SASL_SSL"`. Values of secret keys (password, secret,
    /// sasl.oauthbearer, ssl.key) are never logged. Settings the coordinator manages itself
    /// (`bootstrap.servers`, `group.id`, `enable.auto.commit`, `enable.auto.offset.store`,
    /// `enable.idempotence`, `acks`, `message.timeout.ms`, …) are refused. Default empty.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: None,
            group_id: "execution-coordinator".to_owned(),
            topic_prefix: String::new(),
            topic_layout: TopicLayout::default(),
            topics: TopicNames::default(),
            dlq_topic: "dead_letter_queue".to_owned(),
            state_topic: "execution_coordinator_state".to_owned(),
            ownership_topic: "execution_coordinator_owner".to_owned(),
            create_topics: true,
            topic_partitions: 3,
            commit_interval: Duration::from_secs(5),
            max_message_bytes: 1_048_576,
            delivery_timeout: Duration::from_secs(30),
            exactly_once: true,
            transactional_id: String::new(),
            transaction_interval: Duration::from_millis(10),
            transaction_commit_early: true,
            group_instance_id: None,
            properties: BTreeMap::new(),
        }
    }
}

/// librdkafka properties the coordinator sets itself, with where to configure them instead.
/// Overriding them would break at-least-once delivery or contradict another knob.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    (
        "metadata.broker.list",
        "set kafka.bootstrap_servers instead",
    ),
    ("group.id", "set kafka.group_id instead"),
    (
        "enable.auto.commit",
        "offsets are committed by the coordinator after delivery (at-least-once)",
    ),
    (
        "enable.auto.offset.store",
        "offsets are stored by the coordinator after delivery (at-least-once)",
    ),
    (
        "enable.idempotence",
        "the producer is always idempotent, so redelivery cannot duplicate commands",
    ),
    ("acks", "the idempotent producer requires acks=all"),
    (
        "request.required.acks",
        "the idempotent producer requires acks=all",
    ),
    ("message.timeout.ms", "set kafka.delivery_timeout instead"),
    ("delivery.timeout.ms", "set kafka.delivery_timeout instead"),
    (
        "transactional.id",
        "set kafka.transactional_id (with kafka.exactly_once) instead",
    ),
    ("group.instance.id", "set kafka.group_instance_id instead"),
    (
        "isolation.level",
        "the coordinator always reads read_committed",
    ),
];

/// True for librdkafka property names whose values must never be printed.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.oauthbearer", "ssl.key"]
        .iter()
        .any(|needle| key.contains(needle))
}

impl KafkaConfig {
    /// `name` with `topic_prefix` prepended.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{}", self.topic_prefix, name)
    }

    /// The topic of `event_type` before the prefix: its `[kafka.topics]` entry, else the
    /// layout's name.
    pub fn topic_name(&self, event_type: EventType) -> &str {
        if let Some(name) = self.topics.get(event_type) {
            return name;
        }
        match (self.topic_layout, event_type) {
            (TopicLayout::PerEventType, t) => t.as_str(),
            (TopicLayout::Shared, EventType::CreatePodCommand) => "saga_commands",
            (TopicLayout::Shared, _) => "execution_events",
        }
    }

    /// The topic of `event_type` with the prefix: where it is consumed from or published to.
    pub fn topic_of(&self, event_type: EventType) -> String {
        self.topic(self.topic_name(event_type))
    }

    /// The topics consumed (those of the consumed event types), prefixed, sorted and without
    /// duplicates. Any consumed event type is handled on any of them.
    pub fn input_topics_full(&self) -> Vec<String> {
        let mut topics: Vec<String> = EventType::CONSUMED
            .into_iter()
            .map(|t| self.topic_of(t))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The dead-letter topic with the prefix.
    pub fn dlq_topic_full(&self) -> String {
        self.topic(&self.dlq_topic)
    }

    /// The `transactional.id` in force: `transactional_id`, or "<group_id>-coordinator".
    pub fn effective_transactional_id(&self) -> String {
        if self.transactional_id.is_empty() {
            format!("{}-coordinator", self.group_id)
        } else {
            self.transactional_id.clone()
        }
    }

    /// The state topic with the prefix.
    pub fn state_topic_full(&self) -> String {
        self.topic(&self.state_topic)
    }

    /// The ownership topic with the prefix.
    pub fn ownership_topic_full(&self) -> String {
        self.topic(&self.ownership_topic)
    }

    /// Every event topic the daemon reads or writes, prefixed, sorted and without duplicates.
    /// The state topic is not among them: it is created apart, with log compaction.
    pub fn all_topics_full(&self) -> Vec<String> {
        let mut all = self.input_topics_full();
        all.extend(EventType::PRODUCED.into_iter().map(|t| self.topic_of(t)));
        all.push(self.dlq_topic_full());
        all.sort();
        all.dedup();
        all
    }

    /// True when no brokers are configured and the embedded mock cluster is to be started.
    pub fn uses_embedded_broker(&self) -> bool {
        self.bootstrap_servers.is_none()
    }

    /// The largest message the producer writes (librdkafka `message.max.bytes`): the
    /// `[kafka.properties]` value when set, else `max_message_bytes` + [`OUTPUT_HEADROOM`], so
    /// the outputs of every input it admits fit.
    pub fn producer_message_max_bytes(&self) -> usize {
        self.properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(self.max_message_bytes.saturating_add(OUTPUT_HEADROOM))
    }

    /// `properties` with the value of every secret key (see [`is_secret_property`]) replaced by
    /// `<redacted>`: safe to log.
    pub fn redacted_properties(&self) -> BTreeMap<String, String> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    REDACTED.to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// Hand-written so that `{:?}` of a config never prints a secret.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("topic_layout", &self.topic_layout)
            .field("topics", &self.topics)
            .field("dlq_topic", &self.dlq_topic)
            .field("state_topic", &self.state_topic)
            .field("ownership_topic", &self.ownership_topic)
            .field("create_topics", &self.create_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("commit_interval", &self.commit_interval)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("exactly_once", &self.exactly_once)
            .field("transactional_id", &self.transactional_id)
            .field("transaction_interval", &self.transaction_interval)
            .field("transaction_commit_early", &self.transaction_commit_early)
            .field("group_instance_id", &self.group_instance_id)
            .field("properties", &self.redacted_properties())
            .finish()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[daemon]`: the process around the actors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Period of the actor-stats log stream (target `actor_stats`): one event per actor with
    /// throughput, errors, restarts, backlog and latency. Default 10s.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// `text` for people, `json` for one JSON object per line. Default text.
    pub log_format: LogFormat,
    /// Log filter in `tracing` EnvFilter syntax, e.g. "info" or "info,rdkafka=debug"; `RUST_LOG`
    /// is not consulted, use the environment override instead. Default "info".
    pub log_level: String,
    /// On SIGTERM/SIGINT, time allowed to finish in-flight work, flush the producer and commit
    /// before exiting anyway (with a warning). Default 10s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `ip:port` of the Prometheus `/metrics`, `/healthz` and `/readyz` listener; empty turns it
    /// off. Default "127.0.0.1:9464".
    pub metrics_addr: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            stats_interval: Duration::from_secs(10),
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            metrics_addr: "127.0.0.1:9464".to_owned(),
        }
    }
}

impl DaemonConfig {
    /// The metrics listener address, `None` when `metrics_addr` is empty (off) or unparsable
    /// (which [`Config::validate`] reports).
    pub fn metrics_socket_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr.trim().parse().ok()
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The text is not valid TOML (the message shows the line and column).
    #[error("invalid TOML: {message}")]
    Syntax {
        /// toml's message, with the offending line.
        message: String,
    },
    /// An `EXECUTION_COORDINATOR__…` variable could not be applied.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable's name (never its value, which may be a secret).
        variable: String,
        /// What is wrong with it.
        message: String,
    },
    /// A key is unknown, has the wrong type, or breaks a rule.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the key or section, e.g. `queue.max_queue_size`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// The error with every secret of `redactor` cut out of its message.
    fn redacted(self, redactor: &Redactor) -> Self {
        let scrub = |m: String| redactor.redact(&m).into_owned();
        match self {
            Self::Syntax { message } => Self::Syntax {
                message: scrub(message),
            },
            Self::Environment { variable, message } => Self::Environment {
                variable,
                message: scrub(message),
            },
            Self::Invalid { key, message } => Self::Invalid {
                key,
                message: scrub(message),
            },
        }
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// toml's message for `error` in `text`, which quotes the offending line, unless that line sets
/// a secret property: then only where and what, so a typo next to a password does not print it.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let full = error.to_string().trim_end().to_owned();
    let Some(span) = error.span() else {
        return full;
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let key = line.split('=').next().unwrap_or("");
    if !is_secret_property(key) {
        return full;
    }
    let number = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    format!(
        "TOML parse error at line {number}, column {column}: {} (the line sets a secret, so it \
         is not shown)",
        error.message().trim_end()
    )
}

/// The values of the secret properties in `[kafka.properties]` of `table`, as a message may
/// quote them: strings as they are, other values as TOML writes them.
fn secret_values(table: &toml::Table) -> Vec<String> {
    let Some(properties) = table
        .get("kafka")
        .and_then(|k| k.get("properties"))
        .and_then(toml::Value::as_table)
    else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(key, _)| holds_secret_value(key))
        .map(|(_, value)| match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Every problem found, in the order found; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One problem per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The top-level sections, in file order.
const SECTIONS: [&str; 6] = ["queue", "scheduler", "resources", "kafka", "daemon", "wire"];

impl Config {
    /// Parses `text` (TOML; empty means all defaults), applies the `EXECUTION_COORDINATOR__`
    /// variables of `env` over it, deserializes and validates, reporting every problem found.
    ///
    /// Variables: `EXECUTION_COORDINATOR__SECTION__KEY[__SUBKEY…]=value`; the names after the
    /// prefix are lower-cased, so `…__KAFKA__PROPERTIES__SASL.USERNAME` sets
    /// `kafka.properties."sasl.username"`. A value is read as a TOML value (number, bool, array,
    /// inline table) when it is one, else as a plain string; keys whose value is a string
    /// (topics, durations, `properties`, `bootstrap_servers`) always take it as a string, and
    /// string lists also accept `a,b,c`. A variable replaces what the file says at its path.
    /// Other variables are ignored.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError::Syntax {
                message: syntax_message(text, &e),
            }])
        })?;
        let mut errors = Vec::new();
        let applied = apply_env(&mut table, env, &mut errors);
        // What an error quotes of a secret property's value (a value of the wrong type) is cut
        // out of every message.
        let redactor = Redactor::new(secret_values(&table).iter().map(String::as_str));

        let mut de_errors = Vec::new();
        let max_wait_given: Vec<Priority> = Priority::ALL
            .into_iter()
            .filter(|level| {
                table
                    .get("scheduler")
                    .and_then(|s| s.get("max_wait"))
                    .and_then(|m| m.get(level.name()))
                    .is_some()
            })
            .collect();
        let mut config = Config {
            queue: take_section(&mut table, "queue", &mut de_errors),
            scheduler: take_section(&mut table, "scheduler", &mut de_errors),
            resources: take_section(&mut table, "resources", &mut de_errors),
            kafka: take_section(&mut table, "kafka", &mut de_errors),
            daemon: take_section(&mut table, "daemon", &mut de_errors),
            wire: take_section(&mut table, "wire", &mut de_errors),
        };
        for key in table.keys() {
            de_errors.push(unknown_top_level_key(key));
        }
        config.scheduler.max_wait = config
            .scheduler
            .max_wait
            .below_stale_timeout(config.queue.stale_timeout, &max_wait_given);
        for error in de_errors {
            errors.push(attribute_to_env(error, &applied));
        }
        // Sections that failed to deserialize hold their defaults, which are valid, so what
        // validate() reports belongs to the sections that did deserialize.
        if let Err(ConfigErrors(invalid)) = config.validate() {
            errors.extend(invalid.into_iter().map(|e| attribute_to_env(e, &applied)));
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(
                errors.into_iter().map(|e| e.redacted(&redactor)).collect(),
            ))
        }
    }

    /// Checks every rule that a type cannot express and returns all violations at once.
    ///
    /// Allowed but suspicious settings are not errors; see [`Config::warnings`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut v = Validator::default();
        let q = &self.queue;
        v.at_least_one("queue.max_queue_size", q.max_queue_size as u64);
        v.at_least_one(
            "queue.max_executions_per_user",
            q.max_executions_per_user as u64,
        );
        v.duration("queue.stale_timeout", q.stale_timeout);
        v.duration("queue.stale_sweep_interval", q.stale_sweep_interval);
        v.at_least_one("queue.dedup_capacity", q.dedup_capacity as u64);

        let s = &self.scheduler;
        v.at_least_one(
            "scheduler.max_concurrent_scheduling",
            s.max_concurrent_scheduling as u64,
        );
        v.duration("scheduler.scheduling_interval", s.scheduling_interval);
        v.at_least_one("scheduler.backfill_depth", s.backfill_depth as u64);
        v.at_least_one("scheduler.reservations", s.reservations as u64);
        if s.fair_share_half_life > MAX_DURATION {
            v.duration("scheduler.fair_share_half_life", s.fair_share_half_life);
        }
        if s.policy == Policy::Backfill {
            for level in Priority::ALL {
                let key = format!("scheduler.max_wait.{}", level.name());
                let wait = s.max_wait.of(level);
                v.duration(&key, wait);
                if !wait.is_zero() && wait >= q.stale_timeout {
                    v.error(
                        &key,
                        format!(
                            "must be below queue.stale_timeout ({}), or its executions expire \
                             before they are promoted (got {})",
                            humantime::format_duration(q.stale_timeout),
                            humantime::format_duration(wait)
                        ),
                    );
                }
            }
        }

        let r = &self.resources;
        v.cores("resources.total_cpu_cores", r.total_cpu_cores);
        v.at_least_one("resources.total_memory_mb", r.total_memory_mb);
        if !(r.overcommit_factor.is_finite() && r.overcommit_factor >= 1.0) {
            v.error(
                "resources.overcommit_factor",
                format!(
                    "must be a finite number of at least 1.0 (got {}); to hold capacity back, \
                     lower the totals or raise the reserves",
                    r.overcommit_factor
                ),
            );
        }
        if !(r.min_available_cpu_cores.is_finite() && r.min_available_cpu_cores >= 0.0) {
            v.error(
                "resources.min_available_cpu_cores",
                format!(
                    "must be a finite number of at least 0 (got {})",
                    r.min_available_cpu_cores
                ),
            );
        }
        v.cores("resources.max_cpu_per_execution", r.max_cpu_per_execution);
        v.at_least_one(
            "resources.max_memory_per_execution_mb",
            r.max_memory_per_execution_mb,
        );
        v.cores("resources.default_cpu_cores", r.default_cpu_cores);
        v.at_least_one("resources.default_memory_mb", r.default_memory_mb);
        for (name, d) in &r.language_defaults {
            let key = format!("resources.language_defaults.{name}");
            if name.is_empty() {
                v.error(&key, "a language name must not be empty");
            }
            v.cores(&format!("{key}.cpu_cores"), d.cpu_cores);
            v.at_least_one(&format!("{key}.memory_mb"), d.memory_mb);
        }

        let k = &self.kafka;
        if let Some(servers) = &k.bootstrap_servers {
            if servers.trim().is_empty() {
                v.error(
                    "kafka.bootstrap_servers",
                    "must not be empty; leave it unset to use the embedded broker",
                );
            }
        }
        if k.group_id.trim().is_empty() {
            v.error("kafka.group_id", "must not be empty");
        }
        if let Some(message) = illegal_topic_chars(&k.topic_prefix) {
            v.error("kafka.topic_prefix", message);
        }
        for t in EventType::ALL {
            if let Some(name) = k.topics.get(t) {
                v.topic(&format!("kafka.topics.{t}"), name, &k.topic(name));
            }
        }
        v.topic("kafka.dlq_topic", &k.dlq_topic, &k.dlq_topic_full());
        v.topic("kafka.state_topic", &k.state_topic, &k.state_topic_full());
        v.topic(
            "kafka.ownership_topic",
            &k.ownership_topic,
            &k.ownership_topic_full(),
        );
        if let Some(shared) = event_topic_names(k)
            .into_iter()
            .chain([k.dlq_topic.as_str(), k.state_topic.as_str()])
            .find(|t| *t == k.ownership_topic)
        {
            v.error(
                "kafka.ownership_topic",
                format!(
                    "`{shared}` is used for other records; the ownership topic must be its own"
                ),
            );
        }
        let event_topics: Vec<&str> = EventType::ALL
            .into_iter()
            .map(|t| k.topic_name(t))
            .collect();
        if let Some(shared) = event_topics
            .iter()
            .chain([&k.dlq_topic.as_str()])
            .find(|t| **t == k.state_topic)
        {
            v.error(
                "kafka.state_topic",
                format!("`{shared}` is also used for events; the state topic is compacted and must be its own"),
            );
        }
        let inputs: Vec<&str> = EventType::CONSUMED
            .into_iter()
            .map(|t| k.topic_name(t))
            .collect();
        if inputs.contains(&k.dlq_topic.as_str()) {
            v.error(
                "kafka.dlq_topic",
                format!(
                    "`{}` is also an input topic: bad messages would be consumed again forever",
                    k.dlq_topic
                ),
            );
        }
        if k.topic_partitions < 1 {
            v.error(
                "kafka.topic_partitions",
                format!("must be at least 1 (got {})", k.topic_partitions),
            );
        }
        v.duration("kafka.commit_interval", k.commit_interval);
        v.at_least_one("kafka.max_message_bytes", k.max_message_bytes as u64);
        v.duration("kafka.delivery_timeout", k.delivery_timeout);
        v.duration("kafka.transaction_interval", k.transaction_interval);
        if k.group_instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            v.error(
                "kafka.group_instance_id",
                "must not be empty: leave it unset for dynamic membership",
            );
        }
        for key in k.properties.keys() {
            let path = format!("kafka.properties.\"{key}\"");
            if key.trim().is_empty() {
                v.error(&path, "a property name must not be empty");
            }
            if let Some((_, hint)) = MANAGED_PROPERTIES
                .iter()
                .find(|(managed, _)| key.eq_ignore_ascii_case(managed))
            {
                v.error(&path, format!("is managed by the coordinator: {hint}"));
            }
        }
        if let Some(value) = k.properties.get("message.max.bytes") {
            match value.trim().parse::<usize>() {
                Ok(bytes) if bytes >= 2 * OUTPUT_ENVELOPE => {}
                _ => v.error(
                    "kafka.properties.\"message.max.bytes\"",
                    format!(
                        "must be a number of bytes of at least {} (got `{value}`): the largest message the coordinator writes",
                        2 * OUTPUT_ENVELOPE
                    ),
                ),
            }
        }

        let d = &self.daemon;
        v.duration("daemon.stats_interval", d.stats_interval);
        if d.log_level.trim().is_empty() {
            v.error(
                "daemon.log_level",
                "must not be empty (e.g. \"info\" or \"info,rdkafka=debug\")",
            );
        }
        v.duration("daemon.shutdown_grace", d.shutdown_grace);
        let addr = d.metrics_addr.trim();
        if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
            v.error(
                "daemon.metrics_addr",
                format!(
                    "`{addr}` is not an ip:port socket address (e.g. \"127.0.0.1:9464\" or \
                     \"[::]:9464\"); leave it empty to turn metrics off"
                ),
            );
        }

        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    /// Settings that are valid but probably not what the operator meant, one sentence each, for
    /// the binary to log at WARN.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let r = &self.resources;
        let pool_cpu = r.total_cpu_cores * r.overcommit_factor;
        let pool_mem = r.total_memory_mb as f64 * r.overcommit_factor;
        // Same rule as the pool (reserve = min(configured, 10% of pool)); approximate, for a hint.
        let usable_cpu = pool_cpu - r.min_available_cpu_cores.min(pool_cpu / 10.0);
        let usable_mem = pool_mem - (r.min_available_memory_mb as f64).min(pool_mem / 10.0);
        if r.max_cpu_per_execution > usable_cpu {
            w.push(format!(
                "resources.max_cpu_per_execution ({}) exceeds the usable pool (about {usable_cpu:.3} \
                 cores): requests above the pool are rejected as never fitting, not clamped",
                r.max_cpu_per_execution
            ));
        }
        if r.max_memory_per_execution_mb as f64 > usable_mem {
            w.push(format!(
                "resources.max_memory_per_execution_mb ({}) exceeds the usable pool (about \
                 {usable_mem:.0} MiB): requests above the pool are rejected as never fitting, \
                 not clamped",
                r.max_memory_per_execution_mb
            ));
        }
        let defaults = std::iter::once((
            "resources.default_*".to_owned(),
            r.default_cpu_cores,
            r.default_memory_mb,
        ))
        .chain(r.language_defaults.iter().map(|(name, d)| {
            (
                format!("resources.language_defaults.{name}"),
                d.cpu_cores,
                d.memory_mb,
            )
        }));
        for (key, cpu, mem) in defaults {
            if cpu > r.max_cpu_per_execution || mem > r.max_memory_per_execution_mb {
                w.push(format!(
                    "{key} ({cpu} cores, {mem} MiB) exceeds the per-execution cap and will be \
                     clamped to it"
                ));
            }
        }
        let q = &self.queue;
        if q.max_executions_per_user > q.max_queue_size {
            w.push(format!(
                "queue.max_executions_per_user ({}) exceeds queue.max_queue_size ({}): the \
                 per-user limit never applies",
                q.max_executions_per_user, q.max_queue_size
            ));
        }
        if q.stale_sweep_interval > q.stale_timeout {
            w.push(format!(
                "queue.stale_sweep_interval ({}) exceeds queue.stale_timeout ({}): executions \
                 expire up to a sweep interval late",
                humantime::format_duration(q.stale_sweep_interval),
                humantime::format_duration(q.stale_timeout)
            ));
        }
        let s = &self.scheduler;
        if s.policy == Policy::Backfill {
            for pair in Priority::ALL.windows(2) {
                let (a, b) = (s.max_wait.of(pair[0]), s.max_wait.of(pair[1]));
                if a > b {
                    w.push(format!(
                        "scheduler.max_wait.{} ({}) is longer than scheduler.max_wait.{} ({}): \
                         the lower level is promoted sooner",
                        pair[0].name(),
                        humantime::format_duration(a),
                        pair[1].name(),
                        humantime::format_duration(b)
                    ));
                }
            }
            if s.reservations > s.backfill_depth {
                w.push(format!(
                    "scheduler.reservations ({}) exceeds scheduler.backfill_depth ({}): a pass \
                     never looks at more than backfill_depth executions",
                    s.reservations, s.backfill_depth
                ));
            }
        } else if !s.fair_share_half_life.is_zero() {
            w.push(format!(
                "scheduler.fair_share_half_life is set but scheduler.policy is `{}`: fair share \
                 orders users only under `backfill`",
                s.policy
            ));
        }
        let k = &self.kafka;
        let commands = k.topic_name(EventType::CreatePodCommand);
        if EventType::CONSUMED
            .into_iter()
            .any(|t| k.topic_name(t) == commands)
        {
            w.push(format!(
                "kafka.topics.create_pod_command `{commands}` is also an input topic: the \
                 coordinator will read its own commands and skip them"
            ));
        }
        w
    }

    /// The effective configuration as TOML, with secret Kafka properties redacted: what
    /// `check-config` prints.
    pub fn to_toml_string(&self) -> String {
        let mut shown = self.clone();
        shown.kafka.properties = self.kafka.redacted_properties();
        match toml::to_string_pretty(&shown) {
            Ok(text) => text,
            // Unreachable for these types (no None inside arrays, string map keys only).
            Err(e) => format!("# the configuration could not be rendered as TOML: {e}\n"),
        }
    }
}

/// Collects validation errors.
#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::invalid(key, message));
    }

    fn at_least_one(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.error(key, "must be at least 1 (got 0)");
        }
    }

    /// CPU cores: finite and at least one millicore, the pool's unit.
    fn cores(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value >= 0.001) {
            self.error(
                key,
                format!("must be a finite number of cores of at least 0.001 (got {value})"),
            );
        }
    }

    /// Periods and timeouts: zero would spin or expire at once; huge would overflow timers.
    fn duration(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.error(
                key,
                "must be longer than 0 (e.g. \"500ms\", \"10s\", \"1h\")",
            );
        } else if value > MAX_DURATION {
            self.error(
                key,
                format!(
                    "must be at most {} (got {})",
                    humantime::format_duration(MAX_DURATION),
                    humantime::format_duration(value)
                ),
            );
        }
    }

    /// Kafka's rules for topic names: the characters of `name` (the prefix is checked once, on
    /// its own), the length of the prefixed `full` name.
    fn topic(&mut self, key: &str, name: &str, full: &str) {
        if name.is_empty() {
            self.error(key, "must not be empty");
        } else if let Some(message) = illegal_topic_chars(name) {
            self.error(key, message);
        } else if full.len() > 249 {
            self.error(
                key,
                format!(
                    "`{full}` is {} characters long; Kafka allows 249",
                    full.len()
                ),
            );
        } else if full == "." || full == ".." {
            self.error(key, format!("`{full}` is not a legal Kafka topic name"));
        }
    }
}

/// Why `text` cannot be (part of) a Kafka topic name, if it cannot.
fn illegal_topic_chars(text: &str) -> Option<String> {
    let bad = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))?;
    Some(format!(
        "`{text}` contains {bad:?}; Kafka topic names use only ASCII letters, digits, '.', '_' \
         and '-'"
    ))
}

/// Removes section `name` from `table` and deserializes it, or its default when absent or wrong.
fn take_section<T: DeserializeOwned + Default>(
    table: &mut toml::Table,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> T {
    match table.remove(name) {
        None => T::default(),
        Some(value) => value.try_into().unwrap_or_else(|e: toml::de::Error| {
            errors.push(with_migration_hint(deserialize_error(name, &e)));
            T::default()
        }),
    }
}

/// toml writes "message\nin `a.b`" for a value error; this makes it `section.a.b: message`.
fn deserialize_error(section: &str, error: &toml::de::Error) -> ConfigError {
    let text = error.to_string();
    let text = text.trim();
    if let Some((message, tail)) = text.rsplit_once("\nin `") {
        if let Some(path) = tail.strip_suffix('`') {
            return ConfigError::invalid(
                format!("{section}.{path}"),
                message.trim().replace('\n', " "),
            );
        }
    }
    ConfigError::invalid(section, text.replace('\n', " "))
}

/// The topic of every event type, before the prefix.
fn event_topic_names(k: &KafkaConfig) -> Vec<&str> {
    EventType::ALL
        .into_iter()
        .map(|t| k.topic_name(t))
        .collect()
}

/// Keys of earlier releases and what replaced them.
const REPLACED_KEYS: &[(&str, &str)] = &[
    (
        "input_topics",
        "replaced by kafka.topic_layout and [kafka.topics]",
    ),
    (
        "events_topic",
        "replaced by kafka.topic_layout and [kafka.topics]",
    ),
    (
        "commands_topic",
        "replaced by kafka.topic_layout and [kafka.topics]",
    ),
];

/// An "unknown field" error about a key of an earlier release, with what replaced it.
fn with_migration_hint(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { key, message } => {
            let hint = REPLACED_KEYS
                .iter()
                .find(|(old, _)| message.starts_with(&format!("unknown field `{old}`")));
            match hint {
                Some((_, hint)) => ConfigError::invalid(key, format!("{message} ({hint})")),
                None => ConfigError::Invalid { key, message },
            }
        }
        other => other,
    }
}

/// A top-level key that is not a section, with a hint when it belongs inside one.
fn unknown_top_level_key(key: &str) -> ConfigError {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let home = SECTIONS.iter().find(|section| {
        defaults
            .get(**section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(key))
            || (**section == "kafka" && key == "bootstrap_servers")
    });
    let message = match home {
        Some(section) => format!("unknown top-level key; did you mean `{key}` under [{section}]?"),
        None => format!(
            "unknown section, expected one of {}",
            SECTIONS.map(|s| format!("`{s}`")).join(", ")
        ),
    };
    ConfigError::invalid(key, message)
}

/// A variable applied to the table: its name and the dotted path it set.
struct Applied {
    variable: String,
    path: Vec<String>,
}

/// Adds "(set by VARIABLE)" to an error about a key an environment variable set, so operators
/// look in the right place.
fn attribute_to_env(error: ConfigError, applied: &[Applied]) -> ConfigError {
    let ConfigError::Invalid { key, message } = error else {
        return error;
    };
    let hit = applied.iter().find(|a| {
        let path = a.path.join(".");
        if path == key
            || key.starts_with(&format!("{path}."))
            || key.starts_with(&format!("{path}["))
            // The variable went below a key that is not a table.
            || key.contains('.') && path.starts_with(&format!("{key}."))
        {
            return true;
        }
        // An unknown-field error is reported on the table and names the field.
        match a.path.split_last() {
            Some((last, parent)) if !parent.is_empty() => {
                parent.join(".") == key && message.contains(&format!("`{last}`"))
            }
            _ => false,
        }
    });
    match hit {
        Some(a) => ConfigError::invalid(key, format!("{message} (set by {})", a.variable)),
        None => ConfigError::Invalid { key, message },
    }
}

/// How an environment value is read, from the type of the key it sets.
#[derive(PartialEq)]
enum ValueKind {
    String,
    StringList,
    Any,
}

/// Applies the `EXECUTION_COORDINATOR__` variables of `env` to `table`, shorter paths first so a
/// specific key wins over a whole-table replacement; returns what was applied.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Applied> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut vars: Vec<(Vec<String>, String, String)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let path = rest.split("__").map(str::to_ascii_lowercase).collect();
            Some((path, name, value))
        })
        .collect();
    vars.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.1.cmp(&b.1)));

    let mut applied = Vec::new();
    for (path, variable, raw) in vars {
        if path.len() < 2 || path.iter().any(|p| p.trim().is_empty()) {
            errors.push(ConfigError::Environment {
                variable,
                message: format!("expected {ENV_PREFIX}SECTION__KEY (sections and keys separated by a double underscore)"),
            });
            continue;
        }
        if !SECTIONS.contains(&path[0].as_str()) {
            errors.push(ConfigError::Environment {
                variable,
                message: format!(
                    "unknown section `{}`, expected one of {}",
                    path[0],
                    SECTIONS.map(|s| format!("`{s}`")).join(", ")
                ),
            });
            continue;
        }
        let value = env_value(value_kind(&defaults, &path), &raw);
        match set_path(table, &path, value) {
            Ok(()) => applied.push(Applied { variable, path }),
            Err(message) => errors.push(ConfigError::Environment { variable, message }),
        }
    }
    applied
}

/// The kind of value the key at `path` takes, judged from the defaults.
fn value_kind(defaults: &toml::Table, path: &[String]) -> ValueKind {
    let is = |a: &[&str]| path.len() >= a.len() && path.iter().zip(a).all(|(p, a)| p == a);
    if (is(&["kafka", "properties"]) || is(&["kafka", "topics"])) && path.len() == 3
        || is(&["kafka", "bootstrap_servers"])
    {
        return ValueKind::String;
    }
    let mut current: Option<&toml::Value> = None;
    let mut table = Some(defaults);
    for segment in path {
        current = table.and_then(|t| t.get(segment));
        table = current.and_then(toml::Value::as_table);
    }
    match current {
        Some(toml::Value::String(_)) => ValueKind::String,
        Some(toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => {
            ValueKind::StringList
        }
        _ => ValueKind::Any,
    }
}

/// Reads an environment value as TOML when it is a TOML value of a fitting kind, else as text.
fn env_value(kind: ValueKind, raw: &str) -> toml::Value {
    let parsed = parse_toml_value(raw);
    match (kind, parsed) {
        (ValueKind::String, Some(toml::Value::String(s))) => toml::Value::String(s),
        (ValueKind::String, _) => toml::Value::String(raw.to_owned()),
        (ValueKind::StringList, Some(v @ toml::Value::Array(_))) => v,
        (ValueKind::StringList, _) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        (ValueKind::Any, Some(v)) => v,
        (ValueKind::Any, None) => toml::Value::String(raw.to_owned()),
    }
}

/// `raw` as a single TOML value (`42`, `true`, `[1, 2]`, `{ a = 1 }`, `"text"`), if it is one.
fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    let mut doc: toml::Table = toml::from_str(&format!("value = {raw}")).ok()?;
    if doc.len() != 1 {
        return None;
    }
    doc.remove("value")
}

/// Sets `path` in `table` to `value`, creating intermediate tables.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".to_owned());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(format!(
                    "`{}` is a {}, not a table, so it has no key `{}`",
                    path[..=depth].join("."),
                    other.type_str(),
                    path[depth + 1]
                ))
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_warn_about_nothing() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.warnings(), Vec::<String>::new());
    }

    #[test]
    fn env_values_take_the_kind_of_their_key() {
        let d = toml::Table::try_from(Config::default()).unwrap();
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(value_kind(&d, &p("kafka.group_id")) == ValueKind::String);
        assert!(value_kind(&d, &p("queue.stale_timeout")) == ValueKind::String);
        assert!(value_kind(&d, &p("kafka.topics.create_pod_command")) == ValueKind::String);
        assert!(value_kind(&d, &p("kafka.topic_layout")) == ValueKind::String);
        assert!(value_kind(&d, &p("queue.max_queue_size")) == ValueKind::Any);
        assert!(
            value_kind(&d, &["kafka".into(), "properties".into(), "x.y".into()])
                == ValueKind::String
        );
        // A numeric group id stays a string; a quoted one loses its quotes.
        assert_eq!(
            env_value(ValueKind::String, "123"),
            toml::Value::String("123".into())
        );
        assert_eq!(
            env_value(ValueKind::String, "\"a b\""),
            toml::Value::String("a b".into())
        );
        assert_eq!(env_value(ValueKind::Any, "1.5"), toml::Value::Float(1.5));
        assert_eq!(
            env_value(ValueKind::Any, "127.0.0.1:1"),
            toml::Value::String("127.0.0.1:1".into())
        );
        // Extra lines cannot smuggle in other keys.
        assert_eq!(parse_toml_value("1\nother = 2"), None);
    }

    #[test]
    fn env_path_through_a_scalar_is_an_environment_error() {
        let err = Config::from_toml_str(
            "",
            env(&[("EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE__X", "1")]),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        let text = err.to_string();
        assert!(
            text.contains("(set by EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE__X)"),
            "{text}"
        );
        // When the file gives the key a value, the variable cannot be applied at all.
        let err = Config::from_toml_str(
            "[queue]\nmax_queue_size = 5\n",
            env(&[("EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE__X", "1")]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("environment variable EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE__X"),
            "{text}"
        );
        assert!(text.contains("not a table"), "{text}");
    }

    #[test]
    fn malformed_env_names_are_reported_without_their_values() {
        let err = Config::from_toml_str(
            "",
            env(&[
                ("EXECUTION_COORDINATOR__QUEUE", "hunter2"),
                ("EXECUTION_COORDINATOR__QUEUE____X", "hunter2"),
                ("EXECUTION_COORDINATOR__NOPE__X", "hunter2"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err}");
        assert!(!err.to_string().contains("hunter2"));
        assert!(err.to_string().contains("unknown section `nope`"), "{err}");
    }

    #[test]
    fn errors_from_env_name_the_variable() {
        let err = Config::from_toml_str(
            "",
            env(&[
                ("EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE", "0"),
                ("EXECUTION_COORDINATOR__DAEMON__LOG_FORMT", "json"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.len(), 2, "{err}");
        for e in err.errors() {
            assert!(
                e.to_string().contains("(set by EXECUTION_COORDINATOR__"),
                "{e}"
            );
        }
    }

    #[test]
    fn kafka_debug_output_hides_secrets() {
        let mut k = KafkaConfig::default();
        k.properties
            .insert("sasl.password".into(), "hunter2".into());
        k.properties
            .insert("ssl.key.pem".into(), "-----BEGIN".into());
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let debug = format!("{k:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("BEGIN"),
            "{debug}"
        );
        assert!(debug.contains("SASL_SSL"), "{debug}");
    }

    #[test]
    fn a_syntax_error_on_a_secret_line_says_where_without_the_line() {
        let text = "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2-very-secret\n";
        let err = Config::from_toml_str(text, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 3, column"), "{err}");
        assert!(err.contains("sets a secret"), "{err}");
        // Elsewhere the line is still quoted, as toml shows it.
        let err = Config::from_toml_str("[queue]\nmax_queue_size = = 3\n", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_queue_size = = 3"), "{err}");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_echoed() {
        let text = "[kafka.properties]\n\"sasl.password\" = 918273645\n";
        let err = Config::from_toml_str(text, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.properties"), "{err}");
        assert!(!err.contains("918273645"), "{err}");
        assert!(err.contains("<redacted>"), "{err}");
    }

    #[test]
    fn deserialize_error_paths_are_flattened() {
        let err =
            Config::from_toml_str("[queue]\nmax_queue_size = \"lots\"", Vec::new()).unwrap_err();
        assert_eq!(
            err.errors(),
            [ConfigError::invalid(
                "queue.max_queue_size",
                "invalid type: string \"lots\", expected usize"
            )]
        );
    }
}
