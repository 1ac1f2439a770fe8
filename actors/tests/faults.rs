//! Fault injection on librdkafka's mock cluster (the mock is for faults, not for
//! exactly-once): the broker goes down mid-stream and produce requests fail; once it recovers,
//! every request has exactly one command and nothing is lost.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coordinator_core::config::Config;
use coordinator_core::events::EventType;
use execution_coordinator::actors::ingress::IngressStatsQuery;
use execution_coordinator::daemon::Daemon;
use execution_coordinator::kafka::EmbeddedBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use serde_json::Value;
use support::golden::golden_file;
use support::WAIT;

fn request(execution_id: &str) -> Vec<u8> {
    let mut event = golden_file("execution_requested");
    event["execution_id"] = Value::from(execution_id);
    event["aggregate_id"] = Value::from(execution_id);
    serde_json::to_vec(&event).expect("JSON")
}

async fn produce_requests(producer: &FutureProducer, topic: &str, ids: &[String]) {
    for id in ids {
        let payload = request(id);
        producer
            .send(
                FutureRecord::to(topic).key(id.as_str()).payload(&payload),
                WAIT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing {id} failed: {e}"));
    }
}

/// Reads the commands topic until every id in `want` has a command (or the deadline passes);
/// answers the number of commands per id.
async fn commands_until(
    consumer: &StreamConsumer,
    counts: &mut BTreeMap<String, usize>,
    want: &[String],
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.iter().all(|id| counts.contains_key(id)) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => {
                let json: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .expect("commands are JSON");
                let id = json["execution_id"].as_str().unwrap_or_default().to_owned();
                *counts.entry(id).or_default() += 1;
            }
            // Errors reported while the broker was down are transient: the consumer goes on.
            Ok(Err(_)) => {}
            Err(_) => panic!(
                "deadline passed; commanded so far: {:?}, missing: {:?}",
                counts.keys().collect::<Vec<_>>(),
                want.iter()
                    .filter(|id| !counts.contains_key(*id))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

#[actix::test]
async fn broker_outage_and_produce_errors_lose_and_duplicate_nothing() {
    let mut config = Config::default();
    // The mock cluster accepts transactions but keeps none of their offsets, so a rebalance
    // (its group coordinator may expire the member across the outage) would replay everything
    // under exactly-once: the idempotent at-least-once path is the one it can test.
    config.kafka.exactly_once = false;
    config.kafka.topic_partitions = 1;
    config.kafka.create_topics = false;
    config.kafka.commit_interval = Duration::from_millis(100);
    config.daemon.metrics_addr = String::new();
    let broker = EmbeddedBroker::start(&config.kafka).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let daemon = Daemon::start(
        config.clone(),
        bootstrap.clone(),
        Default::default(),
        Default::default(),
        None,
    )
    .await
    .expect("daemon starts on the mock cluster");
    let client = |extra: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap);
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c
    };
    let producer: FutureProducer = client(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()
        .expect("producer");
    let consumer: StreamConsumer = client(&[
        ("group.id", "fault-test-reader"),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
    ])
    .create()
    .expect("consumer");
    consumer
        .subscribe(&[&config.kafka.topic_of(EventType::CreatePodCommand)])
        .expect("subscribe");
    let events = config.kafka.topic_of(EventType::ExecutionRequested);
    let mut counts = BTreeMap::new();

    let first: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    produce_requests(&producer, &events, &first).await;
    commands_until(&consumer, &mut counts, &first).await;

    // The broker goes away for a while; requests sent meanwhile wait in the producer.
    broker.cluster().broker_down(1).expect("broker down");
    let second: Vec<String> = (0..20).map(|i| format!("during-{i}")).collect();
    let send_second = produce_requests(&producer, &events, &second);
    let outage = async {
        // The injected fault's duration, not a synchronisation: the broker stays down 3 s.
        tokio::time::sleep(Duration::from_secs(3)).await;
        broker.cluster().broker_up(1).expect("broker up");
    };
    futures::join!(send_second, outage);
    commands_until(&consumer, &mut counts, &second).await;

    // Produce requests fail transiently (the daemon's idempotent producer retries them).
    broker.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    let third: Vec<String> = (0..20).map(|i| format!("errors-{i}")).collect();
    produce_requests(&producer, &events, &third).await;
    commands_until(&consumer, &mut counts, &third).await;

    // Everything commanded exactly once. A late duplicate would arrive within the window the
    // ingress needs to see every input; wait until it has consumed all 60 requests.
    let started = Instant::now();
    loop {
        let seen = daemon
            .ingress
            .send(IngressStatsQuery)
            .await
            .expect("ingress");
        if seen.accepted >= 60 {
            assert_eq!(
                seen.duplicates, 0,
                "no request was redelivered as a duplicate"
            );
            break;
        }
        assert!(started.elapsed() < WAIT, "ingress saw only {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.len(), 60, "every request commanded");
    for (id, n) in &counts {
        assert_eq!(*n, 1, "{id} commanded {n} times");
    }
    assert!(daemon.shutdown(Duration::from_secs(10)).await);
}
