//! `simulate` on the shipped KTH-SP2 trace and config: every level and every job in the
//! table, identical output on a second run, and exit 64 with a clear message on bad input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_execution-coordinator");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn simulate(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("simulate")
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("run the binary")
}

#[test]
fn replays_the_kth_sp2_trace_with_every_level_and_job() {
    let out = simulate(&[
        "--trace",
        "traces/KTH-SP2-1996-2.1-cln.swf.gz",
        "--config",
        "traces/kth-sp2.toml",
        "--policy",
        "strict",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("28476 jobs, 0 skipped, 0 rejected, 0 never fit, 0 expired"),
        "{text}"
    );
    for level in [
        "critical",
        "high",
        "normal",
        "low",
        "background",
        "all",
        "trace",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{level} "))),
            "no {level} row:\n{text}"
        );
    }
    let all = text.lines().find(|l| l.starts_with("all ")).unwrap();
    assert_eq!(all.split_whitespace().nth(1), Some("28476"), "{all}");
    let trace = text.lines().find(|l| l.starts_with("trace ")).unwrap();
    assert_eq!(trace.split_whitespace().nth(1), Some("28476"), "{trace}");
}

#[test]
fn the_same_input_gives_the_same_bytes_and_compare_puts_configs_side_by_side() {
    let args = [
        "--trace",
        "traces/KTH-SP2-1996-2.1-cln.swf.gz",
        "--config",
        "traces/kth-sp2.toml",
        "--limit",
        "3000",
        "--compare",
        "traces/kth-sp2.toml",
        "--policy",
        "demote",
    ];
    let out = simulate(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, simulate(&args).stdout);
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    assert_eq!(header.matches("policy demote").count(), 2, "{text}");
    assert!(text.contains("3000 jobs, 0 skipped"), "{text}");

    let json = simulate(&[
        "--synthetic",
        "2000",
        "--seed",
        "5",
        "--config",
        "traces/kth-sp2.toml",
        "--json",
    ]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(text.contains("\"jobs\": 2000"), "{text}");
    assert!(text.contains("\"level\": \"background\""), "{text}");
}

#[test]
fn bad_input_exits_64_with_the_reason() {
    let out = simulate(&["--trace", "no/such.swf", "--config", "traces/kth-sp2.toml"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open trace no/such.swf"), "{err}");

    let mut bad = tempfile::Builder::new().suffix(".swf").tempfile().unwrap();
    writeln!(
        bad,
        "; header\n1 0 0 10 1 -1 -1 1 20 -1 1 1 1 -1 -1 -1 -1 -1\n2 5 0 ten"
    )
    .unwrap();
    let path = bad.path().to_str().unwrap().to_owned();
    let out = simulate(&["--trace", &path, "--config", "traces/kth-sp2.toml"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: field 4 (runtime) is not a number: `ten`"),
        "{err}"
    );

    let out = simulate(&["--synthetic", "10", "--config", "Cargo.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
}
