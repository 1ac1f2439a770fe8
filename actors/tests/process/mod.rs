//! The daemon binary as a child process for end-to-end tests: a config of the test's own
//! (fresh topic prefix and group), its log collected, signals sent, exit awaited with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Knobs a test sets; everything else is the shipped default.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// `[kafka] topic_prefix`, unique per test.
    pub prefix: String,
    /// `[kafka] group_id`.
    pub group: String,
    /// `[kafka] topic_layout`: "shared" unless [`TestConfig::per_event_type`] is asked.
    pub layout: &'static str,
    /// Extra TOML lines per section, e.g. `("queue", "max_queue_size = 6")`.
    pub extra: Vec<(&'static str, String)>,
}

impl TestConfig {
    /// A config of its own for one test: fresh prefix and group, one partition per topic.
    pub fn fresh() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("t{}.", &id[..12]),
            group: format!("coordinator-{}", &id[..12]),
            layout: "shared",
            extra: Vec::new(),
        }
    }

    /// Adds `line` to `[section]`.
    pub fn set(mut self, section: &'static str, line: &str) -> Self {
        self.extra.push((section, line.to_owned()));
        self
    }

    /// The same config in the `per_event_type` topic layout (Integr8sCode's since 2026-02-20).
    pub fn per_event_type(mut self) -> Self {
        self.layout = "per_event_type";
        self
    }

    /// The topic `event_type` travels on in this config's layout.
    pub fn topic(&self, event_type: &str) -> String {
        match (self.layout, event_type) {
            ("shared", "create_pod_command") => format!("{}saga_commands", self.prefix),
            ("shared", _) => format!("{}execution_events", self.prefix),
            (_, t) => format!("{}{t}", self.prefix),
        }
    }

    /// The topic requests are sent to: in the shared layout, the one topic of every event.
    pub fn events_topic(&self) -> String {
        self.topic("execution_requested")
    }

    /// The commands topic.
    pub fn commands_topic(&self) -> String {
        self.topic("create_pod_command")
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}dead_letter_queue", self.prefix)
    }

    /// The config file's text.
    pub fn toml(&self, bootstrap: &str) -> String {
        let mut text = String::new();
        for section in ["queue", "scheduler", "resources", "kafka", "daemon"] {
            text.push_str(&format!("[{section}]\n"));
            if section == "kafka" {
                text.push_str(&format!(
                    "bootstrap_servers = \"{bootstrap}\"\ntopic_prefix = \"{}\"\ngroup_id = \"{}\"\ntopic_layout = \"{}\"\ntopic_partitions = 1\ncommit_interval = \"200ms\"\n",
                    self.prefix, self.group, self.layout
                ));
            }
            if section == "daemon" {
                text.push_str("metrics_addr = \"127.0.0.1:0\"\nstats_interval = \"1s\"\nshutdown_grace = \"20s\"\nlog_level = \"info,librdkafka=warn,rdkafka=warn\"\n");
            }
            for (s, line) in &self.extra {
                if *s == section {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        // Sub-tables and other sections, e.g. `kafka.properties`, after the main ones.
        let mut others: Vec<&str> = self
            .extra
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| !["queue", "scheduler", "resources", "kafka", "daemon"].contains(s))
            .collect();
        others.sort_unstable();
        others.dedup();
        for section in others {
            text.push_str(&format!("[{section}]\n"));
            for (_, line) in self.extra.iter().filter(|(s, _)| *s == section) {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// A running daemon process.
pub struct DaemonProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _config: tempfile::NamedTempFile,
}

impl DaemonProcess {
    /// Starts `execution-coordinator run` with `config` against `bootstrap` and waits until
    /// it consumes (its topics exist and its consumer is subscribed).
    pub fn start(config: &TestConfig, bootstrap: &str) -> Self {
        let daemon = Self::spawn(&config.toml(bootstrap), &[]);
        daemon.wait_for_log("Partitions assigned", Duration::from_secs(60));
        daemon
    }

    /// Starts a second instance with `config` while another owns the queue and pool, and waits
    /// until it is a standby.
    pub fn start_standby(config: &TestConfig, bootstrap: &str) -> Self {
        let daemon = Self::spawn(&config.toml(bootstrap), &[]);
        daemon.wait_for_log(
            "Standby: keeping the state current",
            Duration::from_secs(60),
        );
        daemon
    }

    /// Starts `execution-coordinator run` with the config file `toml` and the variables `env`
    /// (which may override RUST_LOG), and returns at once.
    pub fn spawn(toml: &str, env: &[(&str, &str)]) -> Self {
        let mut file = tempfile::NamedTempFile::new().expect("temp config file");
        file.write_all(toml.as_bytes())
            .expect("writing the config file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_execution-coordinator"))
            .arg("run")
            .arg("--config")
            .arg(file.path())
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the daemon binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        Self {
            child,
            log,
            _config: file,
        }
    }

    /// Every line logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until a logged line contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not log {needle:?} within {timeout:?}; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/metrics` until no execution holds resources (no active allocation, no CPU in
    /// use); panics with the last figures after a minute.
    pub fn wait_for_empty_pool(&self) {
        use std::io::Read;
        let addr = self.metrics_addr();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut stream = std::net::TcpStream::connect(&addr).expect("connect to /metrics");
            write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").expect("request");
            let mut body = String::new();
            stream.read_to_string(&mut body).expect("response");
            let value = |series: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            };
            let active = value("execution_coordinator_active_allocations");
            let used = value("execution_coordinator_pool{resource=\"cpu_cores\",state=\"used\"}");
            if active == Some(0.0) && used == Some(0.0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pool not back to empty: active={active:?} used={used:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the daemon serves `/metrics`, `/healthz` and `/readyz` (from its log).
    pub fn metrics_addr(&self) -> String {
        let line = self.wait_for_log(
            "Metrics and health endpoints listening",
            Duration::from_secs(30),
        );
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {line:?}"))
            .to_owned()
    }

    /// Kills the process with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        self.wait(Duration::from_secs(30))
    }

    /// Waits for the process to exit; panics (and kills it) after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A golden event of `kind` for `execution_id` (event_id fresh).
pub fn golden(kind: &str, execution_id: &str) -> Value {
    let text = match kind {
        "execution_requested" => include_str!("../../../tests/golden/execution_requested.json"),
        "execution_completed" => include_str!("../../../tests/golden/execution_completed.json"),
        "execution_cancelled" => include_str!("../../../tests/golden/execution_cancelled.json"),
        "execution_failed" => include_str!("../../../tests/golden/execution_failed.json"),
        other => panic!("no golden event {other}"),
    };
    let mut event: Value = serde_json::from_str(text).expect("golden file is JSON");
    event["execution_id"] = Value::from(execution_id);
    event["aggregate_id"] = Value::from(execution_id);
    event["event_id"] = Value::from(uuid::Uuid::new_v4().to_string());
    event
}

/// An `execution_requested` for `execution_id` by `user` at `priority` (a number or a name),
/// asking 500m / 256Mi.
pub fn request(execution_id: &str, user: &str, priority: impl Into<Value>) -> Value {
    let mut event = golden("execution_requested", execution_id);
    event["metadata"]["user_id"] = Value::from(user);
    event["priority"] = priority.into();
    event["cpu_request"] = Value::from("500m");
    event["memory_request"] = Value::from("256Mi");
    event
}
