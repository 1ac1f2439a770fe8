//! Faults on real Apache Kafka with exactly-once on (the default), each test on a private broker
//! of its own (`broker/mod.rs`) under the same load (`drill/mod.rs`: requests at 100/s in every
//! priority, every 7th invalid, every 11th cancelled, a worker completing every command it
//! reads): the broker killed and restarted with its data; the broker paused past the consumer's
//! session timeout; the daemon killed and restarted into the rebalance that follows; oversized
//! inputs of each kind. After each, in the `read_committed` view, every request has exactly one
//! command or rejection (a cancelled one at most one), none is lost, the pool is back to zero
//! once the worker has completed everything, and the daemon never exited (it may have recovered
//! in process).
//!
//! `FAULT_SEED` (decimal or 0x-hex; default 0x5eedfa17) draws the fault's moment and length, so a
//! run can be repeated: `FAULT_SEED=7 cargo test -p execution-coordinator --test broker_faults
//! broker_paused -- --nocapture`. Each test prints one summary line and leaves the daemon's and
//! the broker's logs in `target/tmp/broker_faults/<test>-<seed>/`.

mod broker;
mod drill;
mod support;

use std::time::{Duration, Instant};

use broker::BrokerSettings;
use coordinator_core::events::EventType;
use drill::{read_all, Copy, Drill, Sent};
use serde_json::Value;
use support::golden::request;

