//! The engine's runner: the thin async shell around the decision [`Core`].
//!
//! One task, on a thread of its own 10 nice levels below the service (so that deciding a
//! storm leaves the CPU to the webhook's answers), takes every message waiting (up to a
//! bound), runs them through the core in order, commits **all journal effects of the round
//! in one transaction**, and only then carries out the rest: launches, lock requests, mail
//! wake-ups. A round's decisions are therefore durable before anything they decided
//! happens; a crash between the commit and a launch leaves the execution `running` in the
//! journal, reported `interrupted` at the next start and never re-run blindly. Alerts
//! journaled but not decided when the process died are decided at start-up. Executions
//! run on the service's runtime, not on the engine's thread.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::decide::{Core, Ha, LockAnswer};
use super::effect::{Effect, Launch, MailKind};
use super::execute::{Execution, Fence, execute};
use super::handle::{AlertSink, Backlog, EngineHandle, Intake, Msg};
use super::pause::{Pause, PauseError};
use super::report::{escalation_mail, outcome_mail};
use super::setup::{Setup, SetupCell};
use super::why::EndCause;
use crate::clock::now_ms;
use crate::config::Loaded;
use crate::coord::{Acquire, Coordinator, SharedAttempt};
use crate::journal::{EventKind, ExecStatus, Journal, WriteOp};
use crate::kafka::ClientOptions;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::runbook::exec::ExecOptions;
use crate::runbook::precondition::Safety;
use crate::runbook::precondition::zk::ZkGuard;

/// Most alerts decided in one round (one journal transaction). Bigger rounds are no
/// faster once the fsync is shared by a thousand decisions, and hold more memory (measured:
/// peak RSS 107 MiB at 4,096, 84 MiB at 1,024, 83 MiB at 512, at the same rate).
const ROUND_ALERTS: usize = 1024;
/// Most other messages taken in one round.
const ROUND_MESSAGES: usize = 1024;
/// Undecided alerts read back per query at start-up.
const UNDECIDED_CHUNK: u32 = 5000;

/// Starts the engine.
pub struct Engine;

impl Engine {
    /// Starts the engine. Policy state (attempts in the window, open circuits) is rebuilt
    /// from the journal, so a restart neither forgets a circuit nor re-runs work, and
    /// alerts the journal holds undecided are decided first.
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
        let (intake_tx, intake_rx) = mpsc::unbounded_channel();
        let backlog = Backlog::new(metrics.decision_backlog.clone());
        let last_id = journal.last_execution_id().unwrap_or_else(|e| {
            // Ids then collide with existing rows and those rounds fail loudly; better than
            // not starting at all (the journal is probably unreadable anyway).
            error!(error = %e, "cannot read the last execution id");
            0
        });
        let ha = coord.as_ref().map(|c| Ha {
            instance: c.instance_id().to_string(),
            retry_ms: i64::try_from(c.retry_period().as_millis()).unwrap_or(1000),
        });
        let mut core = Core::new(setup.clone(), last_id, ha);
        super::restore::restore(&mut core, &journal, now_ms());
        metrics.circuits_open.set(core.open_circuits().len() as i64);
        metrics.set_pauses(&core.pauses(now_ms()));
        let sink = AlertSink::new(intake_tx, backlog.clone());
        resubmit_undecided(&journal, &sink);
        let r = &setup.loaded.config.recovery;
        let mut exec_opts = ExecOptions::new(Vec::new());
        exec_opts.default_timeout = Duration::from_secs(r.step_timeout_seconds);
        exec_opts.kill_grace = Duration::from_secs(r.kill_grace_seconds);
        exec_opts.nice = r.diagnostics_nice;
        exec_opts.kube = kube_conn(&setup.loaded);
        let safety = safety_for(&setup.loaded);
        let handle = EngineHandle {
            tx: tx.clone(),
            setup: SetupCell::new(setup),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            mail_wake: Arc::new(Notify::new()),
            alerts: sink,
            admission: Arc::default(),
            remediation: Arc::default(),
        };
        let peers = coord.clone().map(super::peers::Peers::start);
        let runner = Runner {
            core,
            journal,
            metrics,
            exec_opts,
            safety,
            coord,
            tx,
            tracker: handle.tracker.clone(),
            main: tokio::runtime::Handle::current(),
            cancel: handle.cancel.clone(),
            mail_wake: handle.mail_wake.clone(),
            backlog,
            admission: handle.admission.clone(),
            remediation: handle.remediation.clone(),
            peers,
        };
        run_on_own_thread(runner, rx, intake_rx);
        handle
    }
}

