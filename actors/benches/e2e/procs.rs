//! The pipes under test as child processes: the daemon's release binary and the reference pipes;
//! their config, log, CPU time, resident memory and (for the daemon) `/metrics`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::kafka_io::RunTopics;
use crate::layout_name;
use crate::shape::Shape;

/// The daemon binary, built by `cargo bench` with the bench (release) profile.
const BUILT_DAEMON: &str = env!("CARGO_BIN_EXE_execution-coordinator");

/// The daemon binary the runs start: [`build_check`]'s copy of [`BUILT_DAEMON`], so that a
/// rebuild in a shared target directory during the run does not change the program under test.
static DAEMON: OnceLock<PathBuf> = OnceLock::new();

fn daemon() -> &'static Path {
    DAEMON
        .get()
        .map_or(Path::new(BUILT_DAEMON), PathBuf::as_path)
}

/// A program the bench runs as a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// `execution-coordinator run`: the pipe under test.
    Daemon,
    /// The 1-in-1-out reference pipe.
    Passthrough,
    /// The reference pipe that moves what the daemon moves per request.
    Equivalent,
    /// `execution-coordinator worker-sim`: completes each command after `RUN_TIME_MS`.
    WorkerSim,
}

/// The worker simulator's run time per execution.
pub const RUN_TIME_MS: u64 = 50;

impl Program {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Daemon => "daemon",
            Program::Passthrough => "passthrough",
            Program::Equivalent => "equivalent",
            Program::WorkerSim => "worker-sim",
        }
    }
}

/// Fails early when the daemon binary is missing; copies it to `target/e2e-bench/` for the
/// runs to start.
pub fn build_check() -> anyhow::Result<()> {
    anyhow::ensure!(
        Path::new(BUILT_DAEMON).exists(),
        "the daemon binary {BUILT_DAEMON} is missing: run through `cargo bench`"
    );
    let copy = out_dir()?.join("execution-coordinator");
    // Unlinked first: a daemon left running from an earlier copy keeps its own file.
    let _ = std::fs::remove_file(&copy);
    std::fs::copy(BUILT_DAEMON, &copy)
        .with_context(|| format!("copying {BUILT_DAEMON} to {}", copy.display()))?;
    let _ = DAEMON.set(copy);
    Ok(())
}

/// Where logs and results go: `target/e2e-bench`.
pub fn out_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    // target/<profile>/deps/e2e-… → target
    let target = exe
        .ancestors()
        .nth(3)
        .context("the bench binary is not under target/<profile>/deps")?;
    let dir = target.join("e2e-bench");
    std::fs::create_dir_all(dir.join("logs"))?;
    Ok(dir)
}

