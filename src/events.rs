//! Wire events: what the coordinator consumes and produces, in Integr8sCode's JSON.
//!
//! Field names, `event_type` values and which fields are required follow Integr8sCode
//! (`app/domain/events/typed.py`), so the coordinator drops into a running deployment. Unknown
//! fields are accepted and ignored; missing optional fields take their defaults.
//!
//! Nothing here reads the clock or draws random numbers: event ids and timestamps are parameters
//! of the constructors, and the saga id is derived from the execution id ([`saga_id`]).

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use thiserror::Error;
use uuid::Uuid;

use crate::priority::{InvalidPriority, Priority, PriorityFormat};
use crate::quantity::{self, QuantityError};

/// `event_version` of every event this crate writes.
pub const EVENT_VERSION: &str = "1.0";
/// `metadata.service_name` of the events the coordinator produces on its own behalf.
pub const SERVICE_NAME: &str = "execution-coordinator";
/// `metadata.service_version` of the events the coordinator produces on its own behalf.
pub const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `metadata.environment` when an event does not say.
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// The user key of events whose `metadata.user_id` is null or empty.
pub const ANONYMOUS_USER: &str = "anonymous";
/// `priority` when a request does not say.
pub const DEFAULT_PRIORITY: Priority = Priority::Normal;

/// Namespace of the UUIDv5 saga ids: `Uuid::new_v5(&Uuid::NAMESPACE_URL,
/// b"urn:integr8scode:execution-coordinator:saga")`, written out so it can never drift. Changing
/// it changes every saga id, so a redelivered request would no longer map to its first saga.
pub const SAGA_NAMESPACE: Uuid = Uuid::from_u128(0x722a_6da0_87ca_510b_8f88_c564_fe65_6421);

/// The saga id of an execution: UUIDv5 of `execution_id` under [`SAGA_NAMESPACE`], so a
/// redelivered request yields the same saga id and the worker can deduplicate the command.
pub fn saga_id(execution_id: &str) -> Uuid {
    Uuid::new_v5(&SAGA_NAMESPACE, execution_id.as_bytes())
}

/// The `event_type` values this crate reads or writes. Any other value decodes as
/// [`InputEvent::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Consumed: a user asked for an execution.
    ExecutionRequested,
    /// Consumed: an execution was cancelled.
    ExecutionCancelled,
    /// Consumed: an execution finished.
    ExecutionCompleted,
    /// Consumed (from the worker) and produced (rejections, expiry).
    ExecutionFailed,
    /// Consumed: the pod monitor saw an execution run out of time.
    ExecutionTimeout,
    /// Produced: a request was queued.
    ExecutionAccepted,
    /// Produced on the commands topic: start the pod.
    CreatePodCommand,
}

impl EventType {
    /// Every event type, consumed ones first.
    pub const ALL: [EventType; 7] = [
        EventType::ExecutionRequested,
        EventType::ExecutionCancelled,
        EventType::ExecutionCompleted,
        EventType::ExecutionFailed,
        EventType::ExecutionTimeout,
        EventType::ExecutionAccepted,
        EventType::CreatePodCommand,
    ];

    /// The event types the coordinator consumes.
    pub const CONSUMED: [EventType; 5] = [
        EventType::ExecutionRequested,
        EventType::ExecutionCancelled,
        EventType::ExecutionCompleted,
        EventType::ExecutionFailed,
        EventType::ExecutionTimeout,
    ];

    /// The event types the coordinator produces.
    pub const PRODUCED: [EventType; 3] = [
        EventType::ExecutionAccepted,
        EventType::ExecutionFailed,
        EventType::CreatePodCommand,
    ];

    /// The wire name, e.g. `"execution_requested"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ExecutionRequested => "execution_requested",
            EventType::ExecutionCancelled => "execution_cancelled",
            EventType::ExecutionCompleted => "execution_completed",
            EventType::ExecutionFailed => "execution_failed",
            EventType::ExecutionTimeout => "execution_timeout",
            EventType::ExecutionAccepted => "execution_accepted",
            EventType::CreatePodCommand => "create_pod_command",
        }
    }

    /// The event type with this wire name, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON Schema of one event type, as committed under `schemas/<event_type>.schema.json`.
pub fn json_schema(event_type: EventType) -> Schema {
    match event_type {
        EventType::ExecutionRequested => schemars::schema_for!(ExecutionRequested),
        EventType::ExecutionCancelled => schemars::schema_for!(ExecutionCancelled),
        EventType::ExecutionCompleted => schemars::schema_for!(ExecutionCompleted),
        EventType::ExecutionFailed => schemars::schema_for!(ExecutionFailed),
        EventType::ExecutionTimeout => schemars::schema_for!(ExecutionTimeout),
        EventType::ExecutionAccepted => schemars::schema_for!(ExecutionAccepted),
        EventType::CreatePodCommand => schemars::schema_for!(CreatePodCommand),
    }
}

/// Schema of an `event_type` field: the one constant string its struct is written with.
macro_rules! event_type_schema {
    ($($fn_name:ident => $name:literal),* $(,)?) => {
        $(
            fn $fn_name(_: &mut SchemaGenerator) -> Schema {
                schemars::json_schema!({ "type": "string", "const": $name })
            }
        )*
    };
}

event_type_schema! {
    execution_requested_type => "execution_requested",
    execution_cancelled_type => "execution_cancelled",
    execution_completed_type => "execution_completed",
    execution_failed_type => "execution_failed",
    execution_timeout_type => "execution_timeout",
    execution_accepted_type => "execution_accepted",
    create_pod_command_type => "create_pod_command",
}

fn default_event_version() -> String {
    EVENT_VERSION.to_owned()
}

fn default_environment() -> String {
    DEFAULT_ENVIRONMENT.to_owned()
}

fn default_failed_exit_code() -> i64 {
    1
}

/// A priority as written on the wire: a level's name (`"normal"`, Integr8sCode since
/// 2026-01-29) or its number (`5`, the older releases). Read as given and resolved by
/// [`WirePriority::level`], so a wrong value is a rejection naming the valid ones rather than
/// a decode error; written in the configured [`PriorityFormat`] by [`WirePriority::of`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WirePriority {
    /// A name, as given (matched case-insensitively).
    Name(String),
    /// A number, as given.
    Number(i64),
}

