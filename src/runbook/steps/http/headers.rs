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

/// A header from its argv element, its secret read now. The error never holds the secret.
pub(crate) fn resolve(arg: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, spec): (String, HeaderSpec) = serde_json::from_str(arg)
        .map_err(|e| format!("`{}` is not a header: {e}", arg.escape_debug()))?;
    let problems = problems(&name, &spec);
    if let Some(p) = problems.into_iter().next() {
        return Err(p);
    }
    let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("`{name}`: {e}"))?;
    let (text, secret) = match spec {
        HeaderSpec::Literal(v) => (v, false),
        HeaderSpec::Secret(s) => (format!("{}{}", s.prefix, read_secret(&s)?), true),
    };
    let mut hv = HeaderValue::from_str(&text).map_err(|_| {
        format!("http header `{name}`: the value is not a valid header value (CR, LF, NUL or other control characters)")
    })?;
    hv.set_sensitive(secret);
    Ok((hn, hv))
}

fn read_secret(s: &SecretRef) -> Result<String, String> {
    let mut v = match (&s.secret_file, &s.secret_env) {
        (Some(p), None) => {
            let mut buf = String::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_SECRET + 1).read_to_string(&mut buf))
                .map_err(|e| format!("secret_file {}: {e}", p.display()))?;
            if buf.len() as u64 > MAX_SECRET {
                return Err(format!(
                    "secret_file {}: longer than {MAX_SECRET} bytes",
                    p.display()
                ));
            }
            buf
        }
        (None, Some(var)) => std::env::var(var).map_err(|e| format!("secret_env {var}: {e}"))?,
        _ => return Err("give exactly one of `secret_file` and `secret_env`".into()),
    };
    if v.ends_with('\n') {
        v.pop();
    }
    Ok(v)
}
