//! What the journal stores: alerts, executions, steps, events and open circuits.
//! Times are Unix milliseconds (UTC).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::JournalError;
use super::pauses::{NewPause, PauseEnd};

/// An execution's state. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Waiting for a cluster slot, a guard or its backoff time.
    Queued,
    /// Steps are running.
    Running,
    /// Every step succeeded (or failed with `on_failure: continue`).
    Succeeded,
    /// A step failed with `on_failure: abort`.
    Failed,
    /// A step failed with `on_failure: escalate`, or attempts ran out.
    Escalated,
    /// Cancelled before it started (the alert resolved, or shutdown).
    Cancelled,
    /// Was running when the service stopped or crashed; never re-run blindly.
    Interrupted,
    /// The policy refused it (cooldown, circuit open, …); `reason` says why.
    Skipped,
    /// dry_run: recorded what would have run, ran nothing.
    DryRun,
    /// A precondition did not hold before a disruptive step (the broker answers, the
    /// restart would take partitions below min ISR, it is recovering): that step and the
    /// rest did not run; `reason` says which and why. No attempt is counted.
    Refused,
}

impl ExecStatus {
    /// The status as stored and shown (`queued`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Queued => "queued",
            ExecStatus::Running => "running",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::Escalated => "escalated",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::Interrupted => "interrupted",
            ExecStatus::Skipped => "skipped",
            ExecStatus::DryRun => "dry_run",
            ExecStatus::Refused => "refused",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<ExecStatus> {
        Some(match s {
            "queued" => ExecStatus::Queued,
            "running" => ExecStatus::Running,
            "succeeded" => ExecStatus::Succeeded,
            "failed" => ExecStatus::Failed,
            "escalated" => ExecStatus::Escalated,
            "cancelled" => ExecStatus::Cancelled,
            "interrupted" => ExecStatus::Interrupted,
            "skipped" => ExecStatus::Skipped,
            "dry_run" => ExecStatus::DryRun,
            "refused" => ExecStatus::Refused,
            _ => return None,
        })
    }

    /// Whether the status can still change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecStatus::Queued | ExecStatus::Running)
    }
}

/// What an [`Event`] records. Stored as its [`as_str`](Self::as_str) text, so the
/// journal can also hold kinds a later version adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A queued execution cannot start yet (backoff, a slot, the guard, a lock).
    Waiting,
    /// HA mode: this instance took the work's lock in etcd.
    LockAcquired,
    /// Work was not started for a reason found after it was queued (HA: done by a peer).
    Skip,
    /// A failed attempt will be tried again after its backoff.
    RetryScheduled,
    /// Copies of an alert were collapsed into an execution in flight.
    Duplicates,
    /// A queued execution was cancelled (the alert resolved, or shutdown, or restart).
    Cancelled,
    /// A circuit opened: no more runs of the rule on the target until reset.
    CircuitOpened,
    /// A circuit closed (reset, or a new occurrence after a long healthy time).
    CircuitClosed,
    /// A human is needed.
    Escalation,
    /// HA mode: a disruptive step was refused because the lock is no longer ours.
    Fenced,
    /// Preconditions were judged before a disruptive step: what each found, and the time
    /// the look took.
    Precondition,
    /// A precondition did not hold: the execution ends `refused`.
    Refused,
    /// An execution was running when the service stopped.
    Interrupted,
    /// An operator paused a broker or the cluster.
    Paused,
    /// A pause ended (resumed early, or expired).
    Resumed,
}

impl EventKind {
    /// The kind as stored and shown (`waiting`, `circuit_opened`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Waiting => "waiting",
            EventKind::LockAcquired => "lock_acquired",
            EventKind::Skip => "skip",
            EventKind::RetryScheduled => "retry_scheduled",
            EventKind::Duplicates => "duplicates",
            EventKind::Cancelled => "cancelled",
            EventKind::CircuitOpened => "circuit_opened",
            EventKind::CircuitClosed => "circuit_closed",
            EventKind::Escalation => "escalation",
            EventKind::Fenced => "fenced",
            EventKind::Precondition => "precondition",
            EventKind::Refused => "refused",
            EventKind::Interrupted => "interrupted",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert as received, to be journaled before the webhook is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    /// When it was received.
    pub received_ms: i64,
    /// `webhook` (Alertmanager) or `self` (the self-watch's conditions).
    pub source: String,
    /// Alertmanager receiver name.
    pub receiver: String,
    /// Alertmanager group key.
    pub group_key: String,
    /// Alertmanager external URL.
    pub external_url: String,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// startsAt as sent.
    pub starts_at: String,
    /// endsAt as sent.
    pub ends_at: String,
    /// generatorURL as sent.
    pub generator_url: String,
}