impl WirePriority {
    /// `level` written in `format`.
    pub fn of(level: Priority, format: PriorityFormat) -> Self {
        match format {
            PriorityFormat::Name => WirePriority::Name(level.name().to_owned()),
            PriorityFormat::Number => WirePriority::Number(level.value()),
        }
    }

    /// The level this names, or the rejection naming the valid values.
    pub fn level(&self) -> Result<Priority, InvalidPriority> {
        match self {
            WirePriority::Name(name) => Priority::from_name(name),
            WirePriority::Number(value) => Priority::from_value(*value),
        }
    }
}

impl Default for WirePriority {
    fn default() -> Self {
        WirePriority::of(DEFAULT_PRIORITY, PriorityFormat::Name)
    }
}

impl Serialize for WirePriority {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WirePriority::Name(name) => serializer.serialize_str(name),
            WirePriority::Number(value) => serializer.serialize_i64(*value),
        }
    }
}

impl<'de> Deserialize<'de> for WirePriority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WirePriority;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a priority name (\"critical\", \"high\", \"normal\", \"low\", \"background\") or number (0, 1, 5, 8, 10)",
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WirePriority, E> {
                Ok(WirePriority::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WirePriority, E> {
                i64::try_from(v)
                    .map(WirePriority::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WirePriority, E> {
                Ok(WirePriority::Name(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for WirePriority {
    fn schema_name() -> Cow<'static, str> {
        "Priority".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "Priority level, by name or by number: critical (0), high (1), normal (5, the default), low (8), background (10).",
            "oneOf": [
                {"type": "string", "enum": ["critical", "high", "normal", "low", "background"]},
                {"type": "integer", "enum": [0, 1, 5, 8, 10]}
            ]
        })
    }
}

/// Who produced an event and on whose behalf; embedded in every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// The service that produced the event, e.g. `"api"` or `"execution-coordinator"`.
    pub service_name: String,
    /// Version of that service.
    pub service_version: String,
    /// Id shared by every event caused by one user action (older producers; not written when
    /// empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,
    /// The user the event is on behalf of. Older producers send null for anonymous or system
    /// events; everything the coordinator writes has a string ("anonymous" when none).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The user's IP address, when the event started from an HTTP request (older producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The user's HTTP user agent, when the event started from an HTTP request (older
    /// producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Deployment environment: `production`, `staging`, `development` or `test`.
    #[serde(default = "default_environment")]
    pub environment: String,
}

impl EventMetadata {
    /// Metadata of an event the coordinator produces with nothing to reply to (no request
    /// metadata could be read): user "anonymous", no correlation id.
    pub fn coordinator() -> Self {
        EventMetadata {
            service_name: SERVICE_NAME.to_owned(),
            service_version: SERVICE_VERSION.to_owned(),
            correlation_id: String::new(),
            user_id: Some(ANONYMOUS_USER.to_owned()),
            ip_address: None,
            user_agent: None,
            environment: DEFAULT_ENVIRONMENT.to_owned(),
        }
    }

    /// Metadata of an event the coordinator produces in reply to one with this metadata: its own
    /// service name and version, the same correlation id, user (a string: "anonymous" when
    /// none) and environment.
    pub fn reply(&self) -> Self {
        EventMetadata {
            correlation_id: self.correlation_id.clone(),
            user_id: Some(self.user_key().to_owned()),
            environment: self.environment.clone(),
            ..EventMetadata::coordinator()
        }
    }

    /// This metadata as the coordinator writes it when it copies it: the user a string
    /// ("anonymous" when none), so Integr8sCode's services accept it.
    pub fn copied(&self) -> Self {
        EventMetadata {
            user_id: Some(self.user_key().to_owned()),
            ..self.clone()
        }
    }

    /// The key per-user limits are counted under: `user_id`, or `"anonymous"` when null or empty.
    pub fn user_key(&self) -> &str {
        match self.user_id.as_deref() {
            Some(id) if !id.is_empty() => id,
            _ => ANONYMOUS_USER,
        }
    }
}

/// Resource usage reported by the worker when an execution ends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ResourceUsage {
    /// Wall-clock run time in seconds.
    #[serde(default)]
    pub execution_time_wall_seconds: f64,
    /// CPU time in clock ticks.
    #[serde(default)]
    pub cpu_time_jiffies: i64,
    /// Clock ticks per second (`CLK_TCK`).
    #[serde(default)]
    pub clk_tck_hertz: i64,
    /// Peak resident memory in KiB.
    #[serde(default)]
    pub peak_memory_kb: i64,
}

/// Why an execution failed (`error_type`). The coordinator produces the first three; the others
/// come from the worker and are accepted so its events decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// Queue full, per-user limit reached, or the request can never fit the pool.
    ResourceLimit,
    /// Queued longer than the stale timeout, or the script ran out of time.
    Timeout,
    /// The request was invalid, or the platform failed.
    SystemError,
    /// The script itself failed (worker only).
    ScriptError,
    /// The script was denied a permission (worker only).
    PermissionDenied,
}

impl ErrorType {
    /// The wire name, e.g. `"resource_limit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::ResourceLimit => "resource_limit",
            ErrorType::Timeout => "timeout",
            ErrorType::SystemError => "system_error",
            ErrorType::ScriptError => "script_error",
            ErrorType::PermissionDenied => "permission_denied",
        }
    }
}

/// A user asked for a script to be run (consumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionRequested {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_requested"`.
    #[schemars(schema_with = "execution_requested_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to (Integr8sCode sets it to `execution_id`).
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// Producer and user of the event.
    pub metadata: EventMetadata,
    /// Id of the execution; the Kafka key and the deduplication key. Must not be empty.
    pub execution_id: String,
    /// Source code to run.
    pub script: String,
    /// Language, e.g. `python`; selects the default resources when none are requested.
    pub language: String,
    /// Language version, e.g. `3.11`.
    pub language_version: String,
    /// Container image to run the script in.
    pub runtime_image: String,
    /// Command that runs the script file inside the image.
    pub runtime_command: Vec<String>,
    /// File name the script is written to.
    pub runtime_filename: String,
    /// Run-time limit of the script in seconds.
    pub timeout_seconds: u64,
    /// Kubernetes CPU limit of the pod, e.g. `"1"` or `"500m"`.
    #[serde(default)]
    pub cpu_limit: Option<String>,
    /// Kubernetes memory limit of the pod, e.g. `"512Mi"`.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// CPU to reserve, e.g. `"100m"`; the language default when absent.
    #[serde(default)]
    pub cpu_request: Option<String>,
    /// Memory to reserve, e.g. `"128Mi"`; the language default when absent.
    #[serde(default)]
    pub memory_request: Option<String>,
    /// Priority level, by name or number; normal when absent.
    #[serde(default)]
    pub priority: WirePriority,
    /// GPUs to reserve (an extension of this coordinator; Integr8sCode does not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_request: Option<u32>,
}

