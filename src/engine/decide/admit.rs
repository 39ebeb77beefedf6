//! An alert comes in: plan it, then admit, queue or skip each plan.

use std::sync::Arc;

use super::{Core, Queued};
use crate::alert::{Alert, AlertStatus};
use crate::clock::parse_rfc3339_ms;
use crate::engine::effect::{Effect, MailKind};
use crate::engine::plan::{Decision, Plan, WorkKey, plan_alert, plan_json};
use crate::engine::policy::{Admission, Health};
use crate::engine::report::Report;
use crate::engine::why::{Cancel, Skip, Staleness, exhausted_reason, reset_hint};
use crate::journal::{EventKind, ExecStatus, NewExecution, StepRecord, StepStatus};

impl Core {
    /// An alert journaled with id `alert_id` arrived: plan it against every rule and decide
    /// each plan. A resolved alert cancels its queued work and counts towards closing
    /// circuits; a firing one may start, queue or skip work.
    pub fn alert(&mut self, now: i64, alert_id: i64, alert: Alert) -> Vec<Effect> {
        self.out.push(Effect::Decided(alert_id));
        let setup = self.setup.clone();
        let plans = plan_alert(&setup.loaded.config, &setup.rules, &alert);
        let starts_ms = parse_rfc3339_ms(&alert.starts_at);
        let ends_ms = parse_rfc3339_ms(&alert.ends_at);
        if alert.status == AlertStatus::Resolved {
            if let Some(s) = starts_ms {
                self.resolves.insert(&alert.fingerprint, s);
            }
            self.unset_firing(&alert.fingerprint);
            for p in &plans {
                let l = setup.limits(setup.rules.rule(&p.rule));
                let h = self
                    .policy
                    .health(&p.rule, p.target.as_deref(), now, true, &l);
                self.circuit_health(now, p, h);
            }
            self.cancel_queued(now, &alert.fingerprint, Cancel::Resolved);
            return self.take();
        }
        if plans.is_empty() {
            return self.take();
        }
        if let Some(stale) = self.staleness(now, &alert.fingerprint, starts_ms, ends_ms) {
            // Journaled as a skip; it neither runs nor marks a broker down, nor counts as
            // a new occurrence for a circuit.
            for p in &plans {
                self.skip(now, Some(alert_id), p, Skip::Stale(stale));
            }
            return self.take();
        }
        let down: Vec<String> = plans
            .iter()
            .filter(|p| setup.rules.rule(&p.rule).is_some_and(|r| r.broker_down))
            .filter_map(|p| p.target.clone())
            .collect();
        self.set_firing(&alert.fingerprint, down, ends_ms);
        let alert = Arc::new(alert);
        for p in plans {
            let l = setup.limits(setup.rules.rule(&p.rule));
            let h = self
                .policy
                .health(&p.rule, p.target.as_deref(), now, false, &l);
            self.circuit_health(now, &p, h);
            match p.decision {
                Decision::Skip => {
                    let why = Skip::Plan(p.reason.clone());
                    self.skip(now, Some(alert_id), &p, why);
                }
                Decision::Run => self.decide(now, alert_id, &alert, p),
            }
        }
        self.take()
    }

    /// Journals what a health report changed about `p`'s circuit.
    fn circuit_health(&mut self, now: i64, p: &Plan, h: Health) {
        let target = p.target.clone().unwrap_or_else(|| "-".into());
        match h {
            Health::Unchanged => {}
            Health::Since(healthy_since_ms) => self.out.push(Effect::CircuitHealth {
                rule: p.rule.clone(),
                target,
                healthy_since_ms,
            }),
            Health::Closed => self.closed_by_itself(now, p.rule.clone(), p.target.clone()),
        }
    }

