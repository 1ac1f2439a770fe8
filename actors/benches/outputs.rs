//! What the daemon builds and encodes per accepted request: `execution_accepted`, the `queued`
//! state record, `create_pod_command` and the `allocated` record, for a request with a 1 KiB
//! script. With exactly-once the `queued` record of an execution commanded in the same
//! transaction is replaced there by `allocated`, so it is dropped unwritten; at least once it
//! is written.
//!
//! `cargo bench -p execution-coordinator --bench outputs`

use std::hint::black_box;
use std::time::Duration;

use coordinator_core::config::KafkaConfig;
use coordinator_core::events::ExecutionRequested;
use coordinator_core::inspect::Remaining;
use coordinator_core::pool::{Allocation, Resources};
use coordinator_core::priority::PriorityFormat;
use coordinator_core::queue::QueuedExecution;
use coordinator_core::Priority;
use criterion::Criterion;
use execution_coordinator::state::outputs::Outputs;
use execution_coordinator::state::pending::Pending;

fn main() {
    let mut request: ExecutionRequested =
        serde_json::from_str(include_str!("../../tests/golden/execution_requested.json"))
            .expect("the golden request decodes");
    // A script of 1 KiB, as the end-to-end bench sends, with quotes and newlines to escape.
    request.script = "print(\"hello\")\n".repeat(1024 / 15 + 1);
    let resources = Resources {
        cpu_millis: 500,
        memory_mib: 512,
        gpu: 0,
    };
    let entry = QueuedExecution {
        execution_id: request.execution_id.clone(),
        user_id: request.metadata.user_key().to_owned(),
        priority: Priority::Normal,
        arrival: 7,
        enqueued_at: 1_700_000_000_000,
        requeues: 0,
        payload: Pending::new(&request, resources, None),
    };
    let allocation = Allocation {
        execution_id: request.execution_id.clone(),
        resources,
    };
    let estimate = Some(Remaining {
        median: Duration::from_millis(1_500),
        bound: Duration::from_millis(4_000),
    });
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("outputs/per_request");
    for (name, exactly_once) in [("exactly_once", true), ("at_least_once", false)] {
        let kafka = KafkaConfig {
            exactly_once,
            ..KafkaConfig::default()
        };
        let outputs = Outputs::new(&kafka, PriorityFormat::Name);
        group.bench_function(name, |b| {
            b.iter(|| {
                let accepted = outputs.accepted(&request, Priority::Normal, 3, estimate, None);
                let queued = outputs.state_queued(black_box(&entry));
                let command = outputs.create_pod_command(black_box(&entry), &allocation);
                let allocated = outputs.state_allocated(&entry, &allocation);
                // Dropped as built: with exactly-once, a deferred `queued` is never encoded.
                black_box((accepted, queued, command, allocated))
            })
        });
    }
    group.finish();
    c.final_summary();
}