/// How many nice levels the engine's thread runs below the service: deciding a storm
/// must not take the CPU from the webhook's answers (measured in BENCHMARKS.md).
const ENGINE_NICE: u32 = 10;

/// Runs the engine on a thread of its own, at a lower priority, with a runtime of its
/// own: a round of a thousand decisions then never holds a worker that a webhook request
/// waits for.
fn run_on_own_thread(
    runner: Runner,
    rx: mpsc::UnboundedReceiver<Msg>,
    intake: mpsc::UnboundedReceiver<Intake>,
) {
    let main = runner.main.clone();
    if let Err(e) = spawn_below(&main, "engine", ENGINE_NICE, move || runner.run(rx, intake)) {
        error!(error = %e, "cannot start the engine's thread: no alert is decided");
    }
}

/// Runs the future `make` returns on a new thread `name`, `nice` levels below the
/// service, on a current-thread runtime of its own. It stops when the future ends or when
/// the runtime of `main` shuts down (a task there holds the thread's life), whichever
/// comes first.
fn spawn_below<F, M>(
    main: &tokio::runtime::Handle,
    name: &str,
    nice: u32,
    make: M,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    M: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    let (alive, gone) = oneshot::channel::<()>();
    main.spawn(async move {
        let _alive = alive;
        std::future::pending::<()>().await;
    });
    let thread = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            crate::runbook::exec::lifeline::lower_own_priority(nice);
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, thread, "cannot build a runtime: the thread stops");
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    () = make() => {}
                    _ = gone => {}
                }
            });
        })
}

/// Hands the alerts a crash left undecided to the engine, oldest first.
fn resubmit_undecided(journal: &Journal, sink: &AlertSink) {
    let mut after = 0;
    let mut total = 0usize;
    loop {
        let chunk = match journal.undecided_alerts(after, UNDECIDED_CHUNK) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot read undecided alerts: they are decided at the next start");
                break;
            }
        };
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        total += chunk.len();
        sink.submit(chunk.into_iter().map(|(id, a)| (id, a.alert())).collect());
    }
    if total > 0 {
        warn!(
            alerts = total,
            "alerts journaled before the last stop were not decided then: deciding them now"
        );
    }
}

/// The Kubernetes connection `kube` steps use, when the config has a `kubernetes:` section.
fn kube_conn(loaded: &Loaded) -> Option<Arc<crate::runbook::exec::KubeConn>> {
    let k = loaded.config.kubernetes.clone()?;
    let k = crate::runbook::exec::resolve_kubeconfig(k, &loaded.base_dir);
    Some(Arc::new(crate::runbook::exec::KubeConn::new(k)))
}

/// What judges preconditions: a Kafka client built from `security:` with
/// `recovery.precondition_timeout_seconds`, over the cluster's brokers; or why none can be
/// built (a runbook that requires preconditions is then refused, never run unchecked).
fn safety_for(loaded: &Loaded) -> Result<Arc<Safety>, String> {
    let cfg = &loaded.config;
    let timeout = Duration::from_secs(cfg.recovery.precondition_timeout_seconds);
    match ClientOptions::from_config(&cfg.security, timeout, &loaded.base_dir) {
        Ok(opts) => Ok(Arc::new(Safety::new(
            opts,
            cfg.cluster.kafka_brokers.clone(),
        ))),
        Err(e) => {
            warn!(error = %e, "runbooks that require preconditions will be refused: the Kafka client cannot be built");
            Err(e.to_string())
        }
    }
}

/// The messages of one round.
#[derive(Default)]
struct Round {
    ctl: Vec<Msg>,
    intake: Vec<Intake>,
    /// Alerts in `intake`.
    alerts: usize,
}

impl Round {
    fn push_intake(&mut self, m: Intake) {
        match &m {
            Intake::Alerts(a) => self.alerts += a.len(),
            Intake::Watched(a) => self.alerts += a.len(),
            Intake::Flush(_) => {}
        }
        self.intake.push(m);
    }
}

