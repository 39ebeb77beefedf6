//! The life of a condition's alerts: a series returned by the expression is pending, fires
//! once it has held for `for`, and resolves when the expression stops returning it. Each
//! raised alert has Alertmanager's shape (and fingerprint), so it takes the same path
//! through the engine as a webhook alert.

use std::collections::{BTreeMap, HashMap};

use super::{Condition, Rule};
use crate::clock::rfc3339_ms;
use crate::ingest::{Alert, AlertStatus, fingerprint};

/// How often a still-firing alert is raised again (as Alertmanager repeats
/// notifications), so that cooldowns and retries see it.
pub const REPEAT_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone)]
struct Active {
    labels: BTreeMap<String, String>,
    value: f64,
    since_ms: i64,
    firing: bool,
    last_sent_ms: i64,
}

/// Pending and firing alerts of every condition rule.
#[derive(Debug, Default)]
pub struct ConditionStates {
    active: HashMap<(String, String), Active>,
}

/// The labels of the alert raised for one result series.
pub fn alert_labels(c: &Condition, series: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = series
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &c.labels {
        l.insert(k.clone(), v.clone());
    }
    l.insert("alertname".into(), c.alertname.clone());
    l
}

fn make_alert(c: &Condition, a: &Active, status: AlertStatus, now: i64) -> Alert {
    let mut annotations = c.annotations.clone();
    annotations.insert("value".into(), a.value.to_string());
    annotations.insert("expr".into(), c.expr.clone());
    Alert {
        status,
        fingerprint: fingerprint(&a.labels),
        labels: a.labels.clone(),
        annotations,
        starts_at: rfc3339_ms(a.since_ms),
        ends_at: match status {
            AlertStatus::Resolved => rfc3339_ms(now),
            AlertStatus::Firing => "0001-01-01T00:00:00Z".into(),
        },
        generator_url: String::new(),
        external_url: String::new(),
    }
}

impl ConditionStates {
    /// Feeds one evaluation of `rule`'s condition at `now` (the series it returned, with
    /// their values) and returns the alerts to raise: newly firing, repeats of firing ones
    /// every [`REPEAT_MS`], and resolved ones.
    pub fn step(
        &mut self,
        rule: &Rule,
        result: &[(BTreeMap<String, String>, f64)],
        now: i64,
    ) -> Vec<Alert> {
        let Some(c) = &rule.condition else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (series, value) in result {
            let labels = alert_labels(c, series);
            let key = (rule.name.clone(), fingerprint(&labels));
            seen.push(key.1.clone());
            let a = self.active.entry(key).or_insert_with(|| Active {
                labels,
                value: *value,
                since_ms: now,
                firing: false,
                last_sent_ms: 0,
            });
            a.value = *value;
            let due = if a.firing {
                now - a.last_sent_ms >= REPEAT_MS
            } else {
                now - a.since_ms >= c.for_ms
            };
            if due {
                a.firing = true;
                a.last_sent_ms = now;
                out.push(make_alert(c, a, AlertStatus::Firing, now));
            }
        }
        let gone: Vec<(String, String)> = self
            .active
            .keys()
            .filter(|(r, fp)| *r == rule.name && !seen.contains(fp))
            .cloned()
            .collect();
        for key in gone {
            if let Some(a) = self.active.remove(&key) {
                // A pending alert that never fired just goes away.
                if a.firing {
                    out.push(make_alert(c, &a, AlertStatus::Resolved, now));
                }
            }
        }
        out
    }

    /// Forgets the states of rules that no longer exist (after a reload).
    pub fn retain_rules(&mut self, names: &[&str]) {
        self.active.retain(|(r, _), _| names.contains(&r.as_str()));
    }

    /// Pending and firing counts, for `scrape` output and logs.
    pub fn counts(&self, rule: &str) -> (usize, usize) {
        let mine = self.active.iter().filter(|((r, _), _)| r == rule);
        let firing = mine.clone().filter(|(_, a)| a.firing).count();
        (mine.count() - firing, firing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_ms: i64) -> Rule {
        Rule {
            name: "urp".into(),
            description: String::new(),
            matchers: Vec::new(),
            condition: Some(Condition {
                expr: "kafka_urp > 0".into(),
                for_ms,
                alertname: "KafkaUnderReplicatedPartitions".into(),
                labels: [("severity".to_string(), "warning".to_string())].into(),
                annotations: BTreeMap::new(),
            }),
            runbook: "rb".into(),
            params: Vec::new(),
            target_label: None,
            needs_target: false,
            cooldown_seconds: None,
            max_attempts: None,
            dry_run: None,
            notify: Vec::new(),
            guard: true,
            broker_down: false,
            file: Default::default(),
            line: None,
        }
    }

    fn series(node: &str) -> (BTreeMap<String, String>, f64) {
        (
            [
                ("__name__".to_string(), "kafka_urp".to_string()),
                ("node_id".to_string(), node.to_string()),
            ]
            .into(),
            3.0,
        )
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let (r, mut st) = (rule(30_000), ConditionStates::default());
        assert!(st.step(&r, &[series("kafka-1")], 0).is_empty(), "pending");
        assert_eq!(st.counts("urp"), (1, 0));
        assert!(
            st.step(&r, &[series("kafka-1")], 29_999).is_empty(),
            "still pending"
        );
        let fired = st.step(&r, &[series("kafka-1")], 30_000);
        assert_eq!(fired.len(), 1);
        let a = &fired[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.labels["alertname"], "KafkaUnderReplicatedPartitions");
        assert_eq!(a.labels["severity"], "warning");
        assert_eq!(a.labels["node_id"], "kafka-1");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["value"], "3");
        assert_eq!(
            a.fingerprint,
            fingerprint(&a.labels),
            "Alertmanager's fingerprint"
        );
        assert_eq!(a.starts_at, "1970-01-01T00:00:00Z");
        assert!(
            st.step(&r, &[series("kafka-1")], 60_000).is_empty(),
            "no repeat before REPEAT_MS"
        );
        assert_eq!(
            st.step(&r, &[series("kafka-1")], 30_000 + REPEAT_MS).len(),
            1,
            "repeat"
        );
        let resolved = st.step(&r, &[], 400_000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].status, AlertStatus::Resolved);
        assert_eq!(resolved[0].fingerprint, a.fingerprint);
        assert_eq!(st.counts("urp"), (0, 0));
    }

    #[test]
    fn pending_that_clears_never_fires_and_series_are_independent() {
        let (r, mut st) = (rule(30_000), ConditionStates::default());
        st.step(&r, &[series("kafka-1"), series("kafka-2")], 0);
        assert!(
            st.step(&r, &[series("kafka-2")], 10_000).is_empty(),
            "kafka-1 cleared while pending: nothing"
        );
        let fired = st.step(&r, &[series("kafka-2"), series("kafka-1")], 30_000);
        assert_eq!(
            fired.len(),
            1,
            "kafka-1 cleared at 10 s and starts pending again at 30 s"
        );
        assert_eq!(fired[0].labels["node_id"], "kafka-2");
        let zero = rule(0);
        let mut fresh = ConditionStates::default();
        assert_eq!(
            fresh.step(&zero, &[series("kafka-3")], 0).len(),
            1,
            "for: 0 fires at once"
        );
    }
}
