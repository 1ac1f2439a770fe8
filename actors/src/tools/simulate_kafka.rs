//! `simulate --from-kafka`: the workload is the deployment's own traffic, the Integr8sCode
//! events on the topics its `[kafka]` section names, read from their beginning up to where they
//! ended when the command started. The mapping to executions is
//! `coordinator_core::sim::traffic`; this is the command line around it: the options, the read
//! ([`crate::tools::topic_snapshot`]) and what was read and skipped, on stderr.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::EventType;
use coordinator_core::planner::Policy;
use coordinator_core::sim::settings::SimConfig;
use coordinator_core::sim::traffic::{parse_timestamp_ms, Filter, Skips, Traffic};
use coordinator_core::sim::{self as core_sim, Replay};

use crate::tools::simulate::BadInput;
use crate::tools::topic_snapshot::{read_topics, SnapshotError, TopicRead};

/// The event types the replay reads: requests, commands, ends and cancellations.
pub const READ_EVENT_TYPES: [EventType; 6] = [
    EventType::ExecutionRequested,
    EventType::CreatePodCommand,
    EventType::ExecutionCompleted,
    EventType::ExecutionFailed,
    EventType::ExecutionTimeout,
    EventType::ExecutionCancelled,
];

/// The Kafka input of `simulate`.
#[derive(Args, Debug, Clone, Default)]
pub struct KafkaInputOptions {
    /// Replay the Integr8sCode events on the topics of the config's `[kafka]` section (its
    /// brokers, security, `topic_prefix`, `topic_layout` and `[kafka.topics]`), read from
    /// their beginning up to where they ended when the command started.
    #[arg(long, conflicts_with_all = ["trace", "synthetic"])]
    pub from_kafka: bool,
    /// Brokers to read from, instead of `kafka.bootstrap_servers`.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Only requests at or after this time: RFC 3339 (`2026-02-20T10:00:00Z`) or a duration
    /// before now (`2h`, `7days`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only requests before this time: RFC 3339 or a duration before now.
    #[arg(long)]
    pub until: Option<String>,
    /// How long to wait for the brokers to answer, and for the next message while a partition
    /// is short of its end.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub kafka_timeout: Duration,
}

