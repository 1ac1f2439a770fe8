//! The Execution Coordinator daemon: actix actors around `coordinator-core`, on Kafka.
//!
//! - [`actors`]: the five actors, each with its messages at the top of its file.
//! - [`daemon`]: builds the supervised tree, recovers it in process, shuts it down.
//! - [`inspect`]: the read-only inspection API and the status page on the metrics listener.
//! - [`shutdown`]: how anything is told to stop, and why.
//! - [`kafka`]: the Kafka plumbing: client settings, topics, the broker check, ownership of
//!   the queue and pool across instances, trace headers.
//! - [`state`]: what a queued execution keeps, every message the daemon writes, and reading
//!   the state topic back.
//! - [`telemetry`]: metrics, health, the `actor_stats` log stream, redacted log output.
//! - [`tools`]: the load generator, the worker simulator and the demo; they use the daemon,
//!   the daemon never uses them.

pub mod actors;
pub mod clock;
pub mod daemon;
pub mod inspect;
pub mod kafka;
pub mod misconfigured;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod tools;
