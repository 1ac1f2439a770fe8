//! End to end through a real Apache Kafka broker (`make test` starts one): the daemon binary
//! consumes Integr8sCode events and publishes accepted/failed events and pod commands.

mod support;

use std::collections::BTreeMap;

use coordinator_core::events::EventType;
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::{golden, request};
use support::kafka::{
    bootstrap_servers, collect_until, produce, produce_event, producer, Isolation, Received,
};
use support::{deadline, WAIT};

/// The JSON of a message, or Null when it is not JSON (the bad-input test writes such).
fn json(m: &Received) -> Value {
    serde_json::from_slice(m.payload.as_deref().unwrap_or_default()).unwrap_or(Value::Null)
}

fn of_type<'a>(messages: &'a [Received], event_type: &str) -> Vec<&'a Received> {
    messages
        .iter()
        .filter(|m| json(m)["event_type"] == event_type)
        .collect()
}

/// `execution_id` → JSON of the events of `event_type` on `messages`.
fn by_id(messages: &[Received], event_type: &str) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in of_type(messages, event_type) {
        let json = m.json();
        let id = json["execution_id"].as_str().unwrap_or_default().to_owned();
        map.entry(id).or_default().push(json);
    }
    map
}

fn command_ids(messages: &[Received]) -> Vec<String> {
    of_type(messages, "create_pod_command")
        .iter()
        .map(|m| {
            m.json()["execution_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Reads the commands topic until `ids` (in this order) have been commanded.
async fn wait_commands(config: &TestConfig, ids: &[&str]) -> Vec<Received> {
    let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    collect_until(
        &config.commands_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| command_ids(m).len() >= want.len(),
    )
    .await
}

#[tokio::test]
async fn admission_order_rejections_completion_and_cancellation() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh()
        .one_slot_pool()
        .set("queue", "max_queue_size = 7")
        .set("queue", "max_executions_per_user = 3")
        .set("queue", "requeue_demotes = false")
        .set("scheduler", "scheduling_interval = \"100ms\"");
    let mut daemon = DaemonProcess::start(&config, &bootstrap);
    let events = config.events_topic();
    let p = producer();

    // The blocker takes the only slot.
    produce_event(&p, &events, &request("blocker", "u0", 5)).await;
    wait_commands(&config, &["blocker"]).await;

    // Mixed priorities and users queue behind it; positions are true ranks.
    for (id, user, priority) in [
        ("a1", "u1", 5),
        ("a2", "u2", 8),
        ("a3", "u3", 0),
        ("a4", "u1", 5),
        ("a5", "u2", 1),
        ("a6", "u1", 5),
    ] {
        produce_event(&p, &events, &request(id, user, priority)).await;
    }
    // Rejections: user limit (u1 has 3 queued), queue full (a8 is the 7th), invalid priority,
    // bad quantity, a request that can never fit.
    produce_event(&p, &events, &request("a7", "u1", 5)).await;
    produce_event(&p, &events, &request("a8", "u4", 5)).await;
    produce_event(&p, &events, &request("a9", "u4", 5)).await;
    produce_event(&p, &events, &request("bad-priority", "u5", 3)).await;
    let mut bad_quantity = request("bad-quantity", "u5", 5);
    bad_quantity["cpu_request"] = Value::from("lots");
    produce_event(&p, &events, &bad_quantity).await;
    let mut huge = request("never-fits", "u5", 5);
    huge["cpu_request"] = Value::from("4");
    produce_event(&p, &events, &huge).await;
    // A duplicate of a queued request.
    produce_event(&p, &events, &request("a1", "u1", 5)).await;

    let seen = collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        of_type(m, "execution_accepted").len() >= 8 && of_type(m, "execution_failed").len() >= 5
    })
    .await;
    let accepted = by_id(&seen, "execution_accepted");
    let position = |id: &str| accepted[id][0]["queue_position"].as_u64().unwrap();
    assert_eq!(position("blocker"), 0);
    // Dispatch order after each arrival: a1 | a1 a2 | a3 a1 a2 | a3 a1 a4 a2 | a3 a5 a1 a4 a2 |
    // a3 a5 a1 a4 a6 a2 | a3 a5 a1 a4 a6 a8 a2.
    for (id, want) in [
        ("a1", 0),
        ("a2", 1),
        ("a3", 0),
        ("a4", 2),
        ("a5", 1),
        ("a6", 4),
        ("a8", 5),
    ] {
        assert_eq!(position(id), want, "position of {id}");
    }
    // Every acceptance carries an estimate, and a bound no shorter than it.
    for (id, events) in &accepted {
        let median = events[0]["estimated_wait_seconds"].as_f64();
        let bound = events[0]["estimated_wait_bound_seconds"].as_f64();
        match (median, bound) {
            (Some(m), Some(b)) => assert!(m >= 0.0 && b >= m, "{id}: {m} {b}"),
            _ => panic!("{id} was accepted without an estimate: {}", events[0]),
        }
    }
    let failed = by_id(&seen, "execution_failed");
    let error = |id: &str| {
        let f = &failed
            .get(id)
            .unwrap_or_else(|| panic!("no execution_failed for {id}"))[0];
        (
            f["error_type"].as_str().unwrap().to_owned(),
            f["error_message"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(error("a7").0, "resource_limit");
    assert!(
        error("a7").1.contains("per-user limit"),
        "{}",
        error("a7").1
    );
    assert_eq!(error("a9").0, "resource_limit");
    assert!(error("a9").1.contains("queue is full"), "{}", error("a9").1);
    assert_eq!(error("bad-priority").0, "system_error");
    assert!(error("bad-priority").1.contains("invalid priority 3"));
    assert_eq!(error("bad-quantity").0, "system_error");
    assert!(error("bad-quantity").1.contains("\"lots\""));
    assert_eq!(error("never-fits").0, "resource_limit");

    // Cancel a queued one; complete, cancel and complete the active ones in turn.
    produce_event(&p, &events, &golden("execution_cancelled", "a4")).await;
    let mut done = vec!["blocker"];
    for (finish, next) in [
        ("execution_completed", "a3"),
        ("execution_completed", "a5"),
        ("execution_cancelled", "a1"),
        ("execution_failed", "a6"),
        ("execution_completed", "a8"),
        ("execution_completed", "a2"),
    ] {
        let last = *done.last().unwrap();
        produce_event(&p, &events, &golden(finish, last)).await;
        done.push(next);
        wait_commands(&config, &done).await;
    }
    let commands = wait_commands(&config, &done).await;
    assert_eq!(
        command_ids(&commands),
        done,
        "commands in priority then FIFO order"
    );
    let first = commands[1].json();
    assert_eq!(first["cpu_request"], "500m");
    assert_eq!(first["memory_request"], "256Mi");
    assert_eq!(first["metadata"]["service_name"], "execution-coordinator");

    // Everything settled: exactly one accepted per admitted request, no duplicates.
    let seen = collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        of_type(m, "execution_accepted").len() >= 8
    })
    .await;
    for (id, list) in by_id(&seen, "execution_accepted") {
        assert_eq!(list.len(), 1, "accepted events for {id}");
    }
    assert!(daemon.terminate().success());
}

#[tokio::test]
async fn stale_executions_expire_with_a_timeout_failure() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh()
        .one_slot_pool()
        .set("queue", "stale_timeout = \"1s\"")
        .set("queue", "stale_sweep_interval = \"100ms\"");
    let mut daemon = DaemonProcess::start(&config, &bootstrap);
    let events = config.events_topic();
    let p = producer();
    produce_event(&p, &events, &request("holder", "u0", 5)).await;
    wait_commands(&config, &["holder"]).await;
    produce_event(&p, &events, &request("stale", "u1", 5)).await;
    let seen = collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        by_id(m, "execution_failed").contains_key("stale")
    })
    .await;
    let failed = &by_id(&seen, "execution_failed")["stale"][0];
    assert_eq!(failed["error_type"], "timeout");
    assert!(failed["error_message"]
        .as_str()
        .unwrap()
        .contains("stale timeout"));
    // Freeing the pool does not bring it back, but a later request still runs.
    produce_event(&p, &events, &golden("execution_completed", "holder")).await;
    produce_event(&p, &events, &request("after", "u1", 5)).await;
    let commands = wait_commands(&config, &["holder", "after"]).await;
    assert_eq!(command_ids(&commands), ["holder", "after"]);
    assert!(daemon.terminate().success());
}