impl ExecutionRequested {
    /// The priority level, or the rejection naming the valid values.
    pub fn priority_level(&self) -> Result<Priority, InvalidPriority> {
        self.priority.level()
    }

    /// `cpu_request` in millicores (rounded up), `None` when absent.
    pub fn cpu_request_millis(&self) -> Result<Option<u64>, QuantityError> {
        self.cpu_request
            .as_deref()
            .map(quantity::parse_cpu_millis)
            .transpose()
    }

    /// `memory_request` in MiB (rounded up), `None` when absent.
    pub fn memory_request_mib(&self) -> Result<Option<u64>, QuantityError> {
        self.memory_request
            .as_deref()
            .map(quantity::parse_memory_mib)
            .transpose()
    }
}

/// An execution was cancelled (consumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionCancelled {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_cancelled"`.
    #[schemars(schema_with = "execution_cancelled_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// Producer and user of the event.
    pub metadata: EventMetadata,
    /// The execution to cancel.
    pub execution_id: String,
    /// Why it was cancelled (Integr8sCode dropped it after 2026-02-20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who cancelled it.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// Whether a running pod was killed.
    #[serde(default)]
    pub force_terminated: bool,
}

/// An execution finished (consumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionCompleted {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_completed"`.
    #[schemars(schema_with = "execution_completed_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// Producer and user of the event.
    pub metadata: EventMetadata,
    /// The execution that finished.
    pub execution_id: String,
    /// Exit code of the script.
    pub exit_code: i64,
    /// What the execution used.
    #[serde(default)]
    pub resource_usage: Option<ResourceUsage>,
    /// Standard output of the script.
    #[serde(default)]
    pub stdout: String,
    /// Standard error of the script.
    #[serde(default)]
    pub stderr: String,
}

/// An execution failed: consumed from the worker, produced by the coordinator for every
/// rejection or expiry (`exit_code` -1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionFailed {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_failed"`.
    #[schemars(schema_with = "execution_failed_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// Producer and user of the event.
    pub metadata: EventMetadata,
    /// The execution that failed.
    pub execution_id: String,
    /// Exit code of the script; -1 when it never ran. 1 when absent (Integr8sCode's default).
    #[serde(default = "default_failed_exit_code")]
    pub exit_code: i64,
    /// Category of the failure.
    pub error_type: ErrorType,
    /// A sentence a user can act on (absent from Integr8sCode's events after 2026-02-20).
    #[serde(default)]
    pub error_message: String,
    /// What the execution used, if it ran.
    #[serde(default)]
    pub resource_usage: Option<ResourceUsage>,
    /// Standard output of the script, if it ran.
    #[serde(default)]
    pub stdout: String,
    /// Standard error of the script; for a rejection, the same text as `error_message`.
    #[serde(default)]
    pub stderr: String,
}

impl ExecutionFailed {
    /// The coordinator's `execution_failed` for an execution it rejected or expired: exit code
    /// -1, `message` as both `error_message` and `stderr`. Pass the request's metadata when there
    /// is one (as for `execution_accepted`), else [`EventMetadata::coordinator`].
    pub fn rejection(
        execution_id: &str,
        metadata: EventMetadata,
        error_type: ErrorType,
        message: &str,
        event_id: String,
        timestamp: String,
    ) -> Self {
        ExecutionFailed {
            event_id,
            event_type: EventType::ExecutionFailed,
            event_version: default_event_version(),
            timestamp,
            aggregate_id: Some(execution_id.to_owned()),
            metadata,
            execution_id: execution_id.to_owned(),
            exit_code: -1,
            error_type,
            error_message: message.to_owned(),
            resource_usage: None,
            stdout: String::new(),
            stderr: message.to_owned(),
        }
    }

    /// The `system_error` reply to a message that could not be decoded, or `None` when no
    /// execution id could be read from it. Uses the message's metadata when it was readable.
    pub fn for_decode_error(
        err: &DecodeError,
        event_id: String,
        timestamp: String,
    ) -> Option<Self> {
        let execution_id = err.execution_id.as_deref()?;
        let metadata = err
            .metadata
            .as_deref()
            .cloned()
            .unwrap_or_else(EventMetadata::coordinator);
        let message = format!("Rejected an invalid event: {}", err.message);
        Some(ExecutionFailed::rejection(
            execution_id,
            metadata,
            ErrorType::SystemError,
            &message,
            event_id,
            timestamp,
        ))
    }
}

/// The pod monitor saw an execution run past its time limit (consumed): its resources are
/// free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionTimeout {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_timeout"`.
    #[schemars(schema_with = "execution_timeout_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// Producer and user of the event.
    pub metadata: EventMetadata,
    /// The execution that ran out of time.
    pub execution_id: String,
    /// The limit it ran into, in seconds (0 when the pod had none).
    #[serde(default)]
    pub timeout_seconds: u64,
    /// What the execution used.
    #[serde(default)]
    pub resource_usage: Option<ResourceUsage>,
    /// Standard output of the script until it was stopped.
    #[serde(default)]
    pub stdout: String,
    /// Standard error of the script until it was stopped.
    #[serde(default)]
    pub stderr: String,
}

/// A request was queued (produced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionAccepted {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"execution_accepted"`.
    #[schemars(schema_with = "execution_accepted_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// The request's metadata, copied.
    pub metadata: EventMetadata,
    /// The execution that was queued.
    pub execution_id: String,
    /// Rank in dispatch order when queued; 0 is the next to dispatch.
    pub queue_position: u64,
    /// Expected wait until dispatch, in seconds: the median, half the executions in its
    /// place are dispatched sooner; null when unknown.
    #[serde(default)]
    pub estimated_wait_seconds: Option<f64>,
    /// Nine executions in ten in its place are dispatched within this many seconds. An
    /// addition of this coordinator's: readers that do not know it ignore it (Integr8sCode's
    /// event model does); absent when there is no estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_bound_seconds: Option<f64>,
    /// Priority level the execution was queued at, in the configured format.
    #[serde(default)]
    pub priority: WirePriority,
}