/// The config of one run: the shipped defaults plus the run's topics in its layout and
/// `extra` lines per section.
pub fn config_toml(topics: &RunTopics, bootstrap: &str, extra: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for section in ["queue", "scheduler", "resources", "kafka", "daemon"] {
        text.push_str(&format!("[{section}]\n"));
        if section == "kafka" {
            text.push_str(&format!(
                "bootstrap_servers = \"{bootstrap}\"\ntopic_prefix = \"{}\"\ngroup_id = \"{}\"\n\
                 topic_layout = \"{}\"\n",
                topics.prefix(),
                topics.group(),
                layout_name(topics.layout())
            ));
        }
        if section == "daemon" {
            text.push_str("metrics_addr = \"127.0.0.1:0\"\n");
        }
        for (s, line) in extra {
            if *s == section {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// A running child process.
pub struct Proc {
    child: Child,
    /// `perf record` attached to the daemon when `E2E_PERF` is set.
    perf: Option<std::thread::JoinHandle<Option<Child>>>,
    pipe: Program,
    log: PathBuf,
    _config: tempfile::NamedTempFile,
}

impl Proc {
    /// Starts `pipe` with `config`, its output to `target/e2e-bench/logs/<name>.log`.
    pub fn start(pipe: Program, config: &str, name: &str) -> anyhow::Result<Self> {
        let mut file = tempfile::NamedTempFile::new()?;
        file.write_all(config.as_bytes())?;
        let log = out_dir()?.join("logs").join(format!("{name}.log"));
        let out = File::create(&log)?;
        let mut command = match pipe {
            Program::Daemon => {
                // E2E_DAEMON_WRAPPER="valgrind --tool=massif" and the like, for profiles.
                let wrapper = std::env::var("E2E_DAEMON_WRAPPER").unwrap_or_default();
                let mut words = wrapper.split_whitespace();
                let mut c = match words.next() {
                    Some(program) => {
                        let mut c = Command::new(program);
                        c.args(words).arg(daemon());
                        c
                    }
                    None => Command::new(daemon()),
                };
                c.arg("run").arg("--config").arg(file.path());
                c
            }
            Program::Passthrough | Program::Equivalent => {
                let shape = if pipe == Program::Equivalent {
                    Shape::Equivalent
                } else {
                    Shape::OneToOne
                };
                let mut c = Command::new(std::env::current_exe()?);
                c.env("E2E_BENCH_ROLE", "passthrough")
                    .env("E2E_PIPE_SHAPE", shape.name())
                    .arg(file.path());
                c
            }
            Program::WorkerSim => {
                let mut c = Command::new(daemon());
                c.arg("worker-sim")
                    .arg("--config")
                    .arg(file.path())
                    .arg("--runtime")
                    .arg(format!("const:{RUN_TIME_MS}"))
                    .arg("--quiet");
                c
            }
        };
        let child = command
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting the {}", pipe.name()))?;
        let perf = match (pipe, std::env::var_os("E2E_PERF")) {
            (Program::Daemon, Some(_)) => Some(attach_perf(
                child.id(),
                log.clone(),
                out_dir()?.join(format!("{name}.perf.data")),
            )),
            _ => None,
        };
        Ok(Self {
            child,
            perf,
            pipe,
            log,
            _config: file,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until its log has a line containing `needle`; returns the line.
    pub async fn wait_for_log(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the {} exited ({status}) before logging {needle:?}; see {}",
                    self.pipe.name(),
                    self.log.display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {} did not log {needle:?} within {timeout:?}; see {}",
                self.pipe.name(),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until it holds its input partitions.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.wait_for_log("Partitions assigned", Duration::from_secs(60))
            .await
            .map(drop)
    }

    /// The daemon's `/metrics` address, from its log.
    pub async fn metrics_addr(&mut self) -> anyhow::Result<String> {
        let line = self
            .wait_for_log(
                "Metrics and health endpoints listening",
                Duration::from_secs(30),
            )
            .await?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .map(str::to_owned)
            .with_context(|| format!("no addr= in {line:?}"))
    }

    /// CPU time (user + system, all threads) used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unreadable /proc/pid/stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After "(comm)": state is field 3, utime field 14, stime field 15.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_millis(ticks * 1000 / clock_ticks()))
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/pid/status"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .context("unreadable status line")?
                .parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut perf) = self.perf.take().and_then(|h| h.join().ok().flatten()) {
            Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status()?;
            perf.wait()?;
        }
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(
                    status.success(),
                    "the {} exited with {status}; see {}",
                    self.pipe.name(),
                    self.log.display()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                anyhow::bail!("the {} did not stop within 60 s", self.pipe.name());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Attaches `perf record` (cpu-clock, DWARF call graphs) to `pid` once the daemon logged
/// "Consuming." — by then every client thread exists, and `perf record -p` follows only the
/// threads present when it attaches.
fn attach_perf(pid: u32, log: PathBuf, data: PathBuf) -> std::thread::JoinHandle<Option<Child>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Consuming.")) {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999"])
            .args(["--call-graph", "dwarf,16384", "-o"])
            .arg(data)
            .arg("-p")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    })
}

/// Clock ticks per second for /proc times (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The daemon's `/metrics` text.
pub fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    Ok(body.to_owned())
}

/// Sum over every series of metric `name` (any labels) in a scrape.
pub fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
