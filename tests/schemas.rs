//! The JSON Schemas under `schemas/` are generated from the event types; this test fails when a
//! committed schema is stale. To rewrite them after changing an event type, run
//!
//! ```sh
//! UPDATE_SCHEMAS=1 cargo test -p coordinator-core --test schemas
//! ```
//!
//! The same goes for the answers of the inspection API (`schemas/inspect_*.schema.json`).
//!
//! It also checks each golden event against its schema's top-level `properties` and `required`.

use std::path::PathBuf;

use coordinator_core::events::{json_schema, EventType};
use coordinator_core::inspect::Answer;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path(event_type: EventType) -> PathBuf {
    root()
        .join("schemas")
        .join(format!("{}.schema.json", event_type.as_str()))
}

/// Compares the committed schema at `path` with `expected`; rewrites it when `UPDATE_SCHEMAS=1`,
/// else notes it in `stale` when it differs.
fn check(path: PathBuf, expected: Value, stale: &mut Vec<String>) {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    // Compared as JSON values, so key order (serde_json's `preserve_order`) does not matter.
    let committed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    if committed.as_ref() == Some(&expected) {
        return;
    }
    if update {
        let mut text = serde_json::to_string_pretty(&expected).expect("schemas are JSON");
        text.push('\n');
        std::fs::create_dir_all(path.parent().expect("schemas/ has a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    } else {
        stale.push(path.display().to_string());
    }
}

fn assert_fresh(stale: Vec<String>) {
    assert!(
        stale.is_empty(),
        "stale JSON Schemas: {stale:?}; regenerate with \
         `UPDATE_SCHEMAS=1 cargo test -p coordinator-core --test schemas` and commit them"
    );
}

#[test]
fn committed_schemas_are_up_to_date() {
    let mut stale = Vec::new();
    for event_type in EventType::ALL {
        let expected = serde_json::to_value(json_schema(event_type)).expect("schemas are JSON");
        check(schema_path(event_type), expected, &mut stale);
    }
    assert_fresh(stale);
}

#[test]
fn committed_inspection_schemas_are_up_to_date() {
    let mut stale = Vec::new();
    for answer in Answer::ALL {
        let expected = serde_json::to_value(answer.json_schema()).expect("schemas are JSON");
        check(
            root().join("schemas").join(answer.schema_file()),
            expected,
            &mut stale,
        );
    }
    assert_fresh(stale);
}

#[test]
fn schemas_name_their_event_type_and_cover_the_golden_events() {
    for event_type in EventType::ALL {
        let schema = serde_json::to_value(json_schema(event_type)).unwrap();
        let properties = schema["properties"].as_object().expect("object schema");
        assert_eq!(properties["event_type"]["const"], event_type.as_str());

        // The older shape where there is one, else Integr8sCode's 2026 one.
        let golden_path = ["", "2026-02"]
            .iter()
            .map(|shape| {
                root()
                    .join("tests/golden")
                    .join(shape)
                    .join(format!("{}.json", event_type.as_str()))
            })
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no golden file for {event_type}"));
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
        let golden = golden.as_object().unwrap();
        for required in schema["required"].as_array().unwrap() {
            let field = required.as_str().unwrap();
            assert!(
                golden.contains_key(field),
                "{event_type}: golden lacks required {field}"
            );
        }
        // Every schema property appears in the golden file, so the goldens show every field.
        for field in properties.keys() {
            if field == "gpu_request" {
                continue; // our extension, absent from Integr8sCode's events
            }
            assert!(
                golden.contains_key(field),
                "{event_type}: golden lacks {field}"
            );
        }
    }
}
