//! The `security:` section: how the service talks to the brokers over Kafka's own protocol
//! (TLS and SASL), in the seed's shape (`security.ssl.enabled`, `security.sasl.enabled`).
//!
//! The seed's configs write only `ssl.enabled` and `sasl.enabled`; the files, mechanism and
//! credentials are this service's. Every struct denies unknown keys; new keys get a default
//! so that older files stay valid.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::secret::Secret;
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// `security:`: TLS and SASL for the Kafka protocol client. Absent: plaintext, no SASL.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// TLS (Kafka's `SSL` and `SASL_SSL` listeners).
    pub ssl: SslConfig,
    /// SASL authentication (Kafka's `SASL_PLAINTEXT` and `SASL_SSL` listeners).
    pub sasl: SaslConfig,
}

/// `security.ssl`: TLS through rustls.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    /// Connect with TLS.
    pub enabled: bool,
    /// PEM file of the CA certificates that sign the brokers' certificates (required when
    /// enabled); relative to the config file. Only these are trusted, not the public roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for listeners with `ssl.client.auth=required`; with
    /// `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the brokers' certificates are checked against, instead of each broker's
    /// `host` (for brokers addressed by IP whose certificates name a host).
    pub server_name: Option<String>,
}

/// A SASL mechanism the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): the password in clear, so only over TLS in production.
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name of the mechanism (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl<'de> Deserialize<'de> for SaslMechanism {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(serde::de::Error::custom(format!(
                "unknown SASL mechanism `{s}`, expected one of: PLAIN SCRAM-SHA-256 SCRAM-SHA-512"
            ))),
        }
    }
}

/// `security.sasl`: SASL authentication (SaslHandshake + SaslAuthenticate).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    /// Authenticate with SASL.
    pub enabled: bool,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (any case); required when enabled.
    pub mechanism: Option<SaslMechanism>,
    /// The SASL user name; required when enabled.
    pub username: Option<String>,
    /// The password (write `${NAME}` or use `password_file` rather than the secret itself).
    pub password: Option<Secret>,
    /// File holding the password (trailing newline ignored); relative to the config file.
    pub password_file: Option<PathBuf>,
}

