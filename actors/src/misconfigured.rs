//! An error that restarting the daemon cannot heal: the brokers refuse its credentials or its
//! certificate, or a topic it was told exists does not. The daemon exits with the
//! configuration error's code (64), which the systemd unit does not restart on.

/// Marks the cause of a failed start as the deployment's configuration. Carried inside an
/// `anyhow::Error`; `main` looks for it in the chain.
#[derive(Debug)]
pub struct Misconfigured(pub String);

impl std::fmt::Display for Misconfigured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Misconfigured {}

impl Misconfigured {
    /// Whether `error`'s chain holds a [`Misconfigured`].
    pub fn is_cause_of(error: &anyhow::Error) -> bool {
        error.chain().any(|e| e.is::<Misconfigured>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn is_found_under_context_and_not_elsewhere() {
        let wrapped: anyhow::Error = Err::<(), _>(Misconfigured("refused".into()))
            .context("starting")
            .unwrap_err();
        assert!(Misconfigured::is_cause_of(&wrapped));
        assert_eq!(format!("{wrapped:#}"), "starting: refused");
        assert!(!Misconfigured::is_cause_of(&anyhow::anyhow!("broker down")));
    }
}
