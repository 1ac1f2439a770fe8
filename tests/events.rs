//! Wire-format tests against the golden events in `tests/golden/` (SPEC §2, §3.6).
//!
//! Consumed events: decode the golden file, re-encode, and compare as JSON values (minus the
//! unknown fields the golden carries on purpose). Produced events: build them with the
//! constructors from the golden request and compare to the golden file.

use std::path::PathBuf;

use coordinator_core::events::{
    decode_input, saga_id, CreatePodCommand, DecodeErrorKind, ErrorType, EventMetadata, EventType,
    ExecutionAccepted, ExecutionFailed, ExecutionRequested, InputEvent, OutputEvent,
    SERVICE_VERSION,
};
use coordinator_core::Priority;
use serde_json::{json, Value};

const MAX_BYTES: usize = 1 << 20;

fn golden_path(event_type: EventType) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.json", event_type.as_str()))
}

fn golden_bytes(event_type: EventType) -> Vec<u8> {
    let path = golden_path(event_type);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
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
        Some(1.5),
        Priority::Normal,
        "9b2d4f6a-1c3e-4a5b-8d7f-0e2c4a6b8d1f".to_owned(),
        "2025-06-01T12:00:00.131072Z".to_owned(),
    );
    assert_eq!(accepted.metadata, request.metadata, "metadata is copied");
    let golden = golden_value(EventType::ExecutionAccepted);
    assert_eq!(bytes_to_value(&accepted.to_json_bytes()), golden);
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
        Priority::Normal,
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
}

#[test]
fn a_redelivered_request_yields_the_same_saga_id() {
    let request = golden_request();
    let first = CreatePodCommand::for_request(
        &request,
        200,
        128,
        Priority::Normal,
        "a".into(),
        "t1".into(),
    );
    let again = CreatePodCommand::for_request(
        &request,
        200,
        128,
        Priority::Normal,
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
        ExecutionAccepted::for_request(&request, 0, None, Priority::High, "a".into(), "t".into())
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
        CreatePodCommand::for_request(&request, 1, 1, Priority::Low, "c".into(), "t".into()).into(),
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

// ---- Decode errors (SPEC §3.6) ----

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
        o.insert("priority".into(), json!("high"));
    });
    let err = decode_input(&bytes, MAX_BYTES).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::InvalidFields);
    assert!(err.message.contains("`priority`"), "{}", err.message);
    assert!(err.message.contains("\"high\""), "{}", err.message);
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
