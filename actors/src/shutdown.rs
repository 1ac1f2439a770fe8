//! How anything in the daemon is told to stop, and why: a [`Shutdown`]. The process has one
//! (a signal requests it), every actor tree has one (a [`Failure`] requests it, and so does
//! abandoning the tree), the consume loop has one of its own (asked by `StopConsuming`). Those
//! who must stop wait for [`Shutdown::requested`] or look at [`Shutdown::is_requested`]; a
//! part's shutdown is a [`Shutdown::child`] of the whole's, so stopping the whole stops it too.
//!
//! The orderly stop of a tree is a different thing: a sequence of request/response messages
//! (stop consuming and wait for acks, drain the scheduler, flush and commit), in that order,
//! since each step needs the one before it to be complete.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why a tree cannot go on: its memory is ahead of what Kafka committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A transaction failed or was aborted, or an event's effects were not acknowledged: the
    /// tree is abandoned and rebuilt from the committed state in the same process (abort,
    /// restore from the state topic, consume again from the committed offsets).
    Recoverable(String),
    /// The producer was fenced by a newer instance (the handover) or hit another fatal error:
    /// the process exits and leaves the work to that instance or its supervisor.
    Fatal(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Recoverable(reason) | Failure::Fatal(reason) => f.write_str(reason),
        }
    }
}

/// A request to stop, once made, with the [`Failure`] that made it if one did. Clones share
/// it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    /// The first failure given; later ones are consequences of it.
    failure: Arc<Mutex<Option<Failure>>>,
}

impl Shutdown {
    /// Not requested yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to stop, for no failure (a signal, the end of the work, abandoning a tree).
    pub fn request(&self) {
        self.token.cancel();
    }

    /// Asks to stop because of `failure`. The first failure is the one kept.
    pub fn fail(&self, failure: Failure) {
        {
            let mut kept = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            if kept.is_none() && !self.token.is_cancelled() {
                *kept = Some(failure);
            }
        }
        self.token.cancel();
    }

    /// Whether stopping was asked.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once stopping was asked, with the failure that asked, if one did.
    pub async fn requested(&self) -> Option<Failure> {
        self.token.cancelled().await;
        self.failure().clone()
    }

    /// The failure that asked to stop, if one did.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shutdown of a part: requested when this one is, or on its own (which leaves this
    /// one untouched).
    pub fn child(&self) -> Shutdown {
        Shutdown {
            token: self.token.child_token(),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// The token beneath, for code that takes a plain [`CancellationToken`] (the tools).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_failure_is_kept_and_a_child_stops_with_its_parent() {
        let whole = Shutdown::new();
        let part = whole.child();
        let alone = whole.child();
        alone.request();
        assert!(alone.is_requested() && !whole.is_requested() && !part.is_requested());
        whole.fail(Failure::Recoverable("first".into()));
        whole.fail(Failure::Fatal("second".into()));
        assert_eq!(
            whole.requested().await,
            Some(Failure::Recoverable("first".into()))
        );
        assert!(part.is_requested());
        assert_eq!(part.requested().await, None, "the part did not fail itself");
    }

    #[tokio::test]
    async fn a_request_without_failure_gives_none_even_if_a_failure_follows() {
        let s = Shutdown::new();
        s.request();
        s.fail(Failure::Fatal("after the stop".into()));
        assert_eq!(s.requested().await, None);
    }
}
