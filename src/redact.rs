//! Scrubbing secrets out of text before it is logged or printed: the values of the secret
//! `[kafka.properties]` (see [`is_secret_property`]) wherever they occur, in whichever form a
//! message may quote them — librdkafka's errors quote property values, JSON logs escape them.

use std::borrow::Cow;
use std::fmt;

use crate::config::{is_secret_property, KafkaConfig, REDACTED};

/// The secret values of a configuration, to be cut out of any text with [`Redactor::redact`].
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form of every secret to look for, longest first.
    needles: Vec<String>,
}

/// Whether the value of property `key` is itself a secret to cut out: a secret property
/// ([`is_secret_property`]) but not a file location or `sasl.oauthbearer.method`.
pub fn holds_secret_value(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    is_secret_property(&key) && !key.ends_with(".location") && key != "sasl.oauthbearer.method"
}

/// Shorter lines of a multi-line secret (PEM armour, blank lines) are not secret on their own.
const MIN_SECRET_LINE: usize = 8;

impl Redactor {
    /// A redactor for the values of `kafka.properties` whose keys name a secret, except file
    /// locations (`ssl.key.location`) and `sasl.oauthbearer.method`: a path or the word
    /// "default" cut out of every line would hide what errors are about, and keeps no secret.
    pub fn for_kafka(kafka: &KafkaConfig) -> Self {
        Self::new(
            kafka
                .properties
                .iter()
                .filter(|(key, _)| holds_secret_value(key))
                .map(|(_, value)| value.as_str()),
        )
    }

    /// A redactor for `secrets`; empty ones are ignored.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets {
            // As configured, as librdkafka keeps it (left-trimmed), and as JSON and `{:?}`
            // escape it.
            for form in [secret, secret.trim()] {
                needles.push(form.to_owned());
                needles.push(escaped(&serde_json::to_string(form).unwrap_or_default()));
                needles.push(escaped(&format!("{form:?}")));
            }
            // A key or certificate spans lines; a message may quote one of them.
            if secret.trim().contains('\n') {
                needles.extend(
                    secret
                        .lines()
                        .map(str::trim)
                        .filter(|line| line.len() >= MIN_SECRET_LINE && !line.starts_with("-----"))
                        .map(str::to_owned),
                );
            }
        }
        needles.retain(|n| !n.is_empty());
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every occurrence of a secret replaced by `<redacted>`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // Spans found in the original text and merged, so overlapping secrets (one inside
        // another, or a secret inside the marker) are cut out whole.
        let mut spans: Vec<(usize, usize)> = self
            .needles
            .iter()
            .flat_map(|needle| {
                text.match_indices(needle.as_str())
                    .map(|(start, found)| (start, start + found.len()))
            })
            .collect();
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut current = spans[0];
        for &(start, end) in &spans[1..] {
            if start <= current.1 {
                current.1 = current.1.max(end);
            } else {
                out.push_str(&text[copied..current.0]);
                out.push_str(REDACTED);
                copied = current.1;
                current = (start, end);
            }
        }
        out.push_str(&text[copied..current.0]);
        out.push_str(REDACTED);
        out.push_str(&text[current.1..]);
        Cow::Owned(out)
    }
}

/// A quoted string without its quotes.
fn escaped(quoted: &str) -> String {
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted)
        .to_owned()
}

/// Never prints the secrets it holds.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("needles", &self.needles.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(properties: &[(&str, &str)]) -> KafkaConfig {
        let mut k = KafkaConfig::default();
        for (key, value) in properties {
            k.properties.insert((*key).into(), (*value).into());
        }
        k
    }

    #[test]
    fn the_issues_example_loses_its_secret() {
        let r = Redactor::for_kafka(&kafka(&[("ssl.key.password", "sslkeySECRET-99")]));
        let text = "Client config error: Configuration property \"ssl.key.password\" not \
                    supported in this build: OpenSSL not available at build time \
                    ssl.key.password sslkeySECRET-99";
        let redacted = r.redact(text);
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert!(
            redacted.ends_with("ssl.key.password <redacted>"),
            "{redacted}"
        );
    }

    #[test]
    fn only_secret_keys_are_redacted() {
        let r = Redactor::for_kafka(&kafka(&[
            ("sasl.username", "coordinator"),
            ("sasl.password", "hunter2"),
            ("sasl.oauthbearer.config", "principal=admin"),
            ("ssl.keystore.password", "ks-pass"),
            ("security.protocol", "SASL_SSL"),
            ("ssl.key.location", "/etc/kafka/client.key"),
            ("sasl.oauthbearer.method", "default"),
        ]));
        let text = "user coordinator hunter2 principal=admin ks-pass over SASL_SSL";
        assert_eq!(
            r.redact(text),
            "user coordinator <redacted> <redacted> <redacted> over SASL_SSL"
        );
        let text = "ssl.key.location failed: /etc/kafka/client.key; default method";
        assert_eq!(r.redact(text), text);
    }

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        let r = Redactor::for_kafka(&kafka(&[("sasl.password", "hunter2")]));
        assert!(matches!(
            r.redact("nothing here"),
            Cow::Borrowed("nothing here")
        ));
        let none = Redactor::for_kafka(&kafka(&[("sasl.password", "")]));
        assert!(none.is_empty());
        assert_eq!(none.redact("sasl.password="), "sasl.password=");
    }

    #[test]
    fn every_occurrence_and_escaped_forms_are_redacted() {
        let secret = "pa\"ss\\wörd\t1";
        let r = Redactor::new([secret]);
        let json = serde_json::json!({ "error": format!("bad {secret} and {secret}") }).to_string();
        let debug = format!("{:?}", format!("x{secret}y"));
        for text in [json.as_str(), debug.as_str(), &format!("{secret}{secret}")] {
            let redacted = r.redact(text);
            assert!(
                !redacted.contains("ss\\wö") && !redacted.contains("ss\\\\wö"),
                "{redacted}"
            );
            assert!(redacted.contains(REDACTED), "{redacted}");
        }
        assert_eq!(r.redact(&format!("{secret}{secret}")), REDACTED);
    }

    #[test]
    fn overlapping_secrets_and_secrets_inside_the_marker_are_cut_out_whole() {
        let r = Redactor::new(["abcdef", "cdefgh", "dact"]);
        assert_eq!(r.redact("xabcdefghy"), "x<redacted>y");
        // The marker itself contains "dact": what is put in is not searched again.
        assert_eq!(r.redact("dact dact"), "<redacted> <redacted>");
    }

    #[test]
    fn lines_of_a_multi_line_secret_are_redacted_alone() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\nCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
        let r = Redactor::for_kafka(&kafka(&[("ssl.key.pem", pem)]));
        let redacted = r.redact("could not parse key near CCqGSM49AwEHBG0wawIBAQQg: bad");
        assert_eq!(redacted, "could not parse key near <redacted>: bad");
        assert_eq!(
            r.redact("-----BEGIN PRIVATE KEY-----"),
            "-----BEGIN PRIVATE KEY-----"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let r = Redactor::new(["hunter2"]);
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
