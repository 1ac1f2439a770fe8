//! Every message the daemon publishes ([`Outputs`]): the events, commands and DLQ records, and
//! the state topic's records, with topic names resolved once and sizes kept within what the
//! brokers take.

use coordinator_core::config::{KafkaConfig, OUTPUT_ENVELOPE};
use coordinator_core::estimate::waits::seconds;
use coordinator_core::events::{
    CreatePodCommand, ErrorType, EventMetadata, EventType, ExecutionAccepted, ExecutionFailed,
    ExecutionRequested,
};
use coordinator_core::inspect::Remaining;
use coordinator_core::pool::Allocation;
use coordinator_core::priority::PriorityFormat;
use coordinator_core::queue::QueuedExecution;
use coordinator_core::Priority;
use serde::Serialize;
use std::sync::Arc;
use tracing::error;

use crate::actors::egress::{Payload, Publish};
use crate::clock::{event_id, now_millis, timestamp};
use crate::kafka::trace::TraceContext;
use crate::state::pending::{KeptRequestJson, Pending};
use crate::state::record::StateRecord;

/// Header naming the producer on the events and DLQ records the coordinator writes.
pub const ORIGIN_HEADER: &str = "x-coordinator";

/// Value of [`ORIGIN_HEADER`].
pub const ORIGIN: &str = "execution-coordinator";

/// Header naming the payload's media type on every JSON message the coordinator writes.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// Value of [`CONTENT_TYPE_HEADER`].
pub const JSON: &str = "application/json";

/// Builds every message the daemon publishes, with topic names resolved once.
#[derive(Debug, Clone)]
pub struct Outputs {
    accepted_topic: String,
    failed_topic: String,
    commands_topic: String,
    dlq_topic: String,
    state_topic: String,
    priority_format: PriorityFormat,
    /// Whether `queued` state records are encoded only when written (with exactly-once, where
    /// a transaction keeps only an execution's last record).
    defer_state: bool,
    /// The largest message that can be written (see [`crate::kafka::writable_limit`]).
    writable: usize,
}

/// The longest `error_message` written: a decode error can quote a whole field.
const MAX_ERROR_MESSAGE: usize = 2048;

/// The buffer a JSON message is written into, to start with.
const JSON_CAPACITY: usize = 2048;

impl Outputs {
    /// Topic names from config (layout and prefix applied); priorities written in
    /// `priority_format`; messages of up to the producer's `message.max.bytes`.
    pub fn new(kafka: &KafkaConfig, priority_format: PriorityFormat) -> Self {
        Self {
            accepted_topic: kafka.topic_of(EventType::ExecutionAccepted),
            failed_topic: kafka.topic_of(EventType::ExecutionFailed),
            commands_topic: kafka.topic_of(EventType::CreatePodCommand),
            dlq_topic: kafka.dlq_topic_full(),
            state_topic: kafka.state_topic_full(),
            priority_format,
            defer_state: kafka.exactly_once,
            writable: kafka.producer_message_max_bytes(),
        }
    }

    /// The same, writing messages of at most `bytes` (a topic takes no more).
    pub fn writing_at_most(mut self, bytes: usize) -> Self {
        self.writable = bytes;
        self
    }

    /// Refuses a request of `bytes` whose command or state record might not be writable, with
    /// a sentence saying so.
    pub fn check_size(&self, bytes: usize, script_bytes: usize) -> Result<(), String> {
        if bytes.saturating_add(OUTPUT_ENVELOPE) <= self.writable {
            return Ok(());
        }
        Err(format!(
            "the request is {bytes} bytes (a script of {script_bytes} bytes); the coordinator can \
             pass on requests of at most {} bytes (the largest message its topics take, {} \
             bytes, less its envelope); send a smaller script",
            self.writable.saturating_sub(OUTPUT_ENVELOPE),
            self.writable
        ))
    }

    /// A JSON message, with its content type.
    fn json<T: Serialize>(topic: &str, key: &str, value: &T) -> Publish {
        Self::json_encoded(topic, key, Payload::Bytes(encode(value)))
    }

    /// A message of JSON bytes, encoded or to be, with its content type.
    fn json_encoded(topic: &str, key: &str, payload: Payload) -> Publish {
        let mut publish = Publish::json(topic, key, payload);
        publish.headers.push((CONTENT_TYPE_HEADER, JSON.into()));
        publish
    }

