//! Running one execution: its steps in order, each recorded in the journal as it ends.
//!
//! The execution is recorded `running` in the journal (by the runner, in the round that
//! decided it) *before* its first step starts, so a crash mid-step is found on restart
//! and reported as `interrupted`, never re-run blindly.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::decide::Outcome;
use super::plan::Plan;
use super::why::EndCause;
use crate::alert::Alert;
use crate::clock::now_ms;
use crate::config::Broker;
use crate::coord::{Coordinator, StepMark, WorkLock};
use crate::journal::{Event, EventKind, ExecStatus, Journal, StepRecord, StepStatus};
use crate::metrics::{KindLabel, Metrics, RefusalLabel};
use crate::rules::model::{FallbackAction, OnFailure, Precondition};
use crate::runbook::exec::{
    ExecOptions, RetryGate, StepRun, child_env, run_step_gated, step_budget,
};
use crate::runbook::precondition::zk::ZkGuard;
use crate::runbook::precondition::{Judgement, Safety};
use crate::runbook::render::RenderedStep;

/// What one execution needs to run.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Journal id.
    pub id: i64,
    /// The plan (rendered steps).
    pub plan: Plan,
    /// The alert behind it.
    pub alert: Arc<Alert>,
    /// Attempt number for its work key.
    pub attempt: u32,
    /// Cluster name.
    pub cluster: String,
    /// The target broker, when there is one.
    pub broker: Option<Broker>,
    /// HA mode: the lock this execution holds, confirmed before every disruptive step.
    pub fence: Option<Fence>,
    /// What judges the runbook's preconditions, or why nothing can (unusable `security:`
    /// files): then a runbook that requires any is refused.
    pub safety: Result<Arc<Safety>, String>,
    /// What judges `zookeeper_quorum_safe` (the configured ensemble), when the target is
    /// a ZooKeeper node.
    pub zookeeper: Option<ZkGuard>,
}

impl Execution {
    /// The target ZooKeeper node, when the plan's target is one of `zookeeper`'s nodes.
    pub fn zookeeper_node(&self) -> Option<&crate::config::ZookeeperNode> {
        let id = super::target::zookeeper_id(self.plan.target.as_deref()?)?;
        self.zookeeper
            .as_ref()?
            .ensemble
            .iter()
            .find(|z| z.node_id == id)
    }
}

/// The lock an execution runs under (HA mode) and the coordinator that confirms it.
#[derive(Clone)]
pub struct Fence {
    /// The coordinator.
    pub coord: Arc<Coordinator>,
    /// The lock.
    pub lock: WorkLock,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fence({} at revision {})",
            self.coord.instance_id(),
            self.lock.revision()
        )
    }
}

/// `KAFKA_HEALING_*` variables describing the alert, for the steps' environment.
pub fn step_env(job: &Execution) -> Vec<(String, String)> {
    let mut v = vec![
        ("KAFKA_HEALING_EXECUTION_ID", job.id.to_string()),
        ("KAFKA_HEALING_RULE", job.plan.rule.clone()),
        ("KAFKA_HEALING_RUNBOOK", job.plan.runbook.clone()),
        ("KAFKA_HEALING_CLUSTER", job.cluster.clone()),
        ("KAFKA_HEALING_FINGERPRINT", job.alert.fingerprint.clone()),
        (
            "KAFKA_HEALING_STATUS",
            job.alert.status.as_str().to_string(),
        ),
        ("KAFKA_HEALING_ATTEMPT", job.attempt.to_string()),
        (
            "KAFKA_HEALING_ALERTNAME",
            job.alert
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_default(),
        ),
    ];
    if let Some(f) = &job.fence {
        v.push((
            "KAFKA_HEALING_INSTANCE_ID",
            f.coord.instance_id().to_string(),
        ));
    }
    if let Some(b) = &job.broker {
        v.push(("KAFKA_HEALING_TARGET", b.node_id.clone()));
        v.push(("KAFKA_HEALING_TARGET_HOST", b.host.clone()));
        v.push(("KAFKA_HEALING_TARGET_PORT", b.port.to_string()));
    } else if let Some(z) = job.zookeeper_node() {
        v.push(("KAFKA_HEALING_TARGET", z.node_id.clone()));
        v.push(("KAFKA_HEALING_TARGET_HOST", z.host.clone()));
        v.push(("KAFKA_HEALING_TARGET_PORT", z.port.to_string()));
    }
    v.into_iter()
        // An environment value cannot hold NUL; such a label simply is not exported.
        .filter(|(_, val)| !val.contains('\0'))
        .map(|(k, val)| (k.to_string(), val))
        .collect()
}

