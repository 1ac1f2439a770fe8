//! The daemon binary as a child process for end-to-end tests: a config of the test's own
//! (fresh topic prefix and group), its log collected, signals sent, exit awaited with a deadline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator_core::config::{Config, KafkaConfig, TopicLayout};
use coordinator_core::events::EventType;

use super::{deadline, STOP_WITHIN, WAIT};

/// The daemon's log filter in the tests: its own lines, librdkafka's warnings.
pub const LOG_LEVEL: &str = "info,librdkafka=warn,rdkafka=warn";

/// Knobs a test sets; everything else is the shipped default.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// `[kafka] topic_prefix`, unique per test.
    pub prefix: String,
    /// `[kafka] group_id`.
    pub group: String,
    /// `[kafka] topic_layout`: shared unless [`TestConfig::per_event_type`] is asked.
    pub layout: TopicLayout,
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
            layout: TopicLayout::Shared,
            extra: Vec::new(),
        }
    }

    /// A pool that holds exactly one 500m request at a time: 1 core, no overcommit, 100m held
    /// back.
    pub fn one_slot_pool(self) -> Self {
        self.set("resources", "total_cpu_cores = 1.0")
            .set("resources", "overcommit_factor = 1.0")
            .set("resources", "total_memory_mb = 4096")
            .set("resources", "min_available_cpu_cores = 0.1")
    }

    /// Sets `line` (`key = value`, TOML) in `[section]` (`kafka`, or a sub-table such as
    /// `kafka.properties`), over the default and any earlier line for the same key.
    pub fn set(mut self, section: &'static str, line: &str) -> Self {
        self.extra.push((section, line.to_owned()));
        self
    }

    /// The same config in the `per_event_type` topic layout (Integr8sCode's since 2026-02-20).
    pub fn per_event_type(mut self) -> Self {
        self.layout = TopicLayout::PerEventType;
        self
    }

    /// What every test daemon runs with before the test's own lines: the shipped defaults, the
    /// test's prefix, group and layout, one partition per topic, offsets committed every
    /// 200 ms, stats every second, and metrics on a free port.
    fn base(&self, bootstrap: Option<&str>) -> Config {
        let mut config = Config::default();
        let kafka = &mut config.kafka;
        kafka.bootstrap_servers = bootstrap.map(str::to_owned);
        kafka.topic_prefix = self.prefix.clone();
        kafka.group_id = self.group.clone();
        kafka.topic_layout = self.layout;
        kafka.topic_partitions = 1;
        kafka.commit_interval = Duration::from_millis(200);
        let daemon = &mut config.daemon;
        daemon.metrics_addr = "127.0.0.1:0".to_owned();
        daemon.stats_interval = Duration::from_secs(1);
        daemon.shutdown_grace = Duration::from_secs(20);
        daemon.log_level = LOG_LEVEL.to_owned();
        config
    }

    /// The config file's text, checked: [`TestConfig::base`] with every [`TestConfig::set`]
    /// line applied. Panics when a line is not TOML or the result is not a valid config (an
    /// unknown key, a value of the wrong type), so a typo fails the test that made it.
    fn text(&self, bootstrap: Option<&str>) -> String {
        let mut table: toml::Table = toml::from_str(&self.base(bootstrap).to_toml_string())
            .expect("Config::to_toml_string renders TOML");
        // The max waits are left to their defaults (and so below a short stale timeout) unless
        // a test sets them.
        if let Some(scheduler) = table.get_mut("scheduler").and_then(|s| s.as_table_mut()) {
            scheduler.remove("max_wait");
        }
        for (section, line) in &self.extra {
            let entries: toml::Table = toml::from_str(line)
                .unwrap_or_else(|e| panic!("[{section}] {line:?} is not a TOML key = value: {e}"));
            let mut at = &mut table;
            for key in section.split('.') {
                at = at
                    .entry(key)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .unwrap_or_else(|| panic!("[{section}]: {key} is not a table"));
            }
            at.extend(entries);
        }
        let text = toml::to_string(&table).expect("a TOML table renders");
        if let Err(errors) = Config::from_toml_str(&text, std::iter::empty()) {
            panic!("the test's config is invalid: {errors}\n{text}");
        }
        text
    }

    /// The config file's text for a daemon on the broker at `bootstrap`.
    pub fn toml(&self, bootstrap: &str) -> String {
        self.text(Some(bootstrap))
    }

    /// The config the daemon on the broker at `bootstrap` runs with.
    pub fn config(&self, bootstrap: &str) -> Config {
        Config::from_toml_str(&self.toml(bootstrap), std::iter::empty())
            .expect("TestConfig::toml checked it")
    }

    /// The `[kafka]` section, which names every topic (whatever the broker).
    pub fn kafka(&self) -> KafkaConfig {
        Config::from_toml_str(&self.text(None), std::iter::empty())
            .expect("TestConfig::text checked it")
            .kafka
    }

    /// The topic `event_type` travels on in this config's layout.
    pub fn topic(&self, event_type: EventType) -> String {
        self.kafka().topic_of(event_type)
    }

    /// The topic requests are sent to: in the shared layout, the one topic of every event.
    pub fn events_topic(&self) -> String {
        self.topic(EventType::ExecutionRequested)
    }

    /// The commands topic.
    pub fn commands_topic(&self) -> String {
        self.topic(EventType::CreatePodCommand)
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.kafka().dlq_topic_full()
    }

    /// The state topic (queued and allocated executions, compacted).
    pub fn state_topic(&self) -> String {
        self.kafka().state_topic_full()
    }

    /// The ownership topic (which instance owns the queue and the pool).
    pub fn ownership_topic(&self) -> String {
        self.kafka().ownership_topic_full()
    }
}

