//! One alert, as Alertmanager sends it and as the self-watch raises it, and its identity
//! (Alertmanager's fingerprint of the labels).
//!
//! Every label and annotation is untrusted input: it reaches templates, argv elements,
//! journal rows and emails only through code that treats it as data.

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

impl Alert {
    /// A firing alert with `labels` and nothing else: no annotations, times, fingerprint or
    /// links.
    pub fn firing(labels: LabelSet) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels,
            annotations: LabelSet::default(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: String::new(),
            external_url: String::new(),
        }
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
