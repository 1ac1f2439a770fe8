//! What the daemon keeps and writes:
//!
//! - [`pending`]: what a queued execution keeps of its request;
//! - [`record`]: the state topic's record, in one wire form for writing and reading;
//! - [`outputs`]: every message the daemon publishes (events, commands, DLQ and state records);
//! - [`restore`]: reading the state topic back into a queue and a pool.
//!
//! The state topic is compacted and keyed by execution id: `queued` (with the request, level
//! and arrival), `allocated` (with the resources held), `finished` once the execution has left
//! the coordinator's hands (completed, failed, cancelled, expired, rejected) — so duplicate
//! detection survives a restart — and a tombstone once the bounded duplicate memory forgets it.

pub mod outputs;
pub mod pending;
pub mod record;
pub mod restore;
