//! Starting queued work: what blocks it (a pause, backoff, slots, the guard), starting it in
//! arrival order, and in HA mode the lock it must hold first.

use super::shared::Adopted;
use super::{Core, LockAnswer, Queued, Running};
use crate::engine::effect::{Effect, Hold, Launch, MailKind};
use crate::engine::report::Report;
use crate::engine::why::{Skip, Wait};
use crate::journal::{EventKind, ExecStatus};

/// Who holds the slots at the start of a pump (updated as work starts).
pub(super) struct Slots {
    /// Non-disruptive executions running, or (HA) asking for or holding their lock.
    diagnostics: usize,
    /// Disruptive work running or (HA) claiming a slot, as `rule on target`.
    disruptive: Vec<String>,
    /// Targets of running disruptive work.
    remediating: Vec<Option<String>>,
}

impl Core {
    /// Whether work of this class (disruptive or not) is queued already: new work then
    /// queues behind it rather than overtaking it.
    pub(super) fn class_waits(&self, disruptive: bool) -> bool {
        self.queue.iter().any(|q| q.plan.disruptive == disruptive)
    }

    pub(super) fn slots(&self) -> Slots {
        let claiming = |q: &&Queued| q.acquiring || q.lock.is_some();
        let mut s = Slots {
            diagnostics: 0,
            disruptive: Vec::new(),
            remediating: Vec::new(),
        };
        for r in self.running.values() {
            if r.plan.disruptive {
                s.disruptive.push(holder(&r.key));
                s.remediating.push(r.key.target.clone());
            } else {
                s.diagnostics += 1;
            }
        }
        // Only HA work claims a slot before it runs.
        let queue = if self.ha.is_some() {
            &self.queue[..]
        } else {
            &[]
        };
        for q in queue.iter().filter(claiming) {
            if q.plan.disruptive {
                s.disruptive.push(holder(&q.key));
            } else {
                s.diagnostics += 1;
            }
        }
        s
    }

    /// Why queued work `q` cannot start now, or `None` when it can.
    pub(super) fn blocked(&self, q: &Queued, now: i64, slots: &Slots) -> Option<Wait> {
        if let Some(why) = self.paused_wait(now, q) {
            return Some(why);
        }
        if q.not_before_ms > now {
            return Some(Wait::Backoff {
                until_ms: q.not_before_ms,
            });
        }
        let recovery = &self.setup.loaded.config.recovery;
        // Work that asks for or holds its lock has its slot already.
        let mine = usize::from(q.acquiring || q.lock.is_some());
        if !q.plan.disruptive {
            // Diagnostics have their own bound: a storm of distinct alerts must not start
            // thousands of processes at once.
            let max = recovery.max_concurrent_diagnostics.max(1) as usize;
            return (slots.diagnostics - mine >= max).then_some(Wait::DiagnosticsSlot { max });
        }
        let max = recovery.max_concurrent_per_cluster.max(1) as usize;
        if slots.disruptive.len() - mine >= max {
            let me = holder(&q.key);
            let mut holders = slots.disruptive.clone();
            if mine == 1
                && let Some(i) = holders.iter().position(|h| *h == me)
            {
                holders.remove(i);
            }
            return Some(Wait::ClusterSlot { holders, max });
        }
        if !q.guard {
            return None;
        }
        let me = q.key.target.as_deref();
        if let Some(other) = slots.remediating.iter().find(|t| t.as_deref() != me) {
            return Some(Wait::GuardRemediating {
                broker: other.clone().unwrap_or_else(|| "-".into()),
            });
        }
        let me_down = me.is_some_and(|t| self.down.contains_key(t));
        let others: Vec<String> = self
            .down
            .keys()
            .filter(|t| Some(t.as_str()) != me)
            .cloned()
            .collect();
        if !others.is_empty() && !me_down {
            return Some(Wait::GuardDown { brokers: others });
        }
        None
    }

