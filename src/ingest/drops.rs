//! Dropped series, followed round to round: which targets lost series this round, and
//! whether an outage (rounds in a row that drop series) just began, so that its
//! escalation mail goes out once per outage, not once per round. Pure: the watcher does
//! the I/O.

use std::collections::{BTreeSet, HashMap};

use tracing::warn;

use super::store::SeriesStore;
use crate::clock::rfc3339_ms;
use crate::config::NotificationsConfig;
use crate::engine::Setup;
use crate::journal::Journal;
use crate::journal::{EventKind, NewMail};
use crate::metrics::Metrics;
use crate::metrics::series::StoreTargetLabel;

/// What one round's drops mean.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DropStep {
    /// Targets that lost series this round, with how many, sorted.
    pub new: Vec<(String, u64)>,
    /// Whether this round began an outage (the previous round dropped nothing).
    pub outage_began: bool,
}

/// The drops seen so far.
#[derive(Debug, Default)]
pub struct DropWatch {
    seen: HashMap<String, u64>,
    in_outage: bool,
}

impl DropWatch {
    /// Compares the store's cumulative drops by target with the last round's.
    pub fn step(&mut self, dropped_by_target: &HashMap<String, u64>) -> DropStep {
        let mut new: Vec<(String, u64)> = dropped_by_target
            .iter()
            .filter_map(|(t, n)| {
                let before = self.seen.get(t).copied().unwrap_or(0);
                (*n > before).then(|| (t.clone(), n - before))
            })
            .collect();
        new.sort();
        self.seen.clone_from(dropped_by_target);
        let outage_began = !new.is_empty() && !self.in_outage;
        self.in_outage = !new.is_empty();
        DropStep { new, outage_began }
    }
}

/// The node id of a store target (`scrape/NODE`, `probe/METHOD/NODE`); none for the
/// cluster-wide target.
pub fn node_of(target: &str) -> Option<&str> {
    match target.split('/').collect::<Vec<_>>().as_slice() {
        ["scrape", node] | ["probe", _, node] => Some(node),
        _ => None,
    }
}

/// The escalation mail of an outage's first round: it names the brokers whose series were
/// dropped. None without `notifications.escalation` and `smtp`.
pub fn escalation_mail(
    n: &NotificationsConfig,
    cluster: &str,
    step: &DropStep,
    caps: (usize, usize),
    now: i64,
) -> Option<NewMail> {
    let (Some(esc), Some(_)) = (&n.escalation, &n.smtp) else {
        return None;
    };
    let nodes: BTreeSet<&str> = step.new.iter().filter_map(|(t, _)| node_of(t)).collect();
    let total: u64 = step.new.iter().map(|(_, n)| n).sum();
    let list: Vec<&str> = nodes.iter().copied().collect();
    let subject = crate::notify::message::one_line(&format!(
        "[kafka-healing] ESCALATION {cluster}: series of {} broker(s) dropped, the self-watch cannot see them whole",
        list.len()
    ));
    let text = format!(
        "At {} the in-memory series store was full (caps: {} exporter series, {} reserved health series) and refused {total} new series.\n\nBrokers whose series were dropped: {}\n\nRules whose conditions read these series may not fire for these brokers. Raise the cap, or narrow what the conditions read (kafka-healing scrape shows the kept set). This message is sent once per outage; /-/ready and kafka_healing_series_dropped_by_target_total show its state.\n",
        rfc3339_ms(now),
        caps.0,
        caps.1,
        list.join(", ")
    );
    Some(NewMail {
        created_ms: now,
        kind: EventKind::Escalation.as_str().into(),
        key: "escalation/series-dropped".into(),
        execution_id: None,
        recipients: esc.to_emails.clone(),
        subject,
        html: format!("<pre>{}</pre>", html_escape(&text)),
        text,
    })
}