fn describe(name: &str, r: &StepRecord) -> String {
    let mut s = match (r.status, r.exit_code, r.signal) {
        (StepStatus::TimedOut, _, _) => format!("step `{name}` timed out"),
        (_, Some(code), _) => format!("step `{name}` failed with exit status {code}"),
        (_, None, Some(sig)) => format!("step `{name}` was killed by signal {sig}"),
        _ => format!("step `{name}` failed"),
    };
    if let Some(e) = &r.error {
        s.push_str(&format!(": {e}"));
    }
    if r.attempts > 1 {
        s.push_str(&format!(" (after {} tries)", r.attempts));
    }
    s
}

/// Judges `job`'s preconditions about its target, journaling what was found (and the
/// time the look took); `Err` with the first precondition that does not hold and every
/// refusal's reason.
async fn preconditions(
    job: &Execution,
    journal: &Journal,
    metrics: &Metrics,
) -> Result<(), (Precondition, String)> {
    let first = job.plan.requires.first().copied();
    let refuse = |why: String| Err((first.unwrap_or(Precondition::BrokerUnreachable), why));
    let event = |kind: EventKind, message: String| Event {
        at_ms: now_ms(),
        execution_id: Some(job.id),
        rule: Some(job.plan.rule.clone()),
        target: job.plan.target.clone(),
        kind: kind.as_str().into(),
        message,
    };
    let zk = job.zookeeper_node().zip(job.zookeeper.as_ref());
    let verdict = match (&job.safety, &job.broker) {
        // A ZooKeeper target needs no Kafka client: its guard asks the ensemble.
        (_, None) if zk.is_some() => match zk {
            Some((node, guard)) => {
                let j = guard.judge(&job.plan.requires, &node.node_id).await;
                judged(job, journal, metrics, j, event).await
            }
            None => refuse("no ZooKeeper target".into()),
        },
        (Err(e), _) => refuse(format!(
            "the preconditions cannot be judged: the Kafka client cannot be built ({e})"
        )),
        (_, None) => refuse("the preconditions cannot be judged without a target broker".into()),
        (Ok(safety), Some(broker)) => {
            let j = safety.judge(&job.plan.requires, broker).await;
            judged(job, journal, metrics, j, event).await
        }
    };
    if let Err((by, why)) = &verdict {
        metrics
            .refusals
            .get_or_create(&RefusalLabel {
                precondition: by.as_str().into(),
            })
            .inc();
        warn!(execution = job.id, precondition = %by, %why, "refused by a precondition");
        if let Err(e) = journal
            .add_event(event(EventKind::Refused, why.clone()))
            .await
        {
            warn!(error = %e, "cannot journal an event");
        }
    }
    verdict
}

/// Records a judgement (metric, log, journal event) and returns its verdict.
async fn judged(
    job: &Execution,
    journal: &Journal,
    metrics: &Metrics,
    j: Judgement,
    event: impl Fn(EventKind, String) -> Event,
) -> Result<(), (Precondition, String)> {
    metrics.precondition_seconds.observe(j.took.as_secs_f64());
    info!(execution = job.id, took_ms = j.took.as_millis() as u64, verdict = %j.summary(), "preconditions judged");
    if let Err(e) = journal
        .add_event(event(EventKind::Precondition, j.summary()))
        .await
    {
        warn!(error = %e, "cannot journal an event");
    }
    match (j.refusals().next(), j.refusal()) {
        (Some(v), Some(why)) => Err((v.precondition, why)),
        _ => Ok(()),
    }
}

/// How an execution ends: its status, what the engine counts it as, and why.
struct End {
    status: ExecStatus,
    cause: EndCause,
    reason: String,
}

