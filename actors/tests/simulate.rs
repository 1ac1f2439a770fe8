//! `simulate` on the shipped KTH-SP2 trace and config: every level and every job in the
//! table, identical output on a second run, exit 64 with a clear message on bad input, and
//! the HTML report.

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

#[test]
fn report_writes_one_self_contained_page_with_a_chart_per_plot() {
    let dir = tempfile::tempdir().unwrap();
    let page = |name: &str, extra: &[&str]| -> Vec<u8> {
        let path = dir.path().join(name);
        let mut args = vec![
            "--trace",
            "traces/KTH-SP2-1996-2.1-cln.swf.gz",
            "--config",
            "traces/kth-sp2.toml",
            "--limit",
            "2000",
            "--report",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = simulate(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("2000 jobs, 0 skipped"));
        std::fs::read(&path).unwrap()
    };

    let first = page("a.html", &[]);
    assert_eq!(
        first,
        page("b.html", &[]),
        "the same run gives the same bytes"
    );
    let html = String::from_utf8(first).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "wait CDF, queue depth, utilisation"
    );
    for shown in [
        "traces/KTH-SP2-1996-2.1-cln.swf.gz",
        "traces/kth-sp2.toml · policy demote",
        "2000 jobs",
        "<pre>traces/kth-sp2.toml · policy demote",
    ] {
        assert!(html.contains(shown), "no {shown:?} on the page");
    }
    for external in ["<script", "<link", "<img", "src=", "href=", "url("] {
        assert!(!html.contains(external), "{external:?} on the page");
    }

    let both = page(
        "c.html",
        &["--compare", "traces/kth-sp2.toml", "--policy", "strict"],
    );
    let html = String::from_utf8(both).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        1 + 2 * 3,
        "the overlaid CDF, then each plot for each config"
    );
    assert!(
        html.contains("traces/kth-sp2.toml · policy strict vs traces/kth-sp2.toml · policy strict")
    );
}

#[test]
fn an_unwritable_report_exits_64_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let report = |path: &std::path::Path| {
        simulate(&[
            "--synthetic",
            "200",
            "--config",
            "traces/kth-sp2.toml",
            "--report",
            path.to_str().unwrap(),
        ])
    };

    let out = report(&dir.path().join("no/such/dir/r.html"));
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the report"), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed as if it worked");

    // A directory where the page should go: the finished page cannot take its place.
    let taken = dir.path().join("taken.html");
    std::fs::create_dir(&taken).unwrap();
    let out = report(&taken);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the report"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["taken.html"], "no partial page left");
}

#[test]
fn compare_takes_several_configs_and_sums_them_up() {
    let out = simulate(&[
        "--synthetic",
        "3000",
        "--workload",
        "platform",
        "--load",
        "0.95",
        "--config",
        "traces/platform-demote.toml",
        "--compare",
        "traces/platform-strict.toml",
        "--compare",
        "traces/platform.toml",
        "--compare",
        "traces/platform-fair.toml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("3000 jobs, 0 skipped").count(), 4, "{text}");
    let policies = text.lines().find(|l| l.starts_with("policy ")).unwrap();
    assert_eq!(
        policies.split_whitespace().collect::<Vec<_>>(),
        ["policy", "demote", "strict", "backfill", "backfill+fs"],
        "{text}"
    );
    for row in [
        "critical p50 / p99",
        "background p50 / p99",
        "avg bounded slowdown",
        "bound violations (+overruns)",
        "reservations broken",
        "Jain (user mean wait)",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(row)),
            "no {row}:\n{text}"
        );
    }
}
