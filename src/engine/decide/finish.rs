//! An execution ended: record it with its message, then retry, open the circuit, or rest.
//! Also the circuit itself: opening (with the escalation) and closing by reset.

use super::{Core, Queued};
use crate::clock::rfc3339_ms;
use crate::engine::effect::{Effect, MailKind};
use crate::engine::plan::WorkKey;
use crate::engine::policy::{Limits, Scope};
use crate::engine::report::Report;
use crate::engine::why::{EndCause, reset_hint};
use crate::journal::{Circuit, EventKind, ExecStatus, StepRecord};

/// How an execution ended, as the executor reports it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Final status.
    pub status: ExecStatus,
    /// Why, in words.
    pub reason: String,
    /// Why, as a type.
    pub cause: EndCause,
    /// The steps as recorded.
    pub steps: Vec<StepRecord>,
    /// How many of the last `steps` are not in the journal yet (they are written with the
    /// execution's end, in one transaction).
    pub unrecorded: usize,
    /// When it started and ended.
    pub ran: (i64, i64),
}

/// What happens after an execution ended.
enum Next {
    Nothing,
    Retry {
        attempt: u32,
        until_ms: i64,
    },
    /// A precondition refused: judged again later, as the same attempt.
    Recheck {
        attempt: u32,
        until_ms: i64,
    },
    Circuit(String),
}

/// An ended execution, as far as deciding and saying what happens next needs it.
struct Ended<'a> {
    id: i64,
    now: i64,
    status: ExecStatus,
    cause: EndCause,
    /// Attempts used in the window, this one included (0 when it did not count).
    attempts: u32,
    limits: &'a Limits,
    key: &'a WorkKey,
    runbook: &'a str,
}

impl Ended<'_> {
    fn refused(&self) -> bool {
        matches!(self.cause, EndCause::Refused(_))
    }

    /// What happens next; `go_on` when the alert still fires and the service still takes
    /// work, `attempt` the execution's attempt number.
    fn next(&self, go_on: bool, attempt: u32) -> Next {
        let l = self.limits;
        let attempts = self.attempts;
        match self.status {
            _ if self.cause == EndCause::Unfixable => Next::Nothing,
            _ if self.refused() && go_on => Next::Recheck {
                attempt,
                until_ms: self.now.saturating_add(l.recheck_ms),
            },
            _ if self.refused() => Next::Nothing,
            ExecStatus::Escalated => Next::Circuit(format!("execution {} escalated", self.id)),
            // Refused before a retry: its first try ran and counted, as a failure does.
            ExecStatus::Failed | ExecStatus::Refused if go_on && attempts >= l.max_attempts => {
                Next::Circuit(format!(
                    "attempt {attempts}/{} failed: no attempts left in the window",
                    l.max_attempts
                ))
            }
            ExecStatus::Failed | ExecStatus::Refused if go_on => {
                let attempt = attempts.saturating_add(1);
                Next::Retry {
                    attempt,
                    until_ms: self.now.saturating_add(l.backoff_ms(attempt)),
                }
            }
            _ => Next::Nothing,
        }
    }

    /// The message's "what happens next", in words.
    fn next_text(&self, next: &Next) -> String {
        let (l, key, attempts) = (self.limits, self.key, self.attempts);
        let target = key.target.as_deref().unwrap_or("-");
        match (next, self.status, self.cause) {
            (Next::Circuit(why), _, _) => format!(
                "No more runs of {} on {target}: its circuit is open ({why}) and this was escalated. \
                 After fixing it, close the circuit: {}.",
                key.rule,
                reset_hint(&key.rule, key.target.as_deref())
            ),
            (Next::Retry { attempt, until_ms }, _, _) => format!(
                "The alert is still firing: attempt {attempt}/{} runs after {} unless the alert resolves first.",
                l.max_attempts,
                rfc3339_ms(*until_ms)
            ),
            (Next::Recheck { until_ms, .. }, _, _) => format!(
                "Nothing was changed. The alert is still firing: the preconditions are judged again after {} \
                 unless it resolves first. No attempt was counted.",
                rfc3339_ms(*until_ms)
            ),
            (Next::Nothing, ExecStatus::Refused, _) => {
                "Nothing was changed, and the alert is no longer firing. No attempt was counted.".into()
            }
            (Next::Nothing, ExecStatus::Succeeded, _) => format!(
                "Nothing: {} will not run again on {target} before {} (cooldown). If the alert keeps firing after that, it runs again (attempt {}/{} in the window).",
                key.rule,
                rfc3339_ms(self.now.saturating_add(l.cooldown_ms)),
                attempts.saturating_add(1),
                l.max_attempts
            ),
            (Next::Nothing, _, EndCause::Unfixable) => format!(
                "Nothing automatic: a step cannot run as rendered, so running it again cannot help. \
                 No attempt was counted and no circuit opened. Fix runbook `{}` (or the values it \
                 takes from the alert); the next alert runs it.",
                self.runbook
            ),
            (Next::Nothing, ExecStatus::Interrupted, EndCause::Fenced) => {
                "Nothing here: this instance lost its lock, so the instance that holds it now may run the remediation. Check the target.".into()
            }
            (Next::Nothing, ExecStatus::Interrupted, _) => {
                "Nothing automatic: an interrupted execution is never re-run blindly. Check the target.".into()
            }
            (Next::Nothing, _, _) => "Nothing: the alert is no longer firing.".into(),
        }
    }

    /// The journal's reason for the retry or recheck queued after this execution.
    fn again_reason(&self, attempt: u32, until_ms: i64) -> String {
        if self.refused() {
            format!(
                "{} refused by a precondition in execution {}; judged again not before {}",
                self.key,
                self.id,
                rfc3339_ms(until_ms)
            )
        } else {
            format!(
                "retry {attempt}/{} of {} after execution {} failed; not before {}",
                self.limits.max_attempts,
                self.key,
                self.id,
                rfc3339_ms(until_ms)
            )
        }
    }
}

