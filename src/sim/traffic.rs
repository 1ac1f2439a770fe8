//! A deployment's own traffic: the Integr8sCode events read back from its topics, and the
//! executions they become for a replay.
//!
//! Each message is decoded with the daemon's own decoder ([`decode_input`]) and kept as a small
//! fact — which execution, what happened, when, where it was read — so the scripts and the rest
//! of the payload are not held. [`Traffic::map`] sorts the facts by time and then by topic,
//! partition and offset, pairs each `execution_requested` with the first `create_pod_command`
//! and the first end of its execution, and resolves its resources and priority as the daemon
//! does, against the simulated config's pool. The order in which messages were added does not
//! matter: the same messages always give the same executions.
//!
//! An event's time is its own `timestamp` field (RFC 3339) — when the service that wrote it says
//! it happened — and the Kafka message's timestamp only when that field is missing or not a
//! time. docs/simulator.md has the whole mapping and what is skipped.

use std::time::UNIX_EPOCH;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::events::{decode_input, InputEvent, ANONYMOUS_USER};
use crate::pool::{PoolSpec, RequestError, ResourceAsk};
use crate::queue::Millis;
use crate::sim::settings::{SimConfig, SimJob};
use crate::Priority;

/// How many bad messages are kept to be shown (the first ones by topic, partition and offset).
pub const BAD_LISTED: usize = 10;

/// One message as read from a topic.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The message's own timestamp (create or log-append time), ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Its value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
}

/// Where a message was read: an index into [`Traffic`]'s topics, the partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    topic: u32,
    partition: i32,
    offset: i64,
}

/// What a request says that the replay needs.
#[derive(Debug, Clone)]
struct Request {
    language: Box<str>,
    cpu: Option<Box<str>>,
    memory: Option<Box<str>>,
    /// `None` when the daemon would refuse the priority.
    priority: Option<Priority>,
    timeout_seconds: u64,
    user: Box<str>,
}

#[derive(Debug, Clone)]
enum What {
    Requested(Box<Request>),
    /// A `create_pod_command`: the execution got its resources.
    Started,
    /// `execution_completed`, `execution_failed` or `execution_timeout`.
    Ended,
    Cancelled,
}

#[derive(Debug, Clone)]
struct Fact {
    time_ms: i64,
    place: Place,
    execution_id: Box<str>,
    what: What,
}

/// What reading the messages found, before any mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Messages added.
    pub messages: u64,
    /// Events kept: requests, commands, ends and cancellations.
    pub events: u64,
    /// Messages that are not a usable event (not JSON, missing fields, no payload, no time).
    pub bad: u64,
    /// Events of other types (`execution_accepted`, anything unknown): not needed.
    pub ignored: u64,
    /// Events whose `timestamp` field is missing or not RFC 3339, timed by the message's own
    /// timestamp instead.
    pub kafka_timestamps: u64,
}

/// A message that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why, naming the field where one is wrong.
    pub reason: String,
}

/// Which requests to replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only requests at or after this time, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Only requests before this time, ms since the epoch.
    pub until_ms: Option<i64>,
    /// Only the first this many requests (in time order) of the window.
    pub limit: Option<usize>,
}

/// What became of the requests that were read, besides the jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skips {
    /// Not replayed: cancelled before any `create_pod_command`.
    pub cancelled: u64,
    /// Not replayed: ended (`execution_failed`, `execution_timeout`, `execution_completed`)
    /// without a `create_pod_command` — refused or expired by the coordinator, or its command
    /// is not in the topics. How long it would have run is unknown.
    pub not_started: u64,
    /// Not replayed: the daemon refuses it as invalid (an unknown priority, an unparsable
    /// quantity).
    pub invalid: u64,
    /// A second `execution_requested` for an execution already requested: ignored, as the
    /// daemon ignores a redelivery.
    pub duplicates: u64,
    /// Requests before `since` or from `until` on.
    pub outside_window: u64,
    /// Commands, ends and cancellations of executions with no request in the topics.
    pub orphans: u64,
    /// Replayed: started but not ended when the topics were read; its run time is its timeout.
    pub still_running: u64,
    /// Replayed: neither started nor ended nor cancelled; its run time is its timeout, and it
    /// has no recorded wait.
    pub still_queued: u64,
    /// Replayed: a command timed before its request or an end before its command (clocks of
    /// different services disagree); the wait or run time is taken as 0.
    pub out_of_order: u64,
}

