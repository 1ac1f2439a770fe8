//! A private single-node Apache Kafka (KRaft) for fault tests: started as a child process of the
//! test with the jars `scripts/kafka.sh` fetches into `.cache/kafka-libs` and the settings it
//! writes, on free ports of its own, its data in a temporary folder. A test kills,
//! restarts, pauses and resumes it at will; the shared test broker is never touched (its config
//! lives elsewhere, its ports are not chosen, nothing here looks for other brokers).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::support::root;

/// How long a start or restart may take before the test fails: the JVM starts slowly on a
/// shared machine, and a restart after SIGKILL recovers its logs first.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Client ports are drawn from here: below Linux's ephemeral range (32768–60999), so no client
/// connection of this machine takes a port while its broker is down, and clear of the ports
/// scripts/kafka.sh picks (9092–9095, 19092–19293).
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Where a private broker's folder names the test process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Ports handed out in this process, so two brokers of one test binary never pick the same.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// What differs from scripts/kafka.sh's broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerSettings {
    /// Broker `message.max.bytes` (its default, 1048588, when `None`): the largest record batch
    /// a topic without its own `max.message.bytes` takes.
    pub message_max_bytes: Option<usize>,
}

/// A running (or killed, or paused) private broker.
pub struct PrivateBroker {
    child: Option<Child>,
    port: u16,
    controller_port: u16,
    settings: BrokerSettings,
    dir: tempfile::TempDir,
}

impl PrivateBroker {
    /// Formats fresh storage and starts a broker with `settings`; returns once it answers
    /// metadata. Panics, saying why, when the jars are missing or it does not come up. The
    /// broker is killed if the thread that starts it ends, so call it from the test's own
    /// thread (the body of a `#[tokio::test]`), never from a task or a blocking pool thread.
    pub fn start(settings: BrokerSettings) -> Self {
        let libs = libs();
        remove_abandoned_data();
        // A port taken between the check and the broker's bind fails the start: try others.
        for attempt in 1.. {
            let dir = tempfile::Builder::new()
                .prefix("ec-private-kafka-")
                .tempdir()
                .expect("a temporary folder for the private broker");
            fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
                .expect("writing the private broker's owner file");
            let [port, controller_port] = free_ports();
            let mut broker = PrivateBroker {
                child: None,
                port,
                controller_port,
                settings: settings.clone(),
                dir,
            };
            broker.write_config();
            broker.format(&libs);
            broker.spawn(&libs);
            match broker.wait_ready() {
                Ok(()) => return broker,
                Err(why)
                    if attempt < 3 && broker.log_tail(200).contains("Address already in use") =>
                {
                    eprintln!("private broker: {why}; trying other ports");
                }
                Err(why) => panic!(
                    "private Kafka broker on 127.0.0.1:{port}: {why}; last lines of its log:\n{}",
                    broker.log_tail(40)
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `host:port` of its client listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it with SIGKILL (no shutdown, nothing flushed) and waits until it is gone. Its
    /// data stays for [`PrivateBroker::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same config, data and ports, and returns once it answers
    /// metadata. Like [`PrivateBroker::start`], only from the test's own thread.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() of a broker that runs");
        self.spawn(&libs());
        if let Err(why) = self.wait_ready() {
            panic!(
                "private Kafka broker on {} after a restart: {why}; last lines of its log:\n{}",
                self.bootstrap(),
                self.log_tail(40)
            );
        }
    }

    /// Stops it with SIGSTOP: connections stay open, nothing answers, time runs on.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Client settings for this broker, with `extra` on top.
    pub fn client_config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    }

    /// The last `lines` lines of its log (stdout and stderr of every run).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its whole log, for saving beside a failed test's.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The settings scripts/kafka.sh writes for its plaintext broker (`write_plaintext_listeners`
    /// and `write_common_config`), on this broker's ports and data folder.
    fn write_config(&self) {
        let (port, controller) = (self.port, self.controller_port);
        let data = self.dir.path().join("data");
        let mut text = format!(
            "# Written by actors/tests/broker: a private single-node test broker.\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             controller.listener.names=CONTROLLER\n\
             log.dirs={}\n\
             auto.create.topics.enable=false\n\
             num.partitions=1\n\
             default.replication.factor=1\n\
             min.insync.replicas=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\n\
             num.io.threads=4\n",
            data.display()
        );
        if let Some(bytes) = self.settings.message_max_bytes {
            text.push_str(&format!("message.max.bytes={bytes}\n"));
        }
        fs::write(self.config_path(), text).expect("writing the private broker's config");
    }

    /// `kafka.tools.StorageTool format` with a fresh cluster id, as scripts/kafka.sh does.
    fn format(&self, libs: &Path) {
        let output = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(log4j_option())
            .arg("-cp")
            .arg(libs.join("*"))
            .args(["kafka.tools.StorageTool", "format", "--config"])
            .arg(self.config_path())
            .args(["--cluster-id", &cluster_id(), "--ignore-formatted"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("running java (Java 17+ must be on PATH for the private broker): {e}")
            });
        assert!(
            output.status.success(),
            "formatting the private broker's KRaft storage failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `java … kafka.Kafka server.properties` with scripts/kafka.sh's JVM options, its output
    /// appended to the log; SIGKILLed by the kernel should the thread that spawns it end (a
    /// test binary killed mid-run leaves no broker behind).
    fn spawn(&mut self, libs: &Path) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the private broker's log");
        let heap = std::env::var("KAFKA_HEAP").unwrap_or_else(|_| "512m".to_owned());
        let mut command = Command::new("java");
        command
            .args(["-Xms128m", &format!("-Xmx{heap}"), "-XX:+UseG1GC"])
            .args(["-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"])
            .arg(log4j_option())
            .arg("-cp")
            .arg(libs.join("*"))
            .arg("kafka.Kafka")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file, twice"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("running java (Java 17+ must be on PATH for the private broker): {e}")
        });
        self.child = Some(child);
    }

    /// Polls a Metadata request until the broker lists itself (it is unfenced and serves
    /// clients), the process exits, or [`START_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe: BaseConsumer = self
            .client_config(&[("reconnect.backoff.max.ms", "200")])
            .create()
            .map_err(|e| format!("no client to probe it: {e}"))?;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("it exited during startup ({status})"));
                }
            }
            let answer = probe.fetch_metadata(None, Duration::from_millis(500));
            if matches!(&answer, Ok(m) if !m.brokers().is_empty()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "it did not answer metadata within {START_TIMEOUT:?} (last: {:?})",
                    answer.err()
                ));
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("the private broker is not running");
        // SAFETY: kill(2) on our own child's pid; the child is not yet reaped, so the pid is
        // still ours.
        let status = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(
            status,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for PrivateBroker {
    /// Kills it (paused or not) and, with the temporary folder, removes its data.
    fn drop(&mut self) {
        self.kill();
        let (port, controller) = (self.port, self.controller_port);
        if let Ok(mut taken) = TAKEN.lock() {
            taken.remove(&port);
            taken.remove(&controller);
        }
    }
}

/// Removes the folders of private brokers whose test process is gone (killed before its
/// brokers were dropped; the brokers themselves died with it).
fn remove_abandoned_data() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with("ec-private-kafka-");
        let owner = fs::read_to_string(path.join(OWNER_FILE)).ok();
        let owner_alive = owner
            .as_deref()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if ours && owner.is_some() && !owner_alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// `.cache/kafka-libs`, checked to hold the broker's jars; panics, saying how to get them,
/// when it does not.
fn libs() -> PathBuf {
    let libs = root().join(".cache/kafka-libs");
    let has_broker = fs::read_dir(&libs)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("kafka_2.13-") && name.ends_with(".jar")
            })
        })
        .unwrap_or(false);
    assert!(
        has_broker,
        "the Apache Kafka jars are not in {}: the broker fault tests start brokers of their own \
         from them. Run them through `make test` (scripts/kafka.sh fetches the jars with Maven \
         on first use), or fetch them once with `scripts/kafka.sh up && scripts/kafka.sh down`.",
        libs.display()
    );
    libs
}