impl Core {
    /// Running execution `id` ended with `outcome`.
    pub fn finished(&mut self, now: i64, id: i64, outcome: Outcome) -> Vec<Effect> {
        let Some(r) = self.running.remove(&id) else {
            return self.take();
        };
        let status = outcome.status;
        self.inflight.remove(&r.key);
        self.ended(&r.key.rule, status);
        let mut decisions = r.notes;
        if let Some(n) = self.duplicates.remove(&id) {
            let msg = format!("{n} duplicate alert(s) collapsed into this execution");
            decisions.push(msg.clone());
            self.event(now, Some(id), &r.key, EventKind::Duplicates, msg);
        }
        let setup = self.setup.clone();
        let rule = setup.rules.rule(&r.key.rule);
        let l = setup.limits(rule);
        let unfixable = outcome.cause == EndCause::Unfixable;
        let refused_by = match outcome.cause {
            EndCause::Refused(p) => Some(p),
            _ => None,
        };
        // One NOTICE per streak of refusals by the same precondition.
        let notice_due = match refused_by {
            Some(p) => self.refusals.insert(r.key.clone(), p) != Some(p),
            None => {
                self.refusals.remove(&r.key);
                true
            }
        };
        let attempts = if unfixable || refused_by.is_some() {
            // Recorded, but no attempt: running it again cannot help, so it must neither
            // use up attempts nor open the circuit (one oversized label did both).
            self.policy.unstart(&r.key);
            0
        } else {
            self.policy
                .finished(&r.key, now, status == ExecStatus::Succeeded, &l)
        };
        let runbook = r.plan.runbook.clone();
        let ended = Ended {
            id,
            now,
            status,
            cause: outcome.cause,
            attempts,
            limits: &l,
            key: &r.key,
            runbook: &runbook,
        };
        // What happens next, decided before the outcome is recorded so the message says it.
        let next = ended.next(!r.resolved && self.accepting, r.attempt);
        let next_text = ended.next_text(&next);
        let report = Report {
            plan: r.plan,
            alert: r.alert,
            execution_id: Some(id),
            attempt: r.attempt,
            status,
            reason: outcome.reason.clone(),
            steps: outcome.steps,
            decisions,
            next: next_text,
            ran: Some(outcome.ran),
        };
        let first = report.steps.len().saturating_sub(outcome.unrecorded);
        for record in &report.steps[first..] {
            self.out.push(Effect::Step {
                id,
                record: Box::new(record.clone()),
            });
        }
        self.out.push(Effect::Status {
            id,
            status,
            reason: Some(outcome.reason),
            at_ms: now,
        });
        self.outcome_mails(now, notice_due, &ended, &report);
        match next {
            Next::Circuit(why) => self.open_circuit(now, &r.key, Some(report), why),
            Next::Retry { attempt, until_ms } | Next::Recheck { attempt, until_ms } => {
                let reason = ended.again_reason(attempt, until_ms);
                let guard = rule.is_none_or(|r| r.guard);
                self.queue_again(now, &r.key, report, (attempt, until_ms), (reason, guard));
            }
            Next::Nothing => {}
        }
        self.take()
    }