#[tokio::test]
async fn bad_input_goes_to_the_dlq_and_good_input_still_flows() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh().set("kafka", "max_message_bytes = 4096");
    let mut daemon = DaemonProcess::start(&config, &bootstrap);
    let events = config.events_topic();
    let p = producer();

    let mut wrong_type = request("wrong-type", "u1", 5);
    wrong_type["priority"] = Value::from(true);
    let mut missing = request("missing-field", "u1", 5);
    missing.as_object_mut().unwrap().remove("script");
    let mut oversize = request("oversize", "u1", 5);
    oversize["script"] = Value::from("x".repeat(8192));
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("not-json".into(), b"this is not json {".to_vec()),
        (
            "wrong-type".into(),
            serde_json::to_vec(&wrong_type).unwrap(),
        ),
        (
            "missing-field".into(),
            serde_json::to_vec(&missing).unwrap(),
        ),
        ("oversize".into(), serde_json::to_vec(&oversize).unwrap()),
    ];
    let mut good = Vec::new();
    for (i, (key, payload)) in bad.iter().enumerate() {
        produce(&p, &events, Some(key.as_bytes()), payload).await;
        let id = format!("good-{i}");
        produce_event(&p, &events, &request(&id, "u1", 5)).await;
        good.push(id);
    }
    let commands = collect_until(
        &config.commands_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| command_ids(m).len() >= good.len(),
    )
    .await;
    let mut ids = command_ids(&commands);
    ids.sort();
    assert_eq!(ids, good);

    let dlq = collect_until(
        &config.dlq_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| m.len() >= bad.len(),
    )
    .await;
    assert_eq!(dlq.len(), bad.len());
    for (m, (key, payload)) in dlq.iter().zip(&bad) {
        assert_eq!(&m.key_str(), key);
        assert_eq!(
            m.payload.as_deref(),
            Some(payload.as_slice()),
            "raw message kept"
        );
        assert_eq!(m.header("x-source-topic"), Some(events.as_bytes()));
        assert!(m.header("x-source-offset").is_some());
        assert!(!m.header("x-error").unwrap_or_default().is_empty());
    }
    // Where an id was readable, the user hears about it.
    let seen = collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        let failed = by_id(m, "execution_failed");
        ["wrong-type", "missing-field", "oversize"]
            .iter()
            .all(|id| failed.contains_key(*id))
    })
    .await;
    let failed = by_id(&seen, "execution_failed");
    for id in ["wrong-type", "missing-field", "oversize"] {
        assert_eq!(failed[id][0]["error_type"], "system_error", "{id}");
    }
    assert!(daemon.terminate().success());
}