impl ExecutionAccepted {
    /// The `execution_accepted` for a request queued at `queue_position`, with the request's
    /// metadata copied ([`EventMetadata::copied`]) and `priority` written in `format`.
    pub fn for_request(
        req: &ExecutionRequested,
        queue_position: u64,
        (estimated_wait_seconds, estimated_wait_bound_seconds): (Option<f64>, Option<f64>),
        (priority, format): (Priority, PriorityFormat),
        event_id: String,
        timestamp: String,
    ) -> Self {
        ExecutionAccepted {
            event_id,
            event_type: EventType::ExecutionAccepted,
            event_version: default_event_version(),
            timestamp,
            aggregate_id: Some(req.execution_id.clone()),
            metadata: req.metadata.copied(),
            execution_id: req.execution_id.clone(),
            queue_position,
            estimated_wait_seconds,
            estimated_wait_bound_seconds,
            priority: WirePriority::of(priority, format),
        }
    }
}

/// Start the pod of an execution whose resources are reserved (produced on the commands topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatePodCommand {
    /// Unique id of this event (a UUID string).
    #[serde(default)]
    pub event_id: String,
    /// Always `"create_pod_command"`.
    #[schemars(schema_with = "create_pod_command_type")]
    pub event_type: EventType,
    /// Version of the event format, `"1.0"`.
    #[serde(default = "default_event_version")]
    pub event_version: String,
    /// When the event was created, RFC 3339.
    #[serde(default)]
    pub timestamp: String,
    /// The execution this event belongs to.
    #[serde(default)]
    pub aggregate_id: Option<String>,
    /// `service_name` `"execution-coordinator"`, with the request's user and correlation id.
    pub metadata: EventMetadata,
    /// UUIDv5 of the execution id: the same for a redelivered request.
    pub saga_id: String,
    /// The execution to start.
    pub execution_id: String,
    /// Source code to run.
    pub script: String,
    /// Language, e.g. `python`.
    pub language: String,
    /// Language version, e.g. `3.11`.
    pub language_version: String,
    /// Container image to run the script in.
    pub runtime_image: String,
    /// Command that runs the script file inside the image.
    #[serde(default)]
    pub runtime_command: Vec<String>,
    /// File name the script is written to.
    pub runtime_filename: String,
    /// Run-time limit of the script in seconds.
    pub timeout_seconds: u64,
    /// Kubernetes CPU limit of the pod; never below `cpu_request`.
    pub cpu_limit: String,
    /// Kubernetes memory limit of the pod; never below `memory_request`.
    pub memory_limit: String,
    /// CPU reserved for the execution, in millicores (`"500m"`).
    pub cpu_request: String,
    /// Memory reserved for the execution, in MiB (`"512Mi"`).
    pub memory_request: String,
    /// Priority level the execution was dispatched at, in the configured format.
    #[serde(default)]
    pub priority: WirePriority,
}

impl CreatePodCommand {
    /// The command for a request whose resources are reserved: `cpu_request`/`memory_request`
    /// carry what was reserved. The request's limits are kept when they parse and are at least
    /// the reservation; otherwise the limit is the reservation, because Kubernetes refuses a
    /// pod whose request exceeds its limit. `priority` is written in `format`.
    pub fn for_request(
        req: &ExecutionRequested,
        cpu_millis: u64,
        memory_mib: u64,
        priority: (Priority, PriorityFormat),
        event_id: String,
        timestamp: String,
    ) -> Self {
        Self::from_request(
            req.clone(),
            cpu_millis,
            memory_mib,
            priority,
            event_id,
            timestamp,
        )
    }

    /// The same, taking the request's fields rather than copying them: the daemon builds its
    /// request only to make the command.
    pub fn from_request(
        req: ExecutionRequested,
        cpu_millis: u64,
        memory_mib: u64,
        (priority, format): (Priority, PriorityFormat),
        event_id: String,
        timestamp: String,
    ) -> Self {
        let cpu_limit = limit_at_least(
            req.cpu_limit.as_deref(),
            quantity::parse_cpu_millis,
            cpu_millis,
            quantity::format_cpu_millis,
        );
        let memory_limit = limit_at_least(
            req.memory_limit.as_deref(),
            quantity::parse_memory_mib,
            memory_mib,
            quantity::format_memory_mib,
        );
        CreatePodCommand {
            event_id,
            event_type: EventType::CreatePodCommand,
            event_version: default_event_version(),
            timestamp,
            aggregate_id: Some(req.execution_id.clone()),
            metadata: req.metadata.reply(),
            saga_id: saga_id(&req.execution_id).to_string(),
            execution_id: req.execution_id,
            script: req.script,
            language: req.language,
            language_version: req.language_version,
            runtime_image: req.runtime_image,
            runtime_command: req.runtime_command,
            runtime_filename: req.runtime_filename,
            timeout_seconds: req.timeout_seconds,
            cpu_limit,
            memory_limit,
            cpu_request: quantity::format_cpu_millis(cpu_millis),
            memory_request: quantity::format_memory_mib(memory_mib),
            priority: WirePriority::of(priority, format),
        }
    }
}

/// `limit` as given when it parses to at least `reserved`, else `reserved` formatted.
fn limit_at_least(
    limit: Option<&str>,
    parse: fn(&str) -> Result<u64, QuantityError>,
    reserved: u64,
    format: fn(u64) -> String,
) -> String {
    match limit {
        Some(text) if parse(text).is_ok_and(|l| l >= reserved) => text.to_owned(),
        _ => format(reserved),
    }
}

/// An event the coordinator publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputEvent {
    /// To the events topic.
    Accepted(ExecutionAccepted),
    /// To the events topic.
    Failed(ExecutionFailed),
    /// To the commands topic.
    CreatePod(CreatePodCommand),
}

impl OutputEvent {
    /// The event's `event_type`.
    pub fn event_type(&self) -> EventType {
        match self {
            OutputEvent::Accepted(e) => e.event_type,
            OutputEvent::Failed(e) => e.event_type,
            OutputEvent::CreatePod(e) => e.event_type,
        }
    }

    /// The execution id: the Kafka message key.
    pub fn execution_id(&self) -> &str {
        match self {
            OutputEvent::Accepted(e) => &e.execution_id,
            OutputEvent::Failed(e) => &e.execution_id,
            OutputEvent::CreatePod(e) => &e.execution_id,
        }
    }

