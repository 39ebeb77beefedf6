//! What the engine tells people: the outcome message of each execution and escalations,
//! built from what happened and what the policy decided next.

use std::sync::Arc;

use super::plan::Plan;
use super::setup::Setup;
use crate::alert::Alert;
use crate::clock::rfc3339_ms;
use crate::journal::{ExecStatus, NewMail, StepRecord};
use crate::notify::message::{
    AlertView, ExecutionView, MessageContext, Pair, RuleView, generator_link, human_ms,
    silence_link, step_view,
};

/// The facts of one finished (or refused) piece of work.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan.
    pub plan: Plan,
    /// The alert.
    pub alert: Arc<Alert>,
    /// Execution id, when there is one.
    pub execution_id: Option<i64>,
    /// Attempt number.
    pub attempt: u32,
    /// Final status.
    pub status: ExecStatus,
    /// Why.
    pub reason: String,
    /// Steps as recorded.
    pub steps: Vec<StepRecord>,
    /// Policy decisions along the way.
    pub decisions: Vec<String>,
    /// What happens next.
    pub next: String,
    /// Start and end times, when it ran.
    pub ran: Option<(i64, i64)>,
}

fn outcome_word(status: ExecStatus) -> &'static str {
    match status {
        ExecStatus::Succeeded => "RECOVERED",
        ExecStatus::Failed => "FAILED",
        ExecStatus::Escalated => "ESCALATED",
        ExecStatus::Interrupted => "INTERRUPTED",
        ExecStatus::DryRun => "DRY-RUN",
        ExecStatus::Cancelled => "CANCELLED",
        ExecStatus::Skipped => "SKIPPED",
        // Nothing was changed, on purpose: the mail tells what Kafka showed instead.
        ExecStatus::Refused => "NOTICE",
        ExecStatus::Queued | ExecStatus::Running => "RUNNING",
    }
}