/// The daemon's consumer `session.timeout.ms` (actors/src/kafka.rs).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "current_thread")]
async fn broker_killed_under_load_and_restarted_with_its_data() {
    let mut drill = Drill::start("broker_killed", BrokerSettings::default()).await;
    let answered = drill.rng.between(150, 400) as usize;
    drill.until_answered(answered).await;
    let down = Duration::from_millis(drill.rng.between(5_000, 25_000));
    drill.note(format!("broker SIGKILLed for {down:?}"));
    drill.broker.kill();
    // The fault itself: the broker stays down this long.
    tokio::time::sleep(down).await;
    drill.broker.restart();
    drill.note("broker restarted".into());
    drill.load_for(500).await;
    drill.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn broker_paused_past_the_session_timeout_then_resumed() {
    let mut drill = Drill::start("broker_paused", BrokerSettings::default()).await;
    let answered = drill.rng.between(150, 400) as usize;
    drill.until_answered(answered).await;
    let paused = Duration::from_millis(drill.rng.between(12_000, 15_000));
    assert!(paused > SESSION_TIMEOUT);
    drill.note(format!("broker SIGSTOPped for {paused:?}"));
    drill.broker.pause();
    // The fault itself: the broker answers nothing for this long.
    tokio::time::sleep(paused).await;
    drill.broker.resume();
    drill.note("broker resumed".into());
    drill.load_for(500).await;
    drill.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn daemon_killed_restarted_at_once_and_the_group_rebalances() {
    let mut drill = Drill::start("daemon_killed", BrokerSettings::default()).await;
    let answered = drill.rng.between(150, 400) as usize;
    drill.until_answered(answered).await;
    drill.note("daemon SIGKILLed and restarted".into());
    let killed = Instant::now();
    // The new one joins the group while the dead member still holds the partitions: it gets
    // them once that member's session expires and the group rebalances.
    drill.kill_and_restart_daemon();
    drill.note(format!(
        "restarted daemon assigned its partitions {:?} after the kill",
        killed.elapsed()
    ));
    // Load on past the dead member's session timeout: at most 100/s, so 10 s and more.
    let more = 1_000 + drill.rng.between(0, 500) as usize;
    drill.load_for(more).await;
    assert!(killed.elapsed() > SESSION_TIMEOUT);
    drill.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn oversized_inputs_of_each_kind_are_answered_and_later_requests_flow() {
    // Input topics take the broker's default: room for the 5 MiB request.
    let settings = BrokerSettings {
        message_max_bytes: Some(10 << 20),
    };
    let mut drill = Drill::start("oversized", settings).await;
    let requests = drill.config.topic(EventType::ExecutionRequested);
    let answered = drill.rng.between(100, 300) as usize;
    drill.until_answered(answered).await;

    let with_script = |id: &str, bytes: usize| {
        let mut r = request(id, "big", "normal");
        r["script"] = Value::from("x".repeat(bytes));
        serde_json::to_vec(&r).expect("JSON")
    };
    // Over max_message_bytes (1 MiB): not decoded, rejected, a truncated copy to the DLQ.
    let huge = with_script("huge-request", 5 << 20);
    // Not JSON, under max_message_bytes: a copy to the DLQ, no execution to answer.
    let mut garbage = vec![b'#'; 1_040_000];
    for byte in garbage.iter_mut().skip(1) {
        *byte = b'#' + (drill.rng.next() % 90) as u8;
    }
    // Valid, under max_message_bytes: its command and state record fit what the daemon writes.
    let big_script = with_script("big-script", 1_030_000);
    let mut kinds = vec![
        ("huge-request", huge.clone()),
        ("garbage", garbage.clone()),
        ("big-script", big_script),
    ];
    // A seeded order, with a seeded number of ordinary requests between them.
    let first = drill.rng.between(0, 2) as usize;
    kinds.rotate_left(first);
    if drill.rng.next() % 2 == 1 {
        kinds.swap(1, 2);
    }
    for (key, payload) in &kinds {
        drill.note(format!("{key}: {} bytes", payload.len()));
        drill.sender.send(&requests, key.as_bytes(), payload);
        let gap = drill.rng.between(0, 50) as usize;
        drill.load_for(gap).await;
    }
    drill.extra.push(Sent::apart("huge-request"));
    drill.extra.push(Sent::apart("big-script"));
    drill.load_for(500).await;
    let dlq = drill.config.dlq_topic();
    let outcomes = drill.finish_keeping_readers().await;

    let huge_outcome = &outcomes["huge-request"];
    assert!(
        huge_outcome.len() == 1 && huge_outcome[0].starts_with("failed:"),
        "the 5 MiB request is rejected once: {huge_outcome:?}"
    );
    let big_outcome = &outcomes["big-script"];
    drill.note(format!(
        "huge-request answered by {huge_outcome:?}, big-script by {big_outcome:?}"
    ));
    assert_eq!(
        big_outcome.len(),
        1,
        "the 1,030,000-byte script is answered once"
    );

    // Exactly one DLQ copy of each undecodable input, cut to what can be written.
    let copies = read_all(&drill.broker, &dlq, |m| {
        ["huge-request", "garbage"]
            .iter()
            .all(|k| m.iter().any(|c| c.key == *k))
    })
    .await;
    for (key, original) in [("huge-request", &huge), ("garbage", &garbage)] {
        let of_key: Vec<&Copy> = copies.iter().filter(|c| c.key == key).collect();
        assert_eq!(of_key.len(), 1, "one DLQ copy of {key}: {of_key:?}");
        let copy = of_key[0];
        assert!(
            original.starts_with(&copy.payload),
            "the DLQ copy of {key} is the input or its beginning"
        );
        let truncated_from = copy.header("x-truncated-from");
        if copy.payload.len() < original.len() {
            assert_eq!(
                truncated_from.as_deref(),
                Some(original.len().to_string().as_str()),
                "a cut copy of {key} says how large the input was"
            );
        } else {
            assert_eq!(truncated_from, None, "{key} was copied whole");
        }
        assert!(
            copy.header("x-source-offset").is_some(),
            "{key}: where the input is"
        );
        drill.note(format!(
            "DLQ copy of {key}: {} of {} bytes",
            copy.payload.len(),
            original.len()
        ));
    }
    assert!(
        copies.len() == 2,
        "nothing else in the DLQ: {:?}",
        copies.iter().map(|c| &c.key).collect::<Vec<_>>()
    );
    drill.terminate();
}