impl Skips {
    /// Requests read but not replayed: cancelled, not started and invalid.
    pub fn total(&self) -> u64 {
        self.cancelled + self.not_started + self.invalid
    }
}

/// The executions a replay runs, and what became of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// In arrival order.
    pub jobs: Vec<SimJob>,
    /// What was not replayed, or replayed with a guess.
    pub skips: Skips,
}

/// The events of one deployment's topics, as compact facts.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    topics: Vec<String>,
    facts: Vec<Fact>,
    max_message_bytes: usize,
    counts: ReadCounts,
    bad: Vec<(Place, String)>,
}

/// The few fields of a `create_pod_command` the replay needs: its execution and time.
#[derive(Deserialize)]
struct Command {
    execution_id: String,
    #[serde(default)]
    timestamp: Option<String>,
}

impl Traffic {
    /// Nothing read yet. Messages larger than `max_message_bytes` are bad, as the daemon
    /// refuses them (`kafka.max_message_bytes`).
    pub fn new(max_message_bytes: usize) -> Self {
        Traffic {
            max_message_bytes,
            ..Traffic::default()
        }
    }

    /// Decodes `message` and keeps what the replay needs; a message that is not a usable event
    /// is counted (and the first few kept, [`Traffic::bad_messages`]).
    pub fn add(&mut self, message: Message<'_>) {
        self.counts.messages += 1;
        let place = Place {
            topic: self.topic_index(message.topic),
            partition: message.partition,
            offset: message.offset,
        };
        match self.decode(message) {
            Ok(Some(decoded)) => {
                self.counts.events += 1;
                if decoded.kafka_time {
                    self.counts.kafka_timestamps += 1;
                }
                self.facts.push(Fact {
                    time_ms: decoded.time_ms,
                    place,
                    execution_id: decoded.execution_id,
                    what: decoded.what,
                });
            }
            Ok(None) => self.counts.ignored += 1,
            Err(reason) => {
                self.counts.bad += 1;
                self.bad.push((place, reason));
                if self.bad.len() > 8 * BAD_LISTED {
                    self.trim_bad();
                }
            }
        }
    }

    /// What reading found so far.
    pub fn counts(&self) -> ReadCounts {
        self.counts
    }

    /// The first bad messages (by topic, partition and offset), at most [`BAD_LISTED`].
    pub fn bad_messages(&self) -> Vec<BadMessage> {
        let mut bad = self.bad.clone();
        self.sort_places(&mut bad);
        bad.truncate(BAD_LISTED);
        bad.into_iter()
            .map(|(place, reason)| BadMessage {
                topic: self.topics[place.topic as usize].clone(),
                partition: place.partition,
                offset: place.offset,
                reason,
            })
            .collect()
    }

