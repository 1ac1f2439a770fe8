//! Proves the real-broker harness: consumer-group offsets and transactions behave on
//! the Apache Kafka that `make test` starts as the daemon's at-least-once and exactly-once work
//! will rely on.

mod support;

use rdkafka::producer::Producer;
use support::golden::{golden, golden_file};
use support::kafka::{
    collect_until, commit_after, describe, fresh_group, fresh_topic, poll_until, produce_event,
    producer, subscribed_consumer, transactional_producer, Isolation, Received,
};
use support::{deadline, WAIT};

#[tokio::test]
async fn a_new_consumer_in_the_group_resumes_after_the_committed_offset() {
    let topic = fresh_topic("harness-commit").await;
    let group = fresh_group();
    let producer = producer();
    let first = golden_file("execution_requested");
    let second = golden("execution_requested", &uuid::Uuid::new_v4().to_string());
    let first_id = first["execution_id"].as_str().unwrap().to_owned();
    let second_id = second["execution_id"].as_str().unwrap().to_owned();

    let (_, first_offset) = produce_event(&producer, &topic, &first).await;
    let consumer = subscribed_consumer(&group, Isolation::ReadUncommitted, &[&topic]);
    let received = poll_until(&consumer, deadline(), |r| !r.is_empty())
        .await
        .expect("the first event was not consumed");
    assert_eq!(received.len(), 1, "received: {}", describe(&received));
    assert_eq!(received[0].key_str(), first_id, "key = execution_id");
    assert_eq!(received[0].offset, first_offset);
    assert_eq!(received[0].json(), first, "the event round-trips unchanged");
    commit_after(&consumer, &received);
    drop(consumer);

    let (_, second_offset) = produce_event(&producer, &topic, &second).await;
    let consumer = subscribed_consumer(&group, Isolation::ReadUncommitted, &[&topic]);
    let received = poll_until(&consumer, deadline(), |r| !r.is_empty())
        .await
        .expect("the second event was not consumed");
    // One partition, so had the committed offset been ignored the first event would come first.
    assert_eq!(
        received[0].key_str(),
        second_id,
        "the restarted consumer must start after the committed offset; received: {}",
        describe(&received)
    );
    assert_eq!(received[0].offset, second_offset);
    assert_eq!(received[0].json(), second);
}

#[tokio::test]
async fn read_committed_hides_an_aborted_transaction_and_shows_a_committed_one() {
    let topic = fresh_topic("harness-txn").await;
    let producer = transactional_producer();
    let aborted = golden("execution_requested", &uuid::Uuid::new_v4().to_string());
    let committed = golden("execution_requested", &uuid::Uuid::new_v4().to_string());
    let aborted_id = aborted["execution_id"].as_str().unwrap().to_owned();
    let committed_id = committed["execution_id"].as_str().unwrap().to_owned();

    producer.begin_transaction().expect("begin transaction");
    produce_event(&producer, &topic, &aborted).await;
    producer.abort_transaction(WAIT).expect("abort transaction");
    producer.begin_transaction().expect("begin transaction");
    produce_event(&producer, &topic, &committed).await;
    producer
        .commit_transaction(WAIT)
        .expect("commit transaction");

    let has = |id: &str, received: &[Received]| received.iter().any(|m| m.key_str() == id);

    // The committed message follows the aborted one in the partition, so once it is seen the
    // aborted one has been passed over.
    let visible = collect_until(&topic, Isolation::ReadCommitted, deadline(), |r| {
        has(&committed_id, r)
    })
    .await;
    assert!(
        !has(&aborted_id, &visible),
        "read_committed must not see the aborted message; received: {}",
        describe(&visible)
    );
    assert_eq!(visible.len(), 1, "received: {}", describe(&visible));
    assert_eq!(visible[0].json(), committed);

    // The aborted message was really written: read_uncommitted sees both.
    let everything = collect_until(&topic, Isolation::ReadUncommitted, deadline(), |r| {
        has(&aborted_id, r) && has(&committed_id, r)
    })
    .await;
    assert_eq!(everything.len(), 2, "received: {}", describe(&everything));
    assert_eq!(everything[0].json(), aborted);
}
