//! Wire-format tests against the golden events in `tests/golden/`.
//!
//! Consumed events: decode the golden file, re-encode, and compare as JSON values (minus the
//! unknown fields the golden carries on purpose). Produced events: build them with the
//! constructors from the golden request and compare to the golden file.
//!
//! The files: `tests/golden/*.json` are the older shape (numeric priority, `correlation_id`,
//! `ip_address`, `user_agent`, a null `user_id`) and what the coordinator writes in the default
//! `wire.priority_format` (name); `number/` what it writes with "number"; `2026-02/` the shapes
//! of Integr8sCode's last release with a coordinator (priority by name, four metadata fields,
//! `execution_timeout`) and what the coordinator writes for its request; `2026-03/` the shapes
//! after it (`execution_cancelled` without `reason`, `execution_failed` without
//! `error_message` or `exit_code`).

use std::path::PathBuf;

use coordinator_core::events::{
    decode_input, saga_id, CreatePodCommand, DecodeErrorKind, ErrorType, EventMetadata, EventType,
    ExecutionAccepted, ExecutionFailed, ExecutionRequested, InputEvent, OutputEvent, WirePriority,
    SERVICE_VERSION,
};
use coordinator_core::priority::PriorityFormat;
use coordinator_core::Priority;
use serde_json::{json, Value};

const MAX_BYTES: usize = 1 << 20;

/// `tests/golden/<shape>/<event_type>.json`; `shape` "" for the top level.
fn golden_in(shape: &str, event_type: EventType) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(shape)
        .join(format!("{}.json", event_type.as_str()));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn golden_bytes(event_type: EventType) -> Vec<u8> {
    golden_in("", event_type)
}

fn golden_value_in(shape: &str, event_type: EventType) -> Value {
    serde_json::from_slice(&golden_in(shape, event_type)).expect("golden files are JSON")
}

fn golden_value(event_type: EventType) -> Value {
    serde_json::from_slice(&golden_bytes(event_type)).expect("golden files are JSON")
}

fn decode_golden(event_type: EventType) -> InputEvent {
    decode_input(&golden_bytes(event_type), MAX_BYTES)
        .unwrap_or_else(|e| panic!("decoding golden {event_type}: {e}"))
}

