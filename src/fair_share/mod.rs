//! Fair share between users within a priority level (`scheduler.fair_share_half_life`).
//!
//! - [`ledger`]: each user's decayed usage. A start charges its user once, at start, with what
//!   it reserved: cpu cores × timeout seconds. Nothing is sampled while it runs. The usage
//!   halves every half-life.
//! - [`order`]: the dispatch order that usage gives. Levels stay first. Within a level, the
//!   next execution is the one whose user has the least usage, counting that user's
//!   executions ahead of it in the same order as if they had started. Each user's executions
//!   stay FIFO. Ties go to the earlier arrival.
//!
//! Both are pure: the clock is passed in.

pub mod ledger;
pub mod order;

pub use ledger::UsageLedger;
pub use order::FairOrder;

#[cfg(test)]
mod tests;