    /// The event's `event_id`.
    pub fn event_id(&self) -> &str {
        match self {
            OutputEvent::Accepted(e) => &e.event_id,
            OutputEvent::Failed(e) => &e.event_id,
            OutputEvent::CreatePod(e) => &e.event_id,
        }
    }

    /// The JSON message body.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        match self {
            OutputEvent::Accepted(e) => e.to_json_bytes(),
            OutputEvent::Failed(e) => e.to_json_bytes(),
            OutputEvent::CreatePod(e) => e.to_json_bytes(),
        }
    }
}

impl From<ExecutionAccepted> for OutputEvent {
    fn from(e: ExecutionAccepted) -> Self {
        OutputEvent::Accepted(e)
    }
}

impl From<ExecutionFailed> for OutputEvent {
    fn from(e: ExecutionFailed) -> Self {
        OutputEvent::Failed(e)
    }
}

impl From<CreatePodCommand> for OutputEvent {
    fn from(e: CreatePodCommand) -> Self {
        OutputEvent::CreatePod(e)
    }
}

macro_rules! impl_to_json_bytes {
    ($($ty:ty),*) => {
        $(
            impl $ty {
                /// The JSON message body.
                pub fn to_json_bytes(&self) -> Vec<u8> {
                    // Plain structs of strings, numbers and lists: serde_json cannot fail on them
                    // (non-finite floats are written as null).
                    serde_json::to_vec(self).expect("event serialisation is infallible")
                }
            }
        )*
    };
}

impl_to_json_bytes!(
    ExecutionRequested,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionTimeout,
    ExecutionAccepted,
    CreatePodCommand
);

/// An event read from an input topic.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent {
    /// `execution_requested`.
    Requested(ExecutionRequested),
    /// `execution_cancelled`.
    Cancelled(ExecutionCancelled),
    /// `execution_completed`.
    Completed(ExecutionCompleted),
    /// `execution_failed`, from the worker or the coordinator itself.
    Failed(ExecutionFailed),
    /// `execution_timeout`, from the pod monitor.
    TimedOut(ExecutionTimeout),
    /// Any other event type: skipped and counted, not an error.
    Other {
        /// The `event_type` as written.
        event_type: String,
    },
}

impl InputEvent {
    /// The `event_type` as written.
    pub fn event_type(&self) -> &str {
        match self {
            InputEvent::Requested(_) => EventType::ExecutionRequested.as_str(),
            InputEvent::Cancelled(_) => EventType::ExecutionCancelled.as_str(),
            InputEvent::Completed(_) => EventType::ExecutionCompleted.as_str(),
            InputEvent::Failed(_) => EventType::ExecutionFailed.as_str(),
            InputEvent::TimedOut(_) => EventType::ExecutionTimeout.as_str(),
            InputEvent::Other { event_type } => event_type,
        }
    }

    /// The execution id, for every event type but [`InputEvent::Other`].
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            InputEvent::Requested(e) => Some(&e.execution_id),
            InputEvent::Cancelled(e) => Some(&e.execution_id),
            InputEvent::Completed(e) => Some(&e.execution_id),
            InputEvent::Failed(e) => Some(&e.execution_id),
            InputEvent::TimedOut(e) => Some(&e.execution_id),
            InputEvent::Other { .. } => None,
        }
    }
}

/// What kind of bad input a message was; [`DecodeErrorKind::as_str`] names it in DLQ headers
/// and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// Larger than `max_message_bytes`.
    Oversize,
    /// Not valid JSON (or not UTF-8).
    NotJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// No `event_type`, or not a string.
    MissingEventType,
    /// A known event type with missing required fields, wrong types or invalid values.
    InvalidFields,
}

impl DecodeErrorKind {
    /// Snake-case name, e.g. `"invalid_fields"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Oversize => "oversize",
            DecodeErrorKind::NotJson => "not_json",
            DecodeErrorKind::NotAnObject => "not_an_object",
            DecodeErrorKind::MissingEventType => "missing_event_type",
            DecodeErrorKind::InvalidFields => "invalid_fields",
        }
    }
}

impl std::fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that is not a usable event. What could still be read from it is kept, so the
/// caller can reply with `execution_failed` ([`ExecutionFailed::for_decode_error`]).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{message}")]
pub struct DecodeError {
    /// What kind of bad input.
    pub kind: DecodeErrorKind,
    /// What is wrong, naming the field, e.g. ``field `priority`: invalid type: …``.
    pub message: String,
    /// `execution_id` (or else `aggregate_id`) when the message has a non-empty string there.
    pub execution_id: Option<String>,
    /// `event_type` when the message has a string there.
    pub event_type: Option<String>,
    /// `metadata` when it is readable (boxed to keep the error small).
    pub metadata: Option<Box<EventMetadata>>,
}

/// Decodes one message from an input topic. Messages over `max_bytes`, non-JSON, JSON without a
/// string `event_type`, and known event types with missing or mistyped fields (or an empty
/// `execution_id`) are errors; unknown event types are [`InputEvent::Other`]. Priority and
/// quantities are not checked here: see [`ExecutionRequested::priority_level`].
pub fn decode_input(bytes: &[u8], max_bytes: usize) -> Result<InputEvent, DecodeError> {
    if bytes.len() > max_bytes {
        let probe = serde_json::from_slice::<Probe>(bytes).unwrap_or_default();
        return Err(DecodeError {
            kind: DecodeErrorKind::Oversize,
            message: format!(
                "message is {} bytes, over the limit of {max_bytes} bytes (max_message_bytes)",
                bytes.len()
            ),
            execution_id: non_blank(probe.execution_id).or(non_blank(probe.aggregate_id)),
            event_type: probe.event_type,
            metadata: probe
                .metadata
                .and_then(|m| serde_json::from_value(m).ok())
                .map(Box::new),
        });
    }

    if let Some(event) = decode_typed(bytes) {
        return Ok(event);
    }
    // Something is off (or the type is not one of ours): read the document to say what.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError {
        kind: DecodeErrorKind::NotJson,
        message: format!("message is not valid JSON: {e}"),
        execution_id: None,
        event_type: None,
        metadata: None,
    })?;
    let Some(object) = value.as_object() else {
        return Err(DecodeError {
            kind: DecodeErrorKind::NotAnObject,
            message: format!(
                "message is {}, expected a JSON object with an \"event_type\" field",
                json_kind(&value)
            ),
            execution_id: None,
            event_type: None,
            metadata: None,
        });
    };

    let fail = |kind, message| DecodeError {
        kind,
        message,
        execution_id: non_blank(object.get("execution_id").and_then(Value::as_str)).or(non_blank(
            object.get("aggregate_id").and_then(Value::as_str),
        )),
        event_type: object
            .get("event_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        metadata: object
            .get("metadata")
            .and_then(|m| EventMetadata::deserialize(m).ok())
            .map(Box::new),
    };

    let event_type = match object.get("event_type") {
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(fail(
                DecodeErrorKind::MissingEventType,
                format!(
                    "field `event_type` must be a string such as \"execution_requested\", found {}",
                    json_kind(other)
                ),
            ))
        }
        None => {
            return Err(fail(
                DecodeErrorKind::MissingEventType,
                "missing field `event_type`".to_owned(),
            ))
        }
    };
    let Some(known) = EventType::from_name(&event_type) else {
        return Ok(InputEvent::Other { event_type });
    };

    decode_known(known, &value).map_err(|message| fail(DecodeErrorKind::InvalidFields, message))
}

