//! The daemon's clock and identifiers: the core never reads either, so they are passed in.

use std::time::{SystemTime, UNIX_EPOCH};

use coordinator_core::queue::Millis;

/// Milliseconds since the UNIX epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The current time as an RFC 3339 timestamp with milliseconds, for event envelopes.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A fresh event id: a random (version 4) UUID from the thread's generator, which is seeded
/// from the OS once rather than asking it on every event.
pub fn event_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}
