//! The service's decision loop: one task owns the policy state, so every decision is taken
//! in order, with no lock and no race between two copies of the same alert.
//!
//! Alerts arrive already journaled. For each, the loop plans (the same code as `dry-run`),
//! then applies the policy that needs history: one execution per [`WorkKey`] in flight,
//! cooldown, attempts with backoff and the circuit breaker, at most
//! `max_concurrent_per_cluster` disruptive executions at once, and the guard that leaves a
//! healthy broker alone while another one is down. Every decision is logged with its reason
//! and written to the journal (as an execution or an event).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::execute::{Execution, Outcome, execute};
use super::plan::{Decision, Plan, WorkKey, plan_alert};
use super::policy::{Admission, Attempt, Limits, Policy};
use super::report::{Report, escalation_mail, outcome_mail};
use crate::config::{LoadError, Loaded};
use crate::ingest::{Alert, AlertStatus};
use crate::journal::{
    Circuit, Event, ExecStatus, ExecutionFilter, Journal, NewExecution, NewMail, StepRecord,
    StepStatus,
};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::notify::message::Composer;
use crate::rules::{Rule, RuleSet};
use crate::runbook::exec::ExecOptions;

/// A consistent snapshot of configuration, rules and message templates; replaced whole
/// on reload.
#[derive(Debug)]
pub struct Setup {
    /// The configuration.
    pub loaded: Loaded,
    /// The rules.
    pub rules: RuleSet,
    /// Message templates, when email is configured.
    pub composer: Option<Composer>,
}

