//! The decision core: a state machine that owns the policy state and turns inputs (an alert,
//! an execution's end, a lock answer, a tick, a reset, a drain) into [`Effect`]s.
//!
//! It is pure: every method takes `now` as an argument and returns the effects to carry
//! out, in order; nothing here awaits, writes, spawns or reads a clock. The runner
//! ([`super::runner`]) commits the journal effects of a whole round of inputs in one
//! transaction before it launches anything, so every decision is durable before its effect.
//!
//! Every policy decision lives here: one execution per [`WorkKey`] in flight (copies
//! collapse), dry_run, cooldown, attempts with backoff and the circuit breaker, the
//! diagnostics bounds (slots and queue), at most `max_concurrent_per_cluster` disruptive
//! executions, the guard that leaves a healthy broker alone while another is down,
//! resolved alerts cancelling queued work, operators' pauses and Alertmanager silences of
//! self-watch alerts (`pause.rs`), and in HA mode the lock protocol.
//!
//! Call [`Core::tick`] after each round of inputs: it starts the queued work that may start
//! now, in arrival order (inputs themselves start new work at once only when nothing of
//! its class waits before it).

mod admit;
mod finish;
mod pause;
#[cfg(test)]
mod pause_tests;
#[cfg(test)]
mod props;
mod pump;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use finish::Outcome;

use super::effect::{Effect, EngineEvent, MailKind};
use super::plan::{Plan, WorkKey};
use super::policy::{Attempt, OpenCircuit, Policy};
use super::report::Report;
use super::seen::Seen;
use super::setup::Setup;
use super::why::Wait;
use crate::alert::Alert;
use crate::coord::WorkLock;
use crate::journal::EventKind;

/// Skip decisions remembered (so repeats are not journaled again); beyond it the oldest
/// work keys' are forgotten. About 200 bytes each.
const SKIPS_REMEMBERED: usize = 20_000;

/// HA mode as the core sees it.
#[derive(Debug, Clone)]
pub struct Ha {
    /// This instance's id (for the journal's words).
    pub instance: String,
    /// How long to wait before asking etcd again for a lock that was refused, ms.
    pub retry_ms: i64,
}

/// What etcd answered to a lock request, as the core needs it.
#[derive(Debug, Clone)]
pub enum LockAnswer {
    /// The lock is this instance's.
    Acquired(WorkLock),
    /// Another instance holds it (who, in words).
    Held(String),
    /// An instance did the work recently (who and how, in words).
    Done(String),
    /// No instance holds the lock, but a step of the work that an instance started may
    /// still run (its holder died or lost its lease mid-step): whose step and until when,
    /// in words. Asked again like [`Held`](Self::Held).
    StepRunning(String),
    /// etcd could not be asked.
    Unavailable {
        /// What failed.
        error: String,
        /// Whether etcd has been unreachable for at least a lease TTL (an outage to
        /// escalate, not a blip).
        outage: bool,
    },
}

/// Work waiting to start.
#[derive(Debug, Clone)]
struct Queued {
    id: i64,
    key: WorkKey,
    plan: Plan,
    alert: Arc<Alert>,
    not_before_ms: i64,
    guard: bool,
    /// Remediation (disruptive, or a `broker_down` rule's): never skipped for a full queue.
    remediation: bool,
    attempt: u32,
    /// The last reason it waits for, journaled once each.
    waiting: Option<Wait>,
    /// HA mode: the lock, once taken.
    lock: Option<WorkLock>,
    /// HA mode: a lock request is under way.
    acquiring: bool,
    /// HA mode: when to ask for the lock again.
    retry_at_ms: i64,
    /// What was decided about it on the way (for its outcome message).
    notes: Vec<String>,
}

impl Queued {
    /// Work `id` that may start at once (guarded), not waiting for anything yet.
    fn new(id: i64, key: WorkKey, plan: Plan, alert: Arc<Alert>, attempt: u32) -> Queued {
        Queued {
            id,
            key,
            plan,
            alert,
            not_before_ms: 0,
            guard: true,
            remediation: false,
            attempt,
            waiting: None,
            lock: None,
            acquiring: false,
            retry_at_ms: 0,
            notes: Vec::new(),
        }
    }
}

