//! The golden Integr8sCode events of `tests/golden/`, as the platform sends them, and requests
//! built from them.

use serde_json::Value;

use super::{read_json, root};

/// The golden event `name`, unchanged: `execution_requested`, or with its shape,
/// `2026-02/execution_requested`, `number/create_pod_command`, …
pub fn golden_file(name: &str) -> Value {
    read_json(root().join("tests/golden").join(format!("{name}.json")))
}

/// The golden event `name` (see [`golden_file`]) for `execution_id`: `execution_id` and
/// `aggregate_id` replaced, a fresh `event_id`, everything else as the platform sends it.
pub fn golden(name: &str, execution_id: &str) -> Value {
    let mut event = golden_file(name);
    event["execution_id"] = Value::from(execution_id);
    event["aggregate_id"] = Value::from(execution_id);
    event["event_id"] = Value::from(uuid::Uuid::new_v4().to_string());
    event
}

/// An `execution_requested` for `execution_id` by `user` at `priority` (a number or a name),
/// asking 500m / 256Mi.
pub fn request(execution_id: &str, user: &str, priority: impl Into<Value>) -> Value {
    let mut event = golden("execution_requested", execution_id);
    event["metadata"]["user_id"] = Value::from(user);
    event["priority"] = priority.into();
    event["cpu_request"] = Value::from("500m");
    event["memory_request"] = Value::from("256Mi");
    event
}
