//! The README's "Against a real cluster (TLS, SASL)" example, run as written: its config file,
//! read from README.md, against a real Apache Kafka broker whose only listener is SASL_SSL with
//! SCRAM-SHA-512 (`KAFKA_SECURE=1 scripts/kafka.sh up`, which `make test` starts: certificates
//! and SCRAM users are made when it starts). The environment gives what differs per machine —
//! the brokers, the CA file, the password in the README's variable — and the test's own topic
//! prefix, group and metrics port. The daemon's whole log must never hold the password.
//!
//! The broker comes from `KAFKA_SECURE_*` (set by scripts/with-kafka.sh); without it these
//! tests fail, they never skip.

mod support;

use std::process::Command;
use std::time::Instant;

use coordinator_core::config::{Config, KafkaConfig};
use coordinator_core::events::EventType;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;
use support::daemon::DaemonProcess;
use support::golden::request;
use support::kafka::{poll_until, CollectError, Received};
use support::{deadline, WAIT};

const README: &str = include_str!("../../README.md");

/// Where the README says the password comes from.
const PASSWORD_ENV: &str = "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SASL.PASSWORD";

/// The secure test broker and the client user scripts/kafka.sh made for it.
struct SecureBroker {
    bootstrap: String,
    ca_location: String,
    username: String,
    password: String,
}

impl SecureBroker {
    /// From `KAFKA_SECURE_*`; panics, saying how to start the broker, when they are unset.
    fn from_env() -> Self {
        let var = |name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => value,
            _ => panic!(
                "{name} is not set: this test needs the SASL_SSL test broker. Run it through \
                 `make test` (scripts/with-kafka.sh starts it), or start it with \
                 `KAFKA_SECURE=1 scripts/kafka.sh up` and export the variables that \
                 `KAFKA_SECURE=1 scripts/kafka.sh env` prints."
            ),
        };
        Self {
            bootstrap: var("KAFKA_SECURE_BOOTSTRAP_SERVERS"),
            ca_location: var("KAFKA_SECURE_CA_LOCATION"),
            username: var("KAFKA_SECURE_USERNAME"),
            password: var("KAFKA_SECURE_PASSWORD"),
        }
    }

    /// A client of the broker over SASL_SSL, as the test's own producer, consumer and admin.
    fn client_config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", &self.username)
            .set("sasl.password", &self.password)
            .set("ssl.ca.location", &self.ca_location);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    }
}

/// The text of the README's section `heading`, up to the next heading.
fn readme_section(heading: &str) -> &'static str {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
    let body = &README[start + heading.len()..];
    let end = body.find("\n#").unwrap_or(body.len());
    &body[..end]
}

/// The first fenced block of `language` in `text`.
fn fenced<'t>(text: &'t str, language: &str) -> &'t str {
    let open = format!("```{language}\n");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{language} block in:\n{text}"))
        + open.len();
    let end = text[start..]
        .find("```")
        .unwrap_or_else(|| panic!("unterminated ```{language} block"));
    &text[start..start + end]
}

/// The README's example: its config file, and the shell lines that run it.
fn readme_example() -> (&'static str, &'static str) {
    let section = readme_section("### Against a real cluster (TLS, SASL)");
    (fenced(section, "toml"), fenced(section, "sh"))
}

/// The daemon's environment for one run: the machine's values over the README's file, then
/// this test's own topic prefix, group and metrics port.
fn environment(broker: &SecureBroker, password: &str) -> Vec<(String, String)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    [
        (
            "EXECUTION_COORDINATOR__KAFKA__BOOTSTRAP_SERVERS",
            broker.bootstrap.as_str(),
        ),
        (
            "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SSL.CA.LOCATION",
            broker.ca_location.as_str(),
        ),
        (PASSWORD_ENV, password),
        (
            "EXECUTION_COORDINATOR__KAFKA__TOPIC_PREFIX",
            &format!("s{}.", &id[..12]),
        ),
        (
            "EXECUTION_COORDINATOR__KAFKA__GROUP_ID",
            &format!("secure-{}", &id[..12]),
        ),
        ("EXECUTION_COORDINATOR__DAEMON__METRICS_ADDR", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn as_pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The Kafka settings the daemon will run with: the README's file under `env`.
fn effective_kafka(toml: &str, env: &[(String, String)]) -> KafkaConfig {
    Config::from_toml_str(toml, env.iter().cloned())
        .unwrap_or_else(|e| panic!("the README's example is not a valid config:\n{e}"))
        .kafka
}

/// Creates the daemon's topics (the README's config leaves that to the operator) and waits until
/// each has a leader.
async fn provision_topics(broker: &SecureBroker, kafka: &KafkaConfig) {
    let admin: AdminClient<DefaultClientContext> = broker
        .client_config(&[])
        .create()
        .expect("cannot create the Kafka admin client");
    let names = kafka.all_topics_full();
    let state = kafka.state_topic_full();
    let mut topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    topics.push(
        NewTopic::new(&state, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    );
    let ownership = kafka.ownership_topic_full();
    topics.push(NewTopic::new(&ownership, 1, TopicReplication::Fixed(1)));
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let results = admin
        .create_topics(topics.iter(), &options)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics over SASL_SSL failed: {e}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("CreateTopics {topic} failed: {code}"),
        }
    }
    let deadline = deadline();
    for name in names.iter().chain([&state]) {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let metadata = admin.inner().fetch_metadata(Some(name), remaining);
            let ready = metadata.as_ref().is_ok_and(|m| {
                m.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} has no leader within {WAIT:?}"
            );
        }
    }
}