impl NewAlert {
    /// The journal row of `alert`, received at `received_ms` from `source` (`webhook` with
    /// its receiver, group key and external URL; `self` for condition alerts).
    pub fn of(
        alert: &crate::alert::Alert,
        received_ms: i64,
        source: &str,
        receiver: &str,
        group_key: &str,
    ) -> NewAlert {
        NewAlert {
            received_ms,
            source: source.into(),
            receiver: receiver.into(),
            group_key: group_key.into(),
            external_url: alert.external_url.clone(),
            fingerprint: alert.fingerprint.clone(),
            status: alert.status.as_str().into(),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at.clone(),
            ends_at: alert.ends_at.clone(),
            generator_url: alert.generator_url.clone(),
        }
    }

    /// The alert this row journals (an unknown status reads as firing: it is only ever
    /// written from [`AlertStatus::as_str`](crate::alert::AlertStatus::as_str)).
    pub fn alert(&self) -> crate::alert::Alert {
        use crate::alert::{Alert, AlertStatus};
        Alert {
            status: match self.status.as_str() {
                "resolved" => AlertStatus::Resolved,
                _ => AlertStatus::Firing,
            },
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: self.starts_at.clone(),
            ends_at: self.ends_at.clone(),
            generator_url: self.generator_url.clone(),
            fingerprint: self.fingerprint.clone(),
            external_url: self.external_url.clone(),
        }
    }
}

/// An execution to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    /// The id to give it (the engine assigns ids itself), or `None` for the next free one.
    #[serde(default)]
    pub id: Option<i64>,
    /// The journaled alert that caused it.
    pub alert_id: Option<i64>,
    /// Rule name.
    pub rule: String,
    /// Runbook name.
    pub runbook: String,
    /// Target broker node_id.
    pub target: Option<String>,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Initial status (queued, skipped, dry_run, cancelled…).
    pub status: ExecStatus,
    /// Why the policy decided so.
    pub reason: String,
    /// Recorded-not-run.
    pub dry_run: bool,
    /// Whether the runbook is disruptive.
    pub disruptive: bool,
    /// 1 for the first attempt of a (rule, target), 2 for the first retry, …
    pub attempt: u32,
    /// The rendered steps (JSON array of `RenderedStep`).
    pub plan: serde_json::Value,
    /// Creation time.
    pub created_ms: i64,
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Exit status 0 / 2xx / ready.
    Succeeded,
    /// Non-zero exit, non-2xx, or could not start.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Not run (dry_run, or an earlier step aborted).
    NotRun,
}

/// A finished step, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in the runbook (0-based).
    pub index: u32,
    /// Step name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// The argv that ran (or `[METHOD, URL]`, `[tcp|http, ADDRESS]`).
    pub argv: Vec<String>,
    /// Outcome.
    pub status: StepStatus,
    /// Exit code of the last try, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended the last try, when one did.
    pub signal: Option<i32>,
    /// Tries made (1 + retries used).
    pub attempts: u32,
    /// Start of the first try.
    pub started_ms: i64,
    /// Total time, all tries.
    pub duration_ms: i64,
    /// Captured standard output of the last try (lossy UTF-8, truncated).
    pub stdout: String,
    /// Captured standard error of the last try (lossy UTF-8, truncated).
    pub stderr: String,
    /// Whether stdout was cut.
    pub stdout_truncated: bool,
    /// Whether stderr was cut.
    pub stderr_truncated: bool,
    /// A failure that is not an exit status (spawn error, connect error, …).
    pub error: Option<String>,
}

