//! The scheduling policies end to end through a real Apache Kafka broker (`make test` starts
//! one): a pool with room for one execution, a blocker in it, and executions of every level
//! queued behind it in a mixed order, the last CRITICAL one arriving last. Once the blocker
//! completes, the test completes each command as it sees it, and reads the order.

mod support;

use coordinator_core::planner::Policy;
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::deadline;
use support::golden::{golden, request};
use support::kafka::{
    bootstrap_servers, collect_until, fresh_group, poll_until, produce_event, producer,
    subscribed_consumer, Isolation, Received,
};

/// The arrivals behind the blocker: (id, level asked).
const ARRIVALS: [(&str, &str); 7] = [
    ("b1", "background"),
    ("l1", "low"),
    ("n1", "normal"),
    ("h1", "high"),
    ("c1", "critical"),
    ("b2", "background"),
    ("c2", "critical"),
];

/// One execution (500m) at a time: 1 core, no overcommit, 100m held back.
fn one_slot(config: TestConfig) -> TestConfig {
    config
        .one_slot_pool()
        .set("scheduler", "scheduling_interval = \"100ms\"")
}

fn commands(messages: &[Received]) -> Vec<Value> {
    messages
        .iter()
        .map(Received::json)
        .filter(|m| m["event_type"] == "create_pod_command")
        .collect()
}

/// Runs the scenario; answers every command in the order written.
async fn run(config: &TestConfig) -> Vec<Value> {
    let mut daemon = DaemonProcess::start(config, &bootstrap_servers());
    let events = config.events_topic();
    let p = producer();
    let consumer = subscribed_consumer(
        &fresh_group(),
        Isolation::ReadCommitted,
        &[&config.commands_topic()],
    );
    produce_event(&p, &events, &request("blocker", "u0", "normal")).await;
    let mut seen = commands(
        &poll_until(&consumer, deadline(), |m| !commands(m).is_empty())
            .await
            .unwrap_or_else(|_| panic!("the blocker was never commanded")),
    );
    for (id, level) in ARRIVALS {
        produce_event(&p, &events, &request(id, "u1", level)).await;
    }
    collect_until(&events, Isolation::ReadCommitted, deadline(), |m| {
        m.iter()
            .filter(|m| m.json()["event_type"] == "execution_accepted")
            .count()
            > ARRIVALS.len()
    })
    .await;
    let mut done = 0;
    while seen.len() <= ARRIVALS.len() {
        for command in &seen[done..] {
            let id = command["execution_id"].as_str().unwrap_or_default();
            produce_event(&p, &events, &golden("execution_completed", id)).await;
        }
        done = seen.len();
        let more = poll_until(&consumer, deadline(), |m| !commands(m).is_empty())
            .await
            .unwrap_or_else(|_| panic!("commands stopped after {done}"));
        seen.extend(commands(&more));
    }
    assert!(daemon.terminate().success());
    seen
}

fn ids(commands: &[Value]) -> Vec<&str> {
    commands
        .iter()
        .map(|c| c["execution_id"].as_str().unwrap_or_default())
        .collect()
}

fn asked(id: &str) -> &'static str {
    ARRIVALS
        .iter()
        .find(|(a, _)| *a == id)
        .map_or("normal", |(_, level)| level)
}

/// Under a policy that keeps a blocked head's place, the one-slot pool commands by level
/// then arrival, each execution at the level it asked for.
async fn by_level_then_arrival(policy: Policy) {
    let config = one_slot(TestConfig::fresh()).set("scheduler", &format!("policy = \"{policy}\""));
    let commands = run(&config).await;
    assert_eq!(
        ids(&commands),
        ["blocker", "c1", "c2", "h1", "n1", "l1", "b1", "b2"]
    );
    for c in &commands {
        let id = c["execution_id"].as_str().unwrap_or_default();
        assert_eq!(
            c["priority"],
            asked(id),
            "{id} is commanded at its own level"
        );
    }
}

#[tokio::test]
async fn under_strict_a_blocked_head_keeps_its_level_and_dispatch_is_by_level_then_arrival() {
    by_level_then_arrival(Policy::Strict).await;
}

#[tokio::test]
async fn under_backfill_a_blocked_head_keeps_its_level_and_dispatch_is_by_level_then_arrival() {
    by_level_then_arrival(Policy::Backfill).await;
}

#[tokio::test]
async fn under_demote_a_blocked_head_is_commanded_below_the_level_it_asked_for() {
    let config = one_slot(TestConfig::fresh()).set("scheduler", "policy = \"demote\"");
    assert_eq!(
        config.config("127.0.0.1:9").scheduler.policy,
        Policy::Demote
    );
    let commands = run(&config).await;
    let mut commanded = ids(&commands);
    commanded.sort_unstable();
    assert_eq!(
        commanded,
        ["b1", "b2", "blocker", "c1", "c2", "h1", "l1", "n1"],
        "each commanded once"
    );
    // A pass that starts an execution tries the next head in a full pool and demotes it, so
    // at least the second execution after the blocker runs below the level it asked for.
    let demoted: Vec<&str> = commands
        .iter()
        .filter(|c| {
            let id = c["execution_id"].as_str().unwrap_or_default();
            c["priority"] != asked(id)
        })
        .map(|c| c["execution_id"].as_str().unwrap_or_default())
        .collect();
    assert!(
        !demoted.is_empty(),
        "no command below its level: {commands:?}"
    );
}
