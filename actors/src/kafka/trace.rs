//! The W3C trace context (`traceparent`, `tracestate`) of a request, read from its Kafka
//! headers and carried onto everything the coordinator writes for it, so a trace that starts
//! at the API continues through admission to the pod.

use std::borrow::Cow;

use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

/// Header of the W3C trace context's parent span.
pub const TRACEPARENT: &str = "traceparent";

/// Header of the W3C trace context's vendor state.
pub const TRACESTATE: &str = "tracestate";

/// A request's trace context, as its producer wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent`, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// `tracestate`, when the producer sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The trace context in `message`'s headers: `None` without a `traceparent` that is UTF-8
    /// and not blank (the value is carried as given; the coordinator starts no spans).
    pub fn of<M: Message>(message: &M) -> Option<Box<Self>> {
        let headers = message.headers()?;
        let text = |name: &str| {
            headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case(name))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let traceparent = text(TRACEPARENT)?;
        Some(Box::new(TraceContext {
            traceparent,
            tracestate: text(TRACESTATE),
        }))
    }

    /// The headers that carry it on.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, Cow<'static, str>)> + '_ {
        std::iter::once((TRACEPARENT, self.traceparent.clone().into())).chain(
            self.tracestate
                .iter()
                .map(|state| (TRACESTATE, state.clone().into())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(headers: &[(&str, &[u8])]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(owned),
        )
    }

    #[test]
    fn reads_traceparent_and_tracestate_and_writes_them_back() {
        let m = message(&[
            ("content-type", b"application/json"),
            ("Traceparent", b"00-aa-bb-01"),
            ("tracestate", b"vendor=1"),
        ]);
        let trace = TraceContext::of(&m).expect("a trace context");
        assert_eq!(trace.traceparent, "00-aa-bb-01");
        assert_eq!(trace.tracestate.as_deref(), Some("vendor=1"));
        let headers: Vec<_> = trace.headers().collect();
        assert_eq!(
            headers,
            [
                ("traceparent", Cow::from("00-aa-bb-01")),
                ("tracestate", Cow::from("vendor=1"))
            ]
        );
    }

    #[test]
    fn no_trace_without_a_usable_traceparent() {
        assert_eq!(TraceContext::of(&message(&[])), None);
        assert_eq!(TraceContext::of(&message(&[("tracestate", b"x=1")])), None);
        assert_eq!(TraceContext::of(&message(&[("traceparent", b"  ")])), None);
        assert_eq!(
            TraceContext::of(&message(&[("traceparent", &[0xff, 0xfe])])),
            None
        );
    }
}