/// An execution as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Id.
    pub id: i64,
    /// The alert that caused it.
    pub alert_id: Option<i64>,
    /// Rule name.
    pub rule: String,
    /// Runbook name.
    pub runbook: String,
    /// Target node_id.
    pub target: Option<String>,
    /// Alert fingerprint.
    pub fingerprint: String,
    /// Current status.
    pub status: ExecStatus,
    /// Why it has that status.
    pub reason: String,
    /// Recorded-not-run.
    pub dry_run: bool,
    /// Disruptive runbook.
    pub disruptive: bool,
    /// Attempt number for its (rule, target).
    pub attempt: u32,
    /// Rendered steps.
    pub plan: serde_json::Value,
    /// Created.
    pub created_ms: i64,
    /// Started running.
    pub started_ms: Option<i64>,
    /// Reached a terminal status.
    pub finished_ms: Option<i64>,
}

/// A policy decision or notable happening, attached to an execution when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at_ms: i64,
    /// The execution concerned.
    pub execution_id: Option<i64>,
    /// Rule concerned.
    pub rule: Option<String>,
    /// Target concerned.
    pub target: Option<String>,
    /// Short kind: an [`EventKind`]'s text (`waiting`, `circuit_opened`, `escalation`, …).
    pub kind: String,
    /// Words.
    pub message: String,
}

/// An open circuit: no more runs for (rule, target) until reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    /// Rule.
    pub rule: String,
    /// Target (node_id, or `-` for rules without a target).
    pub target: String,
    /// Opened at.
    pub opened_ms: i64,
    /// Why.
    pub reason: String,
    /// Since when its problem has been resolved, if it is (it closes by itself
    /// `circuit_reset_seconds` later).
    pub healthy_since_ms: Option<i64>,
}

/// One write of a [`Journal::write`](super::Journal::write) batch: everything the engine
/// decided in one round, committed together before any of it takes effect.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Creates an execution.
    Create(NewExecution),
    /// Changes an execution's status (as [`Journal::set_status`](super::Journal::set_status);
    /// an unknown or already finished execution is left alone and logged, not an error,
    /// so one stale request cannot undo a whole round).
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
    /// Records an event.
    Event(Event),
    /// Records a finished step.
    Step {
        /// Its execution.
        execution_id: i64,
        /// The step.
        record: StepRecord,
    },
    /// Opens (or re-opens) a circuit.
    OpenCircuit(Circuit),
    /// Records since when an open circuit's problem has been resolved (`None`: it fired
    /// again).
    CircuitHealth {
        /// Rule.
        rule: String,
        /// Target, `-` for none.
        target: String,
        /// Resolved since.
        healthy_since_ms: Option<i64>,
    },
    /// Closes a circuit.
    CloseCircuit {
        /// Rule.
        rule: String,
        /// Target, `-` for none.
        target: String,
    },
    /// Puts a message in the outbox.
    Mail(NewMail),
    /// Marks a journaled alert decided: a restart does not decide it again.
    Decided(i64),
    /// Records a pause; a pause of the same scope still in force ends (`replaced`).
    Pause(NewPause),
    /// Ends the pause of a scope in force, if any.
    EndPause {
        /// Its broker, `None` for the cluster's.
        target: Option<String>,
        /// When it ended.
        at_ms: i64,
        /// How.
        how: PauseEnd,
    },
}

/// Filter for listing executions; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<ExecStatus>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only created at or after this time.
    pub since_ms: Option<i64>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<u32>,
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMail {
    /// Created at.
    pub created_ms: i64,
    /// `outcome` or `escalation`.
    pub kind: String,
    /// Rate-limit key: at most one message per key per window (`rule/target` for outcomes).
    pub key: String,
    /// The execution it reports, when there is one.
    pub execution_id: Option<i64>,
    /// Recipients.
    pub recipients: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// Id.
    pub id: i64,
    /// The message.
    pub mail: NewMail,
    /// Sent yet.
    pub sent_ms: Option<i64>,
    /// The message it went out with, when it was folded into another (rate limit).
    pub sent_with: Option<i64>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Whether its undeliverability was escalated already.
    pub escalated: bool,
}

/// What [`Journal::record_alerts_in_parts`](super::Journal::record_alerts_in_parts)
/// journaled.
#[derive(Debug)]
pub struct Recorded {
    /// Each alert's id, in the order given; `None` for the alerts of a part that failed.
    pub ids: Vec<Option<i64>>,
    /// The first error of a part, if any failed.
    pub error: Option<JournalError>,
}
