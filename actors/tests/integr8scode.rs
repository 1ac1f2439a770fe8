//! The coordinator as a drop-in for Integr8sCode, on real Kafka, in the `per_event_type` topic
//! layout: requests, cancellations, completions, failures and timeouts in the shapes
//! Integr8sCode's services write (its 2026 releases, priorities by name) and in the older ones
//! (numeric priority, a null user, `reason` on cancellations), each on the topic of its type.
//! Every output is checked against its JSON Schema (`schemas/`) and its golden shape
//! (`tests/golden/2026-02/`), on the topic of its own type, with `content-type` and the
//! request's `traceparent`; and the pool is empty once everything has ended.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use coordinator_core::events::EventType;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::{golden, golden_file};
use support::kafka::{
    bootstrap_servers, poll_until, producer, subscribed_consumer, Isolation, Received,
};
use support::{deadline, read_json, root, WAIT};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A golden event of `shape` (`2026-02`, `2026-03`) for `execution_id`.
fn shaped(shape: &str, event_type: &str, execution_id: &str) -> Value {
    golden(&format!("{shape}/{event_type}"), execution_id)
}

/// A 2026 request for `execution_id` at the named `priority`.
fn request_2026(execution_id: &str, priority: &str) -> Value {
    let mut event = shaped("2026-02", "execution_requested", execution_id);
    event["priority"] = Value::from(priority);
    event
}

/// Produces `event` keyed by its execution id, with `headers`, and waits for the ack.
async fn send(p: &FutureProducer, topic: &str, event: &Value, headers: &[(&str, &str)]) {
    let key = event["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let payload = serde_json::to_vec(event).expect("JSON");
    let mut owned = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/json"),
    });
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(*value),
        });
    }
    let record = FutureRecord::to(topic)
        .key(&key)
        .payload(&payload)
        .headers(owned);
    p.send(record, WAIT)
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
}

/// What the coordinator has written so far, read from its output topics.
struct Outputs {
    consumer: StreamConsumer,
    seen: Vec<Received>,
}