fn pairs(m: &std::collections::BTreeMap<String, String>) -> Vec<Pair> {
    m.iter()
        .map(|(k, v)| Pair {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// The message context of a report.
pub fn context(setup: &Setup, r: &Report, outcome: &str, headline: String) -> MessageContext {
    let rule = setup.rules.rule(&r.plan.rule);
    let labels = pairs(&r.alert.labels);
    let configured: Vec<&str> = setup
        .loaded
        .config
        .alertmanager
        .iter()
        .map(|a| a.url.as_str())
        .collect();
    let (silence_url, alertmanager_text) =
        silence_link(&r.alert.external_url, &configured, &labels);
    let (generator_url, generator_url_text) = generator_link(&r.alert.generator_url);
    MessageContext {
        outcome: outcome.to_string(),
        headline,
        cluster: setup.loaded.config.cluster.name.clone(),
        rule: RuleView {
            name: r.plan.rule.clone(),
            description: rule.map(|x| x.description.clone()).unwrap_or_default(),
        },
        runbook: r.plan.runbook.clone(),
        target: r.plan.target.clone(),
        status: r.status.as_str().to_string(),
        reason: r.reason.clone(),
        execution: r.execution_id.map(|id| ExecutionView {
            id,
            attempt: r.attempt,
            started: r.ran.map(|(s, _)| rfc3339_ms(s)).unwrap_or_default(),
            duration: r.ran.map(|(s, e)| human_ms(e - s)).unwrap_or_default(),
        }),
        silence_url,
        alertmanager_text,
        alert: AlertView {
            status: r.alert.status.as_str().to_string(),
            labels,
            annotations: pairs(&r.alert.annotations),
            starts_at: r.alert.starts_at.clone(),
            generator_url,
            generator_url_text,
            fingerprint: r.alert.fingerprint.clone(),
        },
        steps: r.steps.iter().map(step_view).collect(),
        decisions: r.decisions.clone(),
        next: r.next.clone(),
        subject: String::new(),
    }
}

/// The rate-limit key of a plan's messages.
pub fn mail_key(plan: &Plan) -> String {
    format!("{}/{}", plan.rule, plan.target.as_deref().unwrap_or("-"))
}

fn mail(
    setup: &Setup,
    kind: &str,
    key: String,
    to: Vec<String>,
    r: &Report,
    ctx: &MessageContext,
    now: i64,
) -> Option<NewMail> {
    let composer = setup.composer.as_ref()?;
    match composer.render(ctx) {
        Ok(m) => Some(NewMail {
            created_ms: now,
            kind: kind.to_string(),
            key,
            execution_id: r.execution_id,
            recipients: to,
            subject: m.subject,
            text: m.text,
            html: m.html,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot render a message; nothing queued");
            None
        }
    }
}

/// The outcome message of a report, to on-call and the rule's extra recipients.
pub fn outcome_mail(setup: &Setup, r: &Report, now: i64) -> Option<NewMail> {
    let smtp = setup.loaded.config.notifications.smtp.as_ref()?;
    let mut to = smtp.to_emails.clone();
    if let Some(rule) = setup.rules.rule(&r.plan.rule) {
        for extra in &rule.notify {
            if !to.contains(extra) {
                to.push(extra.clone());
            }
        }
    }
    // A ZooKeeper target is named as one: on-call must not look for a broker `zookeeper/…`.
    let target = match r.plan.target.as_deref() {
        Some(t) => match super::target::zookeeper_id(t) {
            Some(id) => format!("ZooKeeper node {id}"),
            None => t.to_string(),
        },
        None => "(no target)".to_string(),
    };
    // A runbook without steps is notify-only: the mail is the action.
    let notice = r.plan.steps.is_empty() && r.status == ExecStatus::Succeeded;
    let headline = match r.status {
        _ if notice => format!(
            "{target}: {} (notify only, nothing was run)",
            r.alert
                .labels
                .get("alertname")
                .map_or("alert", String::as_str)
        ),
        ExecStatus::Succeeded if !r.plan.disruptive => format!(
            "{target}: diagnostics {} ran (nothing was changed)",
            r.plan.runbook
        ),
        ExecStatus::Succeeded => format!("{target}: runbook {} succeeded", r.plan.runbook),
        ExecStatus::DryRun => format!(
            "{target}: runbook {} would have run (dry_run)",
            r.plan.runbook
        ),
        ExecStatus::Refused => format!(
            "{target}: runbook {} refused by a precondition; nothing was changed",
            r.plan.runbook
        ),
        other => format!("{target}: runbook {} {}", r.plan.runbook, other.as_str()),
    };
    // A diagnostics runbook that ran fixed nothing: "RECOVERED" would claim it did.
    let word = if notice {
        "NOTICE"
    } else if r.status == ExecStatus::Succeeded && !r.plan.disruptive {
        "DIAGNOSED"
    } else {
        outcome_word(r.status)
    };
    let ctx = context(setup, r, word, headline);
    mail(setup, "outcome", mail_key(&r.plan), to, r, &ctx, now)
}

/// An escalation message about a report: to the escalation list (or on-call); none when
/// `escalation.enabled` is false.
pub fn escalation_mail(setup: &Setup, r: &Report, why: &str, now: i64) -> Option<NewMail> {
    let n = &setup.loaded.config.notifications;
    if n.escalation_disabled {
        return None;
    }
    let smtp = n.smtp.as_ref()?;
    let to = n
        .escalation
        .as_ref()
        .map(|e| e.to_emails.clone())
        .unwrap_or_else(|| smtp.to_emails.clone());
    let target = r.plan.target.as_deref().unwrap_or("(no target)");
    let ctx = context(
        setup,
        r,
        "ESCALATION",
        format!("{target}: a human is needed: {why}"),
    );
    mail(
        setup,
        "escalation",
        format!("escalation/{}", mail_key(&r.plan)),
        to,
        r,
        &ctx,
        now,
    )
}

/// The escalation message about an execution found interrupted at start-up.
pub fn interrupted_mail(
    setup: &Setup,
    e: &crate::journal::Execution,
    alert: Option<&crate::journal::NewAlert>,
    now: i64,
) -> Option<NewMail> {
    let plan = Plan {
        rule: e.rule.clone(),
        runbook: e.runbook.clone(),
        target: e.target.clone(),
        fingerprint: e.fingerprint.clone(),
        status: crate::alert::AlertStatus::Firing,
        decision: super::plan::Decision::Run,
        reason: e.reason.clone(),
        steps: Vec::new(),
        actions: Vec::new(),
        disruptive: e.disruptive,
        requires: serde_json::from_value(e.plan["requires"].clone()).unwrap_or_default(),
        dry_run: e.dry_run,
        params: serde_json::from_value(e.plan["params"].clone()).unwrap_or_default(),
    };
    let mut alert = alert
        .map(|a| a.alert())
        .unwrap_or_else(|| Alert::firing(Default::default()));
    alert.status = crate::alert::AlertStatus::Firing;
    alert.fingerprint.clone_from(&e.fingerprint);
    let report = Report {
        plan,
        alert: Arc::new(alert),
        execution_id: Some(e.id),
        attempt: e.attempt,
        status: ExecStatus::Interrupted,
        reason: e.reason.clone(),
        steps: Vec::new(),
        decisions: Vec::new(),
        next: "Nothing automatic: an interrupted execution is never re-run blindly. Check the \
               target: the runbook may have stopped half-way."
            .into(),
        ran: e.started_ms.map(|s| (s, e.finished_ms.unwrap_or(s))),
    };
    escalation_mail(
        setup,
        &report,
        "an execution was interrupted (the service stopped while it ran)",
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setup of a config with on-call mail and `escalation` (a YAML block, or empty).
    fn setup(escalation: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "cluster:\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: 9092 }}\nmonitoring: {{ methods: [socket] }}\nrules: []\nnotifications:\n  smtp: {{ host: 127.0.0.1, port: 25, tls: none, from_email: kh@example.com, to_emails: [oncall@example.com] }}\n{escalation}"
        );
        std::fs::write(dir.path().join("c.yaml"), config).unwrap();
        Setup::load(&dir.path().join("c.yaml")).unwrap()
    }

    fn interrupted() -> crate::journal::Execution {
        crate::journal::Execution {
            id: 7,
            alert_id: None,
            rule: "broker-down".into(),
            runbook: "restart-broker".into(),
            target: Some("kafka-1".into()),
            fingerprint: "f".into(),
            status: ExecStatus::Interrupted,
            reason: "matched".into(),
            dry_run: false,
            disruptive: true,
            attempt: 1,
            plan: serde_json::json!({}),
            created_ms: 1_000,
            started_ms: Some(1_000),
            finished_ms: None,
        }
    }

    #[test]
    fn escalation_enabled_false_queues_no_escalation_mail() {
        let off = setup("  escalation:\n    enabled: false\n");
        assert_eq!(interrupted_mail(&off, &interrupted(), None, 2_000), None);
        // The seed's `enabled: true` without a list, and no section at all: to on-call.
        for esc in ["  escalation:\n    enabled: true\n", ""] {
            let mail = interrupted_mail(&setup(esc), &interrupted(), None, 2_000).unwrap();
            assert_eq!(mail.kind, "escalation");
            assert_eq!(mail.recipients, vec!["oncall@example.com".to_string()]);
        }
        let own = setup("  escalation:\n    to_emails: [boss@example.com]\n");
        let mail = interrupted_mail(&own, &interrupted(), None, 2_000).unwrap();
        assert_eq!(mail.recipients, vec!["boss@example.com".to_string()]);
    }
}