fn golden_request() -> ExecutionRequested {
    match decode_golden(EventType::ExecutionRequested) {
        InputEvent::Requested(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The golden value without the given top-level fields (the unknown extras).
fn without(mut value: Value, fields: &[&str]) -> Value {
    let object = value.as_object_mut().expect("golden events are objects");
    for field in fields {
        assert!(
            object.remove(*field).is_some(),
            "golden has no field {field}"
        );
    }
    value
}

fn bytes_to_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("produced events are JSON")
}

#[test]
fn execution_requested_round_trips() {
    let request = golden_request();
    assert_eq!(request.priority_level(), Ok(Priority::Normal));
    assert_eq!(request.cpu_request_millis(), Ok(Some(200)));
    assert_eq!(request.memory_request_mib(), Ok(Some(128)));
    assert_eq!(
        request.metadata.user_key(),
        "5f8a3b2c-1d4e-4f6a-9b7c-8d0e1f2a3b4c"
    );
    assert_eq!(
        bytes_to_value(&request.to_json_bytes()),
        without(
            golden_value(EventType::ExecutionRequested),
            &["trace_context"]
        )
    );
}

#[test]
fn execution_cancelled_round_trips_with_null_user() {
    let InputEvent::Cancelled(cancel) = decode_golden(EventType::ExecutionCancelled) else {
        panic!("expected a cancellation");
    };
    assert_eq!(cancel.metadata.user_id, None);
    assert_eq!(cancel.metadata.user_key(), "anonymous");
    assert_eq!(
        bytes_to_value(&cancel.to_json_bytes()),
        golden_value(EventType::ExecutionCancelled)
    );
}

#[test]
fn execution_completed_round_trips() {
    let InputEvent::Completed(done) = decode_golden(EventType::ExecutionCompleted) else {
        panic!("expected a completion");
    };
    assert_eq!(done.exit_code, 0);
    assert_eq!(
        done.resource_usage.as_ref().map(|u| u.peak_memory_kb),
        Some(9216)
    );
    assert_eq!(
        bytes_to_value(&done.to_json_bytes()),
        without(golden_value(EventType::ExecutionCompleted), &["pod_name"])
    );
}

#[test]
fn execution_failed_round_trips_and_matches_the_rejection_constructor() {
    let InputEvent::Failed(failed) = decode_golden(EventType::ExecutionFailed) else {
        panic!("expected a failure");
    };
    let golden = golden_value(EventType::ExecutionFailed);
    assert_eq!(bytes_to_value(&failed.to_json_bytes()), golden);

    let request = golden_request();
    let message = "Rejected: user 5f8a3b2c-1d4e-4f6a-9b7c-8d0e1f2a3b4c already has 100 executions \
                   queued (max_executions_per_user); wait for some to finish.";
    let built = ExecutionFailed::rejection(
        &request.execution_id,
        request.metadata.clone(),
        ErrorType::ResourceLimit,
        message,
        "b1d3f5a7-9c2e-4b6d-8f0a-3c5e7a9b1d4f".to_owned(),
        "2025-06-01T12:00:00.131072Z".to_owned(),
    );
    assert_eq!(built, failed);
    assert_eq!(
        bytes_to_value(&OutputEvent::from(built).to_json_bytes()),
        golden
    );
}

#[test]
fn execution_accepted_matches_the_constructor() {
    let request = golden_request();
    let accepted = ExecutionAccepted::for_request(
        &request,
        2,
        (Some(1.5), Some(4.0)),
        (Priority::Normal, PriorityFormat::Name),
        "9b2d4f6a-1c3e-4a5b-8d7f-0e2c4a6b8d1f".to_owned(),
        "2025-06-01T12:00:00.131072Z".to_owned(),
    );
    assert_eq!(accepted.metadata, request.metadata, "metadata is copied");
    let golden = golden_value(EventType::ExecutionAccepted);
    assert_eq!(bytes_to_value(&accepted.to_json_bytes()), golden);
    let number = ExecutionAccepted {
        priority: WirePriority::Number(5),
        ..accepted.clone()
    };
    assert_eq!(
        bytes_to_value(&number.to_json_bytes()),
        golden_value_in("number", EventType::ExecutionAccepted)
    );
    // Read back, it decodes (as an event the coordinator ignores) and re-encodes identically.
    let decoded: ExecutionAccepted = serde_json::from_value(golden.clone()).unwrap();
    assert_eq!(decoded, accepted);
    assert!(matches!(
        decode_input(&golden_bytes(EventType::ExecutionAccepted), MAX_BYTES),
        Ok(InputEvent::Other { ref event_type }) if event_type == "execution_accepted"
    ));
}

#[test]
fn create_pod_command_matches_the_constructor() {
    let request = golden_request();
    let command = CreatePodCommand::for_request(
        &request,
        200,
        128,
        (Priority::Normal, PriorityFormat::Name),
        "e4a6c8b0-2d4f-4e6a-9c8b-1f3e5d7c9a2b".to_owned(),
        "2025-06-01T12:00:00.502211Z".to_owned(),
    );
    let mut golden = golden_value(EventType::CreatePodCommand);
    // The golden file pins the version it was written with; the constructor writes the crate's.
    golden["metadata"]["service_version"] = Value::from(SERVICE_VERSION);
    assert_eq!(bytes_to_value(&command.to_json_bytes()), golden);
    assert_eq!(command.saga_id, saga_id(&request.execution_id).to_string());
    let decoded: CreatePodCommand = serde_json::from_value(golden).unwrap();
    assert_eq!(decoded, command);

    let number = CreatePodCommand::for_request(
        &request,
        200,
        128,
        (Priority::Normal, PriorityFormat::Number),
        command.event_id.clone(),
        command.timestamp.clone(),
    );
    let mut golden = golden_value_in("number", EventType::CreatePodCommand);
    golden["metadata"]["service_version"] = Value::from(SERVICE_VERSION);
    assert_eq!(bytes_to_value(&number.to_json_bytes()), golden);
}

#[test]
fn a_redelivered_request_yields_the_same_saga_id() {
    let request = golden_request();
    let first = CreatePodCommand::for_request(
        &request,
        200,
        128,
        (Priority::Normal, PriorityFormat::Name),
        "a".into(),
        "t1".into(),
    );
    let again = CreatePodCommand::for_request(
        &request,
        200,
        128,
        (Priority::Normal, PriorityFormat::Name),
        "b".into(),
        "t2".into(),
    );
    assert_eq!(first.saga_id, again.saga_id);
    assert_eq!(
        first.saga_id,
        golden_value(EventType::CreatePodCommand)["saga_id"]
    );
}

#[test]
fn every_produced_event_carries_its_event_type() {
    let request = golden_request();
    let events: Vec<OutputEvent> = vec![
        ExecutionAccepted::for_request(
            &request,
            0,
            (None, None),
            (Priority::High, PriorityFormat::Name),
            "a".into(),
            "t".into(),
        )
        .into(),
        ExecutionFailed::rejection(
            "x",
            EventMetadata::coordinator(),
            ErrorType::Timeout,
            "Expired.",
            "b".into(),
            "t".into(),
        )
        .into(),
        CreatePodCommand::for_request(
            &request,
            1,
            1,
            (Priority::Low, PriorityFormat::Number),
            "c".into(),
            "t".into(),
        )
        .into(),
    ];
    for event in events {
        let value = bytes_to_value(&event.to_json_bytes());
        assert_eq!(value["event_type"], event.event_type().as_str());
        assert_eq!(value["event_version"], "1.0");
        assert_eq!(value["event_id"], event.event_id());
        assert_eq!(value["execution_id"], event.execution_id());
    }
}

#[test]
fn a_worker_failure_decodes() {
    let worker_failure = json!({
        "event_id": "f0e1d2c3-b4a5-4968-8778-695a4b3c2d1e",
        "event_type": "execution_failed",
        "timestamp": "2025-06-01T12:00:03.000001Z",
        "aggregate_id": "exec-9",
        "metadata": {"service_name": "pod-monitor", "service_version": "1.0.0", "user_id": null},
        "execution_id": "exec-9",
        "exit_code": 1,
        "error_type": "script_error",
        "error_message": "Traceback (most recent call last): ...",
        "resource_usage": {"execution_time_wall_seconds": 0.2, "peak_memory_kb": 10240}
    });
    let event = decode_input(&serde_json::to_vec(&worker_failure).unwrap(), MAX_BYTES).unwrap();
    let InputEvent::Failed(failed) = event else {
        panic!("expected a failure");
    };
    assert_eq!(failed.error_type, ErrorType::ScriptError);
    assert_eq!(failed.stdout, "");
    assert_eq!(failed.resource_usage.unwrap().cpu_time_jiffies, 0);
    assert_eq!(failed.metadata.environment, "production");
}

// ---- Integr8sCode's shapes since 2026 ----

/// Decodes `tests/golden/<shape>/<event_type>.json`.
fn decode_shape(shape: &str, event_type: EventType) -> InputEvent {
    decode_input(&golden_in(shape, event_type), MAX_BYTES)
        .unwrap_or_else(|e| panic!("decoding golden {shape}/{event_type}: {e}"))
}

#[test]
fn every_consumed_shape_of_both_eras_decodes_and_round_trips() {
    for (shape, event_type) in [
        ("2026-02", EventType::ExecutionRequested),
        ("2026-02", EventType::ExecutionCancelled),
        ("2026-02", EventType::ExecutionCompleted),
        ("2026-02", EventType::ExecutionFailed),
        ("2026-02", EventType::ExecutionTimeout),
    ] {
        let event = decode_shape(shape, event_type);
        assert_eq!(event.event_type(), event_type.as_str());
        let bytes = match &event {
            InputEvent::Requested(e) => e.to_json_bytes(),
            InputEvent::Cancelled(e) => e.to_json_bytes(),
            InputEvent::Completed(e) => e.to_json_bytes(),
            InputEvent::Failed(e) => e.to_json_bytes(),
            InputEvent::TimedOut(e) => e.to_json_bytes(),
            InputEvent::Other { .. } => panic!("{shape}/{event_type} read as another type"),
        };
        assert_eq!(
            bytes_to_value(&bytes),
            golden_value_in(shape, event_type),
            "{shape}/{event_type} re-encodes as it was written"
        );
    }
}

#[test]
fn a_named_priority_request_of_2026_is_read_at_its_level() {
    let InputEvent::Requested(request) = decode_shape("2026-02", EventType::ExecutionRequested)
    else {
        panic!("expected a request");
    };
    assert_eq!(request.priority_level(), Ok(Priority::High));
    assert_eq!(request.metadata.correlation_id, "");
    assert_eq!(
        request.metadata.user_key(),
        "9d1e6c52-7a3b-4f08-b2c4-5e8f1a0d3b67"
    );
}

#[test]
fn the_cancellation_and_failure_of_after_2026_02_need_no_reason_nor_message() {
    let InputEvent::Cancelled(cancel) = decode_shape("2026-03", EventType::ExecutionCancelled)
    else {
        panic!("expected a cancellation");
    };
    assert_eq!(cancel.reason, None);
    assert_eq!(
        cancel.cancelled_by.as_deref(),
        Some("9d1e6c52-7a3b-4f08-b2c4-5e8f1a0d3b67")
    );
    assert!(cancel.force_terminated);
    let InputEvent::Failed(failed) = decode_shape("2026-03", EventType::ExecutionFailed) else {
        panic!("expected a failure");
    };
    assert_eq!(failed.error_message, "");
    assert_eq!(failed.exit_code, 1, "Integr8sCode's default exit code");
    assert_eq!(failed.error_type, ErrorType::SystemError);
}

#[test]
fn what_the_coordinator_writes_for_a_2026_request_is_its_golden_shape() {
    let InputEvent::Requested(request) = decode_shape("2026-02", EventType::ExecutionRequested)
    else {
        panic!("expected a request");
    };
    let level = request.priority_level().expect("a valid level");
    let accepted = ExecutionAccepted::for_request(
        &request,
        0,
        (None, None),
        (level, PriorityFormat::Name),
        "16b0a3d2-5f8e-4c71-9b06-2e4d8a1c7f35".into(),
        "2026-02-20T10:00:00.311Z".into(),
    );
    assert_eq!(
        bytes_to_value(&accepted.to_json_bytes()),
        golden_value_in("2026-02", EventType::ExecutionAccepted)
    );
    let command = CreatePodCommand::for_request(
        &request,
        200,
        128,
        (level, PriorityFormat::Name),
        "1e7f94e7-9a6c-41f1-a267-cbfee49923b5".into(),
        "2026-02-20T10:00:00.311Z".into(),
    );
    let mut golden = golden_value_in("2026-02", EventType::CreatePodCommand);
    golden["metadata"]["service_version"] = Value::from(SERVICE_VERSION);
    assert_eq!(bytes_to_value(&command.to_json_bytes()), golden);
}

/// A field of a model, and whether it accepts a JSON value.
type Field = (&'static str, fn(&Value) -> bool);

/// Integr8sCode's `CreatePodCommandEvent` as its last coordinator release validates it
/// (`backend/app/domain/events/typed.py`, pydantic, extra fields ignored): each field, and
/// what JSON value it accepts.
const CREATE_POD_COMMAND_MODEL: &[Field] = &[
    ("event_id", |v| v.is_string()),
    ("event_type", |v| v == "create_pod_command"),
    ("event_version", |v| v.is_string()),
    ("timestamp", |v| v.as_str().is_some_and(is_rfc3339)),
    ("aggregate_id", |v| v.is_string() || v.is_null()),
    ("saga_id", |v| v.is_string()),
    ("execution_id", |v| v.is_string()),
    ("script", |v| v.is_string()),
    ("language", |v| v.is_string()),
    ("language_version", |v| v.is_string()),
    ("runtime_image", |v| v.is_string()),
    ("runtime_command", |v| {
        v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    }),
    ("runtime_filename", |v| v.is_string()),
    ("timeout_seconds", |v| v.is_i64() || v.is_u64()),
    ("cpu_limit", |v| v.is_string()),
    ("memory_limit", |v| v.is_string()),
    ("cpu_request", |v| v.is_string()),
    ("memory_request", |v| v.is_string()),
    ("priority", |v| {
        ["critical", "high", "normal", "low", "background"].contains(&v.as_str().unwrap_or(""))
    }),
];

/// Its `EventMetadata`: a dataclass of four fields, `user_id` a string (null is refused) and
/// `environment` one of four names.
const METADATA_MODEL: &[Field] = &[
    ("service_name", |v| v.is_string()),
    ("service_version", |v| v.is_string()),
    ("user_id", |v| v.is_string()),
    ("environment", |v| {
        ["development", "staging", "production", "test"].contains(&v.as_str().unwrap_or(""))
    }),
];

/// What pydantic's datetime accepts of the timestamps the coordinator writes.
fn is_rfc3339(text: &str) -> bool {
    humantime::parse_rfc3339(text).is_ok()
}

#[test]
fn the_command_for_a_2026_request_satisfies_integr8scodes_model_field_by_field() {
    for shape in ["2026-02", ""] {
        let request = match decode_shape(shape, EventType::ExecutionRequested) {
            InputEvent::Requested(r) => r,
            other => panic!("expected a request, got {other:?}"),
        };
        let level = request.priority_level().expect("a valid level");
        let command = CreatePodCommand::for_request(
            &request,
            200,
            128,
            (level, PriorityFormat::Name),
            "e".into(),
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        );
        let value = bytes_to_value(&command.to_json_bytes());
        for (field, accepts) in CREATE_POD_COMMAND_MODEL {
            assert!(
                accepts(&value[*field]),
                "{shape}: field {field} = {} is not what CreatePodCommandEvent accepts",
                value[*field]
            );
        }
        for (field, accepts) in METADATA_MODEL {
            assert!(
                accepts(&value["metadata"][*field]),
                "{shape}: metadata.{field} = {} is not what EventMetadata accepts",
                value["metadata"][*field]
            );
        }
    }
}

// ---- Decode errors ----

fn request_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut value = golden_value(EventType::ExecutionRequested);
    edit(value.as_object_mut().unwrap());
    serde_json::to_vec(&value).unwrap()
}

const GOLDEN_EXECUTION_ID: &str = "6a0e3c1b-5d2f-4b8e-9f47-2c1d8e0a9b33";

#[test]
fn not_json_is_rejected() {
    for bytes in [
        &b"not json at all"[..],
        b"{\"event_type\": \"execution_requested\"",
        b"\xff\xfe",
    ] {
        let err = decode_input(bytes, MAX_BYTES).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NotJson);
        assert!(
            err.message.starts_with("message is not valid JSON"),
            "{}",
            err.message
        );
        assert_eq!(err.execution_id, None);
    }
}

#[test]
fn missing_event_type_is_rejected_and_the_execution_id_is_kept() {
    let err = decode_input(&request_with(|o| drop(o.remove("event_type"))), MAX_BYTES).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::MissingEventType);
    assert!(err.message.contains("`event_type`"), "{}", err.message);
    assert_eq!(err.execution_id.as_deref(), Some(GOLDEN_EXECUTION_ID));
    assert_eq!(err.event_type, None);
    assert_eq!(err.to_string(), err.message);
}