    /// Records that the circuit of `rule` on `target` closed by itself.
    pub(super) fn closed_by_itself(&mut self, now: i64, rule: String, target: Option<String>) {
        let secs = self
            .setup
            .limits(self.setup.rules.rule(&rule))
            .circuit_reset_ms
            / 1000;
        let key = WorkKey {
            rule,
            target,
            params: Default::default(),
        };
        self.out.push(Effect::CloseCircuit {
            rule: key.rule.clone(),
            target: key.target.clone().unwrap_or_else(|| "-".into()),
        });
        self.event(
            now,
            None,
            &key,
            EventKind::CircuitClosed,
            format!(
                "closed by itself: the problem stayed resolved for circuit_reset_seconds ({secs} s); \
                 the next alert gets fresh attempts"
            ),
        );
    }

    /// Whether a firing alert is stale: its end already past, or a resolve of it first.
    fn staleness(
        &self,
        now: i64,
        fingerprint: &str,
        starts_ms: Option<i64>,
        ends_ms: Option<i64>,
    ) -> Option<Staleness> {
        if let Some(e) = ends_ms
            && e <= now
        {
            return Some(Staleness::Ended { ends_ms: e });
        }
        match (self.resolves.get(fingerprint), starts_ms) {
            (Some(r), Some(s)) if s <= r => Some(Staleness::ResolvedBefore {
                resolved_starts_ms: r,
            }),
            _ => None,
        }
    }