    /// The executions `config` replays: every request in `filter`'s window, in time order,
    /// with its resources resolved by `config`'s pool as the daemon resolves them.
    pub fn map(&self, config: &SimConfig, filter: &Filter) -> Mapped {
        let spec = PoolSpec::from_config(&config.config.resources);
        let mut order: Vec<&Fact> = self.facts.iter().collect();
        order.sort_by(|a, b| {
            (a.time_ms, &self.topics[a.place.topic as usize])
                .cmp(&(b.time_ms, &self.topics[b.place.topic as usize]))
                .then((a.place.partition, a.place.offset).cmp(&(b.place.partition, b.place.offset)))
        });

        let mut skips = Skips::default();
        let mut executions: FxHashMap<&str, Execution<'_>> = FxHashMap::default();
        let mut requests: Vec<&str> = Vec::new();
        for fact in &order {
            let id: &str = &fact.execution_id;
            match &fact.what {
                What::Requested(request) => {
                    let e = executions.entry(id).or_default();
                    if e.request.is_some() {
                        skips.duplicates += 1;
                    } else {
                        e.request = Some((fact.time_ms, request));
                        requests.push(id);
                    }
                }
                What::Started => {
                    let e = executions.entry(id).or_default();
                    e.start.get_or_insert(fact.time_ms);
                }
                What::Ended => {
                    let e = executions.entry(id).or_default();
                    e.end.get_or_insert(fact.time_ms);
                }
                What::Cancelled => {
                    let e = executions.entry(id).or_default();
                    e.cancel.get_or_insert(fact.time_ms);
                }
            }
        }
        skips.orphans = executions
            .values()
            .filter(|e| e.request.is_none())
            .map(|e| e.start.is_some() as u64 + e.end.is_some() as u64 + e.cancel.is_some() as u64)
            .sum();

        let mut users: FxHashMap<&str, i64> = FxHashMap::default();
        let mut jobs = Vec::new();
        let mut taken = 0usize;
        for id in requests {
            let e = &executions[id];
            let Some((arrival, request)) = e.request else {
                continue;
            };
            let in_window = filter.since_ms.is_none_or(|s| arrival >= s)
                && filter.until_ms.is_none_or(|u| arrival < u);
            if !in_window {
                skips.outside_window += 1;
                continue;
            }
            if filter.limit.is_some_and(|l| taken >= l) {
                break;
            }
            taken += 1;
            if let Some(job) = self.job(arrival, request, e, &spec, &mut users, &mut skips) {
                jobs.push(job);
            }
        }
        Mapped { jobs, skips }
    }

