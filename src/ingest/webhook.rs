//! Alertmanager's webhook body (version 4).
//!
//! Every field Alertmanager sends is modelled; fields we do not know (`notification_reason`,
//! `routeLabels` in newer releases) are tolerated. Decisions are taken per alert: the group's
//! top-level `status` stays `firing` while an alert inside it is `resolved`.

use serde::{Deserialize, Serialize};

pub use crate::alert::{Alert, AlertStatus, LabelSet, fingerprint};

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
    /// Fingerprints sent that were not the labels' own (replaced by them), as sent: the
    /// identity of an alert comes from its labels, never from the payload.
    #[serde(skip)]
    pub forged_fingerprints: Vec<String>,
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

/// Parses and checks a webhook body. Every alert's fingerprint is computed from its labels;
/// a different one in the payload is kept aside in `forged_fingerprints`.
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
        let own = fingerprint(&a.labels);
        if !a.fingerprint.is_empty() && a.fingerprint != own {
            p.forged_fingerprints
                .push(std::mem::take(&mut a.fingerprint));
        }
        a.fingerprint = own;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(fingerprint: Option<&str>) -> String {
        let fp = fingerprint.map_or(String::new(), |f| format!(r#","fingerprint":{f:?}"#));
        format!(
            r#"{{"version":"4","alerts":[{{"status":"firing","labels":{{"alertname":"A","node_id":"kafka-1"}}{fp}}}]}}"#
        )
    }

    #[test]
    fn identity_comes_from_the_labels() {
        let own = fingerprint(
            &[("alertname", "A"), ("node_id", "kafka-1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        for (sent, forged) in [
            (None, vec![]),
            (Some(own.as_str()), vec![]),
            (
                Some("0000000000000000"),
                vec!["0000000000000000".to_string()],
            ),
            (Some("x\ny"), vec!["x\ny".to_string()]),
        ] {
            let p = parse_webhook(body(sent).as_bytes()).expect("parses");
            assert_eq!(p.alerts[0].fingerprint, own, "sent {sent:?}");
            assert_eq!(p.forged_fingerprints, forged, "sent {sent:?}");
        }
    }
}