/// Sleeps for `d`, or forever when there is nothing to wake for.
async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A reply owed once the round is committed.
enum Reply {
    Done(oneshot::Sender<()>),
    Closed(
        oneshot::Sender<Vec<(String, Option<String>)>>,
        Vec<(String, Option<String>)>,
    ),
    Paused(
        oneshot::Sender<Result<Pause, PauseError>>,
        Result<Pause, PauseError>,
    ),
    Resumed(
        oneshot::Sender<Result<Option<Pause>, PauseError>>,
        Result<Option<Pause>, PauseError>,
    ),
}

struct Runner {
    core: Core,
    journal: Journal,
    metrics: Arc<Metrics>,
    exec_opts: ExecOptions,
    /// Judges preconditions (rebuilt on reload).
    safety: Result<Arc<Safety>, String>,
    coord: Option<Arc<Coordinator>>,
    tx: mpsc::UnboundedSender<Msg>,
    tracker: TaskTracker,
    /// The service's runtime: executions and lock requests run there, not on the
    /// engine's own thread.
    main: tokio::runtime::Handle,
    cancel: CancellationToken,
    mail_wake: Arc<Notify>,
    backlog: Backlog,
    admission: Arc<super::admission::Admission>,
    remediation: Arc<super::admission::RemediationRoom>,
    /// HA mode: circuits and resets told to the peers through etcd.
    peers: Option<super::peers::Peers>,
}

impl Runner {
    async fn run(
        mut self,
        mut ctl: mpsc::UnboundedReceiver<Msg>,
        mut intake: mpsc::UnboundedReceiver<Intake>,
    ) {
        let mut intake_open = true;
        loop {
            let now = now_ms();
            let wait = self
                .core
                .next_wake(now)
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
            let mut round = Round::default();
            tokio::select! {
                m = ctl.recv() => match m {
                    Some(m) => round.ctl.push(m),
                    None => break,
                },
                m = intake.recv(), if intake_open => match m {
                    Some(m) => round.push_intake(m),
                    None => intake_open = false,
                },
                _ = sleep_or_forever(wait) => {}
            }
            // Control first, all of it (bounded): ends of runs free their slots before the
            // alerts waiting behind them are decided.
            while round.ctl.len() < ROUND_MESSAGES {
                match ctl.try_recv() {
                    Ok(m) => round.ctl.push(m),
                    Err(_) => break,
                }
            }
            while round.alerts < ROUND_ALERTS {
                match intake.try_recv() {
                    Ok(m) => round.push_intake(m),
                    Err(_) => break,
                }
            }
            self.round(round).await;
        }
    }