    /// The job of one request, or `None` (counted in `skips`) when it is not replayed.
    fn job<'a>(
        &self,
        arrival: i64,
        request: &'a Request,
        e: &Execution<'_>,
        spec: &PoolSpec,
        users: &mut FxHashMap<&'a str, i64>,
        skips: &mut Skips,
    ) -> Option<SimJob> {
        let Some(priority) = request.priority else {
            skips.invalid += 1;
            return None;
        };
        let ask = ResourceAsk {
            language: &request.language,
            cpu: request.cpu.as_deref(),
            memory: request.memory.as_deref(),
            gpu: None,
        };
        let resources = match spec.resolve(ask) {
            Ok(resolved) => resolved.asked,
            // The replay refuses it too, and counts it as never fitting.
            Err(RequestError::NeverFits { requested, .. }) => requested,
            Err(RequestError::InvalidQuantity(_)) => {
                skips.invalid += 1;
                return None;
            }
        };
        let timeout_ms = request.timeout_seconds.saturating_mul(1000).max(1000);
        let (runtime_ms, recorded_wait_ms) = match (e.start, e.end.min_some(e.cancel)) {
            (Some(start), Some(end)) => {
                if start < arrival || end < start {
                    skips.out_of_order += 1;
                }
                (
                    millis_between(start, end),
                    Some(millis_between(arrival, start)),
                )
            }
            (Some(start), None) => {
                if start < arrival {
                    skips.out_of_order += 1;
                }
                skips.still_running += 1;
                (timeout_ms, Some(millis_between(arrival, start)))
            }
            (None, _) if e.cancel.is_some() => {
                skips.cancelled += 1;
                return None;
            }
            (None, Some(_)) => {
                skips.not_started += 1;
                return None;
            }
            (None, None) => {
                skips.still_queued += 1;
                (timeout_ms, None)
            }
        };
        let user = if &*request.user == ANONYMOUS_USER {
            -1
        } else {
            let next = users.len() as i64;
            *users.entry(&request.user).or_insert(next)
        };
        Some(SimJob {
            submit_ms: arrival as Millis,
            runtime_ms,
            timeout_ms,
            cpu_millis: resources.cpu_millis,
            memory_mib: resources.memory_mib,
            priority,
            user,
            recorded_wait_ms,
            // The platform kills an execution at its timeout.
            overruns: false,
        })
    }

    fn topic_index(&mut self, topic: &str) -> u32 {
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.to_owned());
                (self.topics.len() - 1) as u32
            }
        }
    }

    fn sort_places<T>(&self, items: &mut [(Place, T)]) {
        items.sort_by(|(a, _), (b, _)| {
            (&self.topics[a.topic as usize], a.partition, a.offset).cmp(&(
                &self.topics[b.topic as usize],
                b.partition,
                b.offset,
            ))
        });
    }

    fn trim_bad(&mut self) {
        let mut bad = std::mem::take(&mut self.bad);
        self.sort_places(&mut bad);
        bad.truncate(BAD_LISTED);
        self.bad = bad;
    }

    /// What `message` says, `None` for an event the replay does not need, or why it is not a
    /// usable event.
    fn decode(&self, message: Message<'_>) -> Result<Option<Decoded>, String> {
        let payload = message
            .payload
            .ok_or_else(|| "the message has no value (a tombstone)".to_owned())?;
        let event = decode_input(payload, self.max_message_bytes).map_err(|e| e.message)?;
        let (execution_id, timestamp, what) = match event {
            InputEvent::Requested(r) => {
                let request = Request {
                    language: r.language.into(),
                    cpu: r.cpu_request.map(Into::into),
                    memory: r.memory_request.map(Into::into),
                    priority: r.priority.level().ok(),
                    timeout_seconds: r.timeout_seconds,
                    user: r.metadata.user_key().into(),
                };
                (
                    r.execution_id,
                    r.timestamp,
                    What::Requested(Box::new(request)),
                )
            }
            InputEvent::Cancelled(c) => (c.execution_id, c.timestamp, What::Cancelled),
            InputEvent::Completed(c) => (c.execution_id, c.timestamp, What::Ended),
            InputEvent::Failed(f) => (f.execution_id, f.timestamp, What::Ended),
            InputEvent::TimedOut(t) => (t.execution_id, t.timestamp, What::Ended),
            InputEvent::Other { event_type } if event_type == "create_pod_command" => {
                let command: Command = serde_json::from_slice(payload)
                    .map_err(|e| format!("invalid create_pod_command event: {e}"))?;
                if command.execution_id.trim().is_empty() {
                    return Err(
                        "invalid create_pod_command event: field `execution_id` must not be empty"
                            .to_owned(),
                    );
                }
                (
                    command.execution_id,
                    command.timestamp.unwrap_or_default(),
                    What::Started,
                )
            }
            InputEvent::Other { .. } => return Ok(None),
        };
        let (time_ms, kafka_time) = match (parse_timestamp_ms(&timestamp), message.timestamp_ms) {
            (Some(t), _) => (t, false),
            (None, Some(t)) if t >= 0 => (t, true),
            (None, _) => {
                let field = if timestamp.is_empty() {
                    "missing".to_owned()
                } else {
                    format!("not an RFC 3339 time (`{timestamp}`)")
                };
                return Err(format!(
                    "no usable time: field `timestamp` is {field} and the message has no timestamp"
                ));
            }
        };
        Ok(Some(Decoded {
            execution_id: execution_id.into(),
            time_ms,
            what,
            kafka_time,
        }))
    }
}

/// The fact of one message, before its place is known.
struct Decoded {
    execution_id: Box<str>,
    time_ms: i64,
    what: What,
    /// Timed by the message's timestamp, its own being missing or not a time.
    kafka_time: bool,
}

