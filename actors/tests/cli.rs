//! The binary's front door: `check-config`, exit 64 on bad config, and `run` on the embedded
//! broker printing its address and actor-stats lines, stopping cleanly on SIGTERM.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{deadline, STOP_WITHIN, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_execution-coordinator");

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

/// Starts the binary with `args --config FILE`, its stdout and stderr lines sent to the receiver.
fn spawn_with_lines(
    args: &[&str],
    config: &tempfile::NamedTempFile,
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Sends `signal` (e.g. "-TERM") and waits, at most [`STOP_WITHIN`], for the exit status.
fn signal_and_wait(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + STOP_WITHIN;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not stop within {STOP_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let file = config_file("[queue]\nmax_queue_size = 42\n");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(file.path())
        .env(
            "EXECUTION_COORDINATOR__SCHEDULER__SCHEDULING_INTERVAL",
            "250ms",
        )
        .output()
        .expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_queue_size = 42"), "{text}");
    assert!(text.contains("scheduling_interval = \"250ms\""), "{text}");
}

#[test]
fn a_bad_config_lists_every_error_and_exits_64() {
    let file = config_file(
        "[queue]\nmax_queue_size = 0\nno_such_knob = 1\n[resources]\novercommit_factor = 0.5\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(file.path())
        .output()
        .expect("run with a bad config");
    assert_eq!(out.status.code(), Some(64));
    let text = String::from_utf8_lossy(&out.stderr);
    for key in ["max_queue_size", "no_such_knob", "overcommit_factor"] {
        assert!(text.contains(key), "error for {key} missing in:\n{text}");
    }
    let missing = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/config.toml"])
        .output()
        .expect("run with a missing file");
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn properties_this_build_cannot_use_exit_64_without_quoting_a_secret() {
    // The file: a secret beside a mechanism this build lacks and a misspelt key.
    let file = config_file(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n[kafka.properties]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"GSSAPI\"\n\
         \"ssl.key.password\" = \"sslkeySECRET-99\"\n",
    );
    for command in ["check-config", "run"] {
        let out = Command::new(BIN)
            .args([command, "--config"])
            .arg(file.path())
            .env(
                "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SASL.PASWORD",
                "hunter2",
            )
            .output()
            .expect("run with unusable properties");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(64), "{command}: {text}");
        assert!(
            text.contains("kafka.properties.\"sasl.pasword\"") && text.contains("set by"),
            "{command}: {text}"
        );
        assert!(
            !text.contains("SECRET-99") && !text.contains("hunter2"),
            "{command}: {text}"
        );
    }
    // Once the misspelt key is gone, the missing feature is what is refused.
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .expect("check-config");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains("GSSAPI") && !text.contains("SECRET-99"),
        "{text}"
    );
}

#[test]
fn run_on_the_embedded_broker_prints_its_address_and_stats_and_stops_on_sigterm() {
    let file = config_file(
        "[daemon]\nstats_interval = \"200ms\"\nlog_format = \"json\"\nmetrics_addr = \"127.0.0.1:0\"\n",
    );
    let (mut child, rx) = spawn_with_lines(&["run"], &file);
    let deadline = deadline();
    let (mut address, mut stats_actors) = (false, std::collections::BTreeSet::new());
    while !(address && stats_actors.len() >= 5) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "no address or stats lines from every actor within {WAIT:?}; saw {stats_actors:?}"
                )
            });
        if line.contains("Embedded Kafka broker") && line.contains("127.0.0.1:") {
            address = true;
        }
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
            if json["target"] == "actor_stats" {
                stats_actors.insert(json["actor"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let exit = signal_and_wait(&mut child, "-TERM");
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
}

#[test]
fn demo_on_the_embedded_broker_closes_the_loop_and_prints_a_summary() {
    let file = config_file(
        "[daemon]\nstats_interval = \"200ms\"\nlog_format = \"json\"\nmetrics_addr = \"\"\n\
         [resources]\ntotal_cpu_cores = 2.0\n",
    );
    let (mut child, rx) = spawn_with_lines(
        &[
            "demo",
            "--rate",
            "200",
            "--count",
            "100",
            "--runtime",
            "const:20",
        ],
        &file,
    );
    // Wait until the ingress has seen all 100 executions finish (completed or failed).
    let deadline = deadline();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("the demo did not complete 100 executions within {WAIT:?}")
            });
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if json["actor"] == "kafka_ingress" && json["released"].as_u64() >= Some(100) {
            break;
        }
    }
    let exit = signal_and_wait(&mut child, "-INT");
    assert!(exit.success(), "Ctrl-C exits 0, got {exit:?}");
    let output: Vec<String> = rx.try_iter().collect();
    let summary = output
        .iter()
        .find(|l| l.starts_with("requests consumed"))
        .unwrap_or_else(|| panic!("no summary in:\n{}", output.join("\n")));
    assert!(
        summary.contains("accepted      100") && summary.contains("commanded      100"),
        "{summary}"
    );
    assert!(output
        .iter()
        .any(|l| l.contains("queue wait by the level asked for")));
}