/// Just the event type, read without building the document.
#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
}

/// The fast path for a well-formed event of a known type: the bytes straight into its type, no
/// intermediate document. `None` sends the message down the path that explains what is wrong.
fn decode_typed(bytes: &[u8]) -> Option<InputEvent> {
    let probe: TypeProbe<'_> = serde_json::from_slice(bytes).ok()?;
    let known = EventType::from_name(probe.event_type.as_deref()?)?;
    let event = match known {
        EventType::ExecutionRequested => InputEvent::Requested(serde_json::from_slice(bytes).ok()?),
        EventType::ExecutionCancelled => InputEvent::Cancelled(serde_json::from_slice(bytes).ok()?),
        EventType::ExecutionCompleted => InputEvent::Completed(serde_json::from_slice(bytes).ok()?),
        EventType::ExecutionFailed => InputEvent::Failed(serde_json::from_slice(bytes).ok()?),
        EventType::ExecutionTimeout => InputEvent::TimedOut(serde_json::from_slice(bytes).ok()?),
        EventType::ExecutionAccepted | EventType::CreatePodCommand => return None,
    };
    if event.execution_id().is_some_and(|id| id.trim().is_empty()) {
        return None;
    }
    Some(event)
}

/// A known event type, typed and checked, or a message naming the field that is wrong.
fn decode_known(known: EventType, value: &Value) -> Result<InputEvent, String> {
    let event = match known {
        EventType::ExecutionRequested => InputEvent::Requested(typed_decode(known, value)?),
        EventType::ExecutionCancelled => InputEvent::Cancelled(typed_decode(known, value)?),
        EventType::ExecutionCompleted => InputEvent::Completed(typed_decode(known, value)?),
        EventType::ExecutionFailed => InputEvent::Failed(typed_decode(known, value)?),
        EventType::ExecutionTimeout => InputEvent::TimedOut(typed_decode(known, value)?),
        EventType::ExecutionAccepted | EventType::CreatePodCommand => {
            // Our own output read back: nothing for the coordinator to do with it.
            return Ok(InputEvent::Other {
                event_type: known.as_str().to_owned(),
            });
        }
    };
    if event.execution_id().is_some_and(|id| id.trim().is_empty()) {
        return Err(format!(
            "invalid {known} event: field `execution_id` must not be empty"
        ));
    }
    Ok(event)
}

/// The typed event, or a message naming the field that is missing or wrong.
fn typed_decode<T: serde::de::DeserializeOwned>(
    event_type: EventType,
    value: &Value,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            format!("invalid {event_type} event: {inner}")
        } else {
            format!("invalid {event_type} event: field `{path}`: {inner}")
        }
    })
}

