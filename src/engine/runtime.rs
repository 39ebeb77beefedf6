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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::execute::{Execution, Fence, Outcome, execute};
use super::plan::{Decision, Plan, WorkKey, plan_alert};
use super::policy::{Admission, Attempt, Limits, Policy};
use super::report::{Report, escalation_mail, outcome_mail};
use super::seen::Seen;
use crate::clock::rfc3339_ms;
use crate::config::{LoadError, Loaded};
use crate::coord::{Acquire, CoordError, Coordinator, WorkLock, WorkRequest};
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
    /// HA mode: the answer to a lock request for queued execution `id`.
    Acquired {
        id: i64,
        result: Result<Acquire, CoordError>,
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
    /// Alerts handed to the loop and not yet decided.
    pending: Arc<AtomicUsize>,
    /// The same count, as the `decision_backlog` metric.
    backlog: prometheus_client::metrics::gauge::Gauge,
}

impl EngineHandle {
    /// Hands journaled alerts (with their journal ids) to the loop. Never blocks.
    pub fn submit(&self, alerts: Vec<(i64, Alert)>) -> bool {
        let n = alerts.len();
        self.pending.fetch_add(n, Ordering::Relaxed);
        self.backlog.inc_by(n as i64);
        let sent = self.tx.send(Msg::Alerts(alerts)).is_ok();
        if !sent {
            self.pending.fetch_sub(n, Ordering::Relaxed);
            self.backlog.dec_by(n as i64);
        }
        sent
    }

    /// Alerts handed to the loop and not yet decided (the webhook's back-pressure).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
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
    /// HA mode: the lock, once taken.
    lock: Option<WorkLock>,
    /// HA mode: a lock request is under way.
    acquiring: bool,
    /// HA mode: when to ask for the lock again.
    retry_at_ms: i64,
}

struct Running {
    key: WorkKey,
    plan: Plan,
    alert: Alert,
    attempt: u32,
}

/// Skip decisions remembered (so repeats are not journaled again); beyond it the oldest
/// work keys' are forgotten. About 200 bytes each.
const SKIPS_REMEMBERED: usize = 20_000;

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
    skips_seen: Seen,
    accepting: bool,
    tx: mpsc::UnboundedSender<Msg>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    mail_wake: Arc<Notify>,
    /// HA mode: the coordinator (etcd); `None` for a single instance.
    coord: Option<Arc<Coordinator>>,
    /// When "coordination unavailable" was last escalated (rate limit).
    coord_escalated_ms: Option<i64>,
    /// Shared with the handle: alerts submitted and not yet decided.
    pending: Arc<AtomicUsize>,
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

/// The Kubernetes connection `kube` steps use, when the config has a `kubernetes:` section.
fn kube_conn(loaded: &Loaded) -> Option<Arc<crate::runbook::exec::KubeConn>> {
    let k = loaded.config.kubernetes.clone()?;
    let k = crate::runbook::exec::resolve_kubeconfig(k, &loaded.base_dir);
    Some(Arc::new(crate::runbook::exec::KubeConn::new(k)))
}

/// The JSON stored as an execution's `plan`: rendered steps and params.
pub fn plan_json(p: &Plan) -> serde_json::Value {
    serde_json::json!({ "steps": p.steps, "params": p.params })
}

impl Engine {
    /// Starts the decision loop. Policy state (attempts in the window, open circuits) is
    /// rebuilt from the journal, so a restart neither forgets a circuit nor re-runs work.
    pub fn start(journal: Journal, setup: Arc<Setup>, metrics: Arc<Metrics>) -> EngineHandle {
        Engine::start_with(journal, setup, metrics, None)
    }