impl End {
    fn new(status: ExecStatus, cause: EndCause, reason: String) -> End {
        End {
            status,
            cause,
            reason,
        }
    }
}

/// Where step `i` stands in a fallback chain.
enum Chain<'a> {
    /// It belongs to an action that already failed: skip it.
    Skip,
    /// The action before succeeded: the chain is done.
    Done,
    /// Run it; `Some` when it is the first step of this action.
    Run(Option<&'a FallbackAction>),
}

fn chain_position(actions: &[FallbackAction], i: usize, failed: Option<usize>) -> Chain<'_> {
    let action = FallbackAction::of_step(actions, i);
    if action.is_some() && action == failed {
        return Chain::Skip;
    }
    if let Some(n) = action
        && n > 0
        && failed != Some(n - 1)
        && actions.get(n).is_some_and(|a| a.start == i)
    {
        return Chain::Done;
    }
    Chain::Run(action.and_then(|a| actions.get(a)).filter(|a| a.start == i))
}

/// What a failed step's run showed, besides its record.
struct Failure {
    /// `describe` of the step.
    what: String,
    /// A retry was refused by a precondition (its first try ran).
    refused_retry: bool,
    /// The service is shutting down.
    cancelled: bool,
    /// The step cannot run as rendered; running it again cannot help.
    unfixable: bool,
    /// No step ran before this one.
    first_to_run: bool,
}

/// What a failed step means for the execution.
enum AfterFailure {
    /// Fall back to the next action: this one's index, and the step's failure.
    NextAction(usize, String),
    /// `on_failure: continue`: carry on, remembering the failure.
    Ignore(String),
    /// The execution ends here.
    Stop(End),
}

fn after_failure(
    step: &RenderedStep,
    action: Option<usize>,
    actions: &[FallbackAction],
    f: Failure,
) -> AfterFailure {
    let stop = |status, cause, reason| AfterFailure::Stop(End::new(status, cause, reason));
    let what = f.what;
    if f.refused_retry {
        // Its first try ran: that counts as an attempt, unlike a refusal before any
        // disruptive step (a restart that fails, then is refused, must not loop free).
        return stop(ExecStatus::Refused, EndCause::Completed, what);
    }
    if f.cancelled {
        return stop(
            ExecStatus::Interrupted,
            EndCause::ShutDown,
            format!("{what}: the service shut down while it ran"),
        );
    }
    if let Some(a) = action
        && a.saturating_add(1) < actions.len()
        && step.on_failure != OnFailure::Continue
    {
        return AfterFailure::NextAction(a, what);
    }
    if f.unfixable && f.first_to_run && step.on_failure != OnFailure::Continue {
        // Nothing ran, and running it again cannot help: counting it would let one
        // oversized label open the circuit. Once an earlier step ran (it may have
        // stopped a broker), it counts, or a label could repeat that step unbounded.
        return stop(
            ExecStatus::Failed,
            EndCause::Unfixable,
            format!("{what}; the step cannot run as rendered, so no attempt is counted"),
        );
    }
    match step.on_failure {
        OnFailure::Continue => AfterFailure::Ignore(what),
        OnFailure::Abort => stop(ExecStatus::Failed, EndCause::Completed, what),
        OnFailure::Escalate => stop(
            ExecStatus::Escalated,
            EndCause::Completed,
            format!("{what}; on_failure: escalate"),
        ),
    }
}

/// The execution's reason, saying which action of a chain did it and why each one before
/// it failed, and which failures `on_failure: continue` ignored.
fn final_reason(
    end: &End,
    records: &[StepRecord],
    actions: &[FallbackAction],
    fell_back: &[String],
    ignored: &[String],
) -> String {
    let mut reason = end.reason.clone();
    if end.status == ExecStatus::Succeeded && !ignored.is_empty() {
        reason = format!(
            "finished; failures ignored (on_failure: continue): {}",
            ignored.join("; ")
        );
    }
    let last = records
        .last()
        .and_then(|r| FallbackAction::of_step(actions, r.index as usize))
        .and_then(|a| actions.get(a));
    match (end.status, last) {
        (ExecStatus::Succeeded, Some(a)) if fell_back.is_empty() && ignored.is_empty() => {
            format!("action `{}` succeeded", a.name)
        }
        (ExecStatus::Succeeded, Some(a)) if !fell_back.is_empty() => {
            format!(
                "action `{}` succeeded after: {}",
                a.name,
                fell_back.join("; ")
            )
        }
        _ if !fell_back.is_empty() => format!("{}; then {reason}", fell_back.join("; ")),
        _ => reason,
    }
}

