//! The configuration as an operator meets it: the shipped `config.toml`, TOML text, environment
//! overrides, and the error list of a bad file.

use std::time::Duration;

use coordinator_core::config::{
    is_secret_property, Config, ConfigError, KafkaConfig, LanguageDefault, LogFormat, MaxWait,
    TopicLayout, TopicNames, REDACTED,
};

use coordinator_core::events::EventType;
use coordinator_core::planner::Policy;
use coordinator_core::priority::PriorityFormat;

const SHIPPED: &str = include_str!("../config.toml");

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(text: &str) -> Config {
    Config::from_toml_str(text, no_env()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Config {
    Config::from_toml_str(text, env(pairs)).unwrap_or_else(|e| panic!("{e}"))
}

fn error_text(text: &str) -> String {
    Config::from_toml_str(text, no_env())
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn the_shipped_file_is_exactly_the_defaults() {
    assert_eq!(parse(SHIPPED), Config::default());
}

#[test]
fn the_shipped_file_lists_every_knob() {
    let shipped: toml::Table = toml::from_str(SHIPPED).unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = format!("{prefix}{k}");
            if let Some(sub) = v.as_table() {
                keys(&format!("{path}."), sub, out);
            }
            out.push(path);
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys("", &shipped, &mut a);
    keys("", &defaults, &mut b);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // bootstrap_servers is documented but left unset so the embedded broker is used.
    assert!(SHIPPED.contains("\n# bootstrap_servers = "));
    assert!(Config::default().kafka.uses_embedded_broker());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("# nothing but a comment\n"), Config::default());
    assert_eq!(parse("[queue]\n[kafka]\n"), Config::default());
}

#[test]
fn defaults_are_the_seeds_eight_parameters() {
    let c = Config::default();
    assert_eq!(c.queue.max_queue_size, 10_000);
    assert_eq!(c.queue.max_executions_per_user, 100);
    assert_eq!(c.queue.stale_timeout, Duration::from_secs(3600));
    assert_eq!(c.scheduler.max_concurrent_scheduling, 10);
    assert_eq!(c.scheduler.scheduling_interval, Duration::from_millis(500));
    assert_eq!(c.resources.total_cpu_cores, 32.0);
    assert_eq!(c.resources.total_memory_mb, 65_536);
    assert_eq!(c.resources.overcommit_factor, 1.2);
}

#[test]
fn other_defaults_follow_the_spec() {
    let c = Config::default();
    assert_eq!(c.queue.stale_sweep_interval, Duration::from_secs(10));
    assert!(c.queue.requeue_demotes);
    assert_eq!(c.queue.dedup_capacity, 100_000);
    let r = &c.resources;
    assert_eq!(r.total_gpu_count, 0);
    assert_eq!(
        (r.min_available_cpu_cores, r.min_available_memory_mb),
        (2.0, 4096)
    );
    assert_eq!(
        (
            r.max_cpu_per_execution,
            r.max_memory_per_execution_mb,
            r.max_gpu_per_execution
        ),
        (4.0, 8192, 1)
    );
    assert_eq!((r.default_cpu_cores, r.default_memory_mb), (0.5, 512));
    let table: Vec<(&str, f64, u64)> = r
        .language_defaults
        .iter()
        .map(|(k, d)| (k.as_str(), d.cpu_cores, d.memory_mb))
        .collect();
    assert_eq!(
        table,
        [
            ("cpp", 0.5, 512),
            ("go", 0.25, 256),
            ("java", 1.0, 1024),
            ("javascript", 0.5, 512),
            ("python", 0.5, 512),
            ("r", 1.0, 2048),
            ("rust", 0.5, 512),
        ]
    );
    let k = &c.kafka;
    assert_eq!(k.bootstrap_servers, None);
    assert_eq!(k.group_id, "execution-coordinator");
    assert_eq!(k.topic_prefix, "");
    assert_eq!(k.topic_layout, TopicLayout::PerEventType);
    assert_eq!(k.topics, TopicNames::default());
    assert_eq!(c.wire.priority_format, PriorityFormat::Name);
    assert_eq!(k.dlq_topic, "dead_letter_queue");
    assert_eq!(k.state_topic, "execution_coordinator_state");
    assert!(k.create_topics);
    assert_eq!(k.topic_partitions, 3);
    assert_eq!(k.commit_interval, Duration::from_secs(5));
    assert_eq!(k.max_message_bytes, 1 << 20);
    assert_eq!(k.delivery_timeout, Duration::from_secs(30));
    assert!(k.properties.is_empty());
    let d = &c.daemon;
    assert_eq!(d.stats_interval, Duration::from_secs(10));
    assert_eq!(d.log_format, LogFormat::Text);
    assert_eq!(d.log_level, "info");
    assert_eq!(d.shutdown_grace, Duration::from_secs(10));
    assert_eq!(d.metrics_addr, "127.0.0.1:9464");
    assert_eq!(
        d.metrics_socket_addr(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let text = error_text("[queue]\nmax_queue_sise = 5\n");
    assert!(
        text.starts_with("queue: unknown field `max_queue_sise`"),
        "{text}"
    );
    assert!(
        text.contains("`max_queue_size`"),
        "lists the known keys: {text}"
    );

    let text = error_text("[kafka.properties]\n\"a\" = \"b\"\n[kafka]\ntopicz = []\n");
    assert!(text.contains("kafka: unknown field `topicz`"), "{text}");

    // The keys of the single-layout releases say what replaced them.
    for old in [
        "input_topics = [\"x\"]",
        "events_topic = \"x\"",
        "commands_topic = \"x\"",
    ] {
        let text = error_text(&format!("[kafka]\n{old}\n"));
        assert!(
            text.contains("replaced by kafka.topic_layout and [kafka.topics]"),
            "{text}"
        );
    }

    let text = error_text("[nonsense]\nx = 1\n");
    assert!(text.starts_with("nonsense: unknown section"), "{text}");

    // A key that belongs in a section, written at the top level.
    let text = error_text("max_queue_size = 5\n");
    assert!(
        text.contains("did you mean `max_queue_size` under [queue]?"),
        "{text}"
    );

    let text = error_text("[resources.language_defaults.python]\ncpu = 1\n");
    assert!(text.contains("unknown field `cpu`"), "{text}");
}

#[test]
fn wrong_types_name_the_key() {
    let text = error_text("[daemon]\nlog_format = \"yaml\"\n");
    assert!(
        text.starts_with("daemon.log_format: unknown variant `yaml`"),
        "{text}"
    );
    let text = error_text("[scheduler]\nscheduling_interval = \"soon\"\n");
    assert!(
        text.starts_with("scheduler.scheduling_interval: "),
        "{text}"
    );
    let text = error_text("[resources]\ntotal_memory_mb = -1\n");
    assert!(text.starts_with("resources.total_memory_mb: "), "{text}");
}

#[test]
fn invalid_toml_is_a_syntax_error_with_its_line() {
    let err = Config::from_toml_str("[queue]\nmax_queue_size = = 3\n", no_env()).unwrap_err();
    assert!(matches!(err.errors(), [ConfigError::Syntax { .. }]));
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn durations_use_humantime() {
    let c = parse(
        "[scheduler]\nscheduling_interval = \"250ms\"\n[queue]\nstale_timeout = \"2m\"\n\
         [kafka]\ncommit_interval = \"1m 30s\"\n",
    );
    assert_eq!(c.scheduler.scheduling_interval, Duration::from_millis(250));
    assert_eq!(c.queue.stale_timeout, Duration::from_secs(120));
    assert_eq!(c.kafka.commit_interval, Duration::from_secs(90));
}

#[test]
fn an_integer_is_accepted_where_cores_are_expected() {
    let c = parse("[resources]\ntotal_cpu_cores = 16\n");
    assert_eq!(c.resources.total_cpu_cores, 16.0);
}

#[test]
fn env_overrides_each_kind_of_value() {
    let c = parse_env(
        "[queue]\nmax_queue_size = 7\n",
        &[
            ("EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE", "500"),
            ("EXECUTION_COORDINATOR__QUEUE__STALE_TIMEOUT", "90s"),
            ("EXECUTION_COORDINATOR__QUEUE__REQUEUE_DEMOTES", "false"),
            ("EXECUTION_COORDINATOR__RESOURCES__OVERCOMMIT_FACTOR", "1.5"),
            ("EXECUTION_COORDINATOR__KAFKA__GROUP_ID", "coordinators"),
            (
                "EXECUTION_COORDINATOR__KAFKA__BOOTSTRAP_SERVERS",
                "b1:9092,b2:9092",
            ),
            (
                "EXECUTION_COORDINATOR__KAFKA__TOPICS__EXECUTION_REQUESTED",
                "\"requests\"",
            ),
            ("EXECUTION_COORDINATOR__DAEMON__LOG_FORMAT", "json"),
            (
                "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SECURITY.PROTOCOL",
                "SASL_SSL",
            ),
        ],
    );
    assert_eq!(c.queue.max_queue_size, 500, "env wins over the file");
    assert_eq!(c.queue.stale_timeout, Duration::from_secs(90));
    assert!(!c.queue.requeue_demotes);
    assert_eq!(c.resources.overcommit_factor, 1.5);
    assert_eq!(c.kafka.group_id, "coordinators");
    assert_eq!(
        c.kafka.bootstrap_servers.as_deref(),
        Some("b1:9092,b2:9092")
    );
    assert_eq!(
        c.kafka.topics.execution_requested.as_deref(),
        Some("requests")
    );
    assert_eq!(c.daemon.log_format, LogFormat::Json);
    assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
}

#[test]
fn env_values_fit_the_key_they_set() {
    let c = parse_env(
        "",
        &[
            // A topic name that looks like a number stays text.
            (
                "EXECUTION_COORDINATOR__KAFKA__TOPICS__CREATE_POD_COMMAND",
                "42",
            ),
            ("EXECUTION_COORDINATOR__KAFKA__TOPIC_LAYOUT", "shared"),
            // Text that looks like a number stays text for a string key.
            ("EXECUTION_COORDINATOR__KAFKA__GROUP_ID", "42"),
            // Property values are always strings, even when they look like TOML.
            (
                "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SOCKET.KEEPALIVE.ENABLE",
                "true",
            ),
            ("EXECUTION_COORDINATOR__KAFKA__PROPERTIES__LINGER.MS", "5"),
            // Names after the prefix are case-insensitive.
            (
                "EXECUTION_COORDINATOR__scheduler__Max_Concurrent_Scheduling",
                "3",
            ),
            // An empty metrics address turns metrics off.
            ("EXECUTION_COORDINATOR__DAEMON__METRICS_ADDR", ""),
        ],
    );
    assert_eq!(c.kafka.topics.create_pod_command.as_deref(), Some("42"));
    assert_eq!(c.kafka.topic_layout, TopicLayout::Shared);
    assert_eq!(c.kafka.group_id, "42");
    assert_eq!(c.kafka.properties["socket.keepalive.enable"], "true");
    assert_eq!(c.kafka.properties["linger.ms"], "5");
    assert_eq!(c.scheduler.max_concurrent_scheduling, 3);
    assert_eq!(c.daemon.metrics_socket_addr(), None);
}

#[test]
fn env_reaches_nested_tables() {
    let c = parse_env(
        "[resources.language_defaults]\njava = { cpu_cores = 2.0, memory_mb = 4096 }\n",
        &[
            (
                "EXECUTION_COORDINATOR__RESOURCES__LANGUAGE_DEFAULTS__JAVA__MEMORY_MB",
                "3072",
            ),
            (
                "EXECUTION_COORDINATOR__RESOURCES__LANGUAGE_DEFAULTS__PYTHON__CPU_CORES",
                "0.75",
            ),
            (
                "EXECUTION_COORDINATOR__KAFKA__PROPERTIES",
                "{ \"client.id\" = \"c1\" }",
            ),
            (
                "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__CLIENT.RACK",
                "r1",
            ),
        ],
    );
    let langs = &c.resources.language_defaults;
    assert_eq!(
        langs["java"],
        LanguageDefault {
            cpu_cores: 2.0,
            memory_mb: 3072
        }
    );
    assert_eq!(
        langs["python"],
        LanguageDefault {
            cpu_cores: 0.75,
            memory_mb: 512
        }
    );
    // The whole table, then a key inside it: the more specific variable is applied last.
    assert_eq!(c.kafka.properties.len(), 2);
    assert_eq!(c.kafka.properties["client.id"], "c1");
    assert_eq!(c.kafka.properties["client.rack"], "r1");
}

#[test]
fn env_without_the_prefix_is_ignored() {
    let c = parse_env(
        "",
        &[
            ("PATH", "/usr/bin"),
            ("QUEUE__MAX_QUEUE_SIZE", "1"),
            ("EXECUTION_COORDINATOR_QUEUE__MAX_QUEUE_SIZE", "1"),
            ("OTHER_EXECUTION_COORDINATOR__QUEUE__MAX_QUEUE_SIZE", "1"),
            ("EXECUTION_COORDINATORS__QUEUE__MAX_QUEUE_SIZE", "1"),
            ("execution_coordinator__queue__max_queue_size", "1"),
        ],
    );
    assert_eq!(c, Config::default());
}

#[test]
fn an_unknown_key_from_env_is_rejected_naming_the_variable() {
    let err = Config::from_toml_str("", env(&[("EXECUTION_COORDINATOR__QUEUE__MAX_SIZE", "5")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown field `max_size`"), "{text}");
    assert!(
        text.contains("EXECUTION_COORDINATOR__QUEUE__MAX_SIZE"),
        "{text}"
    );
}

#[test]
fn validate_reports_every_problem_at_once() {
    let mut c = Config::default();
    c.queue.max_queue_size = 0;
    c.queue.stale_sweep_interval = Duration::ZERO;
    c.scheduler.scheduling_interval = Duration::ZERO;
    c.resources.total_cpu_cores = f64::NAN;
    c.resources.overcommit_factor = 0.5;
    c.resources.min_available_cpu_cores = -1.0;
    c.resources.max_memory_per_execution_mb = 0;
    c.resources
        .language_defaults
        .get_mut("go")
        .unwrap()
        .cpu_cores = 0.0;
    c.kafka.topics.execution_requested = Some(String::new());
    c.kafka.topics.create_pod_command = Some("bad topic".into());
    c.kafka.topic_partitions = 0;
    c.kafka.commit_interval = Duration::ZERO;
    c.kafka.max_message_bytes = 0;
    c.daemon.stats_interval = Duration::ZERO;
    c.daemon.metrics_addr = "localhost".into();
    let err = c.validate().unwrap_err();
    let keys: Vec<&str> = err
        .errors()
        .iter()
        .map(|e| match e {
            ConfigError::Invalid { key, .. } => key.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            "queue.max_queue_size",
            "queue.stale_sweep_interval",
            "scheduler.scheduling_interval",
            "resources.total_cpu_cores",
            "resources.overcommit_factor",
            "resources.min_available_cpu_cores",
            "resources.max_memory_per_execution_mb",
            "resources.language_defaults.go.cpu_cores",
            "kafka.topics.execution_requested",
            "kafka.topics.create_pod_command",
            "kafka.topic_partitions",
            "kafka.commit_interval",
            "kafka.max_message_bytes",
            "daemon.stats_interval",
            "daemon.metrics_addr",
        ]
    );
    // One per line, each naming its key.
    let text = err.to_string();
    assert_eq!(text.lines().count(), keys.len(), "{text}");
    for (line, key) in text.lines().zip(&keys) {
        assert!(line.starts_with(&format!("{key}: ")), "{line}");
    }
}

#[test]
fn parsing_reports_problems_from_every_section_at_once() {
    let err = Config::from_toml_str(
        "[queue]\nmax_queue_size = 0\n\
         [scheduler]\nfrobnicate = true\n\
         [kafka]\ntopic_partitions = \"three\"\n\
         [daemon]\nshutdown_grace = \"0s\"\n",
        env(&[("EXECUTION_COORDINATOR__RESOURCES__TOTAL_MEMORY_MB", "0")]),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.len(), 5, "{text}");
    for needle in [
        "scheduler: unknown field `frobnicate`",
        "kafka.topic_partitions: invalid type",
        "queue.max_queue_size: must be at least 1",
        "resources.total_memory_mb: must be at least 1 (got 0) (set by EXECUTION_COORDINATOR__RESOURCES__TOTAL_MEMORY_MB)",
        "daemon.shutdown_grace: must be longer than 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn cross_field_rules() {
    let text =
        error_text("[kafka.topics]\nexecution_cancelled = \"dlq\"\n[kafka]\ndlq_topic = \"dlq\"\n");
    assert!(
        text.contains("kafka.dlq_topic: `dlq` is also an input topic"),
        "{text}"
    );

    let text = error_text("[kafka]\nstate_topic = \"create_pod_command\"\n");
    assert!(
        text.contains("kafka.state_topic: `create_pod_command` is also used"),
        "{text}"
    );
    let text = error_text("[kafka]\ntopic_layout = \"shared\"\nstate_topic = \"saga_commands\"\n");
    assert!(
        text.contains("kafka.state_topic: `saga_commands` is also used"),
        "{text}"
    );
    let text = error_text("[kafka]\ntopic_layout = \"one_big_topic\"\n");
    assert!(
        text.contains("kafka.topic_layout") && text.contains("per_event_type"),
        "{text}"
    );
    let text = error_text("[wire]\npriority_format = \"roman\"\n");
    assert!(
        text.contains("wire.priority_format") && text.contains("name"),
        "{text}"
    );

    let text = error_text("[kafka]\nbootstrap_servers = \"\"\n");
    assert!(
        text.contains("leave it unset to use the embedded broker"),
        "{text}"
    );

    let text =
        error_text("[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n\"group.id\" = \"x\"\n");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("\"enable.auto.commit\": is managed by the coordinator"),
        "{text}"
    );
    assert!(text.contains("set kafka.group_id instead"), "{text}");

    let text = error_text("[kafka]\ntopic_prefix = \"a/\"\n");
    assert_eq!(
        text,
        "kafka.topic_prefix: `a/` contains '/'; Kafka topic names use only \
        ASCII letters, digits, '.', '_' and '-'"
    );
    let text = error_text("[kafka.topics]\nexecution_completed = \"not ok\"\n");
    assert!(
        text.starts_with("kafka.topics.execution_completed: `not ok` contains ' '"),
        "{text}"
    );

    let text = error_text("[resources]\nmax_cpu_per_execution = 0.0001\n");
    assert!(text.contains("at least 0.001"), "{text}");

    let text = error_text("[queue]\nstale_timeout = \"1000years\"\n");
    assert!(
        text.contains("queue.stale_timeout: must be at most"),
        "{text}"
    );

    // Allowed: GPU cap 0, reserve 0, overcommit exactly 1, IPv6 metrics address.
    parse(
        "[resources]\nmax_gpu_per_execution = 0\nmin_available_cpu_cores = 0.0\n\
         min_available_memory_mb = 0\novercommit_factor = 1.0\n\
         [daemon]\nmetrics_addr = \"[::]:9464\"\n",
    );
}

#[test]
fn language_defaults_merge_over_the_builtin_table() {
    let c = parse(
        "[resources.language_defaults]\n\
         java = { memory_mb = 2048 }\n\
         Kotlin = { cpu_cores = 1.5, memory_mb = 1536 }\n",
    );
    let langs = &c.resources.language_defaults;
    assert_eq!(langs.len(), 8, "built-ins kept, kotlin added");
    assert_eq!(
        langs["java"],
        LanguageDefault {
            cpu_cores: 1.0,
            memory_mb: 2048
        }
    );
    assert_eq!(
        langs["kotlin"],
        LanguageDefault {
            cpu_cores: 1.5,
            memory_mb: 1536
        }
    );
    assert_eq!(
        langs["go"],
        Config::default().resources.language_defaults["go"]
    );

    let text = error_text("[resources.language_defaults]\nkotlin = { cpu_cores = 1.0 }\n");
    assert!(
        text.contains("`kotlin` has no built-in default, so it needs `memory_mb`"),
        "{text}"
    );
    let text = error_text(
        "[resources.language_defaults]\nGo = { cpu_cores = 1.0 }\ngo = { cpu_cores = 2.0 }\n",
    );
    assert!(text.contains("`go` is given twice"), "{text}");
}

#[test]
fn topic_names_carry_the_prefix_in_both_layouts() {
    let k = parse_env(
        "[kafka]\ntopic_prefix = \"staging.\"\ntopic_layout = \"shared\"\n[kafka.topics]\nexecution_cancelled = \"extra\"\n",
        &[],
    )
    .kafka;
    assert_eq!(k.topic("x"), "staging.x");
    assert_eq!(
        k.input_topics_full(),
        ["staging.execution_events", "staging.extra"]
    );
    assert_eq!(
        k.topic_of(EventType::ExecutionAccepted),
        "staging.execution_events"
    );
    assert_eq!(
        k.topic_of(EventType::ExecutionFailed),
        "staging.execution_events"
    );
    assert_eq!(
        k.topic_of(EventType::CreatePodCommand),
        "staging.saga_commands"
    );
    assert_eq!(k.dlq_topic_full(), "staging.dead_letter_queue");
    assert_eq!(
        k.all_topics_full(),
        [
            "staging.dead_letter_queue",
            "staging.execution_events",
            "staging.extra",
            "staging.saga_commands",
        ]
    );

    // Per event type (the default): every type on the topic of its name, inputs and outputs
    // apart but for execution_failed, which is both.
    let k = KafkaConfig {
        topic_prefix: "p.".into(),
        ..KafkaConfig::default()
    };
    for t in EventType::ALL {
        assert_eq!(k.topic_of(t), format!("p.{t}"));
    }
    assert_eq!(
        k.input_topics_full(),
        [
            "p.execution_cancelled",
            "p.execution_completed",
            "p.execution_failed",
            "p.execution_requested",
            "p.execution_timeout",
        ]
    );
    assert_eq!(
        k.all_topics_full(),
        [
            "p.create_pod_command",
            "p.dead_letter_queue",
            "p.execution_accepted",
            "p.execution_cancelled",
            "p.execution_completed",
            "p.execution_failed",
            "p.execution_requested",
            "p.execution_timeout",
        ]
    );
}

#[test]
fn secrets_never_reach_printed_output() {
    for key in [
        "sasl.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "SSL.KEY.PASSWORD",
    ] {
        assert!(is_secret_property(key), "{key}");
    }
    for key in ["security.protocol", "sasl.username", "ssl.ca.location"] {
        assert!(!is_secret_property(key), "{key}");
    }
    let c = parse_env(
        "[kafka.properties]\n\"sasl.username\" = \"coordinator\"\n\"ssl.key.pem\" = \"PEMDATA\"\n",
        &[(
            "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SASL.PASSWORD",
            "hunter2",
        )],
    );
    assert_eq!(
        c.kafka.properties["sasl.password"], "hunter2",
        "the real value is kept"
    );
    let redacted = c.kafka.redacted_properties();
    assert_eq!(redacted["sasl.password"], REDACTED);
    assert_eq!(redacted["ssl.key.pem"], REDACTED);
    assert_eq!(redacted["sasl.username"], "coordinator");
    for shown in [
        c.to_toml_string(),
        format!("{c:?}"),
        format!("{:?}", c.kafka),
    ] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("PEMDATA"),
            "{shown}"
        );
        assert!(shown.contains("coordinator"), "{shown}");
    }
}

#[test]
fn the_printed_config_parses_back_to_itself() {
    let c = parse(
        "[queue]\nstale_timeout = \"90m\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n\
         [kafka.properties]\n\"client.id\" = \"c\"\n[daemon]\nlog_format = \"json\"\n",
    );
    let printed = c.to_toml_string();
    assert!(printed.contains("stale_timeout = \"1h 30m\""), "{printed}");
    assert_eq!(parse(&printed), c);
    assert_eq!(
        parse(&Config::default().to_toml_string()),
        Config::default()
    );
}

#[test]
fn warnings_flag_valid_but_odd_settings() {
    let c = parse(
        "[resources]\ntotal_cpu_cores = 2.0\ntotal_memory_mb = 4096\novercommit_factor = 1.0\n\
         [queue]\nmax_queue_size = 50\n",
    );
    let warnings = c.warnings().join("\n");
    assert!(
        warnings.contains("resources.max_cpu_per_execution (4)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("resources.max_memory_per_execution_mb (8192)"),
        "{warnings}"
    );
    assert!(
        warnings.contains("queue.max_executions_per_user (100)"),
        "{warnings}"
    );
    assert!(Config::default().warnings().is_empty());
}

#[test]
fn backfill_knobs_have_defaults_and_max_wait_stays_below_the_stale_timeout() {
    let s = Config::default().scheduler;
    assert_eq!(s.policy, Policy::Backfill);
    assert_eq!((s.backfill_depth, s.reservations), (100, 1));
    assert_eq!(s.fair_share_half_life, Duration::ZERO);
    assert_eq!(s.max_wait, MaxWait::default());
    assert_eq!(s.max_wait.background, Duration::from_secs(2700));

    let c = parse(
        "[scheduler]\npolicy = \"backfill\"\nreservations = 3\nfair_share_half_life = \"1d\"\n\
         max_wait = { critical = \"10s\", background = \"50m\" }\n",
    );
    assert_eq!(c.scheduler.policy, Policy::Backfill);
    assert_eq!(c.scheduler.reservations, 3);
    assert_eq!(
        c.scheduler.fair_share_half_life,
        Duration::from_secs(86_400)
    );
    assert_eq!(c.scheduler.max_wait.critical, Duration::from_secs(10));
    // Unset levels keep their defaults.
    assert_eq!(c.scheduler.max_wait.normal, Duration::from_secs(900));

    // Every level set at or over the stale timeout is named, each on its own line; levels
    // left at their defaults are lowered to half the stale timeout instead.
    let text = error_text(
        "[queue]\nstale_timeout = \"10m\"\n[scheduler]\npolicy = \"backfill\"\n\
         max_wait = { critical = \"10m\", normal = \"9m\", low = \"30m\", background = \"45m\" }\n",
    );
    assert!(
        text.contains(
            "scheduler.max_wait.critical: must be below queue.stale_timeout (10m), or its \
             executions expire before they are promoted (got 10m)"
        ),
        "{text}"
    );
    assert!(text.contains("scheduler.max_wait.low:"), "{text}");
    assert!(text.contains("scheduler.max_wait.background:"), "{text}");
    assert!(!text.contains("scheduler.max_wait.normal"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    // Under the other policies max_wait is not used, and a short stale timeout is fine.
    parse("[queue]\nstale_timeout = \"1s\"\n");

    let text = error_text(
        "[scheduler]\npolicy = \"backfill\"\nbackfill_depth = 0\nreservations = 0\n\
         max_wait = { high = \"0s\" }\n",
    );
    for key in [
        "scheduler.backfill_depth: must be at least 1",
        "scheduler.reservations: must be at least 1",
        "scheduler.max_wait.high: must be longer than 0",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    let text = error_text("[scheduler]\nmax_wait = { urgent = \"1s\" }\n");
    assert!(text.contains("urgent"), "{text}");
}

#[test]
fn backfill_knobs_take_env_overrides_and_odd_values_warn() {
    let c = parse_env(
        "[scheduler]\npolicy = \"backfill\"\n",
        &[
            ("EXECUTION_COORDINATOR__SCHEDULER__MAX_WAIT__LOW", "20m"),
            (
                "EXECUTION_COORDINATOR__SCHEDULER__FAIR_SHARE_HALF_LIFE",
                "2h",
            ),
        ],
    );
    assert_eq!(c.scheduler.max_wait.low, Duration::from_secs(1200));
    assert_eq!(c.scheduler.fair_share_half_life, Duration::from_secs(7200));
    let text = Config::from_toml_str(
        "[scheduler]\npolicy = \"backfill\"\n",
        env(&[("EXECUTION_COORDINATOR__SCHEDULER__MAX_WAIT__LOW", "2h")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("scheduler.max_wait.low: must be below queue.stale_timeout")
            && text.contains("(set by EXECUTION_COORDINATOR__SCHEDULER__MAX_WAIT__LOW)"),
        "{text}"
    );

    let c = parse(
        "[scheduler]\npolicy = \"backfill\"\nreservations = 200\n\
         max_wait = { high = \"20m\" }\n",
    );
    let warnings = c.warnings().join("\n");
    assert!(
        warnings.contains(
            "scheduler.max_wait.high (20m) is longer than scheduler.max_wait.normal (15m)"
        ),
        "{warnings}"
    );
    assert!(
        warnings.contains("scheduler.reservations (200) exceeds"),
        "{warnings}"
    );
    let c = parse("[scheduler]\npolicy = \"strict\"\nfair_share_half_life = \"1h\"\n");
    assert!(
        c.warnings()
            .join("\n")
            .contains("fair share orders users only under `backfill`"),
        "{:?}",
        c.warnings()
    );
    assert!(parse("[scheduler]\npolicy = \"backfill\"\n")
        .warnings()
        .is_empty());
}

#[test]
fn a_short_stale_timeout_lowers_the_default_max_waits_but_not_those_set_by_hand() {
    let config = parse("[queue]\nstale_timeout = \"30s\"\n");
    assert_eq!(config.scheduler.policy, Policy::Backfill);
    let max_wait = config.scheduler.max_wait;
    assert_eq!(
        max_wait.critical,
        Duration::from_secs(15),
        "half the stale timeout"
    );
    assert_eq!(max_wait.background, Duration::from_secs(15));

    let text = "[queue]\nstale_timeout = \"30s\"\n[scheduler.max_wait]\ncritical = \"2m\"\n";
    let error = error_text(text);
    assert!(
        error.contains("scheduler.max_wait.critical")
            && error.contains("below queue.stale_timeout"),
        "{error}"
    );
    assert!(!error.contains("scheduler.max_wait.high"), "{error}");
}