    /// Like [`start`](Self::start); with `coord` (HA mode) every execution first takes its
    /// lock in etcd, and runs only under it.
    pub fn start_with(
        journal: Journal,
        setup: Arc<Setup>,
        metrics: Arc<Metrics>,
        coord: Option<Arc<Coordinator>>,
    ) -> EngineHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let mail_wake = Arc::new(Notify::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let metrics_backlog = metrics.decision_backlog.clone();
        let r = &setup.loaded.config.recovery;
        let mut exec_opts = ExecOptions::new(Vec::new());
        exec_opts.default_timeout = Duration::from_secs(r.step_timeout_seconds);
        exec_opts.kill_grace = Duration::from_secs(r.kill_grace_seconds);
        exec_opts.kube = kube_conn(&setup.loaded);
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
            skips_seen: Seen::new(SKIPS_REMEMBERED),
            accepting: true,
            tx: tx.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            mail_wake: mail_wake.clone(),
            coord,
            coord_escalated_ms: None,
            pending: pending.clone(),
        };
        engine.restore();
        tokio::spawn(engine.run(rx));
        EngineHandle {
            tx,
            setup: Arc::new(RwLock::new(setup)),
            tracker,
            cancel,
            mail_wake,
            pending,
            backlog: metrics_backlog,
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
            let ha = self.coord.is_some();
            let wake = self
                .queue
                .iter()
                .flat_map(|q| {
                    let retry = (ha && q.lock.is_none() && !q.acquiring).then_some(q.retry_at_ms);
                    std::iter::once(q.not_before_ms).chain(retry)
                })
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
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        self.metrics.decision_backlog.dec();
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
                    let kube = kube_conn(&setup.loaded);
                    // Keep the connection (and what it replaced) unless its config changed.
                    if kube.as_ref().map(|k| k.config())
                        != self.exec_opts.kube.as_ref().map(|k| k.config())
                    {
                        self.exec_opts.kube = kube;
                    }
                    self.setup = setup;
                }
                Msg::Drain { reply } => {
                    self.on_drain().await;
                    let _ = reply.send(());
                }
                Msg::Acquired { id, result } => self.on_acquired(id, result).await,
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
        if !self.skips_seen.insert(&p.work_key(), &p.fingerprint, kind) {
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
            if self.skips_seen.insert(&key, &p.fingerprint, "dry_run") {
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
                    rfc3339_ms(until_ms)
                );
                self.enqueue(alert_id, alert, p, attempt, until_ms, guard, reason)
                    .await;
            }
            Admission::Cooldown { until_ms } => {
                let reason = format!(
                    "cooldown: {key} ran recently; next run allowed after {}",
                    rfc3339_ms(until_ms)
                );
                self.skip(Some(alert_id), &p, "cooldown", reason).await;
            }
            Admission::CircuitOpen { since_ms, reason } => {
                let target = key.target.as_deref().unwrap_or("-");
                let why = format!(
                    "circuit open since {} ({reason}); close it with POST /api/v1/targets/{target}/reset",
                    rfc3339_ms(since_ms)
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
            lock: None,
            acquiring: false,
            retry_at_ms: 0,
        };
        // Work that may start at once is created `running`: one commit fewer between the
        // alert and its first step.
        let now = now_ms();
        // In HA mode the lock comes first: the work is queued and asks for it at once.
        let start_now = self.coord.is_none() && self.accepting && self.blocked(&q, now).is_none();
        let max_queued = self.setup.loaded.config.recovery.max_queued as usize;
        if !start_now && self.queue.len() >= max_queued {
            let why = format!(
                "queue full: {} executions already waiting (max_queued = {max_queued}); \
                 this alert is journaled but nothing runs for it",
                self.queue.len()
            );
            self.skip(Some(alert_id), &q.plan, "queue-full", why).await;
            return;
        }
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
        self.skips_seen.forget(&key);
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
        for mut q in gone {
            self.release(q.lock.take(), None);
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
        self.skips_seen.forget_target(target);
        self.metrics
            .circuits_open
            .set(self.policy.open_circuits().len() as i64);
        closed
    }

    /// Why queued work `q` cannot start now, or `None` when it can.
    fn blocked(&self, q: &Queued, now: i64) -> Option<String> {
        if q.not_before_ms > now {
            return Some(format!("backoff until {}", rfc3339_ms(q.not_before_ms)));
        }
        if !q.plan.disruptive {
            // Diagnostics have their own bound: a storm of distinct alerts must not start
            // thousands of processes at once.
            let max = self
                .setup
                .loaded
                .config
                .recovery
                .max_concurrent_diagnostics
                .max(1) as usize;
            let n = self.running.values().filter(|r| !r.plan.disruptive).count();
            return (n >= max).then(|| {
                format!("waiting for a diagnostics slot (max_concurrent_diagnostics = {max})")
            });
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
        // HA mode: work asking for (or holding) its lock has its slot already.
        let claiming: Vec<&Queued> = self
            .queue
            .iter()
            .filter(|x| x.id != q.id && x.plan.disruptive && (x.acquiring || x.lock.is_some()))
            .collect();
        if running.len() + claiming.len() >= max {
            let who: Vec<String> = running
                .iter()
                .map(|r| &r.key)
                .chain(claiming.iter().map(|x| &x.key))
                .map(|k| format!("{} on {}", k.rule, k.target.as_deref().unwrap_or("-")))
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
                    // A lock is not kept while waiting locally (a guard, backoff): a peer
                    // may need the cluster slot it holds.
                    let idle = self.queue[i].lock.take();
                    self.release(idle, None);
                    if self.queue[i].waiting.as_deref() != Some(why.as_str()) {
                        let (id, key) = (self.queue[i].id, self.queue[i].key.clone());
                        info!(execution = id, %why, "waiting");
                        self.event(Some(id), Some(&key), "waiting", why.clone())
                            .await;
                        self.queue[i].waiting = Some(why);
                    }
                    i += 1;
                }
                None if self.coord.is_some() && self.queue[i].lock.is_none() => {
                    self.request_lock(i, now);
                    i += 1;
                }
                None => {
                    let q = self.queue.remove(i);
                    self.launch(q, now, false);
                }
            }
        }
    }