/// A firing alert that says brokers are down.
#[derive(Debug, Clone)]
struct Firing {
    down: Vec<String>,
    /// Its `endsAt`, when it has one: the mark expires then unless the alert repeats.
    until_ms: Option<i64>,
}

/// Resolves remembered per fingerprint (their `startsAt`), at most [`RESOLVES_REMEMBERED`].
#[derive(Debug, Default)]
struct Resolves {
    starts: HashMap<String, i64>,
    order: std::collections::VecDeque<String>,
}

/// Resolves remembered; beyond it the oldest are forgotten (about 60 bytes each).
pub const RESOLVES_REMEMBERED: usize = 20_000;

impl Resolves {
    fn insert(&mut self, fingerprint: &str, starts_ms: i64) {
        if self
            .starts
            .insert(fingerprint.to_string(), starts_ms)
            .is_none()
        {
            self.order.push_back(fingerprint.to_string());
        }
        while self.starts.len() > RESOLVES_REMEMBERED {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.starts.remove(&old);
        }
    }

    fn get(&self, fingerprint: &str) -> Option<i64> {
        self.starts.get(fingerprint).copied()
    }
}

/// Work running.
#[derive(Debug, Clone)]
struct Running {
    key: WorkKey,
    plan: Plan,
    alert: Arc<Alert>,
    attempt: u32,
    notes: Vec<String>,
    /// Its alert resolved while it ran (a failure is then not retried).
    resolved: bool,
}

/// The decision core. See the module documentation.
#[derive(Debug)]
pub struct Core {
    setup: Arc<Setup>,
    ha: Option<Ha>,
    policy: Policy,
    /// Queued work, in arrival order.
    queue: Vec<Queued>,
    /// Queued executions per alert fingerprint (a resolve scans the queue only if some).
    queued_by_fp: HashMap<String, usize>,
    /// Queued remediation executions (disruptive, or a `broker_down` rule's).
    queued_remediation: usize,
    running: HashMap<i64, Running>,
    inflight: HashMap<WorkKey, i64>,
    duplicates: HashMap<i64, u64>,
    /// Firing alerts that say brokers are down (rules with `broker_down`): fingerprint →
    /// those brokers. Only these: a storm of other alerts must not grow it.
    firing: HashMap<String, Firing>,
    /// The `startsAt` of the last resolve per alert fingerprint (an out-of-order firing copy
    /// of an occurrence that is over is stale), the oldest forgotten beyond a bound.
    resolves: Resolves,
    /// Brokers some firing alert says are down, with how many alerts say so.
    down: BTreeMap<String, usize>,
    /// Skip decisions already journaled, so a repeated alert does not flood the journal.
    seen: Seen,
    accepting: bool,
    /// The last execution id given.
    last_id: i64,
    /// When "coordination unavailable" was last escalated (rate limit).
    coord_escalated_ms: Option<i64>,
    /// The next time queued work waits for, as the last tick found it.
    wake_at: Option<i64>,
    /// Whether `wake_at` still holds (no queued work changed since the last tick).
    wake_known: bool,
    /// Operators' pauses, the alerts they hold back, and the silence being decided.
    pauses: pause::PauseState,
    /// Work whose last execution a precondition refused, with the precondition: the
    /// NOTICE is mailed once per streak, not at every recheck.
    refusals: HashMap<WorkKey, crate::rules::model::Precondition>,
    out: Vec<Effect>,
}

