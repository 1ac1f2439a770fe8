//! The Execution Coordinator daemon: actix actors around `coordinator-core`, on Kafka.
//!
//! One actor per module, its messages at the top: [`queue_actor`], [`resource_actor`],
//! [`scheduler`], [`ingress`], [`egress`]. [`daemon`] builds the supervised tree.

use actix::Message;

pub mod broker_check;
pub mod clock;
pub mod daemon;
pub mod demo;
pub mod egress;
pub mod ingress;
pub mod kafka;
pub mod librdkafka;
pub mod loadgen;
pub mod log_output;
pub mod misconfigured;
pub mod ownership;
pub mod queue_actor;
pub mod resource_actor;
pub mod scheduler;
pub mod state;
pub mod state_tail;
pub mod stats;
pub mod telemetry;
pub mod trace;
pub mod worker_sim;

/// Makes the receiving actor fail, so its supervisor restarts it (fault injection for tests
/// and drills; state must survive the restart).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault;

/// Log the receiving actor's `actor_stats` line now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ReportStats;

/// How often the supervisor restarted the receiving actor.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "u64")]
pub struct RestartCount;
