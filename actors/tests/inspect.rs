//! The inspection API end to end on real Kafka (`make test` starts the broker): a daemon with
//! room for one execution, a blocker in it and executions of several levels queued behind it.
//! `/v1/queue` must list them in dispatch order with their true positions, levels and reasons;
//! `/v1/executions/{id}` must follow one from queued to active to finished; and every answer
//! must match its JSON Schema under `schemas/`.

mod support;

use coordinator_core::inspect::Answer;
use rdkafka::producer::FutureProducer;
use serde_json::Value;
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::{golden, request};
use support::http::{get_json, poll_json};
use support::kafka::{bootstrap_servers, produce_event, producer};
use support::{read_json, root};

/// One execution (500m) at a time: 1 core, no overcommit, 100m held back, so 400m stay free
/// while one runs.
fn one_slot(config: TestConfig) -> TestConfig {
    config
        .one_slot_pool()
        .set("scheduler", "scheduling_interval = \"100ms\"")
}

/// Checks answers against the committed schemas.
struct Schemas(Vec<(Answer, jsonschema::Validator)>);

impl Schemas {
    fn load() -> Self {
        Self(
            Answer::ALL
                .iter()
                .map(|answer| {
                    let path = root().join("schemas").join(answer.schema_file());
                    let validator = jsonschema::validator_for(&read_json(&path))
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    (*answer, validator)
                })
                .collect(),
        )
    }

    /// Panics, listing the errors, unless `json` matches the schema of `answer`.
    fn check(&self, answer: Answer, json: &Value) {
        let (_, validator) = self
            .0
            .iter()
            .find(|(a, _)| *a == answer)
            .expect("every answer has a schema");
        let errors: Vec<String> = validator
            .iter_errors(json)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{answer:?}: {errors:?}\n{json:#}");
    }
}

/// The ids of a `/v1/queue` answer, in order.
fn ids(queue: &Value) -> Vec<&str> {
    queue["executions"]
        .as_array()
        .expect("executions is a list")
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap_or_default())
        .collect()
}

/// The reason kinds of a `/v1/queue` answer, in order.
fn reasons(queue: &Value) -> Vec<&str> {
    queue["executions"]
        .as_array()
        .expect("executions is a list")
        .iter()
        .map(|e| e["reason"]["kind"].as_str().unwrap_or_default())
        .collect()
}

/// A `/v1/queue` answer with `queued` executions between two passes. A pass holds the head for
/// a moment on every tick (it is being scheduled then, not queued, and the scheduler probing),
/// so the tests wait for the queue as it stands between them.
fn settled(queued: u64) -> impl Fn(&Value) -> bool {
    move |q| {
        q["queued"] == queued && q["being_scheduled"] == 0 && q["scheduler"]["mode"] == "blocked"
    }
}

/// Polls `/v1/executions/{id}` until it says `state`.
fn wait_for_state(addr: &str, id: &str, state: &str) -> Value {
    poll_json(addr, &format!("/v1/executions/{id}"), |j| {
        j["state"] == state
    })
}

