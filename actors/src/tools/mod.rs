//! Tools around the daemon, run from the same binary: the load generator, the worker
//! simulator, and the demo that runs both against the daemon on its embedded broker. They use
//! the daemon's modules; nothing in the daemon uses them.

pub mod demo;
pub mod loadgen;
pub mod worker_sim;
