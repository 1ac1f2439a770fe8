//! Where log lines go: each line with every secret of the configuration cut out first, whoever
//! wrote it (the actors, rdkafka, librdkafka's own log and error callbacks).

use std::io::{self, Write};
use std::sync::Arc;

use coordinator_core::redact::Redactor;
use tracing_subscriber::fmt::MakeWriter;

/// A `tracing_subscriber` writer around `M` (e.g. `std::io::stdout`): each event's text is
/// gathered whole, redacted, then written to `M`.
#[derive(Debug, Clone)]
pub struct Redacting<M> {
    redactor: Arc<Redactor>,
    inner: M,
}

impl<M> Redacting<M> {
    /// Writes to `inner` what `redactor` leaves of each line.
    pub fn new(redactor: Arc<Redactor>, inner: M) -> Self {
        Self { redactor, inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactedLine<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            redactor: &self.redactor,
            buffer: Vec::new(),
            out: self.inner.make_writer(),
        }
    }
}

/// One event's text, kept until the event is done with it (a secret may straddle two writes),
/// then written redacted.
pub struct RedactedLine<'a, W: Write> {
    redactor: &'a Redactor,
    buffer: Vec<u8>,
    out: W,
}

impl<W: Write> Write for RedactedLine<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedLine<'_, W> {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        // Nowhere to report a failure to write the log.
        let _ = self.out.write_all(self.redactor.redact(&text).as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Collects what is written, for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn log_lines_text_and_json_lose_every_secret() {
        let secret = "hunter\"2";
        let captured = Captured::default();
        let writer = Redacting::new(Arc::new(Redactor::new([secret])), captured.clone());
        for json in [false, true] {
            let builder = tracing_subscriber::fmt()
                .with_writer(writer.clone())
                .with_ansi(false);
            let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
                Box::new(builder.json().finish())
            } else {
                Box::new(builder.finish())
            };
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(error = %format!("auth failed for {secret}"), "Coordinator failed.");
                tracing::warn!("librdkafka: FAIL password {secret} refused");
            });
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains("hunter"), "{text}");
        assert_eq!(text.matches("<redacted>").count(), 4, "{text}");
    }

    #[test]
    fn a_secret_split_across_writes_is_still_redacted() {
        let captured = Captured::default();
        let writer = Redacting::new(Arc::new(Redactor::new(["hunter2"])), captured.clone());
        {
            let mut line = writer.make_writer();
            line.write_all(b"password hun").unwrap();
            line.write_all(b"ter2 refused\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(captured.0.lock().unwrap().clone()).unwrap(),
            "password <redacted> refused\n"
        );
    }
}