    /// Journals a skip once per (work, alert, cause) so repeats do not flood the journal.
    pub(super) fn skip(&mut self, now: i64, alert_id: Option<i64>, p: &Plan, why: Skip) {
        if !self.seen.insert(&p.work_key(), &p.fingerprint, why.key()) {
            return;
        }
        let id = self.next_id();
        self.create(
            now,
            id,
            alert_id,
            p,
            ExecStatus::Skipped,
            why.to_string(),
            0,
        );
        self.out.push(Effect::Skipped { cause: why.key() });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create(
        &mut self,
        now: i64,
        id: i64,
        alert_id: Option<i64>,
        p: &Plan,
        status: ExecStatus,
        reason: String,
        attempt: u32,
    ) {
        self.out.push(Effect::Create(Box::new(NewExecution {
            id: Some(id),
            alert_id,
            rule: p.rule.clone(),
            runbook: p.runbook.clone(),
            target: p.target.clone(),
            fingerprint: p.fingerprint.clone(),
            status,
            reason,
            dry_run: p.dry_run,
            disruptive: p.disruptive,
            attempt,
            plan: plan_json(p),
            created_ms: now,
        })));
        if status.is_terminal() {
            self.ended(&p.rule, status);
        }
    }

    pub(super) fn decide(&mut self, now: i64, alert_id: i64, alert: &Arc<Alert>, p: Plan) {
        let key = p.work_key();
        if let Some(id) = self.inflight.get(&key) {
            *self.duplicates.entry(*id).or_default() += 1;
            self.out.push(Effect::Duplicate);
            return;
        }
        // An operator's pause or an Alertmanager silence (pause.rs).
        if let Some(why) = self.hands_off(now, alert_id, alert, &p) {
            self.skip(now, Some(alert_id), &p, why);
            return;
        }
        if p.dry_run {
            self.dry_run(now, alert_id, alert, p, &key);
            return;
        }
        let setup = self.setup.clone();
        let rule = setup.rules.rule(&p.rule);
        let guard = rule.is_none_or(|r| r.guard);
        let l = setup.limits(rule);
        match self.policy.admit(&key, now, &l) {
            // HA: this instance's memory of a circuit or of used-up attempts may be stale (a
            // peer reset it, or made the attempts); etcd's record, read with the lock,
            // decides (`lock_answer`).
            Admission::CircuitOpen { .. } | Admission::Exhausted { .. } if self.ha.is_some() => {
                let reason = format!(
                    "{}; HA: attempts and circuits are checked against etcd when the lock is taken",
                    p.reason
                );
                self.enqueue(now, alert_id, alert, p, 0, now, guard, reason);
            }
            Admission::Allow { attempt } => {
                let reason = format!("{} (attempt {attempt}/{})", p.reason, l.max_attempts);
                self.enqueue(now, alert_id, alert, p, attempt, now, guard, reason);
            }
            Admission::Backoff { attempt, until_ms } => {
                let reason = format!(
                    "{}; attempt {attempt}/{} waits for its backoff until {}",
                    p.reason,
                    l.max_attempts,
                    crate::clock::rfc3339_ms(until_ms)
                );
                self.enqueue(now, alert_id, alert, p, attempt, until_ms, guard, reason);
            }
            Admission::Cooldown { until_ms } => {
                let why = Skip::Cooldown {
                    work: key.to_string(),
                    until_ms,
                };
                self.skip(now, Some(alert_id), &p, why);
            }
            Admission::CircuitOpen { since_ms, reason } => {
                let why = Skip::CircuitOpen {
                    since_ms,
                    reason,
                    rule: key.rule.clone(),
                    target: key.target.clone(),
                };
                self.skip(now, Some(alert_id), &p, why);
            }
            Admission::Exhausted { attempts } => {
                self.exhaust(now, &p, alert, attempts);
                self.skip(now, Some(alert_id), &p, Skip::Exhausted { attempts });
            }
        }
    }

    /// Attempts of `p`'s work ran out: its circuit opens, escalated.
    pub(super) fn exhaust(&mut self, now: i64, p: &Plan, alert: &Arc<Alert>, attempts: u32) {
        let key = p.work_key();
        let reason = exhausted_reason(attempts);
        let report = Report {
            plan: p.clone(),
            alert: alert.clone(),
            execution_id: None,
            attempt: attempts,
            status: ExecStatus::Skipped,
            reason: reason.clone(),
            steps: Vec::new(),
            decisions: Vec::new(),
            next: format!(
                "No more runs of {} on {}: after fixing it, close the circuit: {}.",
                key.rule,
                key.target.as_deref().unwrap_or("-"),
                reset_hint(&key.rule, key.target.as_deref())
            ),
            ran: None,
        };
        self.open_circuit(now, &key, Some(report), reason);
    }

    /// dry_run: recorded once per (work, alert) with a message showing what would have run.
    fn dry_run(&mut self, now: i64, alert_id: i64, alert: &Arc<Alert>, p: Plan, key: &WorkKey) {
        if !self.seen.insert(key, &p.fingerprint, "dry_run") {
            return;
        }
        let id = self.next_id();
        let reason = p.reason.clone();
        self.create(
            now,
            id,
            Some(alert_id),
            &p,
            ExecStatus::DryRun,
            reason.clone(),
            0,
        );
        let steps: Vec<StepRecord> = p
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRecord {
                index: i as u32,
                name: s.name.clone(),
                kind: s.kind.to_string(),
                argv: s.argv.clone(),
                status: StepStatus::NotRun,
                exit_code: None,
                signal: None,
                attempts: 0,
                started_ms: now,
                duration_ms: 0,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                error: None,
            })
            .collect();
        let report = Report {
            plan: p,
            alert: alert.clone(),
            execution_id: Some(id),
            attempt: 0,
            status: ExecStatus::DryRun,
            reason,
            steps,
            decisions: Vec::new(),
            next: "Nothing runs while dry_run is on (recovery.dry_run or the rule's dry_run)."
                .into(),
            ran: None,
        };
        self.mail(now, MailKind::Outcome, || report);
    }

