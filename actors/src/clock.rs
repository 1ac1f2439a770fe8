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

/// A fresh event id.
pub fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
