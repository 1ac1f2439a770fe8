//! What a reference pipe writes per message it consumes.
//!
//! - [`Shape::OneToOne`]: one message per input, the input's key and bytes, to the commands
//!   topic — the plainest consume → produce pipe.
//! - [`Shape::Equivalent`]: the daemon's own traffic per request, without its work. Per
//!   `execution_requested` it writes an `execution_accepted` (marked with the daemon's origin
//!   header, so that in the `shared` layout, where it comes back on the input topic, it is
//!   skipped by header as the daemon skips its own), a `create_pod_command` and the state
//!   records (one `allocated` under exactly-once, where the daemon coalesces them per
//!   transaction; `queued` and `allocated` at least once). Sizes are those the daemon wrote
//!   for the bench's request, as every throughput run reads back and reports per pipe: an
//!   `execution_accepted` of about 620 bytes, the command 156 bytes shorter than the request,
//!   an `allocated` record of 63 bytes (the padded form cannot be shorter than 76) and a
//!   `queued` record 100 bytes shorter than the request. Payloads are JSON objects with the
//!   execution id (the key) and padding, so the bench's collectors read them like the
//!   daemon's.

use std::borrow::Cow;

use execution_coordinator::state::outputs::{CONTENT_TYPE_HEADER, JSON, ORIGIN, ORIGIN_HEADER};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};

/// Which reference pipe runs (`E2E_PIPE_SHAPE`: `one-to-one` or `equivalent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One message in, the same bytes out.
    OneToOne,
    /// What the daemon consumes and writes per request.
    Equivalent,
}

/// The golden `execution_accepted`'s size.
const ACCEPTED_BYTES: usize = 620;
/// How much shorter the command is than its request.
const COMMAND_SHORTER_BY: usize = 156;
/// An `allocated` state record's size.
const ALLOCATED_BYTES: usize = 63;
/// How much shorter a `queued` state record is than its request.
const QUEUED_SHORTER_BY: usize = 100;

/// One message a pipe writes.
pub struct Output<'a> {
    /// Full topic name.
    pub topic: &'a str,
    /// Key: the input's.
    pub key: Option<&'a [u8]>,
    /// Bytes.
    pub payload: Cow<'a, [u8]>,
    /// Headers, if any.
    pub headers: Option<OwnedHeaders>,
}

/// The topics an equivalent pipe writes to, resolved once.
pub struct Topics {
    /// Where `create_pod_command` goes.
    pub commands: String,
    /// Where `execution_accepted` goes.
    pub accepted: String,
    /// The state topic.
    pub state: String,
}

impl Shape {
    /// From `E2E_PIPE_SHAPE` (default one-to-one).
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("E2E_PIPE_SHAPE").as_deref() {
            Err(_) | Ok("one-to-one") => Ok(Shape::OneToOne),
            Ok("equivalent") => Ok(Shape::Equivalent),
            Ok(other) => anyhow::bail!("E2E_PIPE_SHAPE: unknown shape {other:?}"),
        }
    }

    /// Its value of `E2E_PIPE_SHAPE`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::OneToOne => "one-to-one",
            Shape::Equivalent => "equivalent",
        }
    }

    /// What to write for input `m`; `coalesced` when state records are coalesced per
    /// transaction (exactly-once).
    pub fn outputs<'a>(
        self,
        m: &'a BorrowedMessage<'_>,
        topics: &'a Topics,
        coalesced: bool,
    ) -> Vec<Output<'a>> {
        let key = m.key();
        match self {
            Shape::OneToOne => vec![Output {
                topic: &topics.commands,
                key,
                payload: Cow::Borrowed(m.payload().unwrap_or_default()),
                headers: None,
            }],
            Shape::Equivalent => {
                if is_own(m) {
                    return Vec::new();
                }
                let id = key.map(String::from_utf8_lossy).unwrap_or_default();
                let request = m.payload().map_or(0, <[u8]>::len);
                let json = || OwnedHeaders::new().insert(header(CONTENT_TYPE_HEADER, JSON));
                let mut out = vec![Output {
                    topic: &topics.accepted,
                    key,
                    payload: padded(&id, "execution_accepted", ACCEPTED_BYTES),
                    headers: Some(json().insert(header(ORIGIN_HEADER, ORIGIN))),
                }];
                if !coalesced {
                    out.push(Output {
                        topic: &topics.state,
                        key,
                        payload: padded(&id, "queued", request.saturating_sub(QUEUED_SHORTER_BY)),
                        headers: Some(json()),
                    });
                }
                out.push(Output {
                    topic: &topics.commands,
                    key,
                    payload: padded(
                        &id,
                        "create_pod_command",
                        request.saturating_sub(COMMAND_SHORTER_BY),
                    ),
                    headers: Some(json()),
                });
                out.push(Output {
                    topic: &topics.state,
                    key,
                    payload: padded(&id, "allocated", ALLOCATED_BYTES),
                    headers: Some(json()),
                });
                out
            }
        }
    }
}

/// Whether `m` is one the daemon wrote itself (its origin header), as the daemon tells.
fn is_own(m: &BorrowedMessage<'_>) -> bool {
    m.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|h| h.key == ORIGIN_HEADER && h.value == Some(ORIGIN.as_bytes()))
    })
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value.as_bytes()),
    }
}

/// `{"execution_id":…,"event_type":…,"pad":"…"}` of `len` bytes (or just longer, when the
/// fields alone are longer).
fn padded(id: &str, event_type: &str, len: usize) -> Cow<'static, [u8]> {
    let head = format!(r#"{{"execution_id":"{id}","event_type":"{event_type}","pad":""#);
    let pad = len.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(head.len() + pad + 2);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    Cow::Owned(out)
}