#[tokio::test]
async fn the_queue_and_each_execution_are_shown_where_they_are_and_why() {
    let config = one_slot(TestConfig::fresh()).set("scheduler", "policy = \"strict\"");
    let mut daemon = DaemonProcess::start(&config, &bootstrap_servers());
    let addr = daemon.metrics_addr();
    let schemas = Schemas::load();
    let events = config.events_topic();
    let p = producer();

    // An idle daemon: an empty queue, the pool and the scheduler.
    let (status, empty) = get_json(&addr, "/v1/queue");
    assert_eq!(status, 200, "{empty}");
    schemas.check(Answer::Queue, &empty);
    assert_eq!(empty["queued"], 0);
    assert_eq!(empty["limit"], 50);
    assert_eq!(empty["scheduler"]["policy"], "strict");
    assert_eq!(empty["pool"]["total"]["cpu_millis"], 1000);
    assert_eq!(empty["pool"]["reserve"]["cpu_millis"], 100);
    assert_eq!(empty["pool"]["free"]["cpu_millis"], 900);

    // The blocker runs: active, holding 500m since a moment.
    produce_event(&p, &events, &request("blocker", "u0", "normal")).await;
    let active = wait_for_state(&addr, "blocker", "active");
    schemas.check(Answer::Execution, &active);
    assert_eq!(active["resources"]["cpu_millis"], 500);
    assert_eq!(active["resources"]["memory_mib"], 256);
    assert!(active["since"].is_string(), "{active}");
    assert!(active["ends_by"].is_string(), "{active}");
    assert!(active["running_seconds"].as_f64().is_some_and(|s| s >= 0.0));

    // Behind it: two at normal and one at low. The first normal is short of 100m (400m free).
    for (id, user, level) in [
        ("n1", "u1", "normal"),
        ("n2", "u2", "normal"),
        ("l1", "u3", "low"),
    ] {
        produce_event(&p, &events, &request(id, user, level)).await;
    }
    let queue = poll_json(&addr, "/v1/queue", settled(3));
    schemas.check(Answer::Queue, &queue);
    assert_eq!(ids(&queue), ["n1", "n2", "l1"]);
    assert_eq!(
        reasons(&queue),
        [
            "pool_full",
            "behind_earlier_arrivals",
            "behind_higher_priority"
        ]
    );
    let head = &queue["executions"][0];
    assert_eq!(head["reason"]["resource"], "cpu");
    assert_eq!(head["reason"]["short_by"], 100);
    assert_eq!(head["user_id"], "u1");
    assert_eq!(head["resources"]["cpu_millis"], 500);
    // Every one has an estimate and a bound at least as long; the same request further
    // down the queue is not expected sooner.
    let estimates: Vec<(f64, f64)> = queue["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .map(|e| {
            let median = e["estimated_wait_seconds"].as_f64().expect("an estimate");
            let bound = e["estimated_wait_bound_seconds"].as_f64().expect("a bound");
            assert!(median >= 0.0 && bound >= median, "{e}");
            (median, bound)
        })
        .collect();
    assert!(
        estimates.windows(2).all(|w| w[0].0 <= w[1].0),
        "{estimates:?}"
    );
    assert_eq!(queue["depth"]["normal"], 2);
    assert_eq!(queue["depth"]["low"], 1);
    assert_eq!(queue["pool"]["used"]["cpu_millis"], 500);
    assert_eq!(queue["pool"]["active_allocations"], 1);

    // A critical arrival goes ahead of them all: every position moves, and the others now
    // wait behind a higher level.
    produce_event(&p, &events, &request("c1", "u4", "critical")).await;
    let queue = poll_json(&addr, "/v1/queue", settled(4));
    schemas.check(Answer::Queue, &queue);
    assert_eq!(ids(&queue), ["c1", "n1", "n2", "l1"]);
    let positions: Vec<u64> = queue["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [0, 1, 2, 3]);
    assert_eq!(
        reasons(&queue),
        [
            "pool_full",
            "behind_higher_priority",
            "behind_higher_priority",
            "behind_higher_priority"
        ]
    );
    for e in queue["executions"].as_array().unwrap() {
        assert_eq!(e["level_asked"], e["level_now"], "strict keeps levels: {e}");
        assert!(e["waited_seconds"].as_f64().is_some_and(|w| w >= 0.0));
    }
    assert_eq!(queue["executions"][0]["level_now"], "critical");
    assert_eq!(queue["executions"][3]["level_now"], "low");

    // The limit; bad limits are refused with a sentence.
    let two = poll_json(&addr, "/v1/queue?limit=2", settled(4));
    schemas.check(Answer::Queue, &two);
    assert_eq!(ids(&two), ["c1", "n1"]);
    assert_eq!(two["queued"], 4);
    for bad in ["abc", "1001", "-3"] {
        let (status, error) = get_json(&addr, &format!("/v1/queue?limit={bad}"));
        assert_eq!(status, 400, "limit={bad}: {error}");
        schemas.check(Answer::Error, &error);
        assert!(
            error["error"].as_str().unwrap().contains("from 0 to 1000"),
            "{error}"
        );
    }

    // One queued execution says what the listing says of it (c1, ahead of it, not being
    // scheduled at that moment).
    let n2 = poll_json(&addr, "/v1/executions/n2", |e| {
        e["reason"]["kind"] == "behind_higher_priority"
    });
    schemas.check(Answer::Execution, &n2);
    assert_eq!(n2["state"], "queued");
    assert_eq!(n2["position"], 2);
    assert_eq!(n2["level_asked"], "normal");

    // The blocker completes: it is finished, and the critical one runs.
    produce_event(&p, &events, &golden("execution_completed", "blocker")).await;
    let finished = wait_for_state(&addr, "blocker", "finished");
    schemas.check(Answer::Execution, &finished);
    assert_eq!(finished["outcome"], "completed");
    assert!(finished["finished_at"].is_string());
    let c1 = wait_for_state(&addr, "c1", "active");
    schemas.check(Answer::Execution, &c1);
    let queue = poll_json(&addr, "/v1/queue", settled(3));
    assert_eq!(ids(&queue), ["n1", "n2", "l1"]);
    assert_eq!(
        reasons(&queue),
        [
            "pool_full",
            "behind_earlier_arrivals",
            "behind_higher_priority"
        ]
    );

    // A queued execution cancelled, and a request refused: both finished, saying how.
    produce_event(&p, &events, &golden("execution_cancelled", "n2")).await;
    let cancelled = wait_for_state(&addr, "n2", "finished");
    schemas.check(Answer::Execution, &cancelled);
    assert_eq!(cancelled["outcome"], "cancelled");
    produce_event(&p, &events, &request("bad", "u5", "urgent")).await;
    let rejected = wait_for_state(&addr, "bad", "finished");
    schemas.check(Answer::Execution, &rejected);
    assert_eq!(rejected["outcome"], "rejected");
    assert!(
        rejected["message"].as_str().unwrap().contains("priority"),
        "{rejected}"
    );

    // An id nobody sent.
    let (status, unknown) = get_json(&addr, "/v1/executions/never-sent");
    assert_eq!(status, 404);
    schemas.check(Answer::Error, &unknown);
    assert_eq!(
        unknown["error"],
        "no execution never-sent is queued, active or recently finished"
    );

    // The history samples the queue and the pool as they stand now: n1 and l1 behind c1.
    let history = poll_json(&addr, "/v1/history", |h| {
        h["samples"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["depth"]["normal"] == 1
                    && s["depth"]["low"] == 1
                    && s["used"]["cpu_millis"] == 500
                    && s["active_allocations"] == 1
            })
        })
    });
    schemas.check(Answer::History, &history);
    assert_eq!(history["total"]["cpu_millis"], 1000);
    assert_eq!(history["interval_seconds"], 1.0);

    assert!(daemon.terminate().success());
}