fn log4j_option() -> String {
    format!(
        "-Dlog4j2.configurationFile={}",
        root().join("kafka/log4j2.properties").display()
    )
}

/// Two ports of [`PORTS`] that nothing listens on and no other broker of this process holds.
fn free_ports() -> [u16; 2] {
    let mut taken = TAKEN.lock().expect("port registry");
    let span = u64::from(PORTS.end - PORTS.start);
    let mut seed = u64::from(std::process::id()) ^ uuid::Uuid::new_v4().as_u64_pair().0;
    let mut chosen = Vec::new();
    for _ in 0..10_000 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let port = PORTS.start + ((seed >> 33) % span) as u16;
        if taken.contains(&port) || chosen.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            chosen.push(port);
            if chosen.len() == 2 {
                taken.extend(chosen.iter().copied());
                return [chosen[0], chosen[1]];
            }
        }
    }
    panic!("no two free ports in {PORTS:?}");
}

/// A Kafka cluster id: 16 random bytes in URL-safe base64 without padding (22 characters),
/// not starting with '-', as scripts/kafka.sh makes them.
fn cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let bits = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
        // 21 characters of 6 bits, then the last 2 bits with 4 zero bits of padding.
        let id: String = (0..22)
            .map(|i| {
                let index = if i < 21 {
                    (bits >> (122 - 6 * i)) & 0x3F
                } else {
                    (bits & 0x3) << 4
                };
                char::from(ALPHABET[index as usize])
            })
            .collect();
        if !id.starts_with('-') {
            return id;
        }
    }
}