    /// Starts every queued execution that may start now, in arrival order; journals once
    /// each new reason why one waits. Call it after each round of inputs.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        self.expire_firing(now);
        self.expire_pauses(now);
        let setup = self.setup.clone();
        let reset_ms = |rule: &str| setup.limits(setup.rules.rule(rule)).circuit_reset_ms;
        for (rule, target) in self.policy.close_due(now, reset_ms) {
            self.closed_by_itself(now, rule, target);
        }
        self.wake_at = None;
        self.wake_known = true;
        if !self.accepting {
            return self.take();
        }
        let mut slots = self.slots();
        let ha = self.ha.is_some();
        let cluster_slots = self.setup.loaded.config.recovery.max_concurrent_per_cluster;
        let mut start = Vec::new();
        // In place: a queue of a thousand waiting is scanned, not moved, each round.
        for i in 0..self.queue.len() {
            let why = self.blocked(&self.queue[i], now, &slots);
            let q = &mut self.queue[i];
            match why {
                Some(why) => {
                    // A lock is not kept while waiting locally (a guard, backoff): a peer
                    // may need the cluster slot it holds.
                    if let Some(lock) = q.lock.take() {
                        self.out.push(Effect::ReleaseLock(lock));
                        if !q.acquiring {
                            release_slot(&mut slots, q);
                        }
                    }
                    note_waiting(&mut self.out, now, q, why);
                }
                None if ha && q.lock.is_none() => {
                    if !q.acquiring && q.retry_at_ms <= now {
                        self.out.push(lock_request(q, cluster_slots));
                        take_slot(&mut slots, q);
                    }
                }
                None => {
                    if !(q.acquiring || q.lock.is_some()) {
                        take_slot(&mut slots, q);
                    }
                    if q.plan.disruptive {
                        slots.remediating.push(q.key.target.clone());
                    }
                    start.push(q.id);
                }
            }
            let q = &self.queue[i];
            let retry = (ha && q.lock.is_none() && !q.acquiring).then_some(q.retry_at_ms);
            for t in std::iter::once(q.not_before_ms).chain(retry) {
                if t > now && self.wake_at.is_none_or(|w| t < w) {
                    self.wake_at = Some(t);
                }
            }
        }
        if !start.is_empty() {
            let mut next = start.iter().peekable();
            let started: Vec<Queued> = self
                .queue
                .extract_if(.., |q| {
                    let hit = next.peek() == Some(&&q.id);
                    if hit {
                        next.next();
                    }
                    hit
                })
                .collect();
            for q in started {
                self.unqueued(&q);
                self.out.push(Effect::Status {
                    id: q.id,
                    status: ExecStatus::Running,
                    reason: None,
                    at_ms: now,
                });
                self.launch(q, now);
            }
        }
        self.take()
    }

    fn note_waiting(&mut self, now: i64, q: &mut Queued, why: Wait) {
        note_waiting(&mut self.out, now, q, why);
    }

    /// Starts `q` (already recorded `running`).
    pub(super) fn launch(&mut self, q: Queued, now: i64) {
        self.policy.started(&q.key, now);
        let setup = self.setup.clone();
        let broker = q
            .key
            .target
            .as_deref()
            .and_then(|t| setup.broker(t))
            .cloned();
        // How long peers leave this work alone after it ends (HA mode).
        let l = setup.limits(setup.rules.rule(&q.key.rule));
        let secs = |ms: i64| (ms / 1000).max(1) as u64;
        let hold = Hold {
            succeeded: secs(l.cooldown_ms),
            failed: secs(l.initial_delay_ms),
            escalated: secs(l.window_ms),
        };
        self.out.push(Effect::Launch(Box::new(Launch {
            id: q.id,
            plan: q.plan.clone(),
            alert: q.alert.clone(),
            attempt: q.attempt,
            broker,
            lock: q.lock,
            hold,
        })));
        self.running.insert(
            q.id,
            Running {
                key: q.key,
                plan: q.plan,
                alert: q.alert,
                attempt: q.attempt,
                notes: q.notes,
                resolved: false,
            },
        );
    }

    /// HA mode: what etcd answered to the lock request of queued execution `id`.
    pub fn lock_answer(&mut self, now: i64, id: i64, answer: LockAnswer) -> Vec<Effect> {
        let Some(i) = self.queue.iter().position(|q| q.id == id) else {
            // Cancelled meanwhile: give the lock back at once.
            if let LockAnswer::Acquired(lock) = answer {
                self.out.push(Effect::ReleaseLock(lock));
            }
            return self.take();
        };
        let retry = self.ha.as_ref().map_or(1000, |h| h.retry_ms);
        self.wake_known = false;
        let mut q = self.queue.remove(i);
        q.acquiring = false;
        match answer {
            LockAnswer::Acquired(lock) => {
                match self.adopt_shared(now, &mut q, lock.shared()) {
                    Adopted::Go => {}
                    Adopted::Wait(until_ms) => {
                        self.out.push(Effect::ReleaseLock(lock));
                        q.not_before_ms = until_ms;
                        self.note_waiting(now, &mut q, Wait::Backoff { until_ms });
                        self.queue.insert(i, q);
                        return self.take();
                    }
                    Adopted::Skip(why) => {
                        self.out.push(Effect::ReleaseLock(lock));
                        self.skip_queued(now, q, why);
                        return self.take();
                    }
                }
                let me = self.ha.as_ref().map(|h| h.instance.clone());
                let max = self
                    .setup
                    .limits(self.setup.rules.rule(&q.key.rule))
                    .max_attempts;
                let msg = format!(
                    "lock taken in etcd by instance {} at revision {}; attempt {}/{max} \
                     counting every instance's",
                    me.unwrap_or_default(),
                    lock.revision(),
                    q.attempt
                );
                self.out.push(super::event(
                    now,
                    Some(id),
                    &q.key,
                    EventKind::LockAcquired,
                    msg.clone(),
                ));
                q.notes.push(msg);
                q.lock = Some(lock);
            }
            LockAnswer::Held(holder) => {
                q.retry_at_ms = now.saturating_add(retry);
                self.note_waiting(now, &mut q, Wait::LockHeld { holder });
            }
            LockAnswer::StepRunning(step) => {
                q.retry_at_ms = now.saturating_add(retry);
                self.note_waiting(now, &mut q, Wait::PeerStep { step });
            }
            LockAnswer::Done(by) => {
                self.skip_queued(now, q, Skip::DoneByPeer { by });
                return self.take();
            }
            LockAnswer::Unavailable { error, outage } => {
                q.retry_at_ms = now.saturating_add(retry);
                let why = Wait::CoordinationUnavailable { error };
                self.note_waiting(now, &mut q, why.clone());
                if outage {
                    self.escalate_coordination(now, &q, &why.to_string());
                }
            }
        }
        self.queue.insert(i, q);
        self.take()
    }

    /// Queued work `q` (out of the queue already) is not run after all: recorded skipped.
    fn skip_queued(&mut self, now: i64, q: Queued, why: Skip) {
        self.unqueued(&q);
        self.inflight.remove(&q.key);
        self.duplicates.remove(&q.id);
        let why = why.to_string();
        self.event(now, Some(q.id), &q.key, EventKind::Skip, why.clone());
        self.out.push(Effect::Status {
            id: q.id,
            status: ExecStatus::Skipped,
            reason: Some(why),
            at_ms: now,
        });
        self.ended(&q.key.rule, ExecStatus::Skipped);
    }

    /// Escalates "coordination unavailable" at most once per
    /// `notifications.rate_limit_seconds` (at least a minute), not once per alert.
    fn escalate_coordination(&mut self, now: i64, q: &Queued, why: &str) {
        let every = (self
            .setup
            .loaded
            .config
            .notifications
            .rate_limit_seconds
            .max(60) as i64)
            .saturating_mul(1000);
        if self
            .coord_escalated_ms
            .is_some_and(|t| now.saturating_sub(t) < every)
        {
            return;
        }
        self.coord_escalated_ms = Some(now);
        self.event(
            now,
            Some(q.id),
            &q.key,
            EventKind::Escalation,
            format!("{why}; a human is needed (is etcd up?)"),
        );
        let report = Report {
            plan: q.plan.clone(),
            alert: q.alert.clone(),
            execution_id: Some(q.id),
            attempt: q.attempt,
            status: ExecStatus::Queued,
            reason: why.to_string(),
            steps: Vec::new(),
            decisions: Vec::new(),
            next: "The work waits; it runs once this instance holds its lease and the lock \
                   again (unless the alert resolves first). Check etcd."
                .into(),
            ran: None,
        };
        let why = "coordination (etcd) unavailable: no remediation runs";
        self.mail(now, MailKind::Escalation(why.into()), || report);
    }
}