/// A running daemon process.
pub struct DaemonProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The threads taking in stdout and stderr: they end when the process closes them.
    readers: Vec<std::thread::JoinHandle<()>>,
    _config: tempfile::NamedTempFile,
}

impl DaemonProcess {
    /// Starts `execution-coordinator run` with `config` against `bootstrap` and waits until
    /// it consumes (its topics exist and its consumer is subscribed).
    pub fn start(config: &TestConfig, bootstrap: &str) -> Self {
        let daemon = Self::spawn(&config.toml(bootstrap), &[]);
        daemon.wait_for_log("Partitions assigned", WAIT);
        daemon
    }

    /// Starts a second instance with `config` while another owns the queue and pool, and waits
    /// until it is a standby.
    pub fn start_standby(config: &TestConfig, bootstrap: &str) -> Self {
        let daemon = Self::spawn(&config.toml(bootstrap), &[]);
        daemon.wait_for_log("Standby: keeping the state current", WAIT);
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
            .env("RUST_LOG", LOG_LEVEL)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the daemon binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
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
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().expect("log lock").push(line);
                }
            }));
        }
        Self {
            child,
            log,
            readers,
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
    /// use); panics with the last figures after [`WAIT`].
    pub fn wait_for_empty_pool(&self) {
        use std::io::Read;
        let addr = self.metrics_addr();
        let deadline = deadline();
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
        let line = self.wait_for_log("Metrics and health endpoints listening", WAIT);
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
        self.wait(STOP_WITHIN)
    }

    /// Waits for the process to exit; panics (and kills it) after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the daemon") {
                // Its last lines may still be in the pipes: the log is whole once the readers
                // have reached their end.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let threads = thread_backtraces(self.child.id());
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}\n{threads}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where each thread of the hung process `pid` is, when gdb is on the PATH (else why not): what
/// a hang at exit needs to be understood.
fn thread_backtraces(pid: u32) -> String {
    let gdb = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-nx",
            "-ex",
            "thread apply all bt 30",
        ])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(out) => format!(
            "threads of the hung daemon (gdb):\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => format!("(no thread backtraces: gdb could not run: {e})"),
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
