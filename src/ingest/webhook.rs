//! Alertmanager's webhook body (version 4).
//!
//! Every field Alertmanager sends is modelled; fields we do not know (`notification_reason`,
//! `routeLabels` in newer releases) are tolerated. Decisions are taken per alert: the group's
//! top-level `status` stays `firing` while an alert inside it is `resolved`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels or annotations.
pub type LabelSet = BTreeMap<String, String>;

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition stopped holding.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identifying labels (untrusted input).
    #[serde(default)]
    pub labels: LabelSet,
    /// Annotations (untrusted input).
    #[serde(default)]
    pub annotations: LabelSet,
    /// RFC 3339 start time.
    #[serde(default)]
    pub starts_at: String,
    /// RFC 3339 end time (`0001-01-01T00:00:00Z` while firing).
    #[serde(default)]
    pub ends_at: String,
    /// Link to the expression in Prometheus.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the labels; computed when absent.
    #[serde(default)]
    pub fingerprint: String,
    /// The sending Alertmanager's external URL (from the payload), for silence links.
    #[serde(skip)]
    pub external_url: String,
}

/// The webhook body.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload version; only `"4"` exists.
    pub version: String,
    /// Key of the notification group.
    #[serde(default)]
    pub group_key: String,
    /// Alerts dropped by the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Group status (do not decide on it: alerts carry their own).
    #[serde(default)]
    pub status: String,
    /// Receiver name.
    #[serde(default)]
    pub receiver: String,
    /// Labels the group is formed by.
    #[serde(default)]
    pub group_labels: LabelSet,
    /// Labels common to all alerts.
    #[serde(default)]
    pub common_labels: LabelSet,
    /// Annotations common to all alerts.
    #[serde(default)]
    pub common_annotations: LabelSet,
    /// Alertmanager's external URL (for silence links).
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// Why a body is not a usable webhook payload.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not JSON, or not the webhook's shape.
    #[error("malformed webhook body at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde found wrong.
        message: String,
    },
    /// A version this service does not speak.
    #[error("unsupported webhook version {0:?}: kafka-healing speaks Alertmanager's version \"4\"")]
    Version(String),
}

/// Parses and checks a webhook body; fills in missing fingerprints.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookPayload, WebhookError> {
    let mut p: WebhookPayload = serde_json::from_slice(body).map_err(|e| WebhookError::Json {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    if p.version != "4" {
        return Err(WebhookError::Version(p.version));
    }
    for a in &mut p.alerts {
        if a.fingerprint.is_empty() {
            a.fingerprint = fingerprint(&a.labels);
        }
        a.external_url.clone_from(&p.external_url);
    }
    Ok(p)
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Alertmanager's alert fingerprint: FNV-1a 64 over the sorted label names and values,
/// each followed by the 0xff separator byte, printed as 16 hex digits
/// (`prometheus/common/model.LabelSet.Fingerprint`).
pub fn fingerprint(labels: &LabelSet) -> String {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}
