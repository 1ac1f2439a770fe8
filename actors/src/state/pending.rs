//! What a queued execution keeps of its request ([`Pending`]): the fields its command and its
//! replies are built from, compactly encoded, and the resources it will reserve.

use coordinator_core::events::{
    EventMetadata, EventType, ExecutionRequested, WirePriority, DEFAULT_PRIORITY, EVENT_VERSION,
};
use std::time::Duration;

use coordinator_core::estimate::runtime_keys;
use coordinator_core::estimate::waits::Runs;
use coordinator_core::inspect::Waiting;
use coordinator_core::pool::Resources;
use coordinator_core::Priority;
use serde::{Deserialize, Serialize};

use crate::kafka::trace::TraceContext;

/// A queued request and what it will reserve.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// What is kept of the request ([`Kept`]), in postcard's compact binary form: one
    /// allocation of about the script's size while it waits (a decoded request is a score of
    /// allocations, its JSON a third larger), decoded when its command or its `queued` state
    /// record is built.
    request: Box<[u8]>,
    /// Resolved amounts (defaults applied, clamped to caps).
    pub resources: Resources,
    /// The request's `timeout_seconds`: how long it may hold its resources at most, which the
    /// planner counts on when it works out when the pool will have room.
    pub timeout: Duration,
    /// The level the request asked for (a demotion lowers the queue entry's, not this).
    pub asked: Priority,
    /// Its language and user, and its language, as the wait estimator learns run times by.
    pub runtime_keys: (u64, u64),
    /// The request's trace context, carried onto its command.
    trace: Option<Box<TraceContext>>,
}

impl Pending {
    /// `request`, to reserve `resources`, traced by `trace`; only what its command and its
    /// replies are built from is kept.
    pub fn new(
        request: &ExecutionRequested,
        resources: Resources,
        trace: Option<Box<TraceContext>>,
    ) -> Self {
        let timeout = Duration::from_secs(request.timeout_seconds);
        let asked = request.priority_level().unwrap_or(DEFAULT_PRIORITY);
        let runtime_keys = runtime_keys(&request.language, request.metadata.user_key());
        let kept = Kept {
            metadata: KeptMetadata {
                service_name: &request.metadata.service_name,
                service_version: &request.metadata.service_version,
                correlation_id: &request.metadata.correlation_id,
                user_id: request.metadata.user_id.as_deref(),
                environment: &request.metadata.environment,
            },
            script: &request.script,
            language: &request.language,
            language_version: &request.language_version,
            runtime_image: &request.runtime_image,
            runtime_command: request.runtime_command.iter().map(String::as_str).collect(),
            runtime_filename: &request.runtime_filename,
            timeout_seconds: request.timeout_seconds,
            cpu_limit: request.cpu_limit.as_deref(),
            memory_limit: request.memory_limit.as_deref(),
            // A queued request's priority is valid; the level asked is kept as its number.
            priority: asked.value(),
            gpu_request: request.gpu_request,
        };
        // Encoding into memory cannot fail.
        let request = postcard::to_allocvec(&kept).unwrap_or_default();
        Self {
            request: request.into_boxed_slice(),
            resources,
            timeout,
            asked,
            runtime_keys,
            trace,
        }
    }

    /// The request's trace context, if it had one.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }

    /// What was kept, borrowed from the encoding; an error only if it does not decode, which
    /// would be a defect (it was encoded by [`Pending::new`]).
    pub(super) fn kept(&self) -> Result<Kept<'_>, postcard::Error> {
        postcard::from_bytes(&self.request)
    }

    /// The request of execution `execution_id`, as kept: the dropped fields take their
    /// defaults.
    pub fn request(&self, execution_id: &str) -> Result<ExecutionRequested, postcard::Error> {
        let kept = self.kept()?;
        let m = &kept.metadata;
        Ok(ExecutionRequested {
            event_id: String::new(),
            event_type: EventType::ExecutionRequested,
            event_version: EVENT_VERSION.to_owned(),
            timestamp: String::new(),
            aggregate_id: Some(execution_id.to_owned()),
            metadata: EventMetadata {
                service_name: m.service_name.to_owned(),
                service_version: m.service_version.to_owned(),
                correlation_id: m.correlation_id.to_owned(),
                user_id: m.user_id.map(str::to_owned),
                ip_address: None,
                user_agent: None,
                environment: m.environment.to_owned(),
            },
            execution_id: execution_id.to_owned(),
            script: kept.script.to_owned(),
            language: kept.language.to_owned(),
            language_version: kept.language_version.to_owned(),
            runtime_image: kept.runtime_image.to_owned(),
            runtime_command: kept
                .runtime_command
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            runtime_filename: kept.runtime_filename.to_owned(),
            timeout_seconds: kept.timeout_seconds,
            cpu_limit: kept.cpu_limit.map(str::to_owned),
            memory_limit: kept.memory_limit.map(str::to_owned),
            cpu_request: None,
            memory_request: None,
            priority: WirePriority::Number(kept.priority),
            gpu_request: kept.gpu_request,
        })
    }
}

impl Runs for Pending {
    fn reserves(&self) -> Resources {
        self.resources
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn runtime_keys(&self) -> (u64, u64) {
        self.runtime_keys
    }
}

impl Waiting for Pending {
    fn asked(&self) -> Priority {
        self.asked
    }

    fn resources(&self) -> Resources {
        self.resources
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What a queued execution keeps of its request: the fields of its command and of the metadata
/// its replies carry. Dropped: the event's id, version and time, the aggregate id, the client's
/// address and agent, and the resource requests (resolved into [`Pending::resources`]); the
/// execution id is the queue entry's.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Kept<'a> {
    #[serde(borrow)]
    metadata: KeptMetadata<'a>,
    script: &'a str,
    language: &'a str,
    language_version: &'a str,
    runtime_image: &'a str,
    #[serde(borrow)]
    runtime_command: Vec<&'a str>,
    runtime_filename: &'a str,
    timeout_seconds: u64,
    #[serde(borrow)]
    cpu_limit: Option<&'a str>,
    #[serde(borrow)]
    memory_limit: Option<&'a str>,
    /// The level asked, as its number.
    priority: i64,
    gpu_request: Option<u32>,
}

/// The request's metadata without the client's address and agent.
#[derive(Debug, Serialize, Deserialize)]
struct KeptMetadata<'a> {
    service_name: &'a str,
    service_version: &'a str,
    correlation_id: &'a str,
    #[serde(borrow)]
    user_id: Option<&'a str>,
    environment: &'a str,
}

/// The kept request as JSON in a `queued` state record: it decodes as an
/// [`ExecutionRequested`].
#[derive(Serialize)]
pub(super) struct KeptRequestJson<'a> {
    pub(super) event_type: EventType,
    pub(super) execution_id: &'a str,
    #[serde(flatten)]
    pub(super) kept: Kept<'a>,
}

#[cfg(test)]
mod tests {
    use coordinator_core::events::CreatePodCommand;
    use coordinator_core::priority::PriorityFormat;
    use coordinator_core::Priority;

    use super::*;
    use crate::state::outputs::tests::{golden, queued};

    #[test]
    fn a_queued_request_keeps_what_its_command_and_replies_need() {
        let request = golden();
        let entry = queued(&request);
        let kept = entry
            .payload
            .request(&request.execution_id)
            .expect("the kept request decodes");
        let command = |r: &ExecutionRequested| {
            CreatePodCommand::for_request(
                r,
                200,
                128,
                (Priority::Normal, PriorityFormat::Name),
                "e".into(),
                "t".into(),
            )
        };
        assert_eq!(command(&kept), command(&request));
        assert_eq!(kept.metadata.reply(), request.metadata.reply());
        assert_eq!(kept.metadata.user_key(), request.metadata.user_key());
        // Smaller than the request's JSON, which is what an entry used to hold.
        let json = serde_json::to_vec(&request).expect("encodes");
        assert!(entry.payload.request.len() + 400 < json.len());
    }
}