/// `rule on target`, as the cluster-slot reason names work.
fn holder(k: &crate::engine::plan::WorkKey) -> String {
    format!("{} on {}", k.rule, k.target.as_deref().unwrap_or("-"))
}

fn take_slot(slots: &mut Slots, q: &Queued) {
    if q.plan.disruptive {
        slots.disruptive.push(holder(&q.key));
    } else {
        slots.diagnostics += 1;
    }
}

fn release_slot(slots: &mut Slots, q: &Queued) {
    if q.plan.disruptive {
        let me = holder(&q.key);
        if let Some(i) = slots.disruptive.iter().position(|h| *h == me) {
            slots.disruptive.remove(i);
        }
    } else {
        slots.diagnostics = slots.diagnostics.saturating_sub(1);
    }
}

/// Journals why `q` waits, once per reason.
fn note_waiting(out: &mut Vec<Effect>, now: i64, q: &mut Queued, why: Wait) {
    if q.waiting.as_ref() == Some(&why) {
        return;
    }
    let text = why.to_string();
    out.push(super::event(
        now,
        Some(q.id),
        &q.key,
        EventKind::Waiting,
        text.clone(),
    ));
    q.notes.push(text);
    q.waiting = Some(why);
}

/// HA mode: asks etcd for `q`'s lock (the answer comes back as a lock answer).
fn lock_request(q: &mut Queued, cluster_slots: u32) -> Effect {
    q.acquiring = true;
    let request = crate::coord::WorkRequest {
        work: q.key.to_string(),
        identity: q.key.to_string(),
        rule: q.key.rule.clone(),
        target: q.key.target.clone(),
        disruptive: q.plan.disruptive,
        slots: cluster_slots,
        execution: q.id,
    };
    Effect::RequestLock { id: q.id, request }
}