#[tokio::test]
async fn a_graceful_restart_loses_nothing_and_commands_nothing_twice() {
    let bootstrap = bootstrap_servers();
    // Two slots: 2 active, 3 queued when the first daemon stops.
    let config = TestConfig::fresh()
        .set("resources", "total_cpu_cores = 1.5")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "min_available_cpu_cores = 0.1")
        .set("queue", "requeue_demotes = false");
    let events = config.events_topic();
    let p = producer();
    let mut first = DaemonProcess::start(&config, &bootstrap);
    let ids: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    for id in &ids {
        produce_event(&p, &events, &request(id, "u1", 5)).await;
    }
    let commands = wait_commands(&config, &["r0", "r1"]).await;
    assert_eq!(command_ids(&commands), ["r0", "r1"]);
    collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        of_type(m, "execution_accepted").len() >= 5
    })
    .await;
    assert!(first.terminate().success(), "graceful stop exits 0");

    let mut second = DaemonProcess::start(&config, &bootstrap);
    second.wait_for_log("restored_queued=3", WAIT);
    // As a worker would: each completion after its command. (A completion that arrives
    // before its execution is commanded releases nothing, and r4 would never fit.)
    for id in ["r0", "r1"] {
        produce_event(&p, &events, &golden("execution_completed", id)).await;
    }
    wait_commands(&config, &["r0", "r1", "r2", "r3"]).await;
    for id in ["r2", "r3"] {
        produce_event(&p, &events, &golden("execution_completed", id)).await;
    }
    let commands = wait_commands(&config, &["r0", "r1", "r2", "r3", "r4"]).await;
    assert_eq!(command_ids(&commands), ids, "each commanded once, in order");
    assert!(second.terminate().success());
}