impl Core {
    /// A core deciding with `setup`, giving execution ids after `last_id` (the journal's
    /// highest), in HA mode when `ha` is given.
    pub fn new(setup: Arc<Setup>, last_id: i64, ha: Option<Ha>) -> Core {
        Core {
            setup,
            ha,
            policy: Policy::default(),
            queue: Vec::new(),
            queued_by_fp: HashMap::new(),
            queued_remediation: 0,
            running: HashMap::new(),
            inflight: HashMap::new(),
            duplicates: HashMap::new(),
            firing: HashMap::new(),
            resolves: Resolves::default(),
            down: BTreeMap::new(),
            seen: Seen::new(SKIPS_REMEMBERED),
            accepting: true,
            last_id,
            coord_escalated_ms: None,
            wake_at: None,
            wake_known: true,
            pauses: Default::default(),
            refusals: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// Restores a finished attempt of `key` from the journal (at start-up).
    pub fn restore_attempt(&mut self, key: &WorkKey, attempt: Attempt) {
        self.policy.restore(key, attempt);
    }

    /// Restores a resolve from the journal (at start-up, oldest first): a firing copy of
    /// that occurrence arriving later is stale.
    pub fn restore_resolve(&mut self, fingerprint: &str, starts_ms: i64) {
        let newer = self.resolves.get(fingerprint).is_none_or(|s| s < starts_ms);
        if newer {
            self.resolves.insert(fingerprint, starts_ms);
        }
    }

    /// Restores an open circuit from the journal (at start-up), with since when its
    /// problem has been resolved (the clock of its closing by itself goes on).
    pub fn restore_circuit(&mut self, rule: String, target: Option<String>, circuit: OpenCircuit) {
        self.policy.restore_circuit(rule, target, circuit);
    }

    /// Uses a reloaded setup from now on (work in flight keeps its plan).
    pub fn reload(&mut self, setup: Arc<Setup>) {
        self.setup = setup;
    }

    /// The setup decisions are taken with.
    pub fn setup(&self) -> &Arc<Setup> {
        &self.setup
    }

    /// Executions queued or running.
    pub fn in_flight(&self) -> usize {
        self.queue.len() + self.running.len()
    }

    /// Executions queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Diagnostics queued (bounded by `recovery.max_queued`).
    pub fn queued_diagnostics(&self) -> usize {
        self.queue.len() - self.queued_remediation
    }

    /// Remediation queued (`recovery.max_queued_remediation` is enforced by the webhook).
    pub fn queued_remediation(&self) -> usize {
        self.queued_remediation
    }

    /// Executions running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Open circuits as (rule, target, circuit).
    pub fn open_circuits(&self) -> Vec<(String, Option<String>, OpenCircuit)> {
        self.policy.open_circuits()
    }

    /// The last execution id given.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// When the core next needs a [`tick`](Self::tick) without any input (a backoff ends,
    /// a down mark or a pause expires, or in HA mode a lock is to be asked for again), if
    /// ever.
    pub fn next_wake(&self, now: i64) -> Option<i64> {
        let setup = &self.setup;
        let reset_ms = |rule: &str| setup.limits(setup.rules.rule(rule)).circuit_reset_ms;
        let circuit = self.policy.next_due(reset_ms);
        let expiry = match (self.next_expiry(), circuit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|t| t.max(now.saturating_add(1)));
        let queued = self.next_queued_wake(now);
        let pause = self.next_pause_end();
        [queued, expiry, pause].into_iter().flatten().min()
    }

    fn next_queued_wake(&self, now: i64) -> Option<i64> {
        if self.wake_known {
            // A time that was still ahead at the last tick, even if it has passed since:
            // dropping it would leave due work asleep until some other input comes.
            return self.wake_at;
        }
        let ha = self.ha.is_some();
        self.queue
            .iter()
            .flat_map(|q| {
                let retry = (ha && q.lock.is_none() && !q.acquiring).then_some(q.retry_at_ms);
                std::iter::once(q.not_before_ms).chain(retry)
            })
            .filter(|t| *t > now)
            .min()
    }

    /// An execution the runner launched could not be recorded (the round's commit failed):
    /// it never ran, so it is forgotten as if it had not been decided.
    pub fn abandon(&mut self, id: i64) {
        if let Some(r) = self.running.remove(&id) {
            self.inflight.remove(&r.key);
            self.policy.unstart(&r.key);
        }
        self.duplicates.remove(&id);
    }

    fn next_id(&mut self) -> i64 {
        self.last_id += 1;
        self.last_id
    }

    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    /// Records an event about `key` (and execution `id`).
    fn event(&mut self, now: i64, id: Option<i64>, key: &WorkKey, kind: EventKind, msg: String) {
        self.out.push(event(now, id, key, kind, msg));
    }

    /// Queues a message about `report`, when email is configured (no report is kept for
    /// nothing: a storm's runs each end with one).
    fn mail(&mut self, now: i64, kind: MailKind, report: impl FnOnce() -> Report) {
        if self.setup.composer.is_some() {
            self.out.push(Effect::Mail {
                kind,
                report: Box::new(report()),
                at_ms: now,
            });
        }
    }

    fn ended(&mut self, rule: &str, status: crate::journal::ExecStatus) {
        self.out.push(Effect::Ended {
            rule: rule.to_string(),
            status,
        });
    }

    /// Alert `fingerprint` fires, saying `down` brokers are down (replacing what it said),
    /// until `until_ms` when it has an end (its `endsAt`): a lost resolve cannot hold the
    /// guard forever.
    fn set_firing(&mut self, fingerprint: &str, down: Vec<String>, until_ms: Option<i64>) {
        self.mark_running(fingerprint, false);
        for b in &down {
            *self.down.entry(b.clone()).or_default() += 1;
        }
        let old = if down.is_empty() {
            self.firing.remove(fingerprint)
        } else {
            let entry = Firing { down, until_ms };
            self.firing.insert(fingerprint.to_string(), entry)
        };
        if let Some(old) = old {
            self.undown(&old.down);
        }
    }

    /// Alert `fingerprint` no longer fires.
    fn unset_firing(&mut self, fingerprint: &str) {
        self.mark_running(fingerprint, true);
        self.unhold(fingerprint);
        if let Some(old) = self.firing.remove(fingerprint) {
            self.undown(&old.down);
        }
    }

    /// Forgets the down marks of alerts whose `endsAt` passed without a repeat.
    fn expire_firing(&mut self, now: i64) {
        let ended: Vec<String> = self
            .firing
            .iter()
            .filter(|(_, f)| f.until_ms.is_some_and(|t| t <= now))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in ended {
            if let Some(old) = self.firing.remove(&fp) {
                self.undown(&old.down);
            }
        }
    }

    /// The next time a down mark expires.
    fn next_expiry(&self) -> Option<i64> {
        self.firing.values().filter_map(|f| f.until_ms).min()
    }

    /// Notes on the running work of alert `fingerprint` whether it resolved.
    fn mark_running(&mut self, fingerprint: &str, resolved: bool) {
        for r in self.running.values_mut() {
            if r.alert.fingerprint == fingerprint {
                r.resolved = resolved;
            }
        }
    }

    fn undown(&mut self, brokers: &[String]) {
        for b in brokers {
            if let Some(n) = self.down.get_mut(b) {
                *n -= 1;
                if *n == 0 {
                    self.down.remove(b);
                }
            }
        }
    }

    /// `q` left the queue (started, or done by a peer).
    fn unqueued(&mut self, q: &Queued) {
        self.queued_remediation -= usize::from(q.remediation);
        self.unqueue_fp(&q.alert.fingerprint);
    }

    fn unqueue_fp(&mut self, fp: &str) {
        if let Some(n) = self.queued_by_fp.get_mut(fp) {
            *n -= 1;
            if *n == 0 {
                self.queued_by_fp.remove(fp);
            }
        }
    }

    /// Whether `plan` is remediation: disruptive, or a `broker_down` rule's (a notify-only
    /// page that a broker is down is not a diagnostic to shed).
    fn is_remediation(&self, plan: &Plan) -> bool {
        plan.disruptive
            || self
                .setup
                .rules
                .rule(&plan.rule)
                .is_some_and(|r| self.setup.is_remediation(r))
    }

    fn push_queued(&mut self, mut q: Queued) {
        self.wake_known = false;
        q.remediation = self.is_remediation(&q.plan);
        self.queued_remediation += usize::from(q.remediation);
        *self
            .queued_by_fp
            .entry(q.alert.fingerprint.clone())
            .or_default() += 1;
        self.queue.push(q);
    }
}

/// An event about `key` (and execution `id`).
fn event(now: i64, id: Option<i64>, key: &WorkKey, kind: EventKind, message: String) -> Effect {
    Effect::Event(EngineEvent {
        at_ms: now,
        execution_id: id,
        rule: Some(key.rule.clone()),
        target: key.target.clone(),
        kind,
        message,
    })
}