    /// An event of ours, marked with [`ORIGIN_HEADER`] (when it comes back on an input topic
    /// the ingress skips it without decoding it) and carrying the request's trace context.
    fn own_event<T: Serialize>(
        topic: &str,
        key: &str,
        value: &T,
        trace: Option<&TraceContext>,
    ) -> Publish {
        let mut publish = Self::json(topic, key, value);
        publish.headers.push((ORIGIN_HEADER, ORIGIN.into()));
        publish
            .headers
            .extend(trace.into_iter().flat_map(TraceContext::headers));
        publish
    }

    /// `execution_accepted` with the true queue position and the wait estimated.
    pub fn accepted(
        &self,
        request: &ExecutionRequested,
        priority: Priority,
        position: usize,
        estimate: Option<Remaining>,
        trace: Option<&TraceContext>,
    ) -> Publish {
        let event = ExecutionAccepted::for_request(
            request,
            position as u64,
            (
                estimate.map(|e| seconds(e.median)),
                estimate.map(|e| seconds(e.bound)),
            ),
            (priority, self.priority_format),
            event_id(),
            timestamp(),
        );
        Self::own_event(&self.accepted_topic, &request.execution_id, &event, trace)
    }

    /// `execution_failed` for a rejection or expiry.
    pub fn failed(
        &self,
        execution_id: &str,
        metadata: &EventMetadata,
        error_type: ErrorType,
        message: &str,
        trace: Option<&TraceContext>,
    ) -> Publish {
        // Published by the coordinator, for the request's user and correlation.
        let event = ExecutionFailed::rejection(
            execution_id,
            metadata.reply(),
            error_type,
            truncated(message, MAX_ERROR_MESSAGE),
            event_id(),
            timestamp(),
        );
        Self::own_event(&self.failed_topic, execution_id, &event, trace)
    }

    /// `create_pod_command` carrying what was reserved; an error if the queued request does
    /// not decode (it was encoded by us, so only a defect can cause that).
    pub fn create_pod_command(
        &self,
        entry: &QueuedExecution<Pending>,
        allocation: &Allocation,
    ) -> Result<Publish, postcard::Error> {
        let request = entry.payload.request(&entry.execution_id)?;
        let command = CreatePodCommand::from_request(
            request,
            allocation.resources.cpu_millis,
            allocation.resources.memory_mib,
            (entry.priority, self.priority_format),
            event_id(),
            timestamp(),
        );
        Ok(Self::own_event(
            &self.commands_topic,
            &entry.execution_id,
            &command,
            entry.payload.trace(),
        ))
    }

    /// The raw input message, to the DLQ, with headers naming where it came from and why, and
    /// its trace context. A message too large to copy whole is cut to what can be written,
    /// with `x-truncated-from` giving its size; its source headers say where the whole is.
    pub fn dead_letter(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        source: (&str, i32, i64),
        error: &str,
        trace: Option<&TraceContext>,
    ) -> Publish {
        let key = key
            .map(|k| String::from_utf8_lossy(truncated_bytes(k, MAX_ERROR_MESSAGE)).into_owned())
            .unwrap_or_default();
        let mut publish = Publish {
            topic: self.dlq_topic.clone(),
            payload: Payload::Tombstone,
            headers: vec![
                ("x-source-topic", source.0.to_owned().into()),
                ("x-source-partition", source.1.to_string().into()),
                ("x-source-offset", source.2.to_string().into()),
                (
                    "x-error",
                    truncated(error, MAX_ERROR_MESSAGE).to_owned().into(),
                ),
                (ORIGIN_HEADER, ORIGIN.into()),
            ],
            key,
        };
        publish
            .headers
            .extend(trace.into_iter().flat_map(TraceContext::headers));
        let payload = payload.unwrap_or_default();
        let room = self.writable.saturating_sub(OUTPUT_ENVELOPE);
        if payload.len() > room {
            publish
                .headers
                .push(("x-truncated-from", payload.len().to_string().into()));
        }
        publish.payload = Payload::Bytes(truncated_bytes(payload, room).to_vec());
        publish
    }

    /// State: queued. With exactly-once it is encoded only if written: within one transaction,
    /// the execution's `allocated` replaces it when the execution is commanded at once.
    pub fn state_queued(&self, entry: &QueuedExecution<Pending>) -> Publish {
        let payload = if self.defer_state {
            let entry = entry.clone();
            Payload::Deferred(Arc::new(move || queued_record(&entry)))
        } else {
            Payload::Bytes(queued_record(entry))
        };
        Self::json_encoded(&self.state_topic, &entry.execution_id, payload)
    }

