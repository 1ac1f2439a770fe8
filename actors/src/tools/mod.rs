//! Tools around the daemon, run from the same binary: the load generator, the worker
//! simulator, the demo that runs both against the daemon on its embedded broker, and the
//! replay simulator's command line, with its Kafka input, the topic reader it uses and its
//! HTML report. They use the daemon's modules; nothing in the daemon uses them.

pub mod demo;
pub mod loadgen;
pub mod report_charts;
pub mod report_html;
pub mod simulate;
pub mod simulate_kafka;
pub mod topic_snapshot;
pub mod worker_sim;
