//! The five actors, one per file, each with the messages it takes at the top:
//!
//! - [`ingress`]: consumes the input topics and turns each event into messages for the others;
//! - [`queue`]: the pending executions in dispatch order;
//! - [`resource`]: the CPU, memory and GPU pool and who holds what;
//! - [`scheduler`]: the scheduling pass, on a timer and on arrivals and releases;
//! - [`egress`]: writes every event, command and state record, in transactions when
//!   exactly-once is on.

use actix::Message;

pub mod egress;
pub mod ingress;
pub mod queue;
pub mod resource;
pub mod scheduler;

/// Makes the receiving actor fail, so its supervisor restarts it (fault injection for tests
/// and drills; state must survive the restart).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault;

/// How often the supervisor restarted the receiving actor.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "u64")]
pub struct RestartCount;