    /// State: allocated.
    pub fn state_allocated(
        &self,
        entry: &QueuedExecution<Pending>,
        allocation: &Allocation,
    ) -> Publish {
        let r = allocation.resources;
        let record: StateRecord = StateRecord::Allocated {
            cpu_millis: r.cpu_millis,
            memory_mib: r.memory_mib,
            gpu: r.gpu,
        };
        Self::json(&self.state_topic, &entry.execution_id, &record)
    }

    /// State: finished (remembered for duplicate detection).
    pub fn state_finished(&self, execution_id: &str) -> Publish {
        let record: StateRecord = StateRecord::Finished {
            finished_at: now_millis(),
        };
        Self::json(&self.state_topic, execution_id, &record)
    }

    /// State: forgotten (tombstone), once the duplicate memory has let the id go.
    pub fn state_forgotten(&self, execution_id: &str) -> Publish {
        Publish {
            topic: self.state_topic.clone(),
            key: execution_id.to_owned(),
            payload: Payload::Tombstone,
            headers: Vec::new(),
        }
    }
}

/// `value` as JSON.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Room for what is written most (events and state records of a few hundred bytes and a
    // script): the buffer is not grown and copied several times per message.
    let mut payload = Vec::with_capacity(JSON_CAPACITY);
    // Serialising our own event types cannot fail (no maps with non-string keys).
    if serde_json::to_writer(&mut payload, value).is_err() {
        payload.clear();
    }
    payload
}