#[test]
fn wrong_type_for_priority_is_rejected_naming_the_field() {
    let bytes = request_with(|o| {
        o.insert("priority".into(), json!({"level": "high"}));
    });
    let err = decode_input(&bytes, MAX_BYTES).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
    assert!(err.message.contains("`priority`"), "{}", err.message);
    assert!(
        err.message
            .contains("expected a priority name (\"critical\", \"high\", \"normal\", \"low\", \"background\") or number (0, 1, 5, 8, 10)"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("execution_requested"),
        "{}",
        err.message
    );
    assert_eq!(err.execution_id.as_deref(), Some(GOLDEN_EXECUTION_ID));
    assert_eq!(err.event_type.as_deref(), Some("execution_requested"));
    assert_eq!(
        err.metadata.as_ref().and_then(|m| m.user_id.as_deref()),
        Some("5f8a3b2c-1d4e-4f6a-9b7c-8d0e1f2a3b4c")
    );

    let reply = ExecutionFailed::for_decode_error(&err, "r".into(), "t".into()).unwrap();
    assert_eq!(reply.execution_id, GOLDEN_EXECUTION_ID);
    assert_eq!(reply.error_type, ErrorType::SystemError);
    assert_eq!(reply.exit_code, -1);
    assert_eq!(reply.error_message, reply.stderr);
}

#[test]
fn missing_execution_id_is_rejected_and_aggregate_id_stands_in() {
    let err =
        decode_input(&request_with(|o| drop(o.remove("execution_id"))), MAX_BYTES).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
    assert!(
        err.message.contains("missing field `execution_id`"),
        "{}",
        err.message
    );
    // Integr8sCode sets aggregate_id to the execution id, so the reply can still be addressed.
    assert_eq!(err.execution_id.as_deref(), Some(GOLDEN_EXECUTION_ID));

    let bytes = request_with(|o| {
        o.remove("execution_id");
        o.insert("aggregate_id".into(), Value::Null);
    });
    let err = decode_input(&bytes, MAX_BYTES).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
    assert_eq!(err.execution_id, None);
    assert_eq!(
        ExecutionFailed::for_decode_error(&err, "r".into(), "t".into()),
        None
    );
}

#[test]
fn missing_required_fields_are_named() {
    for field in [
        "script",
        "language",
        "runtime_image",
        "timeout_seconds",
        "metadata",
    ] {
        let err = decode_input(&request_with(|o| drop(o.remove(field))), MAX_BYTES).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidFields, "{field}");
        assert!(
            err.message.contains(&format!("`{field}`")),
            "{field}: {}",
            err.message
        );
    }
}

#[test]
fn oversize_is_rejected_before_decoding() {
    let bytes = golden_bytes(EventType::ExecutionRequested);
    let err = decode_input(&bytes, 100).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Oversize);
    assert!(
        err.message.contains(&format!("{} bytes", bytes.len())),
        "{}",
        err.message
    );
    assert!(err.message.contains("max_message_bytes"), "{}", err.message);
    assert_eq!(err.execution_id.as_deref(), Some(GOLDEN_EXECUTION_ID));
    assert_eq!(err.event_type.as_deref(), Some("execution_requested"));
    assert!(decode_input(&bytes, bytes.len()).is_ok());
}

#[test]
fn kinds_have_stable_names() {
    let names: Vec<_> = [
        DecodeErrorKind::Oversize,
        DecodeErrorKind::NotJson,
        DecodeErrorKind::NotAnObject,
        DecodeErrorKind::MissingEventType,
        DecodeErrorKind::InvalidFields,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "oversize",
            "not_json",
            "not_an_object",
            "missing_event_type",
            "invalid_fields"
        ]
    );
}
