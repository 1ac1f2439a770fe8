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

/// The execution ids of the waiting list's rows, in order.
const ROWS: &str = "[...document.querySelectorAll('#waiting tr[data-execution-id]')]\
                    .map(r => r.dataset.executionId)";

/// The reason tags of the waiting list's rows, in order.
const REASONS: &str =
    "[...document.querySelectorAll('#waiting .reason .tag')].map(t => t.textContent)";

fn text_of(id: &str) -> String {
    format!("document.getElementById('{id}').textContent")
}

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
    page.wait_for("the three waiting executions", ROWS, |rows| {
        *rows == json!(["w1", "w2", "w3"])
    });
    assert_eq!(
        page.evaluate(REASONS),
        json!([
            "pool full",
            "behind earlier arrivals",
            "behind higher priority"
        ])
    );
    assert_eq!(page.evaluate(&text_of("queued-total")), "3");
    assert_eq!(page.evaluate(&text_of("active-total")), "1");
    assert_eq!(page.evaluate(&text_of("policy")), "policy strict");
    assert_eq!(page.evaluate(&text_of("mode")), "mode blocked");
    assert_eq!(page.evaluate("document.body.dataset.state"), "ready");
    let first_cell = page.evaluate("document.querySelector('#waiting tr td.id').title");
    assert_eq!(first_cell, "w1");
    // The history chart draws once it has two samples.
    page.wait_for(
        "the depth chart",
        "document.querySelectorAll('#depth-chart polygon').length",
        |n| n.as_u64().is_some_and(|n| n > 0),
    );

    // Marks this page load: a reload would forget it.
    page.evaluate("window.sameLoad = 'yes'");
    produce_event(&p, &events, &golden("execution_completed", "blocker")).await;
    page.wait_for("w1 gone from the waiting list", ROWS, |rows| {
        *rows == json!(["w2", "w3"])
    });
    assert_eq!(page.evaluate("window.sameLoad"), "yes", "the page reloaded");
    page.wait_for("two queued", &text_of("queued-total"), |t| t == "2");
    assert_eq!(
        page.evaluate(REASONS),
        json!(["pool full", "behind higher priority"])
    );

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