/// Journals the records of steps that ended since the last call.
async fn journal_steps(journal: &Journal, id: i64, records: &[StepRecord]) {
    for prev in records.iter().cloned() {
        if let Err(e) = journal.record_step(id, prev).await {
            warn!(execution = id, error = %e, "cannot journal a step");
        }
    }
}

/// HA mode: a disruptive step starts only under the lock, and with its deadline recorded
/// in etcd (a peer waits it out should this instance die mid-step). `Err` ends the
/// execution as fenced.
async fn fence_step(
    job: &Execution,
    step: &RenderedStep,
    opts: &ExecOptions,
    journal: &Journal,
    metrics: &Metrics,
) -> Result<Option<StepMark>, End> {
    let Some(f) = job.fence.as_ref().filter(|_| step.is_disruptive()) else {
        return Ok(None);
    };
    let why = match f
        .coord
        .begin_step(&f.lock, &step.name, step_budget(step, opts))
        .await
    {
        Ok(m) => return Ok(Some(m)),
        Err(why) => why,
    };
    // The lock may be someone else's now: this instance must not touch the cluster.
    metrics.coordination_fenced.inc();
    let reason = format!(
        "fenced before step `{}`: {why}; nothing more runs here, a peer that takes the lock may run the remediation",
        step.name
    );
    warn!(execution = job.id, step = %step.name, %why, "fenced: disruptive step not started");
    let event = Event {
        at_ms: now_ms(),
        execution_id: Some(job.id),
        rule: Some(job.plan.rule.clone()),
        target: job.plan.target.clone(),
        kind: EventKind::Fenced.as_str().into(),
        message: reason.clone(),
    };
    if let Err(e) = journal.add_event(event).await {
        warn!(error = %e, "cannot journal an event");
    }
    Err(End::new(ExecStatus::Interrupted, EndCause::Fenced, reason))
}

/// Runs step `i` (its retries judged again when it is disruptive: the broker may be back,
/// or another may have gone down, since the first try), ends its fence mark and records
/// its duration.
async fn run_one(
    job: &Execution,
    (i, step): (usize, &RenderedStep),
    opts: &ExecOptions,
    (journal, metrics): (&Journal, &Metrics),
    cancel: &CancellationToken,
    mark: Option<StepMark>,
) -> StepRun {
    info!(execution = job.id, step = %step.name, argv = ?step.argv, "step started");
    let gated = step.is_disruptive() && step.retries > 0 && !job.plan.requires.is_empty();
    let gate_fn = move || -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            preconditions(job, journal, metrics)
                .await
                .map_err(|(_, why)| why)
        })
    };
    let run = run_step_gated(
        step,
        i as u32,
        opts,
        cancel,
        gated.then_some(&gate_fn as RetryGate<'_>),
    )
    .await;
    if let (Some(f), Some(m)) = (&job.fence, mark) {
        f.coord.end_step(m).await;
    }
    let rec = &run.record;
    metrics
        .step_duration
        .get_or_create(&KindLabel {
            kind: step.kind.to_string(),
        })
        .observe(rec.duration_ms as f64 / 1000.0);
    info!(execution = job.id, step = %step.name, status = ?rec.status, exit_code = ?rec.exit_code, duration_ms = rec.duration_ms, "step ended");
    run
}

