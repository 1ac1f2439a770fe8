//! What the broker holds about executions a drill found lost, duplicated or still holding
//! resources: every message keyed by them on every topic of the test, whether a
//! `read_committed` reader sees it, and the daemon group's committed input offsets. A failed
//! drill saves it beside the logs, since the private broker and its data go with the test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{read_to_end, reader_with};
use crate::broker::PrivateBroker;
use crate::support::daemon::TestConfig;

/// Every topic of the test: inputs, outputs, the DLQ and the state topic.
fn topics(config: &TestConfig) -> Vec<String> {
    let mut topics = config.kafka().all_topics_full();
    topics.push(config.state_topic());
    topics
}

/// Offset, key and what a message says (event type, error type, state) of every message in
/// partition 0 of `topic` at `isolation` whose key `keep` accepts.
async fn read(
    broker: &PrivateBroker,
    topic: &str,
    isolation: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(i64, String, String)>, String> {
    let consumer = reader_with(broker, topic, isolation);
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    read_to_end(&consumer, topic, deadline, |m| {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        if keep(&key) {
            found.push((m.offset(), key, what(m)));
        }
    })
    .await?;
    Ok(found)
}

/// A message in a few words: its event type and error type, or its state; else its size.
fn what(m: &BorrowedMessage<'_>) -> String {
    let payload = m.payload().unwrap_or_default();
    let Ok(event) = serde_json::from_slice::<Value>(payload) else {
        return format!("{} bytes, not JSON", payload.len());
    };
    let field = |name: &str| event[name].as_str().map(str::to_owned);
    match (field("event_type"), field("state")) {
        (Some(kind), _) => match field("error_type") {
            Some(error) => format!("{kind} ({error})"),
            None => kind,
        },
        (None, Some(state)) => format!("state {state}"),
        (None, None) if payload.is_empty() => "tombstone".to_owned(),
        (None, None) => format!("{} bytes of JSON", payload.len()),
    }
}

/// Every message keyed by one of `ids` on every topic, marked ABORTED (or open) when a
/// `read_committed` reader does not see it, then the group's committed input offsets.
pub async fn report(broker: &PrivateBroker, config: &TestConfig, ids: &BTreeSet<String>) -> String {
    let keep = |key: &str| ids.contains(key);
    // Every topic at both isolation levels at once: a failed drill waits on this.
    let topics = topics(config);
    let reads = topics.iter().map(|topic| async move {
        futures::join!(
            read(broker, topic, "read_uncommitted", keep),
            read(broker, topic, "read_committed", keep)
        )
    });
    let results = futures::future::join_all(reads).await;
    let mut lines = Vec::new();
    for (topic, both) in topics.iter().zip(results) {
        let (all, committed) = match both {
            (Ok(all), Ok(committed)) => (all, committed),
            (Err(e), _) | (_, Err(e)) => {
                lines.push(format!("{topic}: not read: {e}"));
                continue;
            }
        };
        let visible: BTreeSet<i64> = committed.iter().map(|(offset, ..)| *offset).collect();
        for (offset, key, what) in all {
            let seen = if visible.contains(&offset) {
                "committed"
            } else {
                "ABORTED or open"
            };
            lines.push(format!("{topic}@{offset} key={key} {what} [{seen}]"));
        }
    }
    lines.push(committed_offsets(broker, config));
    lines.join("\n")
}

/// The daemon group's committed offset of partition 0 of every input topic.
fn committed_offsets(broker: &PrivateBroker, config: &TestConfig) -> String {
    let consumer: BaseConsumer = match broker
        .client_config(&[("group.id", &config.group), ("enable.auto.commit", "false")])
        .create()
    {
        Ok(consumer) => consumer,
        Err(e) => return format!("committed offsets: no client ({e})"),
    };
    let mut partitions = TopicPartitionList::new();
    for topic in config.kafka().input_topics_full() {
        let _ = partitions.add_partition_offset(&topic, 0, Offset::Invalid);
    }
    match consumer.committed_offsets(partitions, Duration::from_secs(10)) {
        Ok(offsets) => {
            let each: Vec<String> = offsets
                .elements()
                .iter()
                .map(|e| format!("{}={:?}", e.topic(), e.offset()))
                .collect();
            format!("group {} committed: {}", config.group, each.join(" "))
        }
        Err(e) => format!("committed offsets of {}: {e}", config.group),
    }
}

/// Executions whose last committed state record says `allocated`: what the pool holds once the
/// daemon has restored it.
pub async fn still_allocated(broker: &PrivateBroker, config: &TestConfig) -> BTreeSet<String> {
    let topic = config.state_topic();
    let Ok(records) = read(broker, &topic, "read_committed", |_| true).await else {
        return BTreeSet::new();
    };
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (_, key, what) in records {
        last.insert(key, what);
    }
    last.into_iter()
        .filter(|(_, what)| what == "state allocated")
        .map(|(key, _)| key)
        .collect()
}
