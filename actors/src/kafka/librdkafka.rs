//! What this build of librdkafka is — its version and `builtin.features` — and whether it can use
//! the `[kafka.properties]` of a configuration, checked before any client connects: an unknown
//! property, a value it refuses, or a feature it was built without (`sasl.mechanisms = "GSSAPI"`)
//! is a configuration error, with no secret in its message.

use std::fmt;

use coordinator_core::config::{ConfigError, ConfigErrors, KafkaConfig, ENV_PREFIX};
use coordinator_core::redact::Redactor;
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaType;

use crate::kafka::{consumer_config, daemon_producer_config};

/// The librdkafka linked into this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Its version, e.g. "2.12.1".
    pub version: String,
    /// Its `builtin.features`, e.g. "gzip,snappy,ssl,sasl,…,zstd".
    pub features: String,
}

impl Build {
    /// True when `feature` (e.g. "ssl", "sasl_scram", "zstd") was built in.
    pub fn has(&self, feature: &str) -> bool {
        self.features.split(',').any(|f| f == feature)
    }
}

impl fmt::Display for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "librdkafka {} ({})", self.version, self.features)
    }
}

/// The version and features of the linked librdkafka.
pub fn build() -> Build {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_else(|e| format!("unknown: {e}"));
    Build { version, features }
}