    /// Creates the execution of admitted work: running at once when nothing of its class
    /// waits before it and nothing blocks it, else queued (or skipped when the queue is
    /// full).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &mut self,
        now: i64,
        alert_id: i64,
        alert: &Arc<Alert>,
        plan: Plan,
        attempt: u32,
        not_before_ms: i64,
        guard: bool,
        reason: String,
    ) {
        let key = plan.work_key();
        let mut q = Queued::new(0, key.clone(), plan, alert.clone(), attempt);
        q.not_before_ms = not_before_ms;
        q.guard = guard;
        if !self.accepting {
            // Shutting down: nothing new starts or waits.
            let id = self.next_id();
            let why = Cancel::ShutDown.to_string();
            self.create(
                now,
                id,
                Some(alert_id),
                &q.plan,
                ExecStatus::Cancelled,
                why,
                attempt,
            );
            return;
        }
        // In HA mode the lock comes first: the work is queued and asks for it at once.
        let start_now = self.ha.is_none()
            && !self.class_waits(q.plan.disruptive)
            && self.blocked(&q, now, &self.slots()).is_none();
        // Only diagnostics are ever skipped for a full queue, and only their own queue
        // counts: remediation the webhook took is never dropped (its budget is enforced
        // before journaling, see `engine::admission`).
        let queued = self.queued_diagnostics();
        let max = self.setup.loaded.config.recovery.max_queued as usize;
        if !start_now && !self.is_remediation(&q.plan) && queued >= max {
            let why = Skip::QueueFull { queued, max };
            self.skip(now, Some(alert_id), &q.plan, why);
            return;
        }
        let status = if start_now {
            ExecStatus::Running
        } else {
            ExecStatus::Queued
        };
        let id = self.next_id();
        q.id = id;
        self.create(now, id, Some(alert_id), &q.plan, status, reason, attempt);
        self.seen.forget(&key);
        self.inflight.insert(key, id);
        if start_now {
            self.launch(q, now);
        } else {
            self.queue_up(now, q);
        }
    }

    /// Queues `q`, journaling at once why it waits.
    pub(super) fn queue_up(&mut self, now: i64, mut q: Queued) {
        let slots = self.slots();
        if let Some(why) = self.blocked(&q, now, &slots) {
            self.out.push(super::event(
                now,
                Some(q.id),
                &q.key,
                EventKind::Waiting,
                why.to_string(),
            ));
            q.notes.push(why.to_string());
            q.waiting = Some(why);
        }
        self.push_queued(q);
    }

    /// Cancels the queued work of alert `fingerprint`.
    pub(super) fn cancel_queued(&mut self, now: i64, fingerprint: &str, why: Cancel) {
        if !self.queued_by_fp.contains_key(fingerprint) {
            return;
        }
        let (gone, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| q.alert.fingerprint == fingerprint);
        self.queue = keep;
        self.queued_by_fp.remove(fingerprint);
        self.queued_remediation -= gone.iter().filter(|q| q.remediation).count();
        for mut q in gone {
            self.cancel(now, &mut q, why);
        }
    }

    fn cancel(&mut self, now: i64, q: &mut Queued, why: Cancel) {
        if let Some(lock) = q.lock.take() {
            self.out.push(Effect::ReleaseLock(lock));
        }
        self.inflight.remove(&q.key);
        // A streak of refusals ends with its alert: the next occurrence is mailed anew.
        self.refusals.remove(&q.key);
        if let Some(n) = self.duplicates.remove(&q.id) {
            let msg = format!("{n} duplicate alert(s) collapsed into this execution");
            self.event(now, Some(q.id), &q.key, EventKind::Duplicates, msg);
        }
        self.event(
            now,
            Some(q.id),
            &q.key,
            EventKind::Cancelled,
            why.to_string(),
        );
        self.out.push(Effect::Status {
            id: q.id,
            status: ExecStatus::Cancelled,
            reason: Some(why.to_string()),
            at_ms: now,
        });
        self.ended(&q.key.rule, ExecStatus::Cancelled);
    }

    /// Stops starting new work and cancels the queued work; running work goes on.
    pub fn drain(&mut self, now: i64) -> Vec<Effect> {
        self.accepting = false;
        let queue = std::mem::take(&mut self.queue);
        self.queued_by_fp.clear();
        self.queued_remediation = 0;
        for mut q in queue {
            self.cancel(now, &mut q, Cancel::ShutDown);
        }
        self.take()
    }
}
