//! Alertmanager's silences, honoured by the self-watch: an Alertmanager silence stops
//! Alertmanager's own notifications, and with `alertmanager.url` configured it also stops
//! the alerts kafka-healing raises itself from acting.
//!
//! The active silences are read from Alertmanager's API v2 (`GET /api/v2/silences`, those
//! whose `status.state` is `active`) when a round raises a firing alert, and matched
//! against the alert's labels with the project's Alertmanager matchers (all of a
//! silence's matchers must match, regexes anchored; see [`crate::rules::matcher`]).
//!
//! When Alertmanager cannot be read, the alerts act as if unsilenced (fail-open), and the
//! log says so: the self-watch exists to heal while Alertmanager is down, and a pause
//! (`kafka-healing pause`) is the way to keep hands off a broker that does not depend on
//! Alertmanager.

use std::time::Duration;

use serde::Deserialize;

use crate::alert::LabelSet;
use crate::clock::parse_rfc3339_ms;
use crate::config::AlertmanagerConfig;
use crate::engine::why::Silenced;
use crate::rules::{MatchOp, Matcher};

/// Largest answer read (a busy Alertmanager keeps a few thousand silences, ~1 KB each).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest `createdBy` or `comment` kept, in characters (they come from whoever created
/// the silence).
const MAX_TEXT_CHARS: usize = 200;
/// Longest silence id kept (Alertmanager's are UUIDs, 36 characters).
const MAX_ID_CHARS: usize = 64;

/// An active silence: the words a skip names it with, and its matchers.
#[derive(Debug, Clone)]
pub struct ActiveSilence {
    /// What a skip it causes says.
    pub silenced: Silenced,
    matchers: Vec<Matcher>,
}

impl ActiveSilence {
    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Why the silences could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No answer (connection refused, timeout, …).
    #[error("no answer from {url}: {why}")]
    Request {
        /// The URL asked.
        url: String,
        /// What failed.
        why: String,
    },
    /// A non-2xx answer.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is larger than [`MAX_BODY_BYTES`].
    #[error("{url} answered more than {MAX_BODY_BYTES} bytes")]
    TooLarge {
        /// The URL asked.
        url: String,
    },
    /// The answer is not API v2's list of silences.
    #[error("{url} answered something that is not a list of silences: {why}")]
    Malformed {
        /// The URL asked.
        url: String,
        /// The parser's words.
        why: String,
    },
}

#[derive(Debug, Deserialize)]
struct ApiSilence {
    id: String,
    status: ApiStatus,
    matchers: Vec<ApiMatcher>,
    #[serde(default, rename = "createdBy")]
    created_by: String,
    #[serde(default)]
    comment: String,
    #[serde(default, rename = "endsAt")]
    ends_at: String,
}

#[derive(Debug, Deserialize)]
struct ApiStatus {
    state: String,
}

#[derive(Debug, Deserialize)]
struct ApiMatcher {
    name: String,
    value: String,
    #[serde(default, rename = "isRegex")]
    is_regex: bool,
    /// Alertmanager before 0.22 has no `isEqual`: every matcher was a positive one.
    #[serde(default = "yes", rename = "isEqual")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The active silences in an API v2 answer. A silence whose matchers do not compile, or
/// that has none, is left out (Alertmanager refuses both; it cannot match here either).
pub fn parse(url: &str, body: &[u8]) -> Result<Vec<ActiveSilence>, SilenceError> {
    let list: Vec<ApiSilence> =
        serde_json::from_slice(body).map_err(|e| SilenceError::Malformed {
            url: url.to_string(),
            why: e.to_string(),
        })?;
    let mut out = Vec::new();
    for s in list.into_iter().filter(|s| s.status.state == "active") {
        let matchers: Result<Vec<Matcher>, _> = s
            .matchers
            .iter()
            .map(|m| {
                let op = match (m.is_regex, m.is_equal) {
                    (false, true) => MatchOp::Equal,
                    (false, false) => MatchOp::NotEqual,
                    (true, true) => MatchOp::Regex,
                    (true, false) => MatchOp::NotRegex,
                };
                Matcher::from_parts(&m.name, op, &m.value)
            })
            .collect();
        match matchers {
            Ok(m) if !m.is_empty() => out.push(ActiveSilence {
                silenced: Silenced {
                    id: cut(&s.id, MAX_ID_CHARS).escape_debug().to_string(),
                    created_by: cut(&s.created_by, MAX_TEXT_CHARS),
                    comment: cut(&s.comment, MAX_TEXT_CHARS),
                    ends_ms: parse_rfc3339_ms(&s.ends_at),
                },
                matchers: m,
            }),
            Ok(_) => tracing::debug!(silence = ?s.id, "silence without matchers left out"),
            Err(e) => {
                tracing::debug!(silence = ?s.id, error = %e, "silence whose matchers do not compile left out")
            }
        }
    }
    Ok(out)
}

/// Reads the active silences from the configured Alertmanager.
pub async fn fetch(
    client: &reqwest::Client,
    cfg: &AlertmanagerConfig,
) -> Result<Vec<ActiveSilence>, SilenceError> {
    let url = cfg.silences_url();
    let timeout = Duration::from_secs(cfg.timeout_seconds);
    let request = |why: String| SilenceError::Request {
        url: url.clone(),
        why,
    };
    let resp = client
        .get(&url)
        .header("Accept", "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            request(if e.is_timeout() {
                format!("no answer within {timeout:?}")
            } else {
                super::scrape::error_chain(&e)
            })
        })?;
    if !resp.status().is_success() {
        return Err(SilenceError::Status {
            url,
            status: resp.status().as_u16(),
        });
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(SilenceError::TooLarge { url });
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| request(super::scrape::error_chain(&e)))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(SilenceError::TooLarge { url });
    }
    parse(&url, &body)
}