/// A daemon on the one-slot pool under `policy`, with the blocker running.
struct Running {
    daemon: DaemonProcess,
    addr: String,
    schemas: Schemas,
    events: String,
    p: FutureProducer,
}

async fn blocked_one_slot(policy: &str) -> Running {
    let config = one_slot(TestConfig::fresh()).set("scheduler", &format!("policy = \"{policy}\""));
    let daemon = DaemonProcess::start(&config, &bootstrap_servers());
    let addr = daemon.metrics_addr();
    let events = config.events_topic();
    let p = producer();
    produce_event(&p, &events, &request("blocker", "u0", "normal")).await;
    wait_for_state(&addr, "blocker", "active");
    Running {
        daemon,
        addr,
        schemas: Schemas::load(),
        events,
        p,
    }
}

#[tokio::test]
async fn under_demote_a_blocked_head_shows_the_level_it_asked_and_the_one_it_is_at() {
    let Running {
        mut daemon,
        addr,
        schemas,
        events,
        p,
    } = blocked_one_slot("demote").await;
    produce_event(&p, &events, &request("h1", "u1", "high")).await;
    // Every tick refuses the head and demotes it one level, down to background.
    let h1 = poll_json(&addr, "/v1/executions/h1", |e| {
        e["state"] == "queued" && e["level_now"] == "background"
    });
    schemas.check(Answer::Execution, &h1);
    assert_eq!(h1["level_asked"], "high");
    assert!(h1["requeues"].as_u64().is_some_and(|r| r >= 3), "{h1}");
    assert_eq!(h1["reason"]["kind"], "pool_full");
    let queue = poll_json(&addr, "/v1/queue", |q| {
        q["queued"] == 1 && q["executions"][0]["level_now"] == "background"
    });
    schemas.check(Answer::Queue, &queue);
    assert_eq!(queue["scheduler"]["policy"], "demote");
    assert_eq!(queue["executions"][0]["level_asked"], "high");
    assert_eq!(queue["executions"][0]["level_now"], "background");
    assert!(daemon.terminate().success());
}

#[tokio::test]
async fn under_backfill_what_would_delay_a_reservation_waits_reserved_for_it() {
    // 900m allocatable; the blocker holds 500m for up to 300 s.
    let Running {
        mut daemon,
        addr,
        schemas,
        events,
        p,
    } = blocked_one_slot("backfill").await;
    let sized = |id: &str, user: &str, cpu: &str, timeout: u64| {
        let mut r = request(id, user, "normal");
        r["cpu_request"] = Value::from(cpu);
        r["cpu_limit"] = Value::from(cpu);
        r["timeout_seconds"] = Value::from(timeout);
        r
    };
    // `big` needs all 900m: the pool is reserved for it when the blocker ends. `short` ends
    // well before then, so it backfills; `long` fits the 300m left but would still run then.
    produce_event(&p, &events, &sized("big", "u1", "900m", 300)).await;
    produce_event(&p, &events, &sized("short", "u3", "100m", 5)).await;
    wait_for_state(&addr, "short", "active");
    produce_event(&p, &events, &sized("long", "u2", "300m", 3_600)).await;
    let queue = poll_json(&addr, "/v1/queue", |q| {
        q["queued"] == 2 && q["being_scheduled"] == 0
    });
    schemas.check(Answer::Queue, &queue);
    assert_eq!(ids(&queue), ["big", "long"]);
    assert_eq!(reasons(&queue), ["pool_full", "reserved_for"]);
    assert_eq!(queue["executions"][1]["reason"]["execution_id"], "big");
    let long = poll_json(&addr, "/v1/executions/long", |e| e["state"] == "queued");
    schemas.check(Answer::Execution, &long);
    assert_eq!(long["reason"]["kind"], "reserved_for");
    assert_eq!(long["reason"]["execution_id"], "big");
    assert!(daemon.terminate().success());
}