/// Runs `job`'s steps, recording each as it ends; returns the outcome, not yet recorded.
pub async fn execute(
    job: Execution,
    journal: &Journal,
    metrics: &Metrics,
    mut opts: ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    opts.env = child_env(&step_env(&job));
    opts.safety = job.safety.clone().ok();
    if !job.plan.disruptive {
        // Diagnostics (a runbook declared `disruptive: false`) start directly, without the
        // parent-death signal: going through `setpriv` costs an `exec` per step, which
        // took a storm of distinct diagnostics alerts from ~1,450 to ~840 `/bin/true` runs
        // per second on 2 cores. What they leave after a crash is swept at the next start.
        opts.setpriv = None;
    } else {
        // A remediation (which may start a broker) runs at the service's own priority.
        opts.nice = 0;
    }
    let started = now_ms();
    let steps = &job.plan.steps;
    let actions = &job.plan.actions;
    let mut end = None;
    let mut ignored = Vec::new();
    let mut records = Vec::new();
    let mut recorded = 0;
    let mut judged = false;
    // Fallback chain: the action that failed (its other steps are skipped), and why each
    // failed action did.
    let mut failed_action = None;
    let mut fell_back: Vec<String> = Vec::new();
    let mut ran_disruptive = false;
    for (i, step) in steps.iter().enumerate() {
        match chain_position(actions, i, failed_action) {
            Chain::Skip => continue,
            Chain::Done => break,
            Chain::Run(Some(a)) => {
                // Each action's preconditions are its own: judged again before its first
                // disruptive step (the one before may have changed the broker).
                judged = false;
                if !fell_back.is_empty() {
                    info!(execution = job.id, action = %a.name, "falling back to the next action");
                }
            }
            Chain::Run(None) => {}
        }
        // The record of the step before is journaled now that another one starts; the
        // last one is journaled with the execution's end, in the runner's round.
        journal_steps(journal, job.id, &records[recorded..]).await;
        recorded = records.len();
        if cancel.is_cancelled() {
            let reason = format!("the service shut down before step `{}`", step.name);
            end = Some(End::new(
                ExecStatus::Interrupted,
                EndCause::ShutDown,
                reason,
            ));
            break;
        }
        // Before the first disruptive step: ask Kafka whether it is needed and safe.
        if !judged && step.is_disruptive() && !job.plan.requires.is_empty() {
            judged = true;
            if let Err((by, why)) = preconditions(&job, journal, metrics).await {
                // A later action's refusal after an earlier one ran a disruptive step
                // counts as an attempt, or a chain could repeat that step unbounded.
                let cause = if ran_disruptive {
                    EndCause::Completed
                } else {
                    EndCause::Refused(by)
                };
                let reason = format!("refused before step `{}`: {why}", step.name);
                end = Some(End::new(ExecStatus::Refused, cause, reason));
                break;
            }
        }
        let mark = match fence_step(&job, step, &opts, journal, metrics).await {
            Ok(m) => m,
            Err(e) => {
                end = Some(e);
                break;
            }
        };
        ran_disruptive |= step.is_disruptive();
        let run = run_one(&job, (i, step), &opts, (journal, metrics), cancel, mark).await;
        let ok = run.record.status == StepStatus::Succeeded;
        let failure = Failure {
            what: describe(&step.name, &run.record),
            refused_retry: run.refused.is_some(),
            cancelled: cancel.is_cancelled(),
            unfixable: run.unfixable,
            first_to_run: records.is_empty(),
        };
        records.push(run.record);
        if ok {
            continue;
        }
        let action = FallbackAction::of_step(actions, i);
        match after_failure(step, action, actions, failure) {
            AfterFailure::NextAction(a, what) => {
                let name = actions.get(a).map_or("", |x| x.name.as_str());
                warn!(
                    execution = job.id,
                    action = name,
                    "{what}; trying the next action"
                );
                fell_back.push(format!("action `{name}` failed: {what}"));
                failed_action = Some(a);
            }
            AfterFailure::Ignore(what) => {
                warn!(execution = job.id, "{what}; on_failure: continue");
                ignored.push(what);
            }
            AfterFailure::Stop(e) => {
                end = Some(e);
                break;
            }
        }
    }
    let end = end.unwrap_or_else(|| {
        let reason = format!("all {} step(s) succeeded", steps.len());
        End::new(ExecStatus::Succeeded, EndCause::Completed, reason)
    });
    let reason = final_reason(&end, &records, actions, &fell_back, &ignored);
    info!(execution = job.id, status = end.status.as_str(), %reason, "execution ended");
    Outcome {
        status: end.status,
        reason,
        cause: end.cause,
        unrecorded: records.len() - recorded,
        steps: records,
        ran: (started, now_ms()),
    }
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