/// What an oversize message still says about itself; fields of the wrong type read as absent.
#[derive(Default, Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "lenient_string")]
    event_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    execution_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    aggregate_id: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn non_blank<S: AsRef<str>>(s: Option<S>) -> Option<String> {
    s.filter(|s| !s.as_ref().trim().is_empty())
        .map(|s| s.as_ref().to_owned())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn metadata(user_id: Option<&str>) -> EventMetadata {
        EventMetadata {
            service_name: "api".into(),
            service_version: "1.0.0".into(),
            correlation_id: "corr-1".into(),
            user_id: user_id.map(str::to_owned),
            ip_address: Some("10.0.0.7".into()),
            user_agent: Some("curl/8.5".into()),
            environment: "production".into(),
        }
    }

    fn minimal_request() -> Value {
        serde_json::json!({
            "event_type": "execution_requested",
            "metadata": {"service_name": "api", "service_version": "1.0.0"},
            "execution_id": "exec-1",
            "script": "print(1)",
            "language": "python",
            "language_version": "3.11",
            "runtime_image": "python:3.11-slim",
            "runtime_command": ["python", "/scripts/main.py"],
            "runtime_filename": "main.py",
            "timeout_seconds": 300
        })
    }

    fn decode_value(v: &Value) -> Result<InputEvent, DecodeError> {
        decode_input(&serde_json::to_vec(v).unwrap(), MAX)
    }

    fn request() -> ExecutionRequested {
        match decode_value(&minimal_request()).unwrap() {
            InputEvent::Requested(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn saga_namespace_is_the_documented_derivation() {
        assert_eq!(
            SAGA_NAMESPACE,
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                b"urn:integr8scode:execution-coordinator:saga"
            )
        );
    }

    #[test]
    fn saga_id_is_deterministic_per_execution() {
        assert_eq!(saga_id("exec-1"), saga_id("exec-1"));
        assert_ne!(saga_id("exec-1"), saga_id("exec-2"));
        assert_eq!(saga_id("exec-1").get_version_num(), 5);
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), Value::from(t.as_str()));
        }
        assert_eq!(EventType::from_name("pod_created"), None);
    }

    #[test]
    fn user_key_falls_back_to_anonymous() {
        assert_eq!(metadata(Some("u1")).user_key(), "u1");
        assert_eq!(metadata(None).user_key(), "anonymous");
        assert_eq!(metadata(Some("")).user_key(), "anonymous");
    }

    #[test]
    fn metadata_defaults() {
        let m: EventMetadata = serde_json::from_value(
            serde_json::json!({"service_name": "api", "service_version": "1"}),
        )
        .unwrap();
        assert_eq!(m.correlation_id, "");
        assert_eq!(m.user_id, None);
        assert_eq!(m.environment, "production");
        assert_eq!(m.user_key(), "anonymous");
    }

    #[test]
    fn reply_metadata_keeps_user_and_correlation() {
        let reply = metadata(Some("u1")).reply();
        assert_eq!(reply.service_name, SERVICE_NAME);
        assert_eq!(reply.service_version, SERVICE_VERSION);
        assert_eq!(reply.correlation_id, "corr-1");
        assert_eq!(reply.user_id.as_deref(), Some("u1"));
        assert_eq!(reply.ip_address, None);
        assert_eq!(reply.user_agent, None);
        assert_eq!(metadata(None).reply().user_id.as_deref(), Some("anonymous"));
        assert_eq!(
            metadata(Some("")).copied().user_id.as_deref(),
            Some("anonymous")
        );
        assert_eq!(
            EventMetadata::coordinator().user_id.as_deref(),
            Some("anonymous")
        );
    }

    #[test]
    fn priority_by_name_or_number_and_a_clear_error_for_anything_else() {
        for (given, level) in [
            (Value::from("critical"), Priority::Critical),
            (Value::from("NORMAL"), Priority::Normal),
            (Value::from(10), Priority::Background),
            (Value::from(1), Priority::High),
        ] {
            let mut v = minimal_request();
            v["priority"] = given.clone();
            let InputEvent::Requested(r) = decode_value(&v).unwrap() else {
                panic!("{given} does not decode as a request")
            };
            assert_eq!(r.priority_level(), Ok(level), "{given}");
        }
        let mut v = minimal_request();
        v["priority"] = "urgent".into();
        let InputEvent::Requested(r) = decode_value(&v).unwrap() else {
            panic!()
        };
        assert!(r
            .priority_level()
            .unwrap_err()
            .to_string()
            .starts_with("invalid priority \"urgent\": expected one of"));
        for bad in [Value::from(5.5), Value::Bool(true), serde_json::json!([5])] {
            let mut v = minimal_request();
            v["priority"] = bad.clone();
            let err = decode_value(&v).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::InvalidFields, "{bad}");
            assert!(
                err.message.contains("`priority`")
                    && err.message.contains("a priority name (\"critical\""),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn priorities_are_written_in_the_configured_format() {
        for p in Priority::ALL {
            let name = serde_json::to_value(WirePriority::of(p, PriorityFormat::Name)).unwrap();
            let number = serde_json::to_value(WirePriority::of(p, PriorityFormat::Number)).unwrap();
            assert_eq!(name, Value::from(p.name()));
            assert_eq!(number, Value::from(p.value()));
        }
    }

    #[test]
    fn a_timeout_decodes_with_only_the_required_fields() {
        let v = serde_json::json!({
            "event_type": "execution_timeout",
            "metadata": {"service_name": "pod-monitor", "service_version": "1", "user_id": "u"},
            "execution_id": "exec-1"
        });
        let InputEvent::TimedOut(t) = decode_value(&v).unwrap() else {
            panic!()
        };
        assert_eq!((t.execution_id.as_str(), t.timeout_seconds), ("exec-1", 0));
    }

    #[test]
    fn request_defaults_for_optional_fields() {
        let r = request();
        assert_eq!(r.priority, WirePriority::Name("normal".into()));
        assert_eq!(r.priority_level(), Ok(Priority::Normal));
        assert_eq!(r.cpu_request, None);
        assert_eq!(r.cpu_request_millis(), Ok(None));
        assert_eq!(r.memory_request_mib(), Ok(None));
        assert_eq!(r.gpu_request, None);
        assert_eq!(r.event_version, "1.0");
        assert_eq!(r.aggregate_id, None);
        assert_eq!(r.metadata.user_id, None);
    }

    #[test]
    fn request_quantities_and_priority_helpers() {
        let mut v = minimal_request();
        v["cpu_request"] = "250m".into();
        v["memory_request"] = "1Gi".into();
        v["priority"] = 3.into();
        v["gpu_request"] = 1.into();
        let InputEvent::Requested(r) = decode_value(&v).unwrap() else {
            panic!()
        };
        assert_eq!(r.cpu_request_millis(), Ok(Some(250)));
        assert_eq!(r.memory_request_mib(), Ok(Some(1024)));
        assert_eq!(r.gpu_request, Some(1));
        assert_eq!(
            r.priority_level().unwrap_err().to_string(),
            "invalid priority 3: expected one of \"critical\", \"high\", \"normal\", \"low\", \"background\" or 0, 1, 5, 8, 10"
        );
        let mut bad = r.clone();
        bad.memory_request = Some("12Qi".into());
        assert!(bad
            .memory_request_mib()
            .unwrap_err()
            .to_string()
            .contains("\"12Qi\""));
    }

    #[test]
    fn negative_gpu_request_is_invalid() {
        let mut v = minimal_request();
        v["gpu_request"] = (-1).into();
        let err = decode_value(&v).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
        assert!(err.message.contains("`gpu_request`"), "{}", err.message);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = minimal_request();
        v["shiny_new_field"] = serde_json::json!({"nested": [1, 2]});
        v["metadata"]["trace_id"] = "abc".into();
        assert!(matches!(decode_value(&v), Ok(InputEvent::Requested(_))));
    }

    #[test]
    fn other_event_types_are_skipped_without_validation() {
        let v = serde_json::json!({"event_type": "pod_created", "anything": 1});
        assert_eq!(
            decode_value(&v),
            Ok(InputEvent::Other {
                event_type: "pod_created".into()
            })
        );
        let own = serde_json::json!({"event_type": "execution_accepted"});
        assert!(matches!(decode_value(&own), Ok(InputEvent::Other { .. })));
    }

    #[test]
    fn blank_execution_id_is_invalid_for_every_consumed_type() {
        let mut v = minimal_request();
        v["execution_id"] = " ".into();
        let err = decode_value(&v).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
        assert_eq!(
            err.message,
            "invalid execution_requested event: field `execution_id` must not be empty"
        );
        assert_eq!(err.execution_id, None);

        let cancel = serde_json::json!({
            "event_type": "execution_cancelled",
            "metadata": {"service_name": "api", "service_version": "1"},
            "execution_id": "",
            "reason": "user"
        });
        assert_eq!(
            decode_value(&cancel).unwrap_err().kind,
            DecodeErrorKind::InvalidFields
        );
    }

    #[test]
    fn event_type_of_wrong_type() {
        let v = serde_json::json!({"event_type": 7, "execution_id": "e"});
        let err = decode_value(&v).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::MissingEventType);
        assert!(err.message.contains("found a number"));
        assert_eq!(err.execution_id.as_deref(), Some("e"));
    }

    #[test]
    fn not_an_object() {
        for (json, kind) in [
            ("[1, 2]", "an array"),
            ("\"x\"", "a string"),
            ("null", "null"),
        ] {
            let err = decode_input(json.as_bytes(), MAX).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::NotAnObject);
            assert!(err.message.contains(kind), "{}", err.message);
        }
    }

    #[test]
    fn nested_field_errors_name_the_path() {
        let mut v = minimal_request();
        v["metadata"]["user_id"] = 42.into();
        let err = decode_value(&v).unwrap_err();
        assert!(
            err.message.contains("`metadata.user_id`"),
            "{}",
            err.message
        );
        assert_eq!(err.metadata, None);
        assert_eq!(err.execution_id.as_deref(), Some("exec-1"));
    }

    #[test]
    fn oversize_still_reads_the_execution_id_and_metadata() {
        let mut v = minimal_request();
        v["execution_id"] = 5.into();
        v["aggregate_id"] = "agg-1".into();
        let bytes = serde_json::to_vec(&v).unwrap();
        let err = decode_input(&bytes, 10).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Oversize);
        assert_eq!(err.execution_id.as_deref(), Some("agg-1"));
        assert_eq!(err.event_type.as_deref(), Some("execution_requested"));
        assert_eq!(err.metadata.unwrap().service_name, "api");

        let garbage = vec![b'x'; 100];
        let err = decode_input(&garbage, 10).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Oversize);
        assert_eq!(err.execution_id, None);
        assert!(err.message.contains("100 bytes"));
        assert!(err.message.contains("10 bytes"));
    }

    #[test]
    fn exactly_max_bytes_is_not_oversize() {
        let bytes = serde_json::to_vec(&minimal_request()).unwrap();
        assert!(decode_input(&bytes, bytes.len()).is_ok());
        assert_eq!(
            decode_input(&bytes, bytes.len() - 1).unwrap_err().kind,
            DecodeErrorKind::Oversize
        );
    }

    #[test]
    fn rejection_shape() {
        let f = ExecutionFailed::rejection(
            "exec-1",
            metadata(Some("u1")),
            ErrorType::ResourceLimit,
            "The queue is full.",
            "ev-1".into(),
            "2025-01-01T00:00:00Z".into(),
        );
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["event_type"], "execution_failed");
        assert_eq!(v["exit_code"], -1);
        assert_eq!(v["error_type"], "resource_limit");
        assert_eq!(v["error_message"], "The queue is full.");
        assert_eq!(v["stderr"], "The queue is full.");
        assert_eq!(v["aggregate_id"], "exec-1");
    }

    #[test]
    fn decode_error_reply() {
        let mut v = minimal_request();
        v["priority"] = 5.5.into();
        v["metadata"]["user_id"] = "u9".into();
        let err = decode_value(&v).unwrap_err();
        let reply =
            ExecutionFailed::for_decode_error(&err, "ev".into(), "2025-01-01T00:00:00Z".into())
                .unwrap();
        assert_eq!(reply.execution_id, "exec-1");
        assert_eq!(reply.error_type, ErrorType::SystemError);
        assert_eq!(reply.metadata.user_id.as_deref(), Some("u9"));
        assert!(reply.error_message.contains("`priority`"));

        let not_json = decode_input(b"{", MAX).unwrap_err();
        assert_eq!(
            ExecutionFailed::for_decode_error(&not_json, "ev".into(), "t".into()),
            None
        );
    }

    #[test]
    fn create_pod_command_limits_never_below_the_reservation() {
        let mut r = request();
        r.cpu_limit = Some("1".into());
        r.memory_limit = Some("256Mi".into());
        let c = CreatePodCommand::for_request(
            &r,
            500,
            512,
            (Priority::High, PriorityFormat::Number),
            "e".into(),
            "t".into(),
        );
        assert_eq!(c.cpu_request, "500m");
        assert_eq!(c.memory_request, "512Mi");
        assert_eq!(c.cpu_limit, "1");
        assert_eq!(c.memory_limit, "512Mi");
        assert_eq!(c.priority, WirePriority::Number(1));
        assert_eq!(c.saga_id, saga_id("exec-1").to_string());
        assert_eq!(c.metadata.service_name, SERVICE_NAME);

        r.cpu_limit = None;
        r.memory_limit = Some("garbage".into());
        let c = CreatePodCommand::for_request(
            &r,
            250,
            128,
            (Priority::Normal, PriorityFormat::Name),
            "e".into(),
            "t".into(),
        );
        assert_eq!(c.cpu_limit, "250m");
        assert_eq!(c.memory_limit, "128Mi");
    }

    #[test]
    fn output_event_accessors() {
        let r = request();
        let a: OutputEvent = ExecutionAccepted::for_request(
            &r,
            3,
            (None, None),
            (Priority::Low, PriorityFormat::Name),
            "ev".into(),
            "t".into(),
        )
        .into();
        assert_eq!(a.event_type(), EventType::ExecutionAccepted);
        assert_eq!(a.execution_id(), "exec-1");
        assert_eq!(a.event_id(), "ev");
        let v: Value = serde_json::from_slice(&a.to_json_bytes()).unwrap();
        assert_eq!(v["event_type"], "execution_accepted");
        assert_eq!(v["priority"], "low");
        assert_eq!(v["metadata"]["user_id"], "anonymous");
        assert_eq!(v["estimated_wait_seconds"], Value::Null);
    }

    #[test]
    fn non_finite_wait_is_written_as_null() {
        let r = request();
        let a = ExecutionAccepted::for_request(
            &r,
            0,
            (Some(f64::NAN), None),
            (Priority::Normal, PriorityFormat::Number),
            "ev".into(),
            "t".into(),
        );
        let v: Value = serde_json::from_slice(&a.to_json_bytes()).unwrap();
        assert_eq!(v["estimated_wait_seconds"], Value::Null);
    }
}