impl Outputs {
    /// Reads until `done` holds over everything seen, failing with what was seen at the deadline.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&[Received]) -> bool) {
        let deadline = deadline();
        while !done(&self.seen) {
            match poll_until(&self.consumer, deadline, |r| !r.is_empty()).await {
                Ok(mut more) => self.seen.append(&mut more),
                Err(_) => panic!(
                    "{what}: not seen within {WAIT:?}; seen: {:#?}",
                    self.seen.iter().map(summary).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// The messages of `event_type` for `execution_id`.
    fn of(&self, event_type: &str, execution_id: &str) -> Vec<&Received> {
        self.seen
            .iter()
            .filter(|m| {
                let v = m.json();
                v["event_type"] == event_type && v["execution_id"] == execution_id
            })
            .collect()
    }
}

fn summary(m: &Received) -> String {
    let v = m.json();
    format!("{} {} {}", m.topic, v["event_type"], v["execution_id"])
}

fn has(event_type: &'static str, id: &'static str) -> impl Fn(&[Received]) -> bool {
    move |seen| {
        seen.iter().any(|m| {
            let v = m.json();
            v["event_type"] == event_type && v["execution_id"] == id
        })
    }
}

#[tokio::test]
async fn integr8scode_events_of_both_eras_on_per_event_type_topics() {
    let bootstrap = bootstrap_servers();
    // Room for two executions of 200m at a time.
    let config = TestConfig::fresh()
        .per_event_type()
        .set("resources", "total_cpu_cores = 0.5")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.05")
        .set("queue", "requeue_demotes = false");
    let daemon = DaemonProcess::start(&config, &bootstrap);
    let topic = |t: EventType| config.topic(t);
    let outputs_topics = [
        EventType::ExecutionAccepted,
        EventType::ExecutionFailed,
        EventType::CreatePodCommand,
    ];
    let mut out = Outputs {
        consumer: subscribed_consumer(
            &support::kafka::fresh_group(),
            Isolation::ReadCommitted,
            &outputs_topics
                .map(|t| config.topic(t))
                .each_ref()
                .map(String::as_str),
        ),
        seen: Vec::new(),
    };
    let p = producer();

    // r1: Integr8sCode 2026, "high", traced. r2: the older shape, numeric 5, user null.
    send(
        &p,
        &topic(EventType::ExecutionRequested),
        &request_2026("r1", "high"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    let mut old = golden("execution_requested", "r2");
    old["metadata"]["user_id"] = Value::Null;
    old["priority"] = Value::from(5);
    old["cpu_request"] = Value::from("200m");
    send(&p, &topic(EventType::ExecutionRequested), &old, &[]).await;
    out.until("both commanded", |s| {
        has("create_pod_command", "r1")(s) && has("create_pod_command", "r2")(s)
    })
    .await;

    // r3 waits (the pool is full); "urgent" is no level.
    send(
        &p,
        &topic(EventType::ExecutionRequested),
        &request_2026("r3", "low"),
        &[],
    )
    .await;
    send(
        &p,
        &topic(EventType::ExecutionRequested),
        &request_2026("r4", "urgent"),
        &[],
    )
    .await;
    out.until("r3 accepted, r4 refused", |s| {
        has("execution_accepted", "r3")(s) && has("execution_failed", "r4")(s)
    })
    .await;
    assert!(out.of("create_pod_command", "r3").is_empty(), "r3 waits");

    // The pod monitor's timeout frees r1's resources: r3 starts.
    send(
        &p,
        &topic(EventType::ExecutionTimeout),
        &shaped("2026-02", "execution_timeout", "r1"),
        &[],
    )
    .await;
    out.until(
        "r3 commanded after r1's timeout",
        has("create_pod_command", "r3"),
    )
    .await;

    // r5 "critical" waits; a cancellation without `reason` (after 2026-02) frees r3: r5 starts.
    send(
        &p,
        &topic(EventType::ExecutionRequested),
        &request_2026("r5", "critical"),
        &[],
    )
    .await;
    out.until("r5 accepted", has("execution_accepted", "r5"))
        .await;
    send(
        &p,
        &topic(EventType::ExecutionCancelled),
        &shaped("2026-03", "execution_cancelled", "r3"),
        &[],
    )
    .await;
    out.until(
        "r5 commanded after r3's cancellation",
        has("create_pod_command", "r5"),
    )
    .await;

    // r6 waits; a failure without `error_message` (after 2026-02) frees r2: r6 starts.
    send(
        &p,
        &topic(EventType::ExecutionRequested),
        &request_2026("r6", "normal"),
        &[],
    )
    .await;
    out.until("r6 accepted", has("execution_accepted", "r6"))
        .await;
    send(
        &p,
        &topic(EventType::ExecutionFailed),
        &shaped("2026-03", "execution_failed", "r2"),
        &[],
    )
    .await;
    out.until(
        "r6 commanded after r2's failure",
        has("create_pod_command", "r6"),
    )
    .await;

    // The rest ends: a 2026 completion for r5, an older cancellation (with reason) for r6.
    send(
        &p,
        &topic(EventType::ExecutionCompleted),
        &shaped("2026-02", "execution_completed", "r5"),
        &[],
    )
    .await;
    send(
        &p,
        &topic(EventType::ExecutionCancelled),
        &golden("execution_cancelled", "r6"),
        &[],
    )
    .await;
    daemon.wait_for_empty_pool();

    // Routing: each output on the topic of its own type, nothing else on those topics.
    let schemas: BTreeMap<&str, jsonschema::Validator> = outputs_topics
        .into_iter()
        .map(|t| {
            let schema = read_json(root().join(format!("schemas/{t}.schema.json")));
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("schemas/{t}.schema.json: {e}"));
            (t.as_str(), validator)
        })
        .collect();
    let mut checked = 0;
    for m in &out.seen {
        let event = m.json();
        let event_type = event["event_type"].as_str().unwrap_or_default();
        assert_eq!(
            m.topic,
            topic(of_name(event_type)),
            "{} on its type's topic",
            summary(m)
        );
        let ours = event["metadata"]["service_name"] == "execution-coordinator"
            || event_type == "execution_accepted";
        if !ours {
            continue; // the worker failure the test itself sent to execution_failed
        }
        let errors: Vec<String> = schemas[event_type]
            .iter_errors(&event)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}\n{event:#}", summary(m));
        checked += 1;
        assert_eq!(
            m.header("content-type"),
            Some(&b"application/json"[..]),
            "{}",
            summary(m)
        );
        assert!(event["metadata"]["user_id"].is_string(), "{event:#}");
        if event_type != "execution_failed" {
            let golden = golden_file(&format!("2026-02/{event_type}"));
            let keys = |v: &Value| -> BTreeSet<String> {
                v.as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default()
            };
            // Fields of our own that Integr8sCode's models ignore (they allow extra fields).
            let ours = ["estimated_wait_bound_seconds"];
            let mut shape = keys(&event);
            shape.retain(|k| !ours.contains(&k.as_str()));
            assert_eq!(shape, keys(&golden), "{} has the golden shape", summary(m));
            assert!(event["priority"].is_string(), "priority by name: {event:#}");
        }
    }
    // 5 accepted, 5 commands, 1 refusal.
    assert_eq!(checked, 11, "every output checked");
    for (event_type, id) in [("execution_accepted", "r1"), ("create_pod_command", "r1")] {
        let traced = out.of(event_type, id);
        assert_eq!(traced.len(), 1, "one {event_type} for {id}");
        assert_eq!(
            traced[0].header("traceparent"),
            Some(TRACEPARENT.as_bytes())
        );
    }
    let command = out.of("create_pod_command", "r1")[0].json();
    assert_eq!(command["priority"], "high");
    assert_eq!(command["cpu_request"], "200m");
    let anonymous = out.of("create_pod_command", "r2")[0].json();
    assert_eq!(anonymous["metadata"]["user_id"], "anonymous");
    assert_eq!(anonymous["priority"], "normal");
    let refused = out.of("execution_failed", "r4")[0].json();
    assert_eq!(refused["error_type"], "system_error");
    let message = refused["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"urgent\"")
            && message.contains("\"critical\"")
            && message.contains("0, 1, 5, 8, 10"),
        "{message}"
    );
    // One command each, none for the refused one; nothing written to the input topics.
    for id in ["r1", "r2", "r3", "r5", "r6"] {
        assert_eq!(
            out.of("create_pod_command", id).len(),
            1,
            "one command for {id}"
        );
    }
    assert!(out.of("create_pod_command", "r4").is_empty());
    for (input, sent) in [
        (EventType::ExecutionRequested, 6),
        (EventType::ExecutionCancelled, 2),
        (EventType::ExecutionCompleted, 1),
        (EventType::ExecutionTimeout, 1),
    ] {
        assert_eq!(
            high_watermark(&topic(input)),
            sent,
            "only the test wrote to {input}"
        );
    }
}

/// The event type whose `event_type` is `name`.
fn of_name(name: &str) -> EventType {
    EventType::ALL
        .into_iter()
        .find(|t| t.as_str() == name)
        .unwrap_or_else(|| panic!("no event type {name:?}"))
}

/// The end offset of partition 0 of `topic`: the messages written to it, with any
/// transaction markers.
fn high_watermark(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        support::kafka::client_config(&[("group.id", &support::kafka::fresh_group())])
            .create()
            .expect("cannot create the Kafka consumer");
    consumer
        .fetch_watermarks(topic, 0, WAIT)
        .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"))
        .1
}