/// `check-config` on the README's file with `env`: (exit code, stdout and stderr).
fn check_config(file: &std::path::Path, env: &[(String, String)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_execution-coordinator"))
        .args(["check-config", "--config"])
        .arg(file)
        .envs(as_pairs(env))
        .output()
        .expect("running check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "current_thread")]
async fn the_readmes_example_runs_over_sasl_ssl_and_never_logs_the_password() {
    let broker = SecureBroker::from_env();
    let (toml, shell) = readme_example();
    assert!(
        shell.contains(PASSWORD_ENV),
        "the README's commands no longer take the password from {PASSWORD_ENV}:\n{shell}"
    );
    let env = environment(&broker, &broker.password);
    let kafka = effective_kafka(toml, &env);
    assert!(
        !kafka.create_topics,
        "the README's example provisions topics apart"
    );

    // check-config, as the README runs it first.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), toml).expect("writing the config file");
    let (code, text) = check_config(file.path(), &env);
    assert_eq!(
        code,
        Some(0),
        "check-config refused the README's example:\n{text}"
    );
    assert!(
        text.contains("\"sasl.password\" = \"<redacted>\""),
        "{text}"
    );
    assert!(
        text.contains("sasl_scram") && text.contains("ssl"),
        "{text}"
    );
    assert!(
        !text.contains(&broker.password),
        "check-config printed the password"
    );

    provision_topics(&broker, &kafka).await;
    let mut env_with_log = env.clone();
    env_with_log.push(("RUST_LOG".to_owned(), "debug".to_owned()));
    let mut daemon = DaemonProcess::spawn(toml, &as_pairs(&env_with_log));
    daemon.wait_for_log("Kafka brokers accept this client", WAIT);
    daemon.wait_for_log("Partitions assigned", WAIT);

    let commands: StreamConsumer = broker
        .client_config(&[
            ("group.id", &support::kafka::fresh_group()),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .expect("cannot create the Kafka consumer");
    commands
        .subscribe(&[&kafka.topic_of(EventType::CreatePodCommand)])
        .expect("subscribing to the commands topic");
    let producer: FutureProducer = broker
        .client_config(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()
        .expect("cannot create the Kafka producer");
    let execution_id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_vec(&request(&execution_id, "secure-user", 5)).expect("JSON");
    let input = &kafka.topic_of(EventType::ExecutionRequested);
    producer
        .send(
            FutureRecord::to(input)
                .key(execution_id.as_str())
                .payload(&payload),
            WAIT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {input} over SASL_SSL failed: {e}"));

    let is_our_command = |m: &Received| {
        let json: Value =
            serde_json::from_slice(m.payload.as_deref().unwrap_or_default()).unwrap_or(Value::Null);
        json["event_type"] == "create_pod_command" && json["execution_id"] == *execution_id
    };
    match poll_until(&commands, deadline(), |r| r.iter().any(&is_our_command)).await {
        Ok(_) => {}
        Err(CollectError::Deadline(received)) => panic!(
            "no create_pod_command for {execution_id} within {WAIT:?}; got: {}\ndaemon log:\n{}",
            support::kafka::describe(&received),
            daemon.log().join("\n")
        ),
        Err(CollectError::Kafka(e, _)) => panic!("consuming commands over SASL_SSL failed: {e}"),
    }

    let exit = daemon.terminate();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
    let log = daemon.log();
    assert!(
        log.iter()
            .any(|l| l.contains("Kafka client library") && l.contains("sasl_scram")),
        "no librdkafka build line in the log"
    );
    let leaks: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(&broker.password))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} of {} log lines hold the password, e.g. {:?}",
        leaks.len(),
        log.len(),
        leaks[0].replace(&broker.password, "<THE PASSWORD>")
    );
}

#[test]
fn a_wrong_password_stops_the_start_with_a_clear_error_and_no_secret() {
    let broker = SecureBroker::from_env();
    let (toml, _) = readme_example();
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let mut env = environment(&broker, &wrong);
    // librdkafka's own debug lines for the security and broker contexts too, and its dump of the
    // configuration.
    env.push((
        "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__DEBUG".to_owned(),
        "security,broker,conf".to_owned(),
    ));
    env.push(("RUST_LOG".to_owned(), "debug".to_owned()));
    let mut daemon = DaemonProcess::spawn(toml, &as_pairs(&env));
    let exit = daemon.wait(WAIT);
    let log = daemon.log();
    // A password does not heal by restarting: the configuration error's code, on which the
    // systemd unit does not restart.
    assert_eq!(
        exit.code(),
        Some(64),
        "a wrong password must exit as a configuration error"
    );
    let error = log
        .iter()
        .find(|l| l.contains("Coordinator failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{}", log.join("\n")));
    assert!(
        error.contains("refused this client") && error.contains("invalid credentials"),
        "unclear error: {error}"
    );
    assert!(
        log.iter().any(|l| l.contains("librdkafka")),
        "librdkafka's own lines are missing, so the log proves nothing"
    );
    for secret in [&wrong, &broker.password] {
        assert!(
            !log.iter().any(|l| l.contains(secret.as_str())),
            "the log holds a password:\n{}",
            log.join("\n").replace(secret.as_str(), "<THE PASSWORD>")
        );
    }
}