#[tokio::test]
async fn duplicate_detection_survives_a_restart() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh();
    let events = config.events_topic();
    let p = producer();
    let mut first = DaemonProcess::start(&config, &bootstrap);
    produce_event(&p, &events, &request("once", "u1", 5)).await;
    wait_commands(&config, &["once"]).await;
    produce_event(&p, &events, &golden("execution_completed", "once")).await;
    produce_event(&p, &events, &request("rejected-once", "u1", 3)).await;
    collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        by_id(m, "execution_failed").contains_key("rejected-once")
    })
    .await;
    assert!(first.terminate().success());

    // The platform sends both again after the restart; then a fresh request as a marker.
    let mut second = DaemonProcess::start(&config, &bootstrap);
    produce_event(&p, &events, &request("once", "u1", 5)).await;
    produce_event(&p, &events, &request("rejected-once", "u1", 3)).await;
    produce_event(&p, &events, &request("marker", "u1", 5)).await;
    let commands = wait_commands(&config, &["once", "marker"]).await;
    assert_eq!(command_ids(&commands), ["once", "marker"]);
    let seen = collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        by_id(m, "execution_accepted").contains_key("marker")
    })
    .await;
    assert_eq!(by_id(&seen, "execution_accepted")["once"].len(), 1);
    assert_eq!(by_id(&seen, "execution_failed")["rejected-once"].len(), 1);
    assert!(second.terminate().success());
}

#[tokio::test]
async fn a_second_instance_waits_as_a_hot_standby_and_takes_over_when_the_owner_dies() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh()
        .one_slot_pool()
        .set("kafka", "exactly_once = true")
        .set("queue", "requeue_demotes = false");
    let events = config.events_topic();
    let p = producer();
    let mut owner = DaemonProcess::start(&config, &bootstrap);
    for id in ["t0", "t1", "t2"] {
        produce_event(&p, &events, &request(id, "u1", 5)).await;
    }
    wait_commands(&config, &["t0"]).await;
    collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        of_type(m, "execution_accepted").len() >= 3
    })
    .await;

    // A second instance with the same config waits, keeping the state current: it consumes
    // nothing and is not ready.
    let standby = DaemonProcess::start_standby(&config, &bootstrap);
    let readyz = http_get(&standby.metrics_addr(), "/readyz");
    assert!(
        readyz.contains(" 503 ") && readyz.contains("standby=true"),
        "{readyz}"
    );
    assert!(
        !standby
            .log()
            .iter()
            .any(|l| l.contains("Partitions assigned")),
        "a standby consumes nothing"
    );

    // The owner dies; the standby takes over with what it kept (two queued, one active) and
    // reads only what was written since.
    owner.kill();
    standby.wait_for_log("Standby taking over", WAIT);
    standby.wait_for_log("restored_queued=2", WAIT);
    produce_event(&p, &events, &golden("execution_completed", "t0")).await;
    wait_commands(&config, &["t0", "t1"]).await;
    produce_event(&p, &events, &golden("execution_completed", "t1")).await;
    let commands = wait_commands(&config, &["t0", "t1", "t2"]).await;
    assert_eq!(
        command_ids(&commands),
        ["t0", "t1", "t2"],
        "each commanded once"
    );
    let mut standby = standby;
    assert!(standby.terminate().success());
}

