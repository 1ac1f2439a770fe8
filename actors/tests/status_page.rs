//! The status page in a real headless Chromium against a daemon on real Kafka: once its script
//! has run, the page lists the waiting executions in dispatch order with their reasons; when
//! the blocker completes and the head is commanded, the same page load (no reload) drops it
//! from the list on its next refresh. Chromium missing fails the test, saying how to install it.

mod support;

use serde_json::{json, Value};
use support::browser::{chromium, Browser};
use support::daemon::{DaemonProcess, TestConfig};
use support::golden::{golden, request};
use support::http::poll_json;
use support::kafka::{bootstrap_servers, produce_event, producer};

/// What the page shows, in one evaluation (one refresh of the page's): the waiting list's
/// execution ids and reason tags in order, and the figures. A pass holding the head for a few
/// milliseconds may show in one refresh, so the tests wait for what they expect.
const SHOWN: &str = "({
    rows: [...document.querySelectorAll('#waiting tr[data-execution-id]')].map(r => r.dataset.executionId),
    reasons: [...document.querySelectorAll('#waiting .reason .tag')].map(t => t.textContent),
    queued: document.getElementById('queued-total').textContent,
    running: document.getElementById('active-total').textContent,
    policy: document.getElementById('policy').textContent,
    mode: document.getElementById('mode').textContent,
    state: document.body.dataset.state,
})";

#[tokio::test]
async fn the_status_page_lists_the_waiting_executions_and_follows_the_queue() {
    // Before anything starts: without a browser there is nothing to test.
    chromium();
    let config = TestConfig::fresh()
        .set("resources", "total_cpu_cores = 1.0")
        .set("resources", "overcommit_factor = 1.0")
        .set("resources", "total_memory_mb = 4096")
        .set("resources", "min_available_cpu_cores = 0.1")
        .set("scheduler", "scheduling_interval = \"100ms\"")
        .set("scheduler", "policy = \"strict\"");
    let mut daemon = DaemonProcess::start(&config, &bootstrap_servers());
    let addr = daemon.metrics_addr();
    let events = config.events_topic();
    let p = producer();
    produce_event(&p, &events, &request("blocker", "u0", "normal")).await;
    poll_json(&addr, "/v1/executions/blocker", |e| e["state"] == "active");
    for (id, user, level) in [
        ("w1", "u1", "normal"),
        ("w2", "u2", "normal"),
        ("w3", "u3", "low"),
    ] {
        produce_event(&p, &events, &request(id, user, level)).await;
    }
    poll_json(&addr, "/v1/queue", |q| q["queued"] == 3);

    let mut page = Browser::open(&format!("http://{addr}/"));
    let want = json!({
        "rows": ["w1", "w2", "w3"],
        "reasons": ["pool full", "behind earlier arrivals", "behind higher priority"],
        "queued": "3",
        "running": "1",
        "policy": "policy strict",
        "mode": "mode blocked",
        "state": "ready",
    });
    page.wait_for("the three waiting executions", SHOWN, |shown| {
        *shown == want
    });
    // Each has an estimate, with its bound when that is longer.
    page.wait_for(
        "an estimate for each",
        "[...document.querySelectorAll('#waiting tr[data-execution-id] td:nth-child(6)')]\
            .map(td => td.textContent)",
        |cells| {
            cells.as_array().is_some_and(|cells| {
                cells.len() == 3
                    && cells.iter().all(|c| {
                        c.as_str()
                            .is_some_and(|c| c.ends_with('s') && !c.contains('—'))
                    })
            })
        },
    );
    // The history chart draws once it has two samples.
    page.wait_for(
        "the depth chart",
        "document.querySelectorAll('#depth-chart polygon').length",
        |n| n.as_u64().is_some_and(|n| n > 0),
    );

    // Marks this page load: a reload would forget it.
    page.evaluate("window.sameLoad = 'yes'");
    produce_event(&p, &events, &golden("execution_completed", "blocker")).await;
    let want = json!({
        "rows": ["w2", "w3"],
        "reasons": ["pool full", "behind higher priority"],
        "queued": "2",
        "running": "1",
        "policy": "policy strict",
        "mode": "mode blocked",
        "state": "ready",
    });
    page.wait_for("w1 gone from the waiting list", SHOWN, |shown| {
        *shown == want
    });
    assert_eq!(page.evaluate("window.sameLoad"), "yes", "the page reloaded");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page.png");
    page.screenshot(&shot);
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {shot:?}");
    drop(page);

    // What the page showed is what the API says.
    let queue: Value = poll_json(&addr, "/v1/queue", |q| q["queued"] == 2);
    assert_eq!(queue["executions"][0]["execution_id"], "w2");
    assert!(daemon.terminate().success());
}