/// The `queued` state record of `entry`, encoded.
fn queued_record(entry: &QueuedExecution<Pending>) -> Vec<u8> {
    let r = entry.payload.resources;
    let request = match entry.payload.kept() {
        Ok(kept) => Some(KeptRequestJson {
            event_type: EventType::ExecutionRequested,
            execution_id: &entry.execution_id,
            kept,
        }),
        Err(e) => {
            // A defect: a restart would skip this record.
            error!(execution_id = %entry.execution_id, error = %e, "Queued request does not decode; its state record goes without it.");
            None
        }
    };
    let record: StateRecord<_, &TraceContext> = StateRecord::Queued {
        priority: entry.priority,
        arrival: entry.arrival,
        enqueued_at: entry.enqueued_at,
        requeues: entry.requeues,
        cpu_millis: r.cpu_millis,
        memory_mib: r.memory_mib,
        gpu: r.gpu,
        request,
        trace: entry.payload.trace(),
    };
    encode(&record)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `bytes` cut to at most `max`.
fn truncated_bytes(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

#[cfg(test)]
pub(crate) mod tests {
    use coordinator_core::pool::Resources;

    use std::time::Duration;

    use super::*;

    pub(crate) fn golden() -> ExecutionRequested {
        serde_json::from_str(include_str!(
            "../../../tests/golden/execution_requested.json"
        ))
        .expect("the golden request decodes")
    }

    pub(crate) fn queued(request: &ExecutionRequested) -> QueuedExecution<Pending> {
        QueuedExecution {
            execution_id: request.execution_id.clone(),
            user_id: request.metadata.user_key().to_owned(),
            priority: Priority::Normal,
            arrival: 7,
            enqueued_at: 1_000,
            requeues: 0,
            payload: Pending::new(request, Resources::new(200, 128, 0), Some(trace())),
        }
    }

    fn trace() -> Box<TraceContext> {
        Box::new(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=1".into()),
        })
    }

    fn header<'a>(publish: &'a Publish, name: &str) -> Option<&'a str> {
        publish
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn with_exactly_once_the_queued_record_is_encoded_only_when_written() {
        let request = golden();
        let entry = queued(&request);
        let kafka = |exactly_once| KafkaConfig {
            exactly_once,
            ..KafkaConfig::default()
        };
        let deferred = Outputs::new(&kafka(true), PriorityFormat::Name).state_queued(&entry);
        let now = Outputs::new(&kafka(false), PriorityFormat::Name).state_queued(&entry);
        assert!(matches!(deferred.payload, Payload::Deferred(_)));
        assert!(matches!(now.payload, Payload::Bytes(_)));
        assert_eq!(deferred.payload.bytes(), now.payload.bytes());
        assert_eq!(deferred.headers, now.headers);
        let written = deferred.encoded();
        assert!(matches!(written.payload, Payload::Bytes(_)));
        assert_eq!(written.payload.bytes(), now.payload.bytes());
    }

    #[test]
    fn the_queued_record_restores_the_kept_request() {
        let request = golden();
        let entry = queued(&request);
        let record =
            Outputs::new(&KafkaConfig::default(), PriorityFormat::Name).state_queued(&entry);
        assert_eq!(header(&record, CONTENT_TYPE_HEADER), Some(JSON));
        let payload = record
            .payload
            .bytes()
            .expect("a queued record has a payload")
            .into_owned();
        let text = String::from_utf8(payload.clone()).expect("JSON");
        for gone in [
            "event_id",
            "timestamp",
            "user_agent",
            "ip_address",
            "cpu_request",
        ] {
            assert!(!text.contains(gone), "{gone} kept: {text}");
        }
        let StateRecord::Queued {
            priority,
            arrival,
            request: restored,
            trace: restored_trace,
            ..
        } = serde_json::from_slice(&payload).expect("the record decodes")
        else {
            panic!("not a queued record: {text}");
        };
        assert_eq!((priority, arrival), (Priority::Normal, 7));
        assert_eq!(
            restored_trace,
            Some(trace()),
            "restore keeps the trace context"
        );
        let again = Pending::new(&restored, entry.payload.resources, restored_trace);
        assert_eq!(again, entry.payload, "restore keeps the same request");
    }

    #[test]
    fn outputs_go_to_the_topic_of_their_type_with_content_type_and_trace() {
        let request = golden();
        let entry = queued(&request);
        let allocation = Allocation {
            execution_id: entry.execution_id.clone(),
            resources: entry.payload.resources,
        };
        let kafka = KafkaConfig {
            topic_prefix: "p.".into(),
            ..KafkaConfig::default()
        };
        let outputs = Outputs::new(&kafka, PriorityFormat::Name);
        let accepted = outputs.accepted(&request, Priority::Normal, 0, None, entry.payload.trace());
        let failed = outputs.failed(
            &entry.execution_id,
            &request.metadata,
            ErrorType::Timeout,
            "too long",
            entry.payload.trace(),
        );
        let command = outputs
            .create_pod_command(&entry, &allocation)
            .expect("the kept request decodes");
        for (publish, topic) in [
            (&accepted, "p.execution_accepted"),
            (&failed, "p.execution_failed"),
            (&command, "p.create_pod_command"),
        ] {
            assert_eq!(publish.topic, topic);
            assert_eq!(header(publish, CONTENT_TYPE_HEADER), Some(JSON));
            assert_eq!(header(publish, ORIGIN_HEADER), Some(ORIGIN));
            assert_eq!(
                header(publish, "traceparent"),
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            );
            assert_eq!(header(publish, "tracestate"), Some("vendor=1"));
            let event: serde_json::Value =
                serde_json::from_slice(&publish.payload.bytes().unwrap_or_default()).expect("JSON");
            assert!(event["metadata"]["user_id"].is_string(), "{event}");
        }
        let event: serde_json::Value =
            serde_json::from_slice(&command.payload.bytes().unwrap_or_default()).expect("JSON");
        assert_eq!(event["priority"], "normal");

        let shared = KafkaConfig {
            topic_layout: coordinator_core::config::TopicLayout::Shared,
            ..KafkaConfig::default()
        };
        let outputs = Outputs::new(&shared, PriorityFormat::Number);
        let estimate = Remaining {
            median: Duration::from_millis(2_340),
            bound: Duration::from_secs(9),
        };
        let accepted = outputs.accepted(&request, Priority::Low, 3, Some(estimate), None);
        assert_eq!(accepted.topic, "execution_events");
        assert_eq!(header(&accepted, "traceparent"), None);
        let event: serde_json::Value =
            serde_json::from_slice(&accepted.payload.bytes().unwrap_or_default()).expect("JSON");
        assert_eq!(event["priority"], 8);
        assert_eq!(event["estimated_wait_seconds"], 2.3);
        assert_eq!(event["estimated_wait_bound_seconds"], 9.0);
        let command = outputs
            .create_pod_command(&entry, &allocation)
            .expect("the kept request decodes");
        assert_eq!(command.topic, "saga_commands");
    }
}