    /// Decides one round of messages, commits it, then carries it out.
    async fn round(&mut self, round: Round) {
        let now = now_ms();
        let mut fx = Vec::new();
        let mut replies = Vec::new();
        for msg in round.ctl {
            match msg {
                Msg::Finished { id, outcome } => fx.extend(self.core.finished(now, id, outcome)),
                Msg::Lock { id, answer } => fx.extend(self.core.lock_answer(now, id, answer)),
                Msg::Reset { scope, reply } => {
                    if let Some(p) = &self.peers {
                        p.reset(scope.clone());
                    }
                    let (closed, e) = self.core.reset(now, &scope);
                    for (rule, target) in &closed {
                        let target = target.as_deref().unwrap_or("-");
                        info!(%rule, %target, "circuit closed by reset");
                    }
                    fx.extend(e);
                    replies.push(Reply::Closed(reply, closed));
                }
                Msg::Pause { request, reply } => {
                    // Journaled first, in its own transaction: the answer says it is
                    // recorded, and a journal that cannot take it changes nothing.
                    let r = match self.core.plan_pause(now, request) {
                        Ok((pause, writes)) => match self.commit_now(writes).await {
                            Ok(()) => {
                                fx.extend(self.core.pause(pause.clone()));
                                Ok(pause)
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    replies.push(Reply::Paused(reply, r));
                }
                Msg::Resume { scope, reply } => {
                    let r = match self.core.plan_resume(now, &scope) {
                        Some((pause, writes)) => match self.commit_now(writes).await {
                            Ok(()) => {
                                fx.extend(self.core.resume(now, &scope));
                                Ok(Some(pause))
                            }
                            Err(e) => Err(e),
                        },
                        None => Ok(None),
                    };
                    replies.push(Reply::Resumed(reply, r));
                }
                Msg::Pauses { reply } => {
                    let _ = reply.send(self.core.pauses(now));
                }
                Msg::Reload(setup) => self.reload(setup),
                Msg::Drain { reply } => {
                    fx.extend(self.core.drain(now));
                    replies.push(Reply::Done(reply));
                }
            }
        }
        let mut decided = 0;
        for m in round.intake {
            match m {
                Intake::Alerts(list) => {
                    decided += list.len();
                    for (id, alert) in list {
                        fx.extend(self.core.alert(now, id, alert));
                    }
                }
                Intake::Watched(list) => {
                    decided += list.len();
                    for (id, alert, silence) in list {
                        fx.extend(match silence {
                            Some(s) => self.core.silenced(now, id, alert, s),
                            None => self.core.alert(now, id, alert),
                        });
                    }
                }
                Intake::Flush(reply) => replies.push(Reply::Done(reply)),
            }
        }
        fx.extend(self.core.tick(now));
        self.carry_out(fx).await;
        self.backlog.done(decided);
        for r in replies {
            match r {
                Reply::Done(tx) => {
                    let _ = tx.send(());
                }
                Reply::Closed(tx, closed) => {
                    let _ = tx.send(closed);
                }
                Reply::Paused(tx, r) => {
                    let _ = tx.send(r);
                }
                Reply::Resumed(tx, r) => {
                    let _ = tx.send(r);
                }
            }
        }
        self.metrics.in_flight.set(self.core.in_flight() as i64);
        let max_queued = self.core.setup().loaded.config.recovery.max_queued as usize;
        self.admission.publish(
            self.core.queued_diagnostics(),
            self.backlog.get(),
            max_queued,
        );
        let r = &self.core.setup().loaded.config.recovery;
        let max = r.max_queued_remediation as usize;
        self.remediation
            .publish(self.core.queued_remediation(), max);
        self.metrics
            .circuits_open
            .set(self.core.open_circuits().len() as i64);
        self.metrics.set_pauses(&self.core.pauses(now));
    }

    /// Commits journal effects in a transaction of their own, now (a pause or a resume,
    /// which must be recorded before they act).
    async fn commit_now(&mut self, writes: Vec<Effect>) -> Result<(), PauseError> {
        let mut ops = Vec::with_capacity(writes.len());
        for e in writes {
            log(&e);
            match e.into_write() {
                Ok(op) => ops.push(op),
                Err(other) => error!(effect = ?other, "not a journal write; dropped"),
            }
        }
        self.journal.write(ops).await.map(|_| ()).map_err(|e| {
            error!(error = %e, "the journal could not record a pause or a resume: nothing changed");
            PauseError::Journal(e.to_string())
        })
    }

    fn reload(&mut self, setup: Arc<Setup>) {
        info!("engine uses the reloaded configuration and rules");
        let r = &setup.loaded.config.recovery;
        self.exec_opts.default_timeout = Duration::from_secs(r.step_timeout_seconds);
        self.exec_opts.kill_grace = Duration::from_secs(r.kill_grace_seconds);
        self.exec_opts.nice = r.diagnostics_nice;
        let kube = kube_conn(&setup.loaded);
        // Keep the connection (and what it replaced) unless its config changed.
        if kube.as_ref().map(|k| k.config()) != self.exec_opts.kube.as_ref().map(|k| k.config()) {
            self.exec_opts.kube = kube;
        }
        self.safety = safety_for(&setup.loaded);
        self.core.reload(setup);
    }

    /// Commits the journal effects in one transaction, then carries out the others (only
    /// what does not need the commit when it failed).
    async fn carry_out(&mut self, fx: Vec<Effect>) {
        let setup = self.core.setup().clone();
        let mut ops = Vec::with_capacity(fx.len());
        let mut after = Vec::new();
        let mut shared = Vec::new();
        let mut mails = 0;
        for e in fx {
            match e {
                Effect::Mail {
                    kind,
                    report,
                    at_ms,
                } => {
                    let m = match &kind {
                        MailKind::Outcome => outcome_mail(&setup, &report, at_ms),
                        MailKind::Escalation(why) => escalation_mail(&setup, &report, why, at_ms),
                    };
                    if let Some(m) = m {
                        mails += 1;
                        ops.push(WriteOp::Mail(m));
                    }
                }
                other => {
                    log(&other);
                    if let (Some(_), Some(coord)) = (&self.peers, &self.coord) {
                        shared.extend(super::peers::Peers::write_for(&other, coord.instance_id()));
                    }
                    match other.into_write() {
                        Ok(op) => ops.push(op),
                        Err(other) => after.push(other),
                    }
                }
            }
        }
        let committed = match self.journal.write(ops).await {
            Ok(_) => true,
            Err(e) => {
                error!(error = %e, "the journal could not record this round of decisions: nothing of it runs; its alerts are decided again at the next start");
                false
            }
        };
        if committed && mails > 0 {
            self.mail_wake.notify_one();
        }
        if committed && let Some(peers) = &self.peers {
            for w in shared {
                peers.send(w);
            }
        }
        for e in after {
            match e {
                Effect::Launch(l) if committed => self.launch(*l),
                Effect::Launch(l) => {
                    error!(execution = l.id, rule = %l.plan.rule, "not started: its decision is not in the journal");
                    if let Some(lock) = l.lock {
                        self.release(lock);
                    }
                    self.core.abandon(l.id);
                }
                Effect::RequestLock { id, request } if committed => self.request_lock(id, request),
                Effect::RequestLock { id, .. } => {
                    // Ask again later, once the journal takes the decisions.
                    let answer = LockAnswer::Unavailable {
                        error: "the journal could not record the decision".into(),
                        outage: false,
                    };
                    let _ = self.tx.send(Msg::Lock { id, answer });
                }
                Effect::ReleaseLock(lock) => self.release(lock),
                Effect::Duplicate => {
                    self.metrics.duplicates.inc();
                }
                Effect::Skipped { cause } if committed => {
                    self.metrics.skipped(cause);
                }
                Effect::Ended { rule, status } if committed => {
                    self.metrics
                        .executions
                        .get_or_create(&OutcomeLabels {
                            rule,
                            outcome: status.as_str().to_string(),
                        })
                        .inc();
                }
                _ => {}
            }
        }
    }

    fn launch(&mut self, l: Launch) {
        let setup = self.core.setup().clone();
        let fence = match (&self.coord, l.lock) {
            (Some(coord), Some(lock)) => Some(Fence {
                coord: coord.clone(),
                lock,
            }),
            _ => None,
        };
        let id = l.id;
        info!(execution = id, rule = %l.plan.rule, target = l.plan.target.as_deref().unwrap_or("-"), "starting");
        let zookeeper = l
            .plan
            .target
            .as_deref()
            .and_then(super::target::zookeeper_id)
            .map(|_| ZkGuard {
                ensemble: setup.loaded.config.cluster.zookeeper_nodes.clone(),
                timeout: Duration::from_secs(
                    setup.loaded.config.recovery.precondition_timeout_seconds,
                ),
            });
        let job = Execution {
            id,
            plan: l.plan,
            alert: l.alert,
            attempt: l.attempt,
            cluster: setup.loaded.config.cluster.name.clone(),
            broker: l.broker,
            fence: fence.clone(),
            safety: self.safety.clone(),
            zookeeper,
        };
        let hold = l.hold;
        let (journal, metrics, opts, cancel, tx) = (
            self.journal.clone(),
            self.metrics.clone(),
            self.exec_opts.clone(),
            self.cancel.clone(),
            self.tx.clone(),
        );
        self.tracker.spawn_on(
            async move {
                let outcome = execute(job, &journal, &metrics, opts, &cancel).await;
                if let Some(f) = fence {
                    let done = match outcome.status {
                        ExecStatus::Succeeded => Some(("succeeded", hold.succeeded)),
                        ExecStatus::Failed => Some(("failed", hold.failed)),
                        ExecStatus::Escalated => Some(("escalated", hold.escalated)),
                        // Interrupted (fenced, shut down): a peer may take the work over.
                        _ => None,
                    };
                    // Counted as the core counts it: a step that cannot run is no attempt.
                    let counted =
                        !matches!(outcome.cause, EndCause::Unfixable | EndCause::Refused(_));
                    let attempt = counted.then(|| SharedAttempt {
                        started_ms: outcome.ran.0,
                        finished_ms: outcome.ran.1,
                        ok: outcome.status == ExecStatus::Succeeded,
                    });
                    f.coord.finish(f.lock, done, attempt, hold.escalated).await;
                }
                let _ = tx.send(Msg::Finished { id, outcome });
            },
            &self.main,
        );
    }

    /// HA mode: asks etcd for a lock in the background; the answer comes back as a message.
    fn request_lock(&self, id: i64, request: crate::coord::WorkRequest) {
        let Some(coord) = self.coord.clone() else {
            return;
        };
        let tx = self.tx.clone();
        self.main.spawn(async move {
            let answer = match coord.acquire(&request).await {
                Ok(Acquire::Acquired(lock)) => LockAnswer::Acquired(lock),
                Ok(Acquire::Held(who)) => LockAnswer::Held(who),
                Ok(Acquire::Done(by)) => LockAnswer::Done(by),
                Ok(Acquire::StepRunning(step)) => LockAnswer::StepRunning(step),
                Err(e) => LockAnswer::Unavailable {
                    error: e.to_string(),
                    // A blip shorter than the lease TTL (or the first contact) is no outage.
                    outage: coord.down_for().is_some_and(|d| d >= coord.ttl()),
                },
            };
            let _ = tx.send(Msg::Lock { id, answer });
        });
    }

    /// Gives a lock back (best effort, in the background).
    fn release(&self, lock: crate::coord::WorkLock) {
        if let Some(coord) = self.coord.clone() {
            self.main
                .spawn(async move { coord.release(lock, None).await });
        }
    }
}

/// Says in the log what the journal is about to record.
fn log(e: &Effect) {
    match e {
        Effect::Create(e) => {
            let target = e.target.as_deref().unwrap_or("-");
            info!(execution = e.id, rule = %e.rule, target, status = e.status.as_str(), reason = %e.reason, "decided");
        }
        Effect::Status {
            id, status, reason, ..
        } if status.is_terminal() => {
            info!(
                execution = id,
                status = status.as_str(),
                reason = reason.as_deref().unwrap_or(""),
                "ended"
            );
        }
        Effect::Event(e) => {
            let target = e.target.as_deref().unwrap_or("-");
            let rule = e.rule.as_deref().unwrap_or("-");
            match e.kind {
                EventKind::Escalation | EventKind::CircuitOpened => {
                    warn!(execution = e.execution_id, rule, target, kind = %e.kind, message = %e.message, "event")
                }
                _ => {
                    info!(execution = e.execution_id, rule, target, kind = %e.kind, message = %e.message, "event")
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(None).expect("own nice")
    }

    #[test]
    fn a_thread_below_runs_niced_and_stops_with_the_service_runtime() {
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let before = own_nice();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let thread = spawn_below(main.handle(), "below", 10, move || async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = seen_tx.send((name, own_nice()));
            std::future::pending::<()>().await;
        })
        .expect("spawned");
        let (name, nice) = seen
            .recv_timeout(Duration::from_secs(30))
            .expect("the future ran");
        assert_eq!(name.as_deref(), Some("below"));
        assert_eq!(nice, (before + 10).min(19), "10 levels below the caller");
        assert_eq!(own_nice(), before, "the caller's priority is untouched");
        // The future never ends: the thread stops because the service's runtime did.
        drop(main);
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(thread.join().is_ok());
        });
        assert_eq!(done.recv_timeout(Duration::from_secs(30)), Ok(true));
    }

    #[test]
    fn a_thread_below_stops_when_its_future_ends() {
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = mpsc::unbounded_channel::<u32>();
        let (sum_tx, sum) = std::sync::mpsc::channel();
        let thread = spawn_below(main.handle(), "below-ends", 0, move || async move {
            let mut rx = rx;
            let mut total = 0;
            while let Some(v) = rx.recv().await {
                total += v;
            }
            let _ = sum_tx.send(total);
        })
        .expect("spawned");
        for v in [1, 2, 3] {
            tx.send(v).expect("receiver alive");
        }
        drop(tx);
        assert_eq!(sum.recv_timeout(Duration::from_secs(30)), Ok(6));
        assert!(thread.join().is_ok());
        drop(main);
    }
}
