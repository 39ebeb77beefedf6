//! `http` step headers: literal text, or a secret read when the request is sent from a file
//! or an environment variable of the service (the two ways the config takes secrets).
//! Never a template: alert data cannot set a header. Secret values are never journaled:
//! the argv names where the secret comes from, not its value.

use std::io::Read;
use std::path::PathBuf;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Headers a step may not set: they frame the request or choose where it goes.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];

/// Words in a header name that mark a credential: such a header takes a secret, so that
/// it is neither written in rule files nor journaled.
const CREDENTIAL: &[&str] = &["auth", "token", "key", "secret", "password", "cookie"];

/// Largest secret file read.
const MAX_SECRET: u64 = 16 * 1024;

/// A header's value as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HeaderSpec {
    /// Literal text (no templates).
    Literal(String),
    /// A secret, with an optional literal prefix (`Bearer `).
    Secret(SecretRef),
}

/// Where a header's secret comes from: exactly one of `secret_file` and `secret_env`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// A file holding the secret (one trailing newline is stripped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable of the service holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Literal text before the secret, e.g. `Bearer `.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// What is wrong with header `name: spec`, for `check`.
pub(crate) fn problems(name: &str, spec: &HeaderSpec) -> Vec<String> {
    let mut out = Vec::new();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        out.push(format!("http header `{name}` is not a header name"));
    } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        out.push(format!("http header `{name}` cannot be set by a step"));
    }
    let lower = name.to_ascii_lowercase();
    let literal = match spec {
        HeaderSpec::Literal(v) => {
            if CREDENTIAL.iter().any(|w| lower.contains(w)) {
                out.push(format!(
                    "http header `{name}` carries a credential: take it from a secret \
                     (`secret_file` or `secret_env`), never literal text"
                ));
            }
            v.as_str()
        }
        HeaderSpec::Secret(s) => {
            if s.secret_file.is_some() == s.secret_env.is_some() {
                out.push(format!(
                    "http header `{name}`: give exactly one of `secret_file` and `secret_env`"
                ));
            }
            s.prefix.as_str()
        }
    };
    if literal.contains("{{") {
        out.push(format!(
            "http header `{name}`: headers are never templates (alert data must not set \
             them); take a secret with `secret_file` or `secret_env`"
        ));
    } else if HeaderValue::from_str(literal).is_err() {
        out.push(format!(
            "http header `{name}`: `{}` is not a header value",
            literal.escape_debug()
        ));
    }
    out
}

/// The argv element that stands for header `name: spec`.
pub(crate) fn to_arg(name: &str, spec: &HeaderSpec) -> String {
    serde_json::to_string(&(name, spec)).unwrap_or_default()
}

/// Why a header cannot be sent. None holds the secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The argv element is not a `[name, source]` pair (the executor does not trust it).
    #[error("`{}` is not a header: {source}", arg.escape_debug())]
    NotAHeader {
        /// The argv element.
        arg: String,
        /// What the JSON parser says.
        source: serde_json::Error,
    },
    /// One of the checks `check` makes ([`problems`]), made again.
    #[error("{0}")]
    Refused(String),
    /// Not a header name.
    #[error("`{name}`: {source}")]
    Name {
        /// The name.
        name: String,
        /// What `http` says.
        source: reqwest::header::InvalidHeaderName,
    },
    /// The value holds CR, LF, NUL or another control character.
    #[error(
        "http header `{0}`: the value is not a valid header value (CR, LF, NUL or other control characters)"
    )]
    Value(String),
    /// The secret file cannot be read.
    #[error("secret_file {}: {source}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file is longer than `MAX_SECRET`.
    #[error("secret_file {}: longer than {} bytes", .0.display(), MAX_SECRET)]
    SecretTooLong(PathBuf),
    /// The secret's variable is unset or not Unicode.
    #[error("secret_env {var}: {source}")]
    SecretEnv {
        /// The variable.
        var: String,
        /// Why.
        source: std::env::VarError,
    },
    /// Both or neither of `secret_file` and `secret_env`.
    #[error("give exactly one of `secret_file` and `secret_env`")]
    SecretSource,
}

/// A header from its argv element, its secret read now. The error never holds the secret.
pub(crate) fn resolve(arg: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let (name, spec): (String, HeaderSpec) =
        serde_json::from_str(arg).map_err(|source| HeaderError::NotAHeader {
            arg: arg.to_string(),
            source,
        })?;
    let problems = problems(&name, &spec);
    if let Some(p) = problems.into_iter().next() {
        return Err(HeaderError::Refused(p));
    }
    let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|source| HeaderError::Name {
        name: name.clone(),
        source,
    })?;
    let (text, secret) = match spec {
        HeaderSpec::Literal(v) => (v, false),
        HeaderSpec::Secret(s) => (format!("{}{}", s.prefix, read_secret(&s)?), true),
    };
    let mut hv = HeaderValue::from_str(&text).map_err(|_| HeaderError::Value(name))?;
    hv.set_sensitive(secret);
    Ok((hn, hv))
}

fn read_secret(s: &SecretRef) -> Result<String, HeaderError> {
    let mut v = match (&s.secret_file, &s.secret_env) {
        (Some(p), None) => {
            let mut buf = String::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_SECRET + 1).read_to_string(&mut buf))
                .map_err(|source| HeaderError::SecretFile {
                    path: p.clone(),
                    source,
                })?;
            if buf.len() as u64 > MAX_SECRET {
                return Err(HeaderError::SecretTooLong(p.clone()));
            }
            buf
        }
        (None, Some(var)) => std::env::var(var).map_err(|source| HeaderError::SecretEnv {
            var: var.clone(),
            source,
        })?,
        _ => return Err(HeaderError::SecretSource),
    };
    if v.ends_with('\n') {
        v.pop();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(file: Option<PathBuf>, env: Option<&str>) -> String {
        let s = SecretRef {
            secret_file: file,
            secret_env: env.map(String::from),
            prefix: "Bearer ".into(),
        };
        to_arg("X-Api-Token", &HeaderSpec::Secret(s))
    }

    #[test]
    fn resolve_says_why_without_the_secret() {
        let var = "KAFKA_HEALING_TEST_UNSET_SECRET";
        let e = resolve(&secret(None, Some(var))).unwrap_err();
        assert!(matches!(&e, HeaderError::SecretEnv { var: v, .. } if v == var));
        assert_eq!(
            e.to_string(),
            format!("secret_env {var}: environment variable not found")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "x".repeat(16 * 1024 + 1)).unwrap();
        let e = resolve(&secret(Some(p.clone()), None)).unwrap_err();
        assert!(matches!(&e, HeaderError::SecretTooLong(q) if q == &p));
        assert_eq!(
            e.to_string(),
            format!("secret_file {}: longer than 16384 bytes", p.display())
        );
        std::fs::write(&p, "s3cret\n").unwrap();
        let (n, v) = resolve(&secret(Some(p), None)).unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("x-api-token", "Bearer s3cret")
        );
        assert!(v.is_sensitive());
        let e = resolve("nope").unwrap_err();
        assert!(matches!(e, HeaderError::NotAHeader { .. }));
        assert!(e.to_string().starts_with("`nope` is not a header: "), "{e}");
    }
}