    /// HA mode: asks etcd for queued work `i`'s lock, unless a request is under way or it
    /// is too early to ask again. The answer comes back as [`Msg::Acquired`].
    fn request_lock(&mut self, i: usize, now: i64) {
        let Some(coord) = self.coord.clone() else {
            return;
        };
        let slots = self.setup.loaded.config.recovery.max_concurrent_per_cluster;
        let q = &mut self.queue[i];
        if q.acquiring || q.retry_at_ms > now {
            return;
        }
        q.acquiring = true;
        let req = WorkRequest {
            work: q.key.to_string(),
            identity: q.key.to_string(),
            target: q.key.target.clone(),
            disruptive: q.plan.disruptive,
            slots,
            execution: q.id,
        };
        let (tx, id) = (self.tx.clone(), q.id);
        tokio::spawn(async move {
            let result = coord.acquire(&req).await;
            let _ = tx.send(Msg::Acquired { id, result });
        });
    }

    /// Releases a lock that will not be used (best effort, in the background).
    fn release(&self, lock: Option<WorkLock>, done: Option<(&'static str, u64)>) {
        if let (Some(coord), Some(lock)) = (self.coord.clone(), lock) {
            tokio::spawn(async move { coord.release(lock, done).await });
        }
    }

    /// Journals why queued work `i` waits, once per reason.
    async fn note_waiting(&mut self, i: usize, why: String) {
        if self.queue[i].waiting.as_deref() == Some(why.as_str()) {
            return;
        }
        let (id, key) = (self.queue[i].id, self.queue[i].key.clone());
        info!(execution = id, %why, "waiting");
        self.event(Some(id), Some(&key), "waiting", why.clone())
            .await;
        self.queue[i].waiting = Some(why);
    }

    /// HA mode: what etcd answered to a lock request.
    async fn on_acquired(&mut self, id: i64, result: Result<Acquire, CoordError>) {
        let Some(i) = self.queue.iter().position(|q| q.id == id) else {
            // Cancelled meanwhile: give the lock back at once.
            if let Ok(Acquire::Acquired(lock)) = result {
                self.release(Some(lock), None);
            }
            return;
        };
        self.queue[i].acquiring = false;
        let retry = self
            .coord
            .as_ref()
            .map_or(1000, |c| c.retry_period().as_millis() as i64);
        match result {
            Ok(Acquire::Acquired(lock)) => {
                let me = self.coord.as_ref().map(|c| c.instance_id().to_string());
                let msg = format!(
                    "lock taken in etcd by instance {} at revision {}",
                    me.unwrap_or_default(),
                    lock.revision()
                );
                let key = self.queue[i].key.clone();
                self.event(Some(id), Some(&key), "lock_acquired", msg).await;
                self.queue[i].lock = Some(lock);
            }
            Ok(Acquire::Held(holder)) => {
                self.queue[i].retry_at_ms = now_ms() + retry;
                let why = format!(
                    "HA: the lock is held by {holder}; this instance runs it only if that one dies (lease expiry) before finishing"
                );
                self.note_waiting(i, why).await;
            }
            Ok(Acquire::Done(by)) => {
                let q = self.queue.remove(i);
                self.inflight.remove(&q.key);
                self.duplicates.remove(&id);
                let why =
                    format!("HA: already done by {by}; peers leave it alone for its cooldown");
                info!(execution = id, rule = %q.key.rule, %why, "skip");
                self.event(Some(id), Some(&q.key), "skip", why.clone())
                    .await;
                if let Err(e) = self
                    .journal
                    .set_status(id, ExecStatus::Skipped, Some(why), now_ms())
                    .await
                {
                    warn!(error = %e, "cannot journal a skip");
                }
                self.count(&q.key.rule, ExecStatus::Skipped);
            }
            Err(e) => {
                self.queue[i].retry_at_ms = now_ms() + retry;
                let why =
                    format!("HA: coordination unavailable, nothing runs without the lock: {e}");
                self.note_waiting(i, why.clone()).await;
                self.escalate_coordination(i, &why).await;
            }
        }
    }

    /// Escalates "coordination unavailable" at most once per `notifications.rate_limit_seconds`
    /// (at least a minute), not once per alert.
    async fn escalate_coordination(&mut self, i: usize, why: &str) {
        // A blip shorter than the lease TTL (or the first contact at start) is no outage.
        let outage = self
            .coord
            .as_ref()
            .and_then(|c| c.down_for().map(|d| d >= c.ttl()));
        if outage != Some(true) {
            return;
        }
        let now = now_ms();
        let every = (self
            .setup
            .loaded
            .config
            .notifications
            .rate_limit_seconds
            .max(60) as i64)
            * 1000;
        if self.coord_escalated_ms.is_some_and(|t| now - t < every) {
            return;
        }
        self.coord_escalated_ms = Some(now);
        let q = &self.queue[i];
        warn!(%why, "escalating: coordination unavailable");
        self.event(
            Some(q.id),
            Some(&q.key),
            "escalation",
            format!("{why}; a human is needed (is etcd up?)"),
        )
        .await;
        let report = Report {
            plan: &q.plan,
            alert: &q.alert,
            execution_id: Some(q.id),
            attempt: q.attempt,
            status: ExecStatus::Queued,
            reason: why,
            steps: &[],
            decisions: Vec::new(),
            next: "The work waits; it runs once this instance holds its lease and the lock \
                   again (unless the alert resolves first). Check etcd."
                .into(),
            ran: None,
        };
        if let Some(m) = escalation_mail(
            &self.setup,
            &report,
            "coordination (etcd) unavailable: no remediation runs",
        ) {
            match self.journal.enqueue_mails(vec![m]).await {
                Ok(_) => self.mail_wake.notify_one(),
                Err(e) => warn!(error = %e, "cannot queue the escalation message"),
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
            fence: None,
        };
        let mut job = job;
        let fence = match (&self.coord, q.lock) {
            (Some(coord), Some(lock)) => Some(Fence {
                coord: coord.clone(),
                lock,
            }),
            _ => None,
        };
        job.fence = fence.clone();
        // How long peers leave this work alone after it ends (HA mode): the cooldown after
        // a success, the retry delay after a failure, the attempt window after an escalation.
        let l = limits(&setup, self.rule(&q.key.rule));
        let secs = |ms: i64| (ms / 1000).max(1) as u64;
        let (cooldown, retry, window) = (
            secs(l.cooldown_ms),
            secs(l.initial_delay_ms),
            secs(l.window_ms),
        );
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
            if let Some(f) = fence {
                let done = match outcome.status {
                    ExecStatus::Succeeded => Some(("succeeded", cooldown)),
                    ExecStatus::Failed => Some(("failed", retry)),
                    ExecStatus::Escalated => Some(("escalated", window)),
                    // Interrupted (fenced, shut down): a peer may take the work over.
                    _ => None,
                };
                f.coord.release(f.lock, done).await;
            }
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
                rfc3339_ms(*until_ms)
            ),
            (Next::Nothing, ExecStatus::Succeeded) => format!(
                "Nothing: {} will not run again on {target} before {} (cooldown). If the alert keeps firing after that, it runs again (attempt {}/{} in the window).",
                r.key.rule,
                rfc3339_ms(now + l.cooldown_ms),
                attempts + 1,
                l.max_attempts
            ),
            (Next::Nothing, ExecStatus::Interrupted) if outcome.reason.starts_with("fenced") => {
                "Nothing here: this instance lost its lock, so the instance that holds it now may run the remediation. Check the target.".into()
            }
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
            let why = if outcome.reason.starts_with("fenced") {
                "an execution was stopped half-way: this instance lost its lock (fenced)"
            } else {
                "an execution was interrupted (the service stopped while it ran)"
            };
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
                    rfc3339_ms(until_ms)
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
                        lock: None,
                        acquiring: false,
                        retry_at_ms: 0,
                    });
                }
            }
            Next::Nothing => {}
        }
    }
}