impl KafkaInputOptions {
    /// Refuses the Kafka input's own flags when the input is not Kafka, rather than ignoring
    /// them.
    pub fn check_unused(&self) -> Result<(), BadInput> {
        let given = [
            ("--bootstrap", self.bootstrap.is_some()),
            ("--since", self.since.is_some()),
            ("--until", self.until.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(BadInput(format!("{flag} applies to --from-kafka only"))),
            None => Ok(()),
        }
    }
}

/// The topics the replay reads for `kafka`, prefixed, sorted and without duplicates.
pub fn traffic_topics(kafka: &KafkaConfig) -> Vec<String> {
    let mut topics: Vec<String> = READ_EVENT_TYPES
        .into_iter()
        .map(|t| kafka.topic_of(t))
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

/// Reads the traffic of `kafka`'s topics at `bootstrap`.
pub fn read_traffic(
    kafka: &KafkaConfig,
    bootstrap: &str,
    timeout: Duration,
) -> Result<(Traffic, Vec<TopicRead>), SnapshotError> {
    let mut traffic = Traffic::new(kafka.max_message_bytes);
    let topics = traffic_topics(kafka);
    let read = read_topics(kafka, bootstrap, &topics, timeout, &mut |m| traffic.add(m))?;
    Ok((traffic, read))
}

/// A deployment's traffic, read, and the requests to replay from it.
pub struct KafkaWorkload {
    traffic: Traffic,
    filter: Filter,
}

impl KafkaWorkload {
    /// Reads the topics of `config`'s `[kafka]` section and says on `err` what was read and
    /// what will not be replayed. `limit` keeps the first requests of the window only.
    pub fn read(
        options: &KafkaInputOptions,
        config: &SimConfig,
        limit: Option<usize>,
        err: &mut dyn Write,
    ) -> Result<KafkaWorkload, BadInput> {
        let kafka = &config.config.kafka;
        let bootstrap = options
            .bootstrap
            .clone()
            .or_else(|| kafka.bootstrap_servers.clone())
            .ok_or_else(|| {
                BadInput(
                    "--from-kafka needs brokers: set kafka.bootstrap_servers in the config or \
                     pass --bootstrap HOST:PORT"
                        .to_owned(),
                )
            })?;
        let now = now_ms();
        let filter = Filter {
            since_ms: parse_time("--since", options.since.as_deref(), now)?,
            until_ms: parse_time("--until", options.until.as_deref(), now)?,
            limit,
        };
        if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms) {
            if since >= until {
                return Err(BadInput(
                    "--since must be earlier than --until: the window is empty".to_owned(),
                ));
            }
        }
        let (traffic, read) = read_traffic(kafka, &bootstrap, options.kafka_timeout)
            .map_err(|e| BadInput(format!("reading the Kafka topics: {e}")))?;
        let workload = KafkaWorkload { traffic, filter };
        let skips = workload.traffic.map(config, &workload.filter).skips;
        // What was read is said, not fatal: a report on stderr is all the command can do about it.
        let _ = workload.describe(&bootstrap, &read, &skips, err);
        Ok(workload)
    }

    /// Maps the traffic with `config` and replays it.
    pub fn simulate(
        &self,
        config: &SimConfig,
        policy: Option<Policy>,
        label: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Replay {
        let mapped = self.traffic.map(config, &self.filter);
        let skipped = mapped.skips.total();
        core_sim::replay(mapped.jobs, skipped, config, policy, label, progress)
    }

    fn describe(
        &self,
        bootstrap: &str,
        read: &[TopicRead],
        skips: &Skips,
        err: &mut dyn Write,
    ) -> std::io::Result<()> {
        let counts = self.traffic.counts();
        let topics: Vec<String> = read
            .iter()
            .map(|t| format!("{} {}", t.topic, t.messages))
            .collect();
        writeln!(
            err,
            "simulate: read {} messages from {bootstrap} ({}), each partition up to its end at the start",
            counts.messages,
            topics.join(", ")
        )?;
        for t in read.iter().filter(|t| t.missing) {
            writeln!(
                err,
                "simulate: topic {} does not exist; read as empty",
                t.topic
            )?;
        }
        if counts.bad > 0 {
            writeln!(
                err,
                "simulate: {} bad messages skipped (not a usable event); the first:",
                counts.bad
            )?;
            for bad in self.traffic.bad_messages() {
                writeln!(
                    err,
                    "  {}/{}@{}: {}",
                    bad.topic, bad.partition, bad.offset, bad.reason
                )?;
            }
        }
        let mut notes = Vec::new();
        let mut note = |n: u64, what: &str| {
            if n > 0 {
                notes.push(format!("{n} {what}"));
            }
        };
        note(counts.ignored, "events of other types ignored");
        note(
            counts.kafka_timestamps,
            "events timed by their Kafka timestamp (no usable `timestamp` field)",
        );
        note(
            skips.duplicates,
            "repeated requests ignored (same execution_id)",
        );
        note(
            skips.orphans,
            "events of executions whose request was not read",
        );
        note(
            skips.outside_window,
            "requests outside --since/--until left out",
        );
        if !notes.is_empty() {
            writeln!(err, "simulate: {}", notes.join("; "))?;
        }
        let mut skipped = Vec::new();
        let mut skip = |n: u64, what: &str| {
            if n > 0 {
                skipped.push(format!("{n} {what}"));
            }
        };
        skip(skips.cancelled, "cancelled before a create_pod_command");
        skip(
            skips.not_started,
            "ended without a create_pod_command (refused or expired by the coordinator, or the \
             command is not in the topics)",
        );
        skip(
            skips.invalid,
            "invalid (unknown priority or unparsable quantity)",
        );
        if !skipped.is_empty() {
            writeln!(err, "simulate: not replayed: {}", skipped.join("; "))?;
        }
        let mut guessed = Vec::new();
        let mut guess = |n: u64, what: &str| {
            if n > 0 {
                guessed.push(format!("{n} {what}"));
            }
        };
        guess(
            skips.still_running,
            "still running (run time taken as its timeout)",
        );
        guess(
            skips.still_queued,
            "still queued (run time taken as its timeout, no recorded wait)",
        );
        guess(
            skips.out_of_order,
            "timed out of order across services (a negative wait or run time taken as 0)",
        );
        if !guessed.is_empty() {
            writeln!(
                err,
                "simulate: replayed with a guess: {}",
                guessed.join("; ")
            )?;
        }
        Ok(())
    }
}

/// `--since`/`--until` as ms since the epoch: an RFC 3339 time, or a duration before `now_ms`.
fn parse_time(flag: &str, text: Option<&str>, now_ms: i64) -> Result<Option<i64>, BadInput> {
    let Some(text) = text else {
        return Ok(None);
    };
    if let Some(t) = parse_timestamp_ms(text) {
        return Ok(Some(t));
    }
    match humantime::parse_duration(text.trim()) {
        Ok(ago) => {
            let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
            Ok(Some(now_ms.saturating_sub(ago).max(0)))
        }
        Err(_) => Err(BadInput(format!(
            "{flag} `{text}` is neither an RFC 3339 time (2026-02-20T10:00:00Z) nor a duration \
             before now (2h, 7days)"
        ))),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_before_now() {
        let now = 1_771_581_600_000;
        let t = |s| parse_time("--since", Some(s), now).map_err(|e| e.0);
        assert_eq!(t("2026-02-20T10:00:00Z"), Ok(Some(now)));
        assert_eq!(t("2h"), Ok(Some(now - 7_200_000)));
        assert_eq!(t("1day 1h"), Ok(Some(now - 90_000_000)));
        assert!(t("last tuesday")
            .unwrap_err()
            .contains("--since `last tuesday`"));
        assert_eq!(parse_time("--until", None, now).map_err(|e| e.0), Ok(None));
    }

    #[test]
    fn both_layouts_read_every_topic_once() {
        let mut kafka = KafkaConfig {
            topic_prefix: "p.".to_owned(),
            ..KafkaConfig::default()
        };
        assert_eq!(
            traffic_topics(&kafka),
            [
                "p.create_pod_command",
                "p.execution_cancelled",
                "p.execution_completed",
                "p.execution_failed",
                "p.execution_requested",
                "p.execution_timeout",
            ]
        );
        kafka.topic_layout = coordinator_core::config::TopicLayout::Shared;
        assert_eq!(
            traffic_topics(&kafka),
            ["p.execution_events", "p.saga_commands"]
        );
    }
}
