//! Pure decision logic of the Execution Coordinator.
//!
//! Nothing in this crate reads the clock, spawns, or does I/O: callers pass `now` and get
//! decisions back, so every rule is unit-, property- and bench-testable.

pub mod config;
pub mod estimate;
pub mod events;
pub mod fair_share;
pub mod inspect;
pub mod planner;
pub mod pool;
pub mod priority;
pub mod quantity;
pub mod queue;
pub mod reason;
pub mod redact;
pub mod sim;

pub use priority::{Priority, LEVELS};