/// Checks that librdkafka accepts `kafka.properties`: each property on its own (so every bad
/// one is reported), then all of them together in the daemon's producer and consumer settings,
/// which is where a missing feature, a missing credential or an unreadable CA file shows. The
/// clients made for this have no broker and never connect. Messages are redacted; a property
/// set by one of the variables `env` (the process environment) names it.
pub fn check_properties(
    kafka: &KafkaConfig,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigErrors> {
    let redactor = Redactor::for_kafka(kafka);
    let variables: Vec<String> = env.into_iter().map(|(name, _)| name).collect();
    let mut errors = Vec::new();
    for (key, value) in &kafka.properties {
        let mut one = ClientConfig::new();
        one.set(key, value);
        if let Err(e) = one.create_native_config() {
            let mut message = refusal(&e, &redactor);
            if let Some(variable) = variables.iter().find(|v| sets_property(v, key)) {
                message.push_str(&format!(" (set by {variable})"));
            }
            errors.push(ConfigError::Invalid {
                key: format!("kafka.properties.\"{key}\""),
                message,
            });
        }
    }
    if errors.is_empty() {
        let clients = [
            (
                RDKafkaType::RD_KAFKA_PRODUCER,
                daemon_producer_config(kafka, ""),
            ),
            (RDKafkaType::RD_KAFKA_CONSUMER, consumer_config(kafka, "")),
        ];
        for (kind, mut config) in clients {
            config.remove("bootstrap.servers");
            let created = config
                .create_native_config()
                .and_then(|native| Client::new(&config, native, kind, DefaultClientContext));
            if let Err(e) = created {
                let message = format!(
                    "librdkafka {} cannot make a client with these properties: {}",
                    rdkafka::util::get_rdkafka_version().1,
                    refusal(&e, &redactor)
                );
                let error = ConfigError::Invalid {
                    key: "kafka.properties".to_owned(),
                    message,
                };
                if !errors.contains(&error) {
                    errors.push(error);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// True when the environment variable `name` sets `kafka.properties.<key>` (names are
/// lower-cased after the prefix, as the config loader does).
fn sets_property(name: &str, key: &str) -> bool {
    name.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        path.len() == 3 && path[0] == "kafka" && path[1] == "properties" && path[2] == *key
    })
}

/// librdkafka's reason, redacted. Not `KafkaError`'s Display: for a config error it appends the
/// value, which may be a secret under a misspelt key.
fn refusal(error: &KafkaError, redactor: &Redactor) -> String {
    let reason = match error {
        KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        KafkaError::ClientCreation(reason) => reason.clone(),
        KafkaError::Nul(_) => "must not contain a NUL character".to_owned(),
        other => other.to_string(),
    };
    redactor.redact(&reason).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(properties: &[(&str, &str)]) -> KafkaConfig {
        let mut k = KafkaConfig {
            bootstrap_servers: Some("127.0.0.1:9".to_owned()),
            ..KafkaConfig::default()
        };
        for (key, value) in properties {
            k.properties.insert((*key).into(), (*value).into());
        }
        k
    }

    fn errors(properties: &[(&str, &str)]) -> String {
        check_properties(&kafka(properties), Vec::new())
            .expect_err("these properties should be refused")
            .to_string()
    }

    #[test]
    fn this_build_has_tls_sasl_and_every_codec() {
        let build = build();
        for feature in [
            "ssl",
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
            assert!(build.has(feature), "{feature} missing from {build}");
        }
    }

    #[test]
    fn the_readmes_sasl_ssl_properties_are_accepted() {
        let ca = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(ca.path(), TEST_CA).expect("write CA");
        let ca = ca.path().to_str().expect("utf-8 path");
        for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
            let k = kafka(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "execution-coordinator"),
                ("sasl.password", "hunter2"),
                ("ssl.ca.location", ca),
                ("compression.type", "zstd"),
            ]);
            assert_eq!(check_properties(&k, Vec::new()), Ok(()), "{mechanism}");
        }
    }

    #[test]
    fn unknown_names_and_bad_values_are_each_reported() {
        let text = errors(&[
            ("no.such.property", "1"),
            ("security.protocol", "SASL_TLS"),
            ("compression.type", "brotli"),
        ]);
        assert!(
            text.contains("kafka.properties.\"no.such.property\""),
            "{text}"
        );
        assert!(
            text.contains("kafka.properties.\"security.protocol\""),
            "{text}"
        );
        assert!(
            text.contains("kafka.properties.\"compression.type\""),
            "{text}"
        );
    }

    #[test]
    fn a_property_from_the_environment_names_its_variable() {
        let variable = "EXECUTION_COORDINATOR__KAFKA__PROPERTIES__SASL.PASWORD";
        let env = vec![(variable.to_owned(), "hunter2".to_owned())];
        let text = check_properties(&kafka(&[("sasl.pasword", "hunter2")]), env)
            .expect_err("a misspelt property")
            .to_string();
        assert!(text.contains(&format!("(set by {variable})")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_mechanism_this_build_lacks_is_refused() {
        let text = errors(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "GSSAPI"),
        ]);
        assert!(text.contains("kafka.properties:"), "{text}");
        assert!(text.contains("GSSAPI"), "{text}");
    }

    #[test]
    fn a_missing_password_and_an_unreadable_ca_are_refused() {
        let text = errors(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "execution-coordinator"),
        ]);
        assert!(text.contains("sasl.password"), "{text}");
        let text = errors(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ]);
        assert!(text.contains("ssl.ca.location"), "{text}");
    }

    #[test]
    fn refusals_never_quote_a_secret() {
        // A value librdkafka quotes back, under a secret key…
        let text = errors(&[("ssl.key.password", "sslkeySECRET-99"), ("acks.x", "1")]);
        assert!(!text.contains("sslkeySECRET-99"), "{text}");
        // …and under a key it does not know, whose value it does not quote.
        let text = errors(&[("sasl.pasword", "hunter2")]);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.pasword"), "{text}");
        let text = errors(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "hunter2"),
            ("ssl.key.location", "/nonexistent/key.pem"),
            ("ssl.key.password", "sslkeySECRET-99"),
        ]);
        assert!(
            !text.contains("hunter2") && !text.contains("sslkeySECRET-99"),
            "{text}"
        );
    }

    /// A self-signed CA certificate (P-256), only for librdkafka to load.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBsTCCAVegAwIBAgIUVoVWUBg4OsujBXZIE6vKNJlTK04wCgYIKoZIzj0EAwIw
LTErMCkGA1UEAwwiZXhlY3V0aW9uLWNvb3JkaW5hdG9yIHVuaXQtdGVzdCBDQTAg
Fw0yNjEyMDEyMTIzNTRaGA8yMTI2MTEwNzIxMjM1NFowLTErMCkGA1UEAwwiZXhl
Y3V0aW9uLWNvb3JkaW5hdG9yIHVuaXQtdGVzdCBDQTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABLu0zULxESTzha7vUUuSsbrQC5LBQqQ925/0olIJ1z3nO/kS2iOT
J0bERKzwaJztufiAukBZ/USuy2im58GgA5ajUzBRMB0GA1UdDgQWBBRG5MG2jLmi
dCMccd/xyAHbxQFk3zAfBgNVHSMEGDAWgBRG5MG2jLmidCMccd/xyAHbxQFk3zAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCICMVBqRMGu16eBd7CFkR
TxIhmZaCq1jqqRJtU6C4q1bTAiEAkph1URyKcZsLf4+SJdJWDSSbPYy0GRZbx8uC
SbXg5cs=
-----END CERTIFICATE-----
";
}