impl Setup {
    /// Loads the config and its rule files; any error makes the whole setup invalid (a
    /// reload then keeps the previous one). Warnings are logged.
    pub fn load(path: &std::path::Path) -> Result<Setup, LoadError> {
        let loaded = crate::config::load(path)?;
        let (rules, mut diags) = crate::rules::load_rules(&loaded);
        if diags.has_errors() {
            diags.sort();
            return Err(LoadError::Invalid(diags));
        }
        for w in loaded.warnings.items.iter().chain(&diags.items) {
            warn!("{w}");
        }
        let n = &loaded.config.notifications;
        let composer = match n.smtp {
            Some(_) => match Composer::new(&n.templates, &loaded.base_dir) {
                Ok(c) => Some(c),
                Err(e) => {
                    diags.error(&loaded.path, None, format!("notifications.templates: {e}"));
                    return Err(LoadError::Invalid(diags));
                }
            },
            None => None,
        };
        Ok(Setup {
            loaded,
            rules,
            composer,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Messages to the decision loop.
enum Msg {
    Alerts(Vec<(i64, Alert)>),
    Finished {
        id: i64,
        outcome: Outcome,
    },
    Flush {
        reply: oneshot::Sender<()>,
    },
    Reset {
        target: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    Reload(Arc<Setup>),
    Drain {
        reply: oneshot::Sender<()>,
    },
}

/// A handle to the running engine (cheap to clone).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Msg>,
    /// The current setup (read by the server for auth and readiness).
    pub setup: Arc<RwLock<Arc<Setup>>>,
    /// Tracks running executions (shutdown waits on it).
    pub tracker: TaskTracker,
    /// Cancelled when running steps must be stopped (end of the shutdown grace).
    pub cancel: CancellationToken,
    /// Woken whenever a message is put in the outbox.
    pub mail_wake: Arc<Notify>,
}

impl EngineHandle {
    /// Hands journaled alerts (with their journal ids) to the loop. Never blocks.
    pub fn submit(&self, alerts: Vec<(i64, Alert)>) -> bool {
        self.tx.send(Msg::Alerts(alerts)).is_ok()
    }

    /// Closes every open circuit of `target`; returns the rules that had one open.
    pub async fn reset(&self, target: &str) -> Vec<String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reset {
            target: target.to_string(),
            reply,
        };
        if self.tx.send(msg).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Replaces the setup (after a successful reload).
    pub fn reload(&self, setup: Arc<Setup>) {
        if let Ok(mut s) = self.setup.write() {
            *s = setup.clone();
        }
        let _ = self.tx.send(Msg::Reload(setup));
    }

    /// The current setup.
    pub fn current(&self) -> Arc<Setup> {
        match self.setup.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stops starting new work and cancels queued work; running executions go on.
    pub async fn drain(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Drain { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Shuts down: drain, let running executions finish for up to `grace`, then stop
    /// their processes (they are recorded as interrupted) and wait for the records.
    pub async fn shutdown(&self, grace: Duration) {
        self.drain().await;
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_seconds = grace.as_secs(),
                "shutdown grace over: interrupting running executions"
            );
            self.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), self.tracker.wait()).await;
        }
        // Executions report their end to the loop; wait until it has recorded them all.
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Queued {
    id: i64,
    key: WorkKey,
    plan: Plan,
    alert: Alert,
    not_before_ms: i64,
    guard: bool,
    attempt: u32,
    /// The last "why it waits" recorded, so each is journaled once.
    waiting: Option<String>,
}

struct Running {
    key: WorkKey,
    plan: Plan,
    alert: Alert,
    attempt: u32,
}

/// The decision loop's state.
pub struct Engine {
    journal: Journal,
    metrics: Arc<Metrics>,
    setup: Arc<Setup>,
    exec_opts: ExecOptions,
    policy: Policy,
    queue: Vec<Queued>,
    running: HashMap<i64, Running>,
    inflight: HashMap<WorkKey, i64>,
    duplicates: HashMap<i64, u64>,
    /// Firing alerts: fingerprint → brokers they say are down (rules with `broker_down`).
    firing: HashMap<String, Vec<String>>,
    /// Skip decisions already journaled, so a repeated alert does not flood the journal.
    skips_seen: HashSet<(WorkKey, String, &'static str)>,
    accepting: bool,
    tx: mpsc::UnboundedSender<Msg>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    mail_wake: Arc<Notify>,
}

fn limits(setup: &Setup, rule: Option<&Rule>) -> Limits {
    let r = &setup.loaded.config.recovery;
    let s = |secs: u64| (secs as i64).saturating_mul(1000);
    Limits {
        cooldown_ms: s(rule
            .and_then(|r| r.cooldown_seconds)
            .unwrap_or(r.cooldown_seconds)),
        max_attempts: rule.and_then(|r| r.max_attempts).unwrap_or(r.max_attempts),
        initial_delay_ms: s(r.initial_delay_seconds),
        backoff_multiplier: r.backoff_multiplier,
        window_ms: s(r.attempt_window_seconds),
        circuit_reset_ms: s(r.circuit_reset_seconds),
    }
}

fn fmt_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The JSON stored as an execution's `plan`: rendered steps and params.
pub fn plan_json(p: &Plan) -> serde_json::Value {
    serde_json::json!({ "steps": p.steps, "params": p.params })
}

impl Engine {
    /// Starts the decision loop. Policy state (attempts in the window, open circuits) is
    /// rebuilt from the journal, so a restart neither forgets a circuit nor re-runs work.
    pub fn start(journal: Journal, setup: Arc<Setup>, metrics: Arc<Metrics>) -> EngineHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let mail_wake = Arc::new(Notify::new());
        let r = &setup.loaded.config.recovery;
        let mut exec_opts = ExecOptions::new(Vec::new());
        exec_opts.default_timeout = Duration::from_secs(r.step_timeout_seconds);
        exec_opts.kill_grace = Duration::from_secs(r.kill_grace_seconds);
        let mut engine = Engine {
            journal,
            metrics,
            setup: setup.clone(),
            exec_opts,
            policy: Policy::default(),
            queue: Vec::new(),
            running: HashMap::new(),
            inflight: HashMap::new(),
            duplicates: HashMap::new(),
            firing: HashMap::new(),
            skips_seen: HashSet::new(),
            accepting: true,
            tx: tx.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            mail_wake: mail_wake.clone(),
        };
        engine.restore();
        tokio::spawn(engine.run(rx));
        EngineHandle {
            tx,
            setup: Arc::new(RwLock::new(setup)),
            tracker,
            cancel,
            mail_wake,
        }
    }

    fn restore(&mut self) {
        let window = limits(&self.setup, None).window_ms;
        // Per status: skips (one per alert in a storm) must not push the runs out of the
        // newest 1000, or a restart would forget cooldowns and attempts.
        let mut recent: Result<Vec<_>, crate::journal::JournalError> = Ok(Vec::new());
        for status in [
            ExecStatus::Succeeded,
            ExecStatus::Failed,
            ExecStatus::Escalated,
            ExecStatus::Interrupted,
        ] {
            let filter = ExecutionFilter {
                status: Some(status),
                since_ms: Some(now_ms() - window),
                limit: Some(1000),
                ..Default::default()
            };
            recent = recent.and_then(|mut all: Vec<_>| {
                all.extend(self.journal.list_executions(&filter)?);
                Ok(all)
            });
        }
        match recent {
            Ok(mut list) => {
                list.sort_by_key(|e| (e.created_ms, e.id));
                for e in list {
                    let ok = match e.status {
                        ExecStatus::Succeeded => true,
                        ExecStatus::Failed | ExecStatus::Escalated | ExecStatus::Interrupted => {
                            false
                        }
                        _ => continue,
                    };
                    let params =
                        serde_json::from_value(e.plan["params"].clone()).unwrap_or_default();
                    let key = WorkKey {
                        rule: e.rule,
                        target: e.target,
                        params,
                    };
                    let started = e.started_ms.unwrap_or(e.created_ms);
                    let finished = e.finished_ms.unwrap_or(started);
                    self.policy.restore(
                        &key,
                        Attempt {
                            started_ms: started,
                            finished: Some((finished, ok)),
                        },
                    );
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read recent executions: attempt history starts empty")
            }
        }
        match self.journal.open_circuits() {
            Ok(list) => {
                for c in list {
                    let target = (c.target != "-").then_some(c.target);
                    self.policy
                        .open_circuit(c.rule, target, c.opened_ms, c.reason);
                }
                self.metrics
                    .circuits_open
                    .set(self.policy.open_circuits().len() as i64);
            }
            Err(e) => warn!(error = %e, "cannot read open circuits"),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let wake = self
                .queue
                .iter()
                .map(|q| q.not_before_ms)
                .filter(|t| *t > now_ms())
                .min()
                .map(|t| Instant::now() + Duration::from_millis((t - now_ms()).max(0) as u64));
            let msg = match wake {
                Some(at) => tokio::select! {
                    m = rx.recv() => m,
                    _ = tokio::time::sleep_until(at) => { self.pump().await; continue; }
                },
                None => rx.recv().await,
            };
            let Some(msg) = msg else { break };
            match msg {
                Msg::Alerts(alerts) => {
                    for (id, alert) in alerts {
                        self.on_alert(id, alert).await;
                    }
                }
                Msg::Finished { id, outcome } => self.on_finished(id, outcome).await,
                Msg::Flush { reply } => {
                    let _ = reply.send(());
                }
                Msg::Reset { target, reply } => {
                    let closed = self.on_reset(&target).await;
                    let _ = reply.send(closed);
                }
                Msg::Reload(setup) => {
                    info!("engine uses the reloaded configuration and rules");
                    let r = &setup.loaded.config.recovery;
                    self.exec_opts.default_timeout = Duration::from_secs(r.step_timeout_seconds);
                    self.exec_opts.kill_grace = Duration::from_secs(r.kill_grace_seconds);
                    self.setup = setup;
                }
                Msg::Drain { reply } => {
                    self.on_drain().await;
                    let _ = reply.send(());
                }
            }
            self.pump().await;
            self.metrics
                .in_flight
                .set((self.queue.len() + self.running.len()) as i64);
        }
    }

    async fn event(
        &self,
        execution_id: Option<i64>,
        key: Option<&WorkKey>,
        kind: &str,
        message: String,
    ) {
        let e = Event {
            at_ms: now_ms(),
            execution_id,
            rule: key.map(|k| k.rule.clone()),
            target: key.and_then(|k| k.target.clone()),
            kind: kind.to_string(),
            message,
        };
        if let Err(err) = self.journal.add_event(e).await {
            warn!(error = %err, "cannot journal an event");
        }
    }

    async fn on_alert(&mut self, alert_id: i64, alert: Alert) {
        let now = now_ms();
        let setup = self.setup.clone();
        let plans = plan_alert(&setup.loaded.config, &setup.rules, &alert);
        if alert.status == AlertStatus::Resolved {
            self.firing.remove(&alert.fingerprint);
            for p in &plans {
                let l = limits(&setup, self.rule(&p.rule));
                self.policy
                    .health(&p.rule, p.target.as_deref(), now, true, &l);
            }
            self.cancel_queued(&alert.fingerprint, "the alert resolved before it started")
                .await;
            debug!(fingerprint = %alert.fingerprint, "resolved");
            return;
        }
        if plans.is_empty() {
            debug!(fingerprint = %alert.fingerprint, "no rule matches");
            return;
        }
        let down: Vec<String> = plans
            .iter()
            .filter(|p| {
                setup
                    .rules
                    .rules
                    .iter()
                    .any(|r| r.name == p.rule && r.broker_down)
            })
            .filter_map(|p| p.target.clone())
            .collect();
        self.firing.insert(alert.fingerprint.clone(), down);
        for p in plans {
            let l = limits(&setup, self.rule(&p.rule));
            if self
                .policy
                .health(&p.rule, p.target.as_deref(), now, false, &l)
            {
                let target = p.target.clone().unwrap_or_else(|| "-".into());
                info!(rule = %p.rule, %target, "circuit closed: the problem had stayed resolved for circuit_reset_seconds");
                if let Err(e) = self.journal.close_circuit(&p.rule, &target).await {
                    warn!(error = %e, "cannot journal a closed circuit");
                }
                self.event(None, Some(&p.work_key()), "circuit_closed", "the problem had stayed resolved for circuit_reset_seconds; this is a new occurrence".into())
                    .await;
                self.metrics
                    .circuits_open
                    .set(self.policy.open_circuits().len() as i64);
            }
            match p.decision {
                Decision::Skip => {
                    self.skip(Some(alert_id), &p, "plan", p.reason.clone())
                        .await
                }
                Decision::Run => self.decide(alert_id, &alert, p).await,
            }
        }
    }

    /// Journals a skip once per (work, alert, kind) so repeats do not flood the journal.
    async fn skip(&mut self, alert_id: Option<i64>, p: &Plan, kind: &'static str, reason: String) {
        let seen = (p.work_key(), p.fingerprint.clone(), kind);
        if !self.skips_seen.insert(seen) {
            // Repeats of a decision already journaled: a storm must not flood the log either.
            debug!(rule = %p.rule, fingerprint = %p.fingerprint, %reason, "skip (repeat)");
            return;
        }
        info!(rule = %p.rule, target = p.target.as_deref().unwrap_or("-"), fingerprint = %p.fingerprint, %reason, "skip");
        self.create(alert_id, p, ExecStatus::Skipped, reason, 0)
            .await;
        self.count(&p.rule, ExecStatus::Skipped);
    }

    fn count(&self, rule: &str, status: ExecStatus) {
        self.metrics
            .executions
            .get_or_create(&OutcomeLabels {
                rule: rule.to_string(),
                outcome: status.as_str().to_string(),
            })
            .inc();
    }

    async fn create(
        &self,
        alert_id: Option<i64>,
        p: &Plan,
        status: ExecStatus,
        reason: String,
        attempt: u32,
    ) -> Option<i64> {
        let e = NewExecution {
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
            created_ms: now_ms(),
        };
        match self.journal.create_execution(e).await {
            Ok(id) => Some(id),
            Err(err) => {
                warn!(error = %err, rule = %p.rule, "cannot journal an execution: nothing runs");
                None
            }
        }
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.setup.rules.rules.iter().find(|r| r.name == name)
    }

    async fn decide(&mut self, alert_id: i64, alert: &Alert, p: Plan) {
        let key = p.work_key();
        if let Some(id) = self.inflight.get(&key) {
            *self.duplicates.entry(*id).or_default() += 1;
            self.metrics.duplicates.inc();
            debug!(execution = id, fingerprint = %alert.fingerprint, "duplicate collapsed into the execution in flight");
            return;
        }
        if p.dry_run {
            let reason = p.reason.clone();
            info!(rule = %p.rule, target = p.target.as_deref().unwrap_or("-"), "dry_run: would run {} step(s)", p.steps.len());
            let seen = (key.clone(), p.fingerprint.clone(), "dry_run");
            if self.skips_seen.insert(seen) {
                let id = self
                    .create(Some(alert_id), &p, ExecStatus::DryRun, reason.clone(), 0)
                    .await;
                self.count(&p.rule, ExecStatus::DryRun);
                // The message shows what would have run, each step marked not run.
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
                        started_ms: now_ms(),
                        duration_ms: 0,
                        stdout: String::new(),
                        stderr: String::new(),
                        stdout_truncated: false,
                        stderr_truncated: false,
                        error: None,
                    })
                    .collect();
                let report = Report {
                    plan: &p,
                    alert,
                    execution_id: id,
                    attempt: 0,
                    status: ExecStatus::DryRun,
                    reason: &reason,
                    steps: &steps,
                    decisions: Vec::new(),
                    next:
                        "Nothing runs while dry_run is on (recovery.dry_run or the rule's dry_run)."
                            .into(),
                    ran: None,
                };
                if let Some(m) = outcome_mail(&self.setup, &report) {
                    match self.journal.enqueue_mails(vec![m]).await {
                        Ok(_) => self.mail_wake.notify_one(),
                        Err(e) => warn!(error = %e, "cannot queue the dry_run message"),
                    }
                }
            }
            return;
        }
        let rule = self.rule(&p.rule);
        let guard = rule.is_none_or(|r| r.guard);
        let l = limits(&self.setup, rule);
        let now = now_ms();
        match self.policy.admit(&key, now, &l) {
            Admission::Allow { attempt } => {
                let reason = format!("{} (attempt {attempt}/{})", p.reason, l.max_attempts);
                self.enqueue(alert_id, alert, p, attempt, now, guard, reason)
                    .await;
            }
            Admission::Backoff { attempt, until_ms } => {
                let reason = format!(
                    "{}; attempt {attempt}/{} waits for its backoff until {}",
                    p.reason,
                    l.max_attempts,
                    fmt_ms(until_ms)
                );
                self.enqueue(alert_id, alert, p, attempt, until_ms, guard, reason)
                    .await;
            }
            Admission::Cooldown { until_ms } => {
                let reason = format!(
                    "cooldown: {key} ran recently; next run allowed after {}",
                    fmt_ms(until_ms)
                );
                self.skip(Some(alert_id), &p, "cooldown", reason).await;
            }
            Admission::CircuitOpen { since_ms, reason } => {
                let target = key.target.as_deref().unwrap_or("-");
                let why = format!(
                    "circuit open since {} ({reason}); close it with POST /api/v1/targets/{target}/reset",
                    fmt_ms(since_ms)
                );
                self.skip(Some(alert_id), &p, "circuit", why).await;
            }
            Admission::Exhausted { attempts } => {
                let reason =
                    format!("{attempts} attempts within the window did not clear the alert");
                let report = Report {
                    plan: &p,
                    alert,
                    execution_id: None,
                    attempt: attempts,
                    status: ExecStatus::Skipped,
                    reason: &reason,
                    steps: &[],
                    decisions: Vec::new(),
                    next: format!(
                        "No more runs of {} on {}: after fixing it, close the circuit with \
                         kafka-healing reset (or POST /api/v1/targets/TARGET/reset).",
                        key.rule,
                        key.target.as_deref().unwrap_or("-")
                    ),
                    ran: None,
                };
                self.open_circuit(&key, Some(&report), reason.clone()).await;
                let why = format!("attempts exhausted: {reason}; circuit opened, escalated");
                self.skip(Some(alert_id), &p, "exhausted", why).await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &mut self,
        alert_id: i64,
        alert: &Alert,
        p: Plan,
        attempt: u32,
        not_before_ms: i64,
        guard: bool,
        reason: String,
    ) {
        let key = p.work_key();
        let mut q = Queued {
            id: 0,
            key: key.clone(),
            plan: p,
            alert: alert.clone(),
            not_before_ms,
            guard,
            attempt,
            waiting: None,
        };
        // Work that may start at once is created `running`: one commit fewer between the
        // alert and its first step.
        let now = now_ms();
        let start_now = self.accepting && self.blocked(&q, now).is_none();
        let status = if start_now {
            ExecStatus::Running
        } else {
            ExecStatus::Queued
        };
        let Some(id) = self
            .create(Some(alert_id), &q.plan, status, reason.clone(), attempt)
            .await
        else {
            return;
        };
        q.id = id;
        info!(execution = id, rule = %key.rule, target = key.target.as_deref().unwrap_or("-"), %reason, "{}", status.as_str());
        self.skips_seen.retain(|(k, _, _)| *k != key);
        self.inflight.insert(key, id);
        if start_now {
            self.launch(q, now, true);
        } else {
            self.queue.push(q);
        }
    }

    /// Opens the circuit of `key`, records it and escalates (event, and a message when
    /// email is configured).
    async fn open_circuit(&mut self, key: &WorkKey, report: Option<&Report<'_>>, reason: String) {
        let now = now_ms();
        let execution_id = report.and_then(|r| r.execution_id);
        self.policy.open(key, now, reason.clone());
        let c = Circuit {
            rule: key.rule.clone(),
            target: key.target.clone().unwrap_or_else(|| "-".into()),
            opened_ms: now,
            reason: reason.clone(),
        };
        if let Err(e) = self.journal.open_circuit(c).await {
            warn!(error = %e, "cannot journal an open circuit");
        }
        warn!(rule = %key.rule, target = key.target.as_deref().unwrap_or("-"), %reason, "circuit opened: escalating");
        self.event(execution_id, Some(key), "circuit_opened", reason.clone())
            .await;
        self.event(
            execution_id,
            Some(key),
            "escalation",
            format!("{key}: {reason}; a human is needed"),
        )
        .await;
        if let Some(m) = report
            .and_then(|r| escalation_mail(&self.setup, r, &format!("circuit opened: {reason}")))
        {
            match self.journal.enqueue_mails(vec![m]).await {
                Ok(_) => self.mail_wake.notify_one(),
                Err(e) => warn!(error = %e, "cannot queue the escalation message"),
            }
        }
        self.metrics
            .circuits_open
            .set(self.policy.open_circuits().len() as i64);
    }

    async fn cancel_queued(&mut self, fingerprint: &str, why: &str) {
        let (gone, keep): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| q.alert.fingerprint == fingerprint);
        self.queue = keep;
        for q in gone {
            self.inflight.remove(&q.key);
            info!(execution = q.id, rule = %q.key.rule, "cancelled: {why}");
            if let Some(n) = self.duplicates.remove(&q.id) {
                let msg = format!("{n} duplicate alert(s) collapsed into this execution");
                self.event(Some(q.id), Some(&q.key), "duplicates", msg)
                    .await;
            }
            self.event(Some(q.id), Some(&q.key), "cancelled", why.to_string())
                .await;
            if let Err(e) = self
                .journal
                .set_status(q.id, ExecStatus::Cancelled, Some(why.to_string()), now_ms())
                .await
            {
                warn!(error = %e, "cannot journal a cancellation");
            }
            self.count(&q.key.rule, ExecStatus::Cancelled);
        }
    }

    async fn on_drain(&mut self) {
        self.accepting = false;
        let ids: Vec<String> = self
            .queue
            .iter()
            .map(|q| q.alert.fingerprint.clone())
            .collect();
        for fp in ids {
            self.cancel_queued(&fp, "the service shut down before it started")
                .await;
        }
    }

    async fn on_reset(&mut self, target: &str) -> Vec<String> {
        let closed = self.policy.reset_target(target);
        for rule in &closed {
            if let Err(e) = self.journal.close_circuit(rule, target).await {
                warn!(error = %e, "cannot journal a closed circuit");
            }
            let key = WorkKey {
                rule: rule.clone(),
                target: Some(target.to_string()),
                params: Default::default(),
            };
            info!(rule = %rule, target, "circuit closed by reset");
            self.event(None, Some(&key), "circuit_closed", "closed by reset".into())
                .await;
        }
        self.skips_seen
            .retain(|(k, _, _)| k.target.as_deref() != Some(target));
        self.metrics
            .circuits_open
            .set(self.policy.open_circuits().len() as i64);
        closed
    }

    /// Why queued work `q` cannot start now, or `None` when it can.
    fn blocked(&self, q: &Queued, now: i64) -> Option<String> {
        if q.not_before_ms > now {
            return Some(format!("backoff until {}", fmt_ms(q.not_before_ms)));
        }
        if !q.plan.disruptive {
            return None;
        }
        let running: Vec<&Running> = self
            .running
            .values()
            .filter(|r| r.plan.disruptive)
            .collect();
        let max = self
            .setup
            .loaded
            .config
            .recovery
            .max_concurrent_per_cluster
            .max(1) as usize;
        if running.len() >= max {
            let who: Vec<String> = running
                .iter()
                .map(|r| {
                    format!(
                        "{} on {}",
                        r.key.rule,
                        r.key.target.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            return Some(format!(
                "waiting for a cluster slot: {} running (max_concurrent_per_cluster = {max})",
                who.join(", ")
            ));
        }
        if !q.guard {
            return None;
        }
        let me = q.key.target.as_deref();
        if let Some(r) = running.iter().find(|r| r.key.target.as_deref() != me) {
            return Some(format!(
                "guard: broker {} is being remediated",
                r.key.target.as_deref().unwrap_or("-")
            ));
        }
        let down: HashSet<&str> = self.firing.values().flatten().map(String::as_str).collect();
        let me_down = me.is_some_and(|t| down.contains(t));
        let mut others: Vec<&str> = down.into_iter().filter(|t| Some(*t) != me).collect();
        if !others.is_empty() && !me_down {
            others.sort_unstable();
            return Some(format!(
                "guard: broker {} is down; a healthy broker is not touched meanwhile",
                others.join(", ")
            ));
        }
        None
    }

    /// Starts every queued execution that may start now, in arrival order.
    async fn pump(&mut self) {
        if !self.accepting {
            return;
        }
        let now = now_ms();
        let mut i = 0;
        while i < self.queue.len() {
            match self.blocked(&self.queue[i], now) {
                Some(why) => {
                    if self.queue[i].waiting.as_deref() != Some(why.as_str()) {
                        let (id, key) = (self.queue[i].id, self.queue[i].key.clone());
                        info!(execution = id, %why, "waiting");
                        self.event(Some(id), Some(&key), "waiting", why.clone())
                            .await;
                        self.queue[i].waiting = Some(why);
                    }
                    i += 1;
                }
                None => {
                    let q = self.queue.remove(i);
                    self.launch(q, now, false);
                }
            }
        }
    }

    fn launch(&mut self, q: Queued, now: i64, marked_running: bool) {
        self.policy.started(&q.key, now);
        let setup = self.setup.clone();
        let broker = q
            .key
            .target
            .as_ref()
            .and_then(|t| {
                setup
                    .loaded
                    .config
                    .cluster
                    .kafka_brokers
                    .iter()
                    .find(|b| &b.node_id == t)
            })
            .cloned();
        let job = Execution {
            id: q.id,
            plan: q.plan.clone(),
            alert: q.alert.clone(),
            attempt: q.attempt,
            cluster: setup.loaded.config.cluster.name.clone(),
            broker,
            marked_running,
        };
        info!(execution = q.id, rule = %q.key.rule, target = q.key.target.as_deref().unwrap_or("-"), "starting");
        self.running.insert(
            q.id,
            Running {
                key: q.key,
                plan: q.plan,
                alert: q.alert,
                attempt: q.attempt,
            },
        );
        let (journal, metrics, opts, cancel, tx) = (
            self.journal.clone(),
            self.metrics.clone(),
            self.exec_opts.clone(),
            self.cancel.clone(),
            self.tx.clone(),
        );
        self.tracker.spawn(async move {
            let outcome = execute(job, &journal, &metrics, opts, &cancel).await;
            let _ = tx.send(Msg::Finished { id: q.id, outcome });
        });
    }

    async fn on_finished(&mut self, id: i64, outcome: Outcome) {
        let Some(r) = self.running.remove(&id) else {
            return;
        };
        let status = outcome.status;
        self.inflight.remove(&r.key);
        self.count(&r.key.rule, status);
        // The policy decisions recorded along the way, for the message.
        let journal = self.journal.clone();
        let mut decisions: Vec<String> =
            tokio::task::spawn_blocking(move || journal.get_execution(id))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .map(|(_, _, events)| events.into_iter().map(|e| e.message).collect())
                .unwrap_or_default();
        let dups = self.duplicates.remove(&id);
        if let Some(n) = dups {
            let msg = format!("{n} duplicate alert(s) collapsed into this execution");
            decisions.push(msg.clone());
            self.event(Some(id), Some(&r.key), "duplicates", msg).await;
        }
        let rule = self.rule(&r.key.rule).cloned();
        let l = limits(&self.setup, rule.as_ref());
        let now = now_ms();
        let attempts = self
            .policy
            .finished(&r.key, now, status == ExecStatus::Succeeded, &l);
        let firing = self.firing.contains_key(&r.alert.fingerprint);
        let target = r.key.target.as_deref().unwrap_or("-");
        // What happens next, decided before the outcome is recorded so the message says it.
        enum Next {
            Nothing,
            Retry { attempt: u32, until_ms: i64 },
            Circuit(String),
        }
        let next = match status {
            ExecStatus::Escalated => Next::Circuit(format!("execution {id} escalated")),
            ExecStatus::Failed if firing && self.accepting && attempts >= l.max_attempts => {
                Next::Circuit(format!(
                    "attempt {attempts}/{} failed: no attempts left in the window",
                    l.max_attempts
                ))
            }
            ExecStatus::Failed if firing && self.accepting => {
                let attempt = attempts + 1;
                Next::Retry {
                    attempt,
                    until_ms: now + l.backoff_ms(attempt),
                }
            }
            _ => Next::Nothing,
        };
        let next_text = match (&next, status) {
            (Next::Circuit(why), _) => format!(
                "No more runs of {} on {target}: its circuit is open ({why}) and this was escalated. \
                 After fixing it, close the circuit: kafka-healing reset -c CONFIG {target} \
                 (or POST /api/v1/targets/{target}/reset).",
                r.key.rule
            ),
            (Next::Retry { attempt, until_ms }, _) => format!(
                "The alert is still firing: attempt {attempt}/{} runs after {} unless the alert resolves first.",
                l.max_attempts,
                fmt_ms(*until_ms)
            ),
            (Next::Nothing, ExecStatus::Succeeded) => format!(
                "Nothing: {} will not run again on {target} before {} (cooldown). If the alert keeps firing after that, it runs again (attempt {}/{} in the window).",
                r.key.rule,
                fmt_ms(now + l.cooldown_ms),
                attempts + 1,
                l.max_attempts
            ),
            (Next::Nothing, ExecStatus::Interrupted) => {
                "Nothing automatic: an interrupted execution is never re-run blindly. Check the target.".into()
            }
            (Next::Nothing, _) => "Nothing: the alert is no longer firing.".into(),
        };
        let report = Report {
            plan: &r.plan,
            alert: &r.alert,
            execution_id: Some(id),
            attempt: r.attempt,
            status,
            reason: &outcome.reason,
            steps: &outcome.steps,
            decisions,
            next: next_text,
            ran: Some(outcome.ran),
        };
        let mails: Vec<NewMail> = outcome_mail(&self.setup, &report).into_iter().collect();
        let queued_mail = !mails.is_empty();
        if let Err(e) = self
            .journal
            .finish_execution(id, status, outcome.reason.clone(), now, mails)
            .await
        {
            warn!(execution = id, error = %e, "cannot journal the execution's end");
        }
        if queued_mail {
            self.mail_wake.notify_one();
        }
        if status == ExecStatus::Interrupted {
            // Stopped half-way by a shutdown: a human must look, as after a crash.
            let why = "an execution was interrupted (the service stopped while it ran)";
            if let Some(m) = escalation_mail(&self.setup, &report, why) {
                match self.journal.enqueue_mails(vec![m]).await {
                    Ok(_) => self.mail_wake.notify_one(),
                    Err(e) => warn!(error = %e, "cannot queue the escalation message"),
                }
            }
        }
        match next {
            Next::Circuit(why) => self.open_circuit(&r.key, Some(&report), why).await,
            Next::Retry { attempt, until_ms } => {
                let reason = format!(
                    "retry {attempt}/{} of {} after execution {id} failed; not before {}",
                    l.max_attempts,
                    r.key,
                    fmt_ms(until_ms)
                );
                self.event(Some(id), Some(&r.key), "retry_scheduled", reason.clone())
                    .await;
                let guard = rule.as_ref().is_none_or(|r| r.guard);
                if let Some(new_id) = self
                    .create(None, &r.plan, ExecStatus::Queued, reason, attempt)
                    .await
                {
                    self.inflight.insert(r.key.clone(), new_id);
                    self.queue.push(Queued {
                        id: new_id,
                        key: r.key,
                        plan: r.plan,
                        alert: r.alert,
                        not_before_ms: until_ms,
                        guard,
                        attempt,
                        waiting: None,
                    });
                }
            }
            Next::Nothing => {}
        }
    }
}