/// What the topics say of one execution: its first request, command, end and cancellation.
#[derive(Default)]
struct Execution<'a> {
    request: Option<(i64, &'a Request)>,
    start: Option<i64>,
    end: Option<i64>,
    cancel: Option<i64>,
}

trait MinSome {
    fn min_some(self, other: Self) -> Self;
}

impl MinSome for Option<i64> {
    /// The earlier of two times, either of which may be unknown.
    fn min_some(self, other: Self) -> Self {
        match (self, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn millis_between(from: i64, to: i64) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

/// An RFC 3339 time as ms since the epoch: `2026-02-20T10:00:00Z`, with any fraction of a
/// second, `Z` or an offset (`+01:00`, `+0100`); without either it is taken as UTC. `None` for
/// anything else, or a time before 1970.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (local, offset_minutes) = if text.ends_with(['Z', 'z']) {
        (&text[..text.len() - 1], 0i64)
    } else if let Some((local, sign, hours, minutes)) = split_offset(text) {
        (local, sign * (hours * 60 + minutes))
    } else {
        (text, 0)
    };
    // humantime reads the local part (any precision, `T` or a space); it must not see an offset.
    if local.len() < 19 {
        return None;
    }
    let local_time = humantime::parse_rfc3339_weak(local).ok()?;
    let ms = local_time.duration_since(UNIX_EPOCH).ok()?.as_millis();
    let ms = i64::try_from(ms).ok()?;
    let utc = ms - offset_minutes * 60_000;
    (utc >= 0).then_some(utc)
}

/// `(local part, sign, hours, minutes)` of a time ending in `±HH:MM` or `±HHMM` after its
/// time of day.
fn split_offset(text: &str) -> Option<(&str, i64, i64, i64)> {
    let b = text.as_bytes();
    for (len, colon) in [(6usize, true), (5, false)] {
        if b.len() < 19 + len {
            continue;
        }
        let at = b.len() - len;
        let sign = match b[at] {
            b'+' => 1,
            b'-' => -1,
            _ => continue,
        };
        let digits: Vec<u8> = b[at + 1..]
            .iter()
            .copied()
            .filter(|c| !(colon && *c == b':'))
            .collect();
        if colon && b[at + 3] != b':' {
            continue;
        }
        if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let n = |i: usize| i64::from(digits[i] - b'0');
        let (hours, minutes) = (n(0) * 10 + n(1), n(2) * 10 + n(3));
        if hours > 23 || minutes > 59 {
            return None;
        }
        return Some((&text[..at], sign, hours, minutes));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const CONFIG: &str = r#"
[resources]
total_cpu_cores = 8.0
total_memory_mb = 8192
overcommit_factor = 1.0
max_cpu_per_execution = 2.0
"#;

    /// 2026-02-20T10:00:00Z in ms.
    const T0: i64 = 1_771_581_600_000;

    fn at(ms: i64) -> String {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
        humantime::format_rfc3339_millis(time).to_string()
    }

    fn meta(user: Option<&str>) -> Value {
        json!({"service_name": "api", "service_version": "1.0", "user_id": user})
    }

    fn request(id: &str, ms: i64, user: Option<&str>, priority: Value) -> Value {
        json!({
            "event_type": "execution_requested", "timestamp": at(ms), "metadata": meta(user),
            "execution_id": id, "script": "print(1)", "language": "python",
            "language_version": "3.11", "runtime_image": "python:3.11-slim",
            "runtime_command": ["python", "main.py"], "runtime_filename": "main.py",
            "timeout_seconds": 60, "priority": priority,
        })
    }

    fn event(event_type: &str, id: &str, ms: i64) -> Value {
        let mut e = json!({
            "event_type": event_type, "timestamp": at(ms), "metadata": meta(Some("svc")),
            "execution_id": id,
        });
        match event_type {
            "execution_completed" => e["exit_code"] = json!(0),
            "execution_failed" => e["error_type"] = json!("script_error"),
            _ => {}
        }
        e
    }

    /// Adds each value as a message of `topic`, offsets from 0, with no Kafka timestamp.
    fn traffic_of(events: &[(&str, Value)]) -> Traffic {
        let mut traffic = Traffic::new(1 << 20);
        for (offset, (topic, value)) in events.iter().enumerate() {
            let bytes = serde_json::to_vec(value).unwrap();
            traffic.add(Message {
                topic,
                partition: 0,
                offset: offset as i64,
                timestamp_ms: None,
                payload: Some(&bytes),
            });
        }
        traffic
    }

    fn config() -> SimConfig {
        SimConfig::from_toml_str(CONFIG).unwrap()
    }

    #[test]
    fn pairs_requests_with_their_command_and_first_end() {
        let mut req = request("a", T0, Some("alice"), json!("high"));
        req["cpu_request"] = json!("500m");
        req["memory_request"] = json!("256Mi");
        let mut java = request("b", T0 + 1_000, Some("bob"), json!(0));
        java["language"] = json!("java");
        let traffic = traffic_of(&[
            ("r", req),
            ("r", java),
            ("c", event("create_pod_command", "a", T0 + 2_000)),
            ("c", event("create_pod_command", "b", T0 + 2_500)),
            ("e", event("execution_completed", "a", T0 + 7_000)),
            ("e", event("execution_failed", "a", T0 + 9_000)),
            ("e", event("execution_timeout", "b", T0 + 62_500)),
        ]);
        let mapped = traffic.map(&config(), &Filter::default());
        assert_eq!(mapped.skips, Skips::default());
        assert_eq!(
            mapped.jobs,
            vec![
                SimJob {
                    submit_ms: T0 as u64,
                    runtime_ms: 5_000,
                    timeout_ms: 60_000,
                    cpu_millis: 500,
                    memory_mib: 256,
                    priority: Priority::High,
                    user: 0,
                    recorded_wait_ms: Some(2_000),
                    overruns: false,
                },
                SimJob {
                    submit_ms: T0 as u64 + 1_000,
                    runtime_ms: 60_000,
                    timeout_ms: 60_000,
                    cpu_millis: 1_000,
                    memory_mib: 1_024,
                    priority: Priority::Critical,
                    user: 1,
                    recorded_wait_ms: Some(1_500),
                    overruns: false,
                },
            ]
        );
    }

    #[test]
    fn the_order_messages_are_added_in_does_not_matter() {
        let events = vec![
            ("r", request("a", T0, Some("u1"), json!("normal"))),
            ("r", request("b", T0, Some("u2"), json!("low"))),
            ("c", event("create_pod_command", "b", T0 + 1_000)),
            ("c", event("create_pod_command", "a", T0 + 1_000)),
            ("e", event("execution_completed", "a", T0 + 3_000)),
            ("e", event("execution_completed", "b", T0 + 4_000)),
        ];
        let forward = traffic_of(&events).map(&config(), &Filter::default());
        // Same places (topic, offset) as going forward, added the other way round.
        let mut traffic = Traffic::new(1 << 20);
        for (i, (topic, value)) in events.iter().enumerate().rev() {
            let bytes = serde_json::to_vec(value).unwrap();
            traffic.add(Message {
                topic,
                partition: 0,
                offset: i as i64,
                timestamp_ms: None,
                payload: Some(&bytes),
            });
        }
        assert_eq!(forward, traffic.map(&config(), &Filter::default()));
        // Equal arrival times: the lower offset first, and users numbered in that order.
        assert_eq!(forward.jobs[0].priority, Priority::Normal);
        assert_eq!(forward.jobs[1].user, 1);
    }

    #[test]
    fn counts_what_is_not_replayed_and_guesses_what_is_unfinished() {
        let traffic = traffic_of(&[
            ("r", request("cancelled", T0, None, json!("normal"))),
            ("e", event("execution_cancelled", "cancelled", T0 + 100)),
            ("r", request("refused", T0, None, json!("normal"))),
            ("e", event("execution_failed", "refused", T0 + 5)),
            ("r", request("invalid", T0, None, json!("urgent"))),
            ("r", request("running", T0 + 10, None, json!("normal"))),
            ("c", event("create_pod_command", "running", T0 + 20)),
            ("r", request("queued", T0 + 30, None, json!("background"))),
            ("r", request("queued", T0 + 40, None, json!("critical"))),
            ("e", event("execution_completed", "nobody", T0)),
            (
                "r",
                request("killed", T0 + 50, Some("carol"), json!("normal")),
            ),
            ("c", event("create_pod_command", "killed", T0 + 60)),
            ("e", event("execution_cancelled", "killed", T0 + 1_060)),
        ]);
        let mapped = traffic.map(&config(), &Filter::default());
        assert_eq!(
            mapped.skips,
            Skips {
                cancelled: 1,
                not_started: 1,
                invalid: 1,
                duplicates: 1,
                orphans: 1,
                still_running: 1,
                still_queued: 1,
                ..Skips::default()
            }
        );
        assert_eq!(mapped.skips.total(), 3);
        let summary: Vec<_> = mapped
            .jobs
            .iter()
            .map(|j| (j.runtime_ms, j.recorded_wait_ms, j.priority, j.user))
            .collect();
        assert_eq!(
            summary,
            vec![
                (60_000, Some(10), Priority::Normal, -1),
                (60_000, None, Priority::Background, -1),
                (1_000, Some(10), Priority::Normal, 0),
            ]
        );
    }

    #[test]
    fn bad_messages_are_counted_and_named_and_other_types_ignored() {
        let mut traffic = traffic_of(&[
            ("r", request("a", T0, None, json!("normal"))),
            (
                "r",
                json!({"event_type": "execution_accepted", "execution_id": "a"}),
            ),
            (
                "r",
                json!({"event_type": "execution_requested", "execution_id": "b"}),
            ),
            (
                "c",
                json!({"event_type": "create_pod_command", "timestamp": at(T0)}),
            ),
        ]);
        traffic.add(Message {
            topic: "r",
            partition: 1,
            offset: 7,
            timestamp_ms: Some(T0),
            payload: Some(b"not json"),
        });
        traffic.add(Message {
            topic: "r",
            partition: 1,
            offset: 8,
            timestamp_ms: None,
            payload: None,
        });
        let counts = traffic.counts();
        assert_eq!((counts.messages, counts.events), (6, 1));
        assert_eq!((counts.bad, counts.ignored), (4, 1));
        let bad = traffic.bad_messages();
        let places: Vec<_> = bad
            .iter()
            .map(|b| (b.topic.as_str(), b.partition, b.offset))
            .collect();
        assert_eq!(places, [("c", 0, 3), ("r", 0, 2), ("r", 1, 7), ("r", 1, 8)]);
        assert!(bad[0].reason.contains("execution_id"), "{bad:?}");
        assert!(bad[1].reason.contains("metadata"), "{bad:?}");
        assert!(bad[2].reason.contains("not valid JSON"), "{bad:?}");
        assert!(bad[3].reason.contains("tombstone"), "{bad:?}");
    }

    #[test]
    fn an_event_without_its_own_time_takes_the_messages() {
        let mut req = request("a", T0, None, json!("normal"));
        req.as_object_mut().unwrap().remove("timestamp");
        let bytes = serde_json::to_vec(&req).unwrap();
        let mut traffic = Traffic::new(1 << 20);
        traffic.add(Message {
            topic: "r",
            partition: 0,
            offset: 0,
            timestamp_ms: Some(T0 + 123),
            payload: Some(&bytes),
        });
        traffic.add(Message {
            topic: "r",
            partition: 0,
            offset: 1,
            timestamp_ms: None,
            payload: Some(&bytes),
        });
        assert_eq!(traffic.counts().kafka_timestamps, 1);
        assert_eq!(traffic.counts().bad, 1);
        assert!(traffic.bad_messages()[0].reason.contains("no usable time"));
        let mapped = traffic.map(&config(), &Filter::default());
        assert_eq!(mapped.jobs[0].submit_ms, T0 as u64 + 123);
    }

    #[test]
    fn the_window_and_limit_select_requests_by_arrival() {
        let events: Vec<_> = (0..5)
            .map(|i| {
                (
                    "r",
                    request(&format!("e{i}"), T0 + i * 1_000, None, json!(5)),
                )
            })
            .collect();
        let traffic = traffic_of(&events);
        let filter = Filter {
            since_ms: Some(T0 + 1_000),
            until_ms: Some(T0 + 4_000),
            limit: None,
        };
        let mapped = traffic.map(&config(), &filter);
        let arrivals: Vec<_> = mapped
            .jobs
            .iter()
            .map(|j| j.submit_ms - T0 as u64)
            .collect();
        assert_eq!(arrivals, [1_000, 2_000, 3_000]);
        assert_eq!(mapped.skips.outside_window, 2);
        let limited = traffic.map(
            &config(),
            &Filter {
                limit: Some(2),
                ..filter
            },
        );
        assert_eq!(limited.jobs.len(), 2);
    }

    #[test]
    fn resources_are_the_daemons_and_unparsable_ones_are_invalid() {
        let mut big = request("big", T0, None, json!(5));
        big["cpu_request"] = json!("3");
        let mut huge = request("huge", T0 + 1, None, json!(5));
        huge["memory_request"] = json!("64Gi");
        let mut bad = request("bad", T0 + 2, None, json!(5));
        bad["cpu_request"] = json!("lots");
        let traffic = traffic_of(&[("r", big), ("r", huge), ("r", bad)]);
        let mapped = traffic.map(&config(), &Filter::default());
        assert_eq!(mapped.skips.invalid, 1);
        // Asked amounts, before the caps: the replay clamps (and counts) as the daemon does.
        assert_eq!(mapped.jobs[0].cpu_millis, 3_000);
        // Larger than the pool even after the caps: kept, for the replay to refuse.
        assert_eq!(mapped.jobs[1].memory_mib, 8_192);
    }

    #[test]
    fn out_of_order_clocks_give_zero_not_a_wrap() {
        let traffic = traffic_of(&[
            ("r", request("a", T0 + 5_000, None, json!(5))),
            ("c", event("create_pod_command", "a", T0 + 4_000)),
            ("e", event("execution_completed", "a", T0 + 3_000)),
        ]);
        let mapped = traffic.map(&config(), &Filter::default());
        assert_eq!(mapped.skips.out_of_order, 1);
        assert_eq!(mapped.jobs[0].recorded_wait_ms, Some(0));
        assert_eq!(mapped.jobs[0].runtime_ms, 0);
    }

    #[test]
    fn timestamps_in_every_shape_integr8scode_writes() {
        let t = parse_timestamp_ms;
        assert_eq!(t("2026-02-20T10:00:00Z"), Some(T0));
        assert_eq!(t("2026-02-20T10:00:00.123456Z"), Some(T0 + 123));
        assert_eq!(t("2026-02-20T10:00:00.5+00:00"), Some(T0 + 500));
        assert_eq!(t("2026-02-20T11:30:00+01:30"), Some(T0));
        assert_eq!(t("2026-02-20T08:00:00-0200"), Some(T0));
        assert_eq!(t("2026-02-20 10:00:00"), Some(T0));
        assert_eq!(t("2026-02-20T10:00:00.250"), Some(T0 + 250));
        assert_eq!(t(""), None);
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2026-02-20"), None);
        assert_eq!(t("1969-12-31T23:59:59Z"), None);
        assert_eq!(t("2026-02-20T10:00:00+25:00"), None);
    }
}
