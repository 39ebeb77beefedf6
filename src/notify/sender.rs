//! Draining the outbox: due messages are delivered, a failure is retried with exponential
//! backoff, messages for the same (rule, target) within the rate-limit window are held
//! back and go out together, and a message stuck too long is escalated. Everything it
//! decides is in the journal, so a restart picks up where it stopped and nothing is sent
//! twice (a message is marked sent in the same step that follows the delivery).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::message::one_line;
use super::smtp::{Mailer, OutgoingMail};
use crate::clock::now_ms;
use crate::clock::rfc3339_ms;
use crate::engine::SetupCell;
use crate::journal::{Journal, Mail, NewMail};
use crate::metrics::Metrics;

/// The longest pause between two delivery attempts of a message.
const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;

/// Delivers the outbox until `cancel`.
pub struct Sender {
    journal: Journal,
    setup: SetupCell,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mailer: Option<(String, Mailer)>,
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Why earlier messages of a group were held: a failed delivery (an SMTP outage, a refusal)
/// when any of them has one, else the rate limit, the only other reason mail waits.
fn held_because(earlier: &[Mail]) -> String {
    match earlier.iter().rev().find_map(|m| m.last_error.as_deref()) {
        Some(e) => format!(
            "held while the SMTP server could not take them; last error: {}",
            one_line(e)
        ),
        None => "held back by the rate limit".into(),
    }
}

/// One message out of several held back for the same key: the newest in full, the others
/// as a summary, so nothing held back is lost.
pub fn fold(group: &[Mail]) -> OutgoingMail {
    let Some(main) = group.last() else {
        return OutgoingMail {
            to: Vec::new(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
        };
    };
    let mut to: Vec<String> = Vec::new();
    for m in group {
        for r in &m.mail.recipients {
            if !to.contains(r) {
                to.push(r.clone());
            }
        }
    }
    let earlier = &group[..group.len() - 1];
    if earlier.is_empty() {
        return OutgoingMail {
            to,
            subject: main.mail.subject.clone(),
            text: main.mail.text.clone(),
            html: main.mail.html.clone(),
        };
    }
    let lines: Vec<String> = earlier
        .iter()
        .map(|m| format!("{}  {}", rfc3339_ms(m.mail.created_ms), m.mail.subject))
        .collect();
    let why = held_because(earlier);
    let summary_text = format!(
        "Also since the last email ({} {why}):\n{}\n",
        earlier.len(),
        lines
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Before the signature: mail clients hide what follows `-- `.
    let text = match main.mail.text.rfind("\n-- \n") {
        Some(i) => format!(
            "{}\n\n{summary_text}{}",
            &main.mail.text[..i],
            &main.mail.text[i..]
        ),
        None => format!("{}\n\n{summary_text}", main.mail.text.trim_end()),
    };
    let items: String = lines
        .iter()
        .map(|l| format!("<li>{}</li>", escape_html(l)))
        .collect();
    let summary = format!(
        "<h3>Also since the last email ({} {})</h3><ul>{items}</ul>",
        earlier.len(),
        escape_html(&why)
    );
    let html = match main.mail.html.rfind("</body>") {
        Some(i) => format!("{}{summary}{}", &main.mail.html[..i], &main.mail.html[i..]),
        None => format!("{}{summary}", main.mail.html),
    };
    OutgoingMail {
        to,
        subject: one_line(&format!(
            "{} (+{} earlier)",
            main.mail.subject,
            earlier.len()
        )),
        text,
        html,
    }
}

impl Sender {
    /// A sender for the current `setup`, woken by `wake` whenever a message is queued.
    pub fn new(
        journal: Journal,
        setup: SetupCell,
        wake: Arc<tokio::sync::Notify>,
        metrics: Arc<Metrics>,
    ) -> Sender {
        Sender {
            journal,
            setup,
            metrics,
            wake,
            mailer: None,
        }
    }

    /// Runs until `cancel`: wakes when a message is queued, and every second for retries.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn mailer(&mut self) -> Option<&Mailer> {
        let setup = self.setup.current();
        let smtp = setup.loaded.config.notifications.smtp.as_ref()?;
        // Rebuilt when the configuration changed (reload). Debug hides the password, so
        // it is folded in as a hash.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&smtp.password.as_ref().map(|p| p.expose()), &mut h);
        let id = format!("{smtp:?}{}", std::hash::Hasher::finish(&h));
        if self.mailer.as_ref().is_none_or(|(old, _)| *old != id) {
            match Mailer::new(smtp, &setup.loaded.base_dir) {
                Ok(m) => self.mailer = Some((id, m)),
                Err(e) => {
                    warn!(error = %e, "cannot set up SMTP delivery; messages stay queued");
                    self.mailer = None;
                    return None;
                }
            }
        }
        self.mailer.as_ref().map(|(_, m)| m)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, crate::journal::JournalError> + Send + 'static,
    ) -> Option<T> {
        let j = self.journal.clone();
        match tokio::task::spawn_blocking(move || f(&j)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the outbox");
                None
            }
            Err(e) => {
                warn!(error = %e, "outbox read failed");
                None
            }
        }
    }

    /// Delivers what is due, once.
    pub async fn tick(&mut self) {
        let setup = self.setup.current();
        let n = setup.loaded.config.notifications.clone();
        let now = now_ms();
        if self.mailer().is_some() {
            let due = self
                .read(move |j| j.due_mails(now, 500))
                .await
                .unwrap_or_default();
            let mut groups: BTreeMap<String, Vec<Mail>> = BTreeMap::new();
            for m in due {
                groups.entry(m.mail.key.clone()).or_default().push(m);
            }
            let window = (n.rate_limit_seconds as i64).saturating_mul(1000);
            for (key, group) in groups {
                let ids: Vec<i64> = group.iter().map(|m| m.id).collect();
                let limited = group.iter().all(|m| m.mail.kind == "outcome") && window > 0;
                if limited {
                    let k = key.clone();
                    let last = self.read(move |j| j.last_mail_sent(&k)).await.flatten();
                    if let Some(t) = last.filter(|t| now < t + window) {
                        if let Err(e) = self.journal.mails_deferred(ids, t + window).await {
                            warn!(error = %e, "cannot defer a message");
                        }
                        continue;
                    }
                }
                self.deliver(&key, &group, &ids, &n).await;
            }
        }
        self.escalate_stuck(&n, now).await;
        if let Some((depth, oldest)) = self.read(|j| j.outbox_depth()).await {
            self.metrics.outbox_depth.set(depth as i64);
            self.metrics
                .outbox_oldest_age
                .set(oldest.map(|t| (now - t) / 1000).unwrap_or(0));
        }
    }

    async fn deliver(
        &mut self,
        key: &str,
        group: &[Mail],
        ids: &[i64],
        n: &crate::config::NotificationsConfig,
    ) {
        let Some(main) = group.last().map(|m| m.id) else {
            return;
        };
        let out = fold(group);
        let Some(mailer) = self.mailer() else { return };
        match mailer.send(&out).await {
            Ok(()) => {
                info!(key, messages = ids.len(), to = ?out.to, subject = %out.subject, "email sent");
                self.metrics.mails_sent.inc();
                if let Err(e) = self.journal.mails_sent(ids.to_vec(), main, now_ms()).await {
                    warn!(error = %e, "email sent but not marked sent: it may be sent again");
                }
            }
            Err(e) => {
                let attempts = group.iter().map(|m| m.attempts).max().unwrap_or(0) + 1;
                let first = (n.retry_initial_seconds.max(1) as i64).saturating_mul(1000);
                let delay = first
                    .saturating_mul(1i64 << (attempts - 1).min(20))
                    .min(MAX_BACKOFF_MS);
                warn!(key, attempts, error = %e, retry_in_ms = delay, "email not delivered; it stays queued");
                self.metrics.mail_failures.inc();
                if let Err(je) = self
                    .journal
                    .mails_failed(ids.to_vec(), e.to_string(), now_ms() + delay)
                    .await
                {
                    warn!(error = %je, "cannot record a failed delivery");
                }
            }
        }
    }

    /// Messages undeliverable for longer than allowed are escalated, once each.
    async fn escalate_stuck(&mut self, n: &crate::config::NotificationsConfig, now: i64) {
        let (Some(esc), Some(smtp)) = (&n.escalation, &n.smtp) else {
            return;
        };
        let limit = (esc.undeliverable_after_seconds as i64).saturating_mul(1000);
        let pending = self.read(|j| j.pending_mails()).await.unwrap_or_default();
        for m in pending {
            if m.escalated || m.mail.kind == "escalation" || now - m.mail.created_ms < limit {
                continue;
            }
            let err = m
                .last_error
                .clone()
                .unwrap_or_else(|| "not attempted yet".into());
            let subject = one_line(&format!(
                "[kafka-healing] ESCALATION email undeliverable for {} min: {}",
                (now - m.mail.created_ms) / 60_000,
                m.mail.subject
            ));
            let text = format!(
                "A message could not be delivered through {}:{} since {} ({} attempts).\n\nLast error: {err}\n\nIts subject: {}\nIts recipients: {}\n\nIt stays queued and will be retried.\n",
                smtp.host,
                smtp.port,
                rfc3339_ms(m.mail.created_ms),
                m.attempts,
                m.mail.subject,
                m.mail.recipients.join(", ")
            );
            let html = format!("<pre>{}</pre>", escape_html(&text));
            let mail = NewMail {
                created_ms: now,
                kind: crate::journal::EventKind::Escalation.as_str().into(),
                key: format!("escalation/undeliverable/{}", m.id),
                execution_id: m.mail.execution_id,
                recipients: esc.to_emails.clone(),
                subject,
                text,
                html,
            };
            warn!(
                message = m.id,
                "email undeliverable for too long: escalating"
            );
            if self.journal.enqueue_mails(vec![mail]).await.is_ok() {
                let _ = self.journal.mail_escalated(m.id).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(id: i64, subject: &str, last_error: Option<&str>) -> Mail {
        Mail {
            id,
            mail: NewMail {
                created_ms: 1_700_000_000_000 + id,
                kind: "outcome".into(),
                key: "broker-down/kafka-1".into(),
                execution_id: Some(id),
                recipients: vec!["oncall@example.com".into()],
                subject: subject.into(),
                text: format!("{subject}\n-- \nkafka-healing\n"),
                html: format!("<html><body>{subject}</body></html>"),
            },
            sent_ms: None,
            sent_with: None,
            attempts: u32::from(last_error.is_some()),
            next_attempt_ms: 0,
            last_error: last_error.map(String::from),
            escalated: false,
        }
    }

    #[test]
    fn mail_held_by_an_smtp_outage_says_so_with_the_error() {
        let err = "cannot connect to 127.0.0.1:2525: Connection refused (os error 111)";
        let out = fold(&[mail(1, "first", Some(err)), mail(2, "second", Some(err))]);
        assert_eq!(out.subject, "second (+1 earlier)");
        assert!(
            out.text.contains(&format!(
                "Also since the last email (1 held while the SMTP server could not take \
                 them; last error: {err}):\n  - "
            )),
            "{}",
            out.text
        );
        assert!(!out.text.contains("rate limit"), "{}", out.text);
        assert!(
            out.html.contains(
                "(1 held while the SMTP server could not take them; last error: cannot connect"
            ),
            "{}",
            out.html
        );
    }

    #[test]
    fn mail_held_by_the_rate_limit_says_so() {
        let out = fold(&[mail(1, "first", None), mail(2, "second", None)]);
        assert!(
            out.text
                .contains("Also since the last email (1 held back by the rate limit):\n"),
            "{}",
            out.text
        );
    }
}