/// The silence that matches `labels`, of those that do the one ending last.
pub fn find<'a>(silences: &'a [ActiveSilence], labels: &LabelSet) -> Option<&'a ActiveSilence> {
    silences
        .iter()
        .filter(|s| s.matches(labels))
        .max_by_key(|s| s.silenced.ends_ms.unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alertmanager 0.25's answer shape (trimmed), with one silence in each state.
    const ANSWER: &str = r#"[
      {"id":"a1","status":{"state":"active"},"updatedAt":"2026-12-01T00:00:00Z",
       "comment":"kafka-2 upgrade","createdBy":"alice",
       "endsAt":"2026-12-01T00:30:00.000Z","startsAt":"2026-12-01T00:00:00.000Z",
       "matchers":[{"isEqual":true,"isRegex":false,"name":"alertname","value":"KafkaBrokerDown"},
                   {"isEqual":true,"isRegex":true,"name":"node_id","value":"kafka-(2|3)"}]},
      {"id":"e1","status":{"state":"expired"},"comment":"old","createdBy":"bob",
       "endsAt":"2026-11-01T00:00:00Z","startsAt":"2026-10-01T00:00:00Z",
       "matchers":[{"isEqual":true,"isRegex":false,"name":"alertname","value":"KafkaBrokerDown"}]},
      {"id":"p1","status":{"state":"pending"},"comment":"later","createdBy":"carol",
       "endsAt":"2027-01-01T00:00:00Z","startsAt":"2026-12-31T00:00:00Z",
       "matchers":[{"isEqual":true,"isRegex":false,"name":"alertname","value":"KafkaBrokerDown"}]},
      {"id":"n1","status":{"state":"active"},"comment":"not kafka-1","createdBy":"dave\nx",
       "endsAt":"2026-12-02T00:00:00Z","startsAt":"2026-12-01T00:00:00Z",
       "matchers":[{"isEqual":false,"isRegex":false,"name":"node_id","value":"kafka-1"},
                   {"isRegex":false,"name":"severity","value":"warning"}]},
      {"id":"b1","status":{"state":"active"},"comment":"bad regex","createdBy":"eve",
       "endsAt":"2026-12-02T00:00:00Z","startsAt":"2026-12-01T00:00:00Z",
       "matchers":[{"isEqual":true,"isRegex":true,"name":"node_id","value":"(unclosed"}]}
    ]"#;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_active_silences_with_valid_matchers_are_kept_and_all_matchers_must_match() {
        let s = parse("http://am/api/v2/silences", ANSWER.as_bytes()).expect("parses");
        let ids: Vec<&str> = s.iter().map(|s| s.silenced.id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "n1"]);
        assert_eq!(
            s[0].silenced,
            Silenced {
                id: "a1".into(),
                created_by: "alice".into(),
                comment: "kafka-2 upgrade".into(),
                ends_ms: Some(1_796_085_000_000),
            }
        );
        let down = |n: &str| {
            labels(&[
                ("alertname", "KafkaBrokerDown"),
                ("node_id", n),
                ("severity", "critical"),
            ])
        };
        assert_eq!(
            find(&s, &down("kafka-2")).map(|s| s.silenced.id.as_str()),
            Some("a1")
        );
        assert_eq!(
            find(&s, &down("kafka-3")).map(|s| s.silenced.id.as_str()),
            Some("a1")
        );
        // Anchored: kafka-22 is not kafka-(2|3).
        assert!(find(&s, &down("kafka-22")).is_none());
        assert!(find(&s, &down("kafka-1")).is_none());
        // isEqual false, and an absent isEqual meaning true.
        let warn = |n: &str| labels(&[("node_id", n), ("severity", "warning")]);
        assert_eq!(
            find(&s, &warn("kafka-4")).map(|s| s.silenced.id.as_str()),
            Some("n1")
        );
        assert!(find(&s, &warn("kafka-1")).is_none());
        assert_eq!(
            s[1].silenced.created_by, "dave\nx",
            "kept as text; shown escaped"
        );
    }

    #[test]
    fn what_is_not_a_list_of_silences_is_refused() {
        let e = parse("http://am/api/v2/silences", b"{\"status\":\"error\"}").unwrap_err();
        assert!(matches!(e, SilenceError::Malformed { .. }), "{e}");
        assert!(e.to_string().starts_with(
            "http://am/api/v2/silences answered something that is not a list of silences: invalid type: map"
        ), "{e}");
        // Untrusted texts are cut.
        let long = format!(
            r#"[{{"id":"{}","status":{{"state":"active"}},"createdBy":"{}","comment":"{}",
            "matchers":[{{"name":"a","value":"b","isRegex":false}}]}}]"#,
            "i".repeat(100),
            "c".repeat(300),
            "é".repeat(300)
        );
        let s = parse("u", long.as_bytes()).expect("parses");
        assert_eq!(s[0].silenced.id.len(), 64);
        assert_eq!(s[0].silenced.created_by.chars().count(), 200);
        assert_eq!(s[0].silenced.comment.chars().count(), 200);
        assert_eq!(s[0].silenced.ends_ms, None);
    }
}