    /// The outcome's message (one per streak of refusals), and an escalation when a human
    /// must look: a step that cannot run as rendered, or an execution stopped half-way.
    fn outcome_mails(&mut self, now: i64, notice_due: bool, e: &Ended<'_>, report: &Report) {
        if notice_due {
            self.mail(now, MailKind::Outcome, || report.clone());
        }
        if e.cause == EndCause::Unfixable {
            let why = "a step cannot run as rendered: no attempt counted, no circuit opened; \
                       a human must fix the runbook";
            self.mail(now, MailKind::Escalation(why.into()), || report.clone());
        }
        if e.status == ExecStatus::Interrupted {
            // Stopped half-way: a human must look, as after a crash.
            let why = match e.cause {
                EndCause::Fenced => {
                    "an execution was stopped half-way: this instance lost its lock (fenced)"
                }
                _ => "an execution was interrupted (the service stopped while it ran)",
            };
            self.mail(now, MailKind::Escalation(why.into()), || report.clone());
        }
    }

    /// Queues the retry or recheck of `key` as a new execution, not before `until_ms`.
    fn queue_again(
        &mut self,
        now: i64,
        key: &WorkKey,
        report: Report,
        (attempt, until_ms): (u32, i64),
        (reason, guard): (String, bool),
    ) {
        let id = report.execution_id;
        self.event(now, id, key, EventKind::RetryScheduled, reason.clone());
        let new_id = self.next_id();
        self.create(
            now,
            new_id,
            None,
            &report.plan,
            ExecStatus::Queued,
            reason,
            attempt,
        );
        self.inflight.insert(key.clone(), new_id);
        let mut q = Queued::new(new_id, key.clone(), report.plan, report.alert, attempt);
        q.not_before_ms = until_ms;
        q.guard = guard;
        self.queue_up(now, q);
    }

    /// Opens the circuit of `key`, records it and escalates (an event, and a message
    /// reporting `report` when there is one).
    pub(super) fn open_circuit(
        &mut self,
        now: i64,
        key: &WorkKey,
        report: Option<Report>,
        reason: String,
    ) {
        let execution_id = report.as_ref().and_then(|r| r.execution_id);
        self.policy.open(key, now, reason.clone());
        self.out.push(Effect::OpenCircuit(Circuit {
            rule: key.rule.clone(),
            target: key.target.clone().unwrap_or_else(|| "-".into()),
            opened_ms: now,
            reason: reason.clone(),
            healthy_since_ms: None,
        }));
        self.event(
            now,
            execution_id,
            key,
            EventKind::CircuitOpened,
            reason.clone(),
        );
        self.event(
            now,
            execution_id,
            key,
            EventKind::Escalation,
            format!("{key}: {reason}; a human is needed"),
        );
        if let Some(report) = report {
            self.mail(
                now,
                MailKind::Escalation(format!("circuit opened: {reason}")),
                || report,
            );
        }
    }

    /// Closes every open circuit in `scope` and forgets its attempts; returns the circuits
    /// that were open, as (rule, target), and the effects.
    pub fn reset(
        &mut self,
        now: i64,
        scope: &Scope,
    ) -> (Vec<(String, Option<String>)>, Vec<Effect>) {
        let closed = self.policy.reset(scope);
        for (rule, target) in &closed {
            self.out.push(Effect::CloseCircuit {
                rule: rule.clone(),
                target: target.clone().unwrap_or_else(|| "-".into()),
            });
            let key = WorkKey {
                rule: rule.clone(),
                target: target.clone(),
                params: Default::default(),
            };
            self.event(
                now,
                None,
                &key,
                EventKind::CircuitClosed,
                "closed by reset".into(),
            );
        }
        self.seen.forget_scope(scope);
        (closed, self.take())
    }
}