/// GET `path` from `addr`: the whole HTTP response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// One size budget: with the producer writing at most 20,000 bytes (and the topics the daemon
/// creates taking as much), a request whose command would be larger is refused up front, an
/// input over `max_message_bytes` and a large non-JSON one reach the DLQ as truncated copies,
/// and the consume loop goes on: a request after them is commanded.
#[tokio::test]
async fn oversized_inputs_of_each_kind_are_answered_and_never_stall_the_consumer() {
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh()
        .per_event_type()
        .set("kafka", "max_message_bytes = 65536")
        .set("kafka.properties", "\"message.max.bytes\" = \"20000\"");
    let daemon = DaemonProcess::start(&config, &bootstrap);
    let requests = config.topic(EventType::ExecutionRequested);
    let p = producer();

    let with_script = |id: &str, bytes: usize| {
        let mut r = request(id, "u1", "normal");
        r["script"] = Value::from("x".repeat(bytes));
        r
    };
    // Fits: its command is about 12.5 kB.
    produce_event(&p, &requests, &with_script("fits", 12_000)).await;
    // Under max_message_bytes, but its command would not fit 20,000 bytes.
    produce_event(&p, &requests, &with_script("too-large", 18_000)).await;
    // Over max_message_bytes: undecoded, to the DLQ, cut.
    let oversize = serde_json::to_vec(&with_script("oversize", 100_000)).unwrap();
    produce(&p, &requests, Some(b"oversize"), &oversize).await;
    // Not JSON, 60 kB: to the DLQ, cut.
    let garbage = vec![b'#'; 60_000];
    produce(&p, &requests, Some(b"garbage"), &garbage).await;
    produce_event(&p, &requests, &request("after", "u1", "normal")).await;

    let commands = wait_commands(&config, &["fits", "after"]).await;
    let mut ids = command_ids(&commands);
    ids.sort();
    assert_eq!(ids, ["after", "fits"], "both commanded, nothing else");

    let failed = collect_until(
        &config.topic(EventType::ExecutionFailed),
        Isolation::ReadCommitted,
        deadline(),
        |m| {
            let f = by_id(m, "execution_failed");
            f.contains_key("too-large") && f.contains_key("oversize")
        },
    )
    .await;
    let failed = by_id(&failed, "execution_failed");
    let too_large = &failed["too-large"][0];
    assert_eq!(too_large["error_type"], "resource_limit");
    let message = too_large["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("a script of 18000 bytes") && message.contains("15904 bytes"),
        "{message}"
    );
    assert_eq!(failed["oversize"][0]["error_type"], "system_error");

    let dlq = collect_until(
        &config.dlq_topic(),
        Isolation::ReadCommitted,
        deadline(),
        |m| m.len() >= 2,
    )
    .await;
    for (m, original) in dlq.iter().zip([oversize.len(), garbage.len()]) {
        let payload = m.payload.as_deref().unwrap_or_default();
        assert_eq!(
            m.header("x-truncated-from"),
            Some(original.to_string().as_bytes()),
            "{}",
            m.key_str()
        );
        assert!(payload.len() <= 20_000 - 4096, "cut to what can be written");
        assert!(m.header("x-source-offset").is_some());
    }
    assert_eq!(
        dlq.iter().map(Received::key_str).collect::<Vec<_>>(),
        ["oversize", "garbage"]
    );
    drop(daemon);
}

#[tokio::test]
async fn without_its_ownership_topic_a_daemon_that_creates_no_topics_stops_as_misconfigured() {
    // Nothing of this prefix exists, and the daemon is told not to create it: no instance
    // could ever be assigned the ownership partition, so waiting as a standby would be for good.
    let config = TestConfig::fresh().set("kafka", "create_topics = false");
    let mut daemon = DaemonProcess::spawn(&config.toml(&bootstrap_servers()), &[]);
    let exit = daemon.wait(WAIT);
    let log = daemon.log();
    assert_eq!(
        exit.code(),
        Some(64),
        "not a configuration error:\n{}",
        log.join("\n")
    );
    let owner_topic = config.ownership_topic();
    assert!(
        log.iter().any(|l| l.contains(&owner_topic)
            && l.contains("does not exist")
            && l.contains("create_topics")),
        "the error does not say which topic or what to do:\n{}",
        log.join("\n")
    );
}

#[tokio::test]
async fn an_early_commit_makes_commands_visible_without_waiting_for_the_interval() {
    // The interval never comes within the test: only the early commit can make the commands
    // visible to a read_committed reader.
    let bootstrap = bootstrap_servers();
    let config = TestConfig::fresh()
        .set("kafka", "exactly_once = true")
        .set("kafka", "transaction_interval = \"1h\"")
        .set("kafka", "transaction_commit_early = true");
    let mut daemon = DaemonProcess::start(&config, &bootstrap);
    let events = config.events_topic();
    let p = producer();
    produce_event(&p, &events, &request("early-1", "u0", 5)).await;
    wait_commands(&config, &["early-1"]).await;
    produce_event(&p, &events, &request("early-2", "u1", 5)).await;
    let commands = wait_commands(&config, &["early-1", "early-2"]).await;
    assert_eq!(command_ids(&commands), ["early-1", "early-2"]);
    // Each of those commits is timed by phase.
    let (status, metrics) = support::http::get(&daemon.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    for phase in ["open", "deliveries", "commit"] {
        let count =
            format!("execution_coordinator_transaction_seconds_count{{phase=\"{phase}\"}} ");
        let committed: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&count))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {count} in:\n{metrics}"));
        assert!(committed >= 2.0, "{count}{committed}: two commits expected");
    }
    assert!(daemon.terminate().success());
}
