//! What the decision core asks for: journal writes, committed together, and then the
//! actions they record (launch a run, ask for or give back a lock, send a message).

use std::sync::Arc;

use super::pause::Pause;
use super::plan::Plan;
use super::report::Report;
use crate::alert::Alert;
use crate::config::Broker;
use crate::coord::{WorkLock, WorkRequest};
use crate::journal::{
    Circuit, Event, EventKind, ExecStatus, NewExecution, NewPause, PauseEnd, StepRecord, WriteOp,
};

/// One thing the core decided must happen. Journal effects of a round are committed in one
/// transaction before any other effect of the round is carried out.
#[derive(Debug)]
pub enum Effect {
    /// Journal: a new execution, with the id the core gave it.
    Create(Box<NewExecution>),
    /// Journal: an execution's status changes.
    Status {
        /// The execution.
        id: i64,
        /// New status.
        status: ExecStatus,
        /// New reason, when it changes.
        reason: Option<String>,
        /// When.
        at_ms: i64,
    },
    /// Journal: an event.
    Event(EngineEvent),
    /// Journal: a step of an execution ended.
    Step {
        /// The execution.
        id: i64,
        /// What the step did.
        record: Box<StepRecord>,
    },
    /// Journal: a circuit opens.
    OpenCircuit(Circuit),
    /// Journal: since when an open circuit's problem has been resolved (`None`: it fired
    /// again).
    CircuitHealth {
        /// Rule.
        rule: String,
        /// Target, `-` for none.
        target: String,
        /// Resolved since.
        healthy_since_ms: Option<i64>,
    },
    /// Journal: a circuit closes.
    CloseCircuit {
        /// Rule.
        rule: String,
        /// Target, `-` for none.
        target: String,
    },
    /// Journal: a message for the outbox (rendered by the runner from the report).
    Mail {
        /// Outcome or escalation.
        kind: MailKind,
        /// The facts it reports.
        report: Box<Report>,
        /// When it was decided.
        at_ms: i64,
    },
    /// Journal: the alert with this journal id is decided.
    Decided(i64),
    /// After the commit: start running an execution (already recorded `running`).
    Launch(Box<Launch>),
    /// After the commit (HA mode): ask etcd for the lock of queued execution `id`.
    RequestLock {
        /// The execution.
        id: i64,
        /// What to ask for.
        request: WorkRequest,
    },
    /// After the commit (HA mode): give a lock back unused.
    ReleaseLock(WorkLock),
    /// A copy of an alert was collapsed into an execution in flight (a metric).
    Duplicate,
    /// An execution reached a final status (a metric).
    Ended {
        /// Its rule.
        rule: String,
        /// The status.
        status: ExecStatus,
    },
    /// Journal: a pause is set (replacing one of the same scope).
    SetPause(Pause),
    /// Journal: the pause of a scope ends.
    EndPause {
        /// Its broker, `None` for the cluster's.
        target: Option<String>,
        /// When.
        at_ms: i64,
        /// How.
        how: PauseEnd,
    },
    /// A skip was journaled, for this cause ([`Skip::key`](super::why::Skip::key)) (a
    /// metric).
    Skipped {
        /// The cause.
        cause: &'static str,
    },
}

/// A policy decision or happening to journal, of a typed kind.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    /// When.
    pub at_ms: i64,
    /// The execution concerned.
    pub execution_id: Option<i64>,
    /// Rule concerned.
    pub rule: Option<String>,
    /// Target concerned.
    pub target: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// Words.
    pub message: String,
}

impl EngineEvent {
    /// The journal row.
    pub fn into_journal(self) -> Event {
        Event {
            at_ms: self.at_ms,
            execution_id: self.execution_id,
            rule: self.rule,
            target: self.target,
            kind: self.kind.as_str().to_string(),
            message: self.message,
        }
    }
}

/// Which message a [`Effect::Mail`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailKind {
    /// The outcome of an execution (or of a dry run).
    Outcome,
    /// A human is needed; the text says why.
    Escalation(String),
}

/// What a run needs, decided by the core.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Journal id (recorded `running` in the same round).
    pub id: i64,
    /// The plan to run.
    pub plan: Plan,
    /// The alert behind it.
    pub alert: Arc<Alert>,
    /// Attempt number of its work.
    pub attempt: u32,
    /// The target broker, when it is a configured one.
    pub broker: Option<Broker>,
    /// HA mode: the lock it runs under.
    pub lock: Option<WorkLock>,
    /// HA mode: how long peers leave the work alone after it ends, per outcome.
    pub hold: Hold,
}

/// HA mode: seconds a finished work's "done" record keeps peers away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// After a success: the cooldown.
    pub succeeded: u64,
    /// After a failure: the retry delay.
    pub failed: u64,
    /// After an escalation: the attempt window.
    pub escalated: u64,
}

impl Effect {
    /// The journal write this effect is, or the effect back when it is not one (mails
    /// are journal writes too, once the runner has rendered them).
    // The "error" is the effect itself handed back, moved once per effect: no cost to box.
    #[allow(clippy::result_large_err)]
    pub fn into_write(self) -> Result<WriteOp, Effect> {
        Ok(match self {
            Effect::Create(e) => WriteOp::Create(*e),
            Effect::Status {
                id,
                status,
                reason,
                at_ms,
            } => WriteOp::Status {
                id,
                status,
                reason,
                at_ms,
            },
            Effect::Event(e) => WriteOp::Event(e.into_journal()),
            Effect::Step { id, record } => WriteOp::Step {
                execution_id: id,
                record: *record,
            },
            Effect::OpenCircuit(c) => WriteOp::OpenCircuit(c),
            Effect::CloseCircuit { rule, target } => WriteOp::CloseCircuit { rule, target },
            Effect::CircuitHealth {
                rule,
                target,
                healthy_since_ms,
            } => WriteOp::CircuitHealth {
                rule,
                target,
                healthy_since_ms,
            },
            Effect::Decided(id) => WriteOp::Decided(id),
            Effect::SetPause(p) => WriteOp::Pause(NewPause {
                target: p.scope.target().map(str::to_string),
                from_ms: p.from_ms,
                until_ms: p.until_ms,
                reason: p.reason,
            }),
            Effect::EndPause { target, at_ms, how } => WriteOp::EndPause { target, at_ms, how },
            other => return Err(other),
        })
    }
}