/// Checks the section: files present and parseable, credentials complete, at file:line.
pub(super) fn validate(s: &SecurityConfig, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);
    let ssl = &s.ssl;
    let seed_ssl = *ssl
        == SslConfig {
            enabled: true,
            ..SslConfig::default()
        };
    if seed_ssl {
        // The seed writes only `enabled`: accepted, said, and safe (no client, no checks).
        diags.warning(
            file,
            doc.line_of("security.ssl"),
            "security.ssl: ssl is enabled but `ca_file` is missing (the PEM CA that signs the \
             brokers' certificates): the Kafka client cannot connect, so runbooks that require \
             preconditions are refused until it is set",
        );
    } else if ssl.enabled {
        match &ssl.ca_file {
            None => err(
                "security.ssl",
                "ssl is enabled but `ca_file` is missing (the PEM CA that signs the brokers' \
                 certificates)"
                    .into(),
            ),
            Some(ca) => {
                if let Err(e) = crate::kafka::tls::read_certs(&resolve(base, ca)) {
                    err("security.ssl.ca_file", e.to_string());
                }
            }
        }
        match (&ssl.cert_file, &ssl.key_file) {
            (Some(c), Some(k)) => {
                if let Err(e) = crate::kafka::tls::read_certs(&resolve(base, c)) {
                    err("security.ssl.cert_file", e.to_string());
                }
                if let Err(e) = crate::kafka::tls::read_key(&resolve(base, k)) {
                    err("security.ssl.key_file", e.to_string());
                }
            }
            (Some(_), None) => err(
                "security.ssl.cert_file",
                "a client certificate needs `key_file`".into(),
            ),
            (None, Some(_)) => err(
                "security.ssl.key_file",
                "a client key needs `cert_file`".into(),
            ),
            (None, None) => {}
        }
        if let Some(name) = &ssl.server_name
            && tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            err(
                "security.ssl.server_name",
                format!("`{name}` is not a DNS name or IP address"),
            );
        }
    } else if ssl.ca_file.is_some() || ssl.cert_file.is_some() || ssl.key_file.is_some() {
        diags.warning(
            file,
            doc.line_of("security.ssl"),
            "security.ssl: files are set but `enabled` is false: the brokers are reached without TLS",
        );
    }

    let sasl = &s.sasl;
    let seed_sasl = *sasl
        == SaslConfig {
            enabled: true,
            ..SaslConfig::default()
        };
    if seed_sasl {
        diags.warning(
            file,
            doc.line_of("security.sasl"),
            "security.sasl: sasl is enabled but `mechanism`, `username` and the password are \
             missing: no SASL authentication is done; set mechanism (PLAIN, SCRAM-SHA-256 or \
             SCRAM-SHA-512), username and password (or password_file)",
        );
    } else if sasl.enabled {
        let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);
        if sasl.mechanism.is_none() {
            err(
                "security.sasl",
                "sasl is enabled but `mechanism` is missing (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                    .into(),
            );
        }
        if sasl.username.as_deref().is_none_or(|u| u.is_empty()) {
            err(
                "security.sasl",
                "sasl is enabled but `username` is missing or empty".into(),
            );
        }
        if sasl.password.as_ref().is_none_or(|p| p.expose().is_empty()) {
            err(
                "security.sasl",
                "sasl is enabled but the password is missing or empty (set `password` or \
                 `password_file`)"
                    .into(),
            );
        }
        if sasl.mechanism == Some(SaslMechanism::Plain) && !ssl.enabled {
            diags.warning(
                file,
                doc.line_of("security.sasl.mechanism"),
                "security.sasl.mechanism: PLAIN without ssl sends the password in clear",
            );
        }
    } else if sasl.username.is_some() || sasl.password.is_some() {
        diags.warning(
            file,
            doc.line_of("security.sasl"),
            "security.sasl: credentials are set but `enabled` is false: no SASL authentication",
        );
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{LoadError, load_text};

    const HEAD: &str = "cluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: 127.0.0.1, port: 9092 }\nmonitoring: { methods: [socket] }\nrules: []\n";

    /// Loads HEAD + `security` from a config in `dir`; the diagnostics as text.
    fn load(dir: &Path, security: &str, env: &[(&str, &str)]) -> Result<SecurityConfig, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match load_text(&format!("{HEAD}{security}"), &dir.join("c.yaml"), env) {
            Ok(l) => Ok(l.config.security),
            Err(LoadError::Invalid(d)) => Err(d.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn pem_files(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["kafka.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
    }

    #[test]
    fn the_seed_shape_and_the_full_section() {
        let d = tempfile::tempdir().unwrap();
        pem_files(d.path());
        // Absent: plaintext, no SASL.
        assert_eq!(load(d.path(), "", &[]).unwrap(), SecurityConfig::default());
        let s = load(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n    ca_file: ca.pem\n    cert_file: client.pem\n    key_file: client.key\n    server_name: kafka.test\n  sasl:\n    enabled: true\n    mechanism: scram-sha-512\n    username: healer\n    password_file: pw\n",
            &[],
        )
        .unwrap();
        assert!(s.ssl.enabled);
        assert_eq!(s.ssl.server_name.as_deref(), Some("kafka.test"));
        assert_eq!(s.sasl.mechanism, Some(SaslMechanism::ScramSha512));
        assert_eq!(s.sasl.username.as_deref(), Some("healer"));
        assert_eq!(s.sasl.password.as_ref().map(Secret::expose), Some("s3cret"));
        // The password from the environment; PLAIN in Kafka's spelling.
        let s = load(
            d.path(),
            "security:\n  ssl: { enabled: true, ca_file: ca.pem }\n  sasl: { enabled: true, mechanism: PLAIN, username: u, password: '${KPW}' }\n",
            &[("KPW", "from-env")],
        )
        .unwrap();
        assert_eq!(s.sasl.mechanism, Some(SaslMechanism::Plain));
        assert_eq!(
            s.sasl.password.as_ref().map(Secret::expose),
            Some("from-env")
        );
        // The options the client is made from.
        let o = crate::kafka::ClientOptions::from_config(
            &s,
            std::time::Duration::from_secs(3),
            d.path(),
        )
        .unwrap();
        assert!(o.tls.is_some());
        assert_eq!(o.sasl.as_ref().map(|c| c.username.as_str()), Some("u"));
    }

    /// Loads `security` and returns its warnings' text (the load must succeed).
    fn warnings(dir: &Path, security: &str) -> String {
        let path = dir.join("c.yaml");
        let text = format!("{HEAD}{security}");
        std::fs::write(&path, &text).unwrap();
        let l = load_text(&text, &path, Default::default()).unwrap();
        l.warnings.to_string()
    }

    #[test]
    fn the_seeds_bare_switches_are_warnings_that_say_what_to_set() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("c.yaml").display().to_string();
        let w = warnings(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n  sasl:\n    enabled: true\n",
        );
        assert!(
            w.contains(&format!("{c}:8: warning: security.ssl: ssl is enabled but `ca_file` is missing (the PEM CA that signs the brokers' certificates): the Kafka client cannot connect, so runbooks that require preconditions are refused until it is set")),
            "{w}"
        );
        assert!(
            w.contains(&format!("{c}:10: warning: security.sasl: sasl is enabled but `mechanism`, `username` and the password are missing: no SASL authentication is done; set mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), username and password (or password_file)")),
            "{w}"
        );
        // What the client is built from: no TLS client can be made, so none is (refusals).
        let s = load(d.path(), "security:\n  ssl:\n    enabled: true\n", &[]).unwrap();
        let o = crate::kafka::ClientOptions::from_config(
            &s,
            std::time::Duration::from_secs(3),
            d.path(),
        );
        assert!(o.is_err());
    }

    #[test]
    fn errors_at_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        pem_files(d.path());
        let c = d.path().join("c.yaml").display().to_string();
        // Lines: HEAD has 6, so `security:` is line 7.
        // Some of this service's keys but no CA: an error (the seed's bare shape is a warning).
        let e = load(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n    server_name: kafka.test\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!(
                "{c}:8: error: security.ssl: ssl is enabled but `ca_file` is missing"
            )),
            "{e}"
        );
        let e = load(
            d.path(),
            "security:\n  sasl:\n    enabled: true\n    mechanism: GSSAPI\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!("{c}:10: error: security.sasl.mechanism: unknown SASL mechanism `GSSAPI`, expected one of: PLAIN SCRAM-SHA-256 SCRAM-SHA-512")),
            "{e}"
        );
        let e = load(
            d.path(),
            "security:\n  sasl:\n    enabled: true\n    mechanism: SCRAM-SHA-256\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!(
                "{c}:8: error: security.sasl: sasl is enabled but `username` is missing"
            )),
            "{e}"
        );
        assert!(e.contains("the password is missing or empty"), "{e}");
        let e = load(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n    ca_file: nope.pem\n    cert_file: client.pem\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!("{c}:10: error: security.ssl.ca_file: cannot read")),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "{c}:11: error: security.ssl.cert_file: a client certificate needs `key_file`"
            )),
            "{e}"
        );
        let e = load(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n    ca_file: client.key\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("security.ssl.ca_file:") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        // Unknown keys, including the seed's assessment keys, are errors.
        let e = load(
            d.path(),
            "security:\n  ssl:\n    enabled: true\n    keystore: x.jks\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!(
                "{c}:10: error: security.ssl.keystore: unknown field `keystore`"
            )),
            "{e}"
        );
        let e = load(d.path(), "security:\n  rbac_required: true\n", &[]).unwrap_err();
        assert!(e.contains("unknown field `rbac_required`"), "{e}");
        let e = load(
            d.path(),
            "security:\n  sasl: { enabled: true, mechanism: PLAIN, username: u, password: p, password_file: pw }\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains(
                "security.sasl.password_file: set either the value or the `_file` variant, not both"
            ),
            "{e}"
        );
    }
}
