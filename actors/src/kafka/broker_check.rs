//! Before the daemon starts on a real cluster: do its brokers accept this client? A TLS or SASL
//! refusal (a wrong password, an untrusted certificate) stops the start at once with
//! librdkafka's reason, instead of surfacing later as a timeout of whatever asked first.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use coordinator_core::config::KafkaConfig;
use coordinator_core::redact::Redactor;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use crate::kafka::client_config;
use crate::misconfigured::Misconfigured;

/// How often the check looks for a refusal while it waits for the cluster.
const SLICE: Duration = Duration::from_millis(200);

/// Waits, at most `timeout`, until a broker at `bootstrap` has answered (the cluster id is
/// known). Fails if a broker refused the client's TLS or SASL credentials; if no broker
/// answered at all, warns and returns, leaving the waiting to the daemon's clients.
pub fn check_brokers(
    kafka: &KafkaConfig,
    bootstrap: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let redactor = Redactor::for_kafka(kafka);
    let producer: BaseProducer<Refusals> = client_config(kafka, bootstrap)
        .create_with_context(Refusals::default())
        .context("creating a Kafka client to check the brokers")?;
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        // Serves the log and error callbacks for a slice, then looks at what they said.
        producer.poll(SLICE.min(deadline.saturating_duration_since(Instant::now())));
        if let Some(cluster) = producer.client().fetch_cluster_id(Duration::ZERO) {
            info!(cluster = %cluster, %bootstrap, "Kafka brokers accept this client.");
            return Ok(());
        }
        let seen = producer.context().take();
        if let Some(refusal) = seen.refusal {
            return Err(Misconfigured(format!(
                "the Kafka brokers at {bootstrap} refused this client: {}",
                redactor.redact(&refusal)
            ))
            .into());
        }
        last = seen.last.or(last);
        if Instant::now() >= deadline {
            let last = last.unwrap_or_else(|| "none".to_owned());
            warn!(%bootstrap, timeout = %humantime::format_duration(timeout), last_error = %redactor.redact(&last), "No Kafka broker answered yet; starting anyway.");
            return Ok(());
        }
    }
}

/// What the client's error callback reported.
#[derive(Default)]
pub(crate) struct Seen {
    /// The first TLS or SASL refusal.
    pub(crate) refusal: Option<String>,
    /// The last error of any kind.
    pub(crate) last: Option<String>,
}

/// A client context that keeps the errors librdkafka reports instead of logging them, so the
/// caller can say why the brokers did not answer.
#[derive(Default)]
pub(crate) struct Refusals(Mutex<Seen>);

impl Refusals {
    /// What was reported since the last call.
    pub(crate) fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for Refusals {
    fn error(&self, error: KafkaError, reason: &str) {
        let refused = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::SaslAuthenticationFailed
            )
        );
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if refused && seen.refusal.is_none() {
            seen.refusal = Some(reason.to_owned());
        }
        seen.last = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}