/// One round's bookkeeping: counts the drops by target, tells `/-/ready` who is dropping,
/// and at an outage's start logs it and queues the escalation mail.
pub async fn follow(
    w: &mut DropWatch,
    store: &std::sync::Mutex<SeriesStore>,
    metrics: &Metrics,
    journal: &Journal,
    setup: &Setup,
    now: i64,
) {
    let (step, caps) = {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        metrics
            .store
            .health_in_memory
            .set(store.health_len() as i64);
        (w.step(store.dropped_by_target()), store.caps())
    };
    for (t, n) in &step.new {
        metrics
            .store
            .dropped_by_target
            .get_or_create(&StoreTargetLabel { target: t.clone() })
            .inc_by(*n);
    }
    metrics
        .store
        .set_dropping(step.new.iter().map(|(t, _)| t.clone()).collect());
    if !step.outage_began {
        return;
    }
    let nodes: BTreeSet<&str> = step.new.iter().filter_map(|(t, _)| node_of(t)).collect();
    let nodes: Vec<&str> = nodes.into_iter().collect();
    warn!(brokers = %nodes.join(","), exporter_cap = caps.0, reserved_cap = caps.1, "the in-memory series store is full: series of these brokers are dropped");
    let cfg = &setup.loaded.config;
    if let Some(mail) = escalation_mail(&cfg.notifications, &cfg.cluster.name, &step, caps, now)
        && let Err(e) = journal.enqueue_mails(vec![mail]).await
    {
        warn!(error = %e, "cannot queue the escalation about dropped series");
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn one_outage_begins_once_and_ends_on_a_clean_round() {
        let mut w = DropWatch::default();
        assert_eq!(w.step(&m(&[])), DropStep::default());
        let s = w.step(&m(&[("scrape/k1", 5), ("probe/socket/k2", 1)]));
        assert!(s.outage_began);
        assert_eq!(
            s.new,
            vec![("probe/socket/k2".into(), 1), ("scrape/k1".into(), 5)]
        );
        // Still dropping: same outage, only the increase counts.
        let s = w.step(&m(&[("scrape/k1", 8), ("probe/socket/k2", 1)]));
        assert!(!s.outage_began);
        assert_eq!(s.new, vec![("scrape/k1".into(), 3)]);
        // A clean round ends it; the next drop begins another.
        assert!(
            w.step(&m(&[("scrape/k1", 8), ("probe/socket/k2", 1)]))
                .new
                .is_empty()
        );
        assert!(
            w.step(&m(&[("scrape/k1", 9), ("probe/socket/k2", 1)]))
                .outage_began
        );
    }

    #[test]
    fn mail_names_the_brokers() {
        let mut n = NotificationsConfig::default();
        assert!(escalation_mail(&n, "c", &DropStep::default(), (1, 1), 0).is_none());
        n.escalation = Some(crate::config::EscalationConfig {
            to_emails: vec!["oncall@example.com".into()],
            undeliverable_after_seconds: 3600,
        });
        n.smtp = Some(
            serde_json::from_value(serde_json::json!({
                "host": "127.0.0.1", "from_email": "kh@example.com", "to_emails": ["ops@example.com"]
            }))
            .unwrap(),
        );
        let step = DropStep {
            new: vec![
                ("kafka/cluster".into(), 1),
                ("probe/socket/k2".into(), 1),
                ("scrape/k1".into(), 5),
                ("scrape/k2".into(), 5),
            ],
            outage_began: true,
        };
        let mail = escalation_mail(&n, "prod", &step, (10, 5), 0).unwrap();
        assert!(
            mail.subject.contains("series of 2 broker(s) dropped"),
            "{}",
            mail.subject
        );
        assert!(
            mail.text
                .contains("Brokers whose series were dropped: k1, k2\n"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("refused 12 new series"), "{}", mail.text);
        assert_eq!(mail.recipients, vec!["oncall@example.com".to_string()]);
        assert_eq!(mail.key, "escalation/series-dropped");
    }
}
