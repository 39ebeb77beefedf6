//! Why the engine decided what it did, as types: each cause has one place that words it,
//! so the journal, the log and the email say the same thing and code matches on variants,
//! never on text.

use std::fmt;

use crate::clock::rfc3339_ms;

/// Why queued work cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A retry waits for its backoff.
    Backoff {
        /// Not before.
        until_ms: i64,
    },
    /// Every diagnostics slot is taken.
    DiagnosticsSlot {
        /// `max_concurrent_diagnostics`.
        max: usize,
    },
    /// Every cluster slot is taken by disruptive work.
    ClusterSlot {
        /// The work holding the slots (`rule on target`).
        holders: Vec<String>,
        /// `max_concurrent_per_cluster`.
        max: usize,
    },
    /// The guard: another broker is being remediated.
    GuardRemediating {
        /// That broker.
        broker: String,
    },
    /// The guard: other brokers are down and this one is not.
    GuardDown {
        /// Those brokers, sorted.
        brokers: Vec<String>,
    },
    /// HA mode: another instance holds the work's lock.
    LockHeld {
        /// Who, in words.
        holder: String,
    },
    /// HA mode: no instance holds the lock, but a step of the work that a dead (or cut
    /// off) holder started may still run: nothing starts before it must have ended.
    PeerStep {
        /// Whose step and until when, in words.
        step: String,
    },
    /// HA mode: etcd cannot be asked, and nothing runs without the lock.
    CoordinationUnavailable {
        /// What failed.
        error: String,
    },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Backoff { until_ms } => write!(f, "backoff until {}", rfc3339_ms(*until_ms)),
            Wait::DiagnosticsSlot { max } => write!(
                f,
                "waiting for a diagnostics slot (max_concurrent_diagnostics = {max})"
            ),
            Wait::ClusterSlot { holders, max } => write!(
                f,
                "waiting for a cluster slot: {} running (max_concurrent_per_cluster = {max})",
                holders.join(", ")
            ),
            Wait::GuardRemediating { broker } => {
                write!(f, "guard: broker {broker} is being remediated")
            }
            Wait::GuardDown { brokers } => write!(
                f,
                "guard: broker {} is down; a healthy broker is not touched meanwhile",
                brokers.join(", ")
            ),
            Wait::LockHeld { holder } => write!(
                f,
                "HA: the lock is held by {holder}; this instance runs it only if that one dies (lease expiry) before finishing"
            ),
            Wait::PeerStep { step } => write!(
                f,
                "HA: the lock is free but {step}; this instance takes the work only after that deadline, so the two never run at once"
            ),
            Wait::CoordinationUnavailable { error } => write!(
                f,
                "HA: coordination unavailable, nothing runs without the lock: {error}"
            ),
        }
    }
}

/// Why work was not started (the execution is recorded `skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The plan itself said skip (no target, a param refused, …): its reason.
    Plan(String),
    /// The work succeeded recently.
    Cooldown {
        /// The work, in words.
        work: String,
        /// End of the cooldown.
        until_ms: i64,
    },
    /// The circuit of (rule, target) is open.
    CircuitOpen {
        /// Opened at.
        since_ms: i64,
        /// Why it opened.
        reason: String,
        /// The target (`-` for none).
        target: String,
    },
    /// Attempts ran out in the window: the circuit opens now.
    Exhausted {
        /// Attempts made in the window.
        attempts: u32,
    },
    /// The queue of the work's budget is full.
    QueueFull {
        /// Which budget.
        budget: Budget,
        /// Executions of that budget waiting.
        queued: usize,
        /// Its maximum.
        max: usize,
    },
    /// HA mode: a peer did the work recently.
    DoneByPeer {
        /// Who and how, in words.
        by: String,
    },
    /// The alert is stale: it ended already, or a resolve of it came first.
    Stale(Staleness),
}

/// The two queue budgets: remediation never waits behind (or is skipped for) diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Non-disruptive work of rules that are not `broker_down` (`recovery.max_queued`).
    Diagnostics,
    /// Disruptive work, and any work of a `broker_down` rule
    /// (`recovery.max_queued_remediation`).
    Remediation,
}

impl Budget {
    /// The config key that sizes it.
    pub fn key(self) -> &'static str {
        match self {
            Budget::Diagnostics => "max_queued",
            Budget::Remediation => "max_queued_remediation",
        }
    }

    /// In words.
    pub fn noun(self) -> &'static str {
        match self {
            Budget::Diagnostics => "diagnostics",
            Budget::Remediation => "remediation",
        }
    }
}

/// Why a firing alert is stale (it never runs and never marks a broker down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Its `endsAt` was already past when it arrived (a late or replayed copy).
    Ended {
        /// Its `endsAt`.
        ends_ms: i64,
    },
    /// A resolve of the same alert (same labels) arrived first, and this copy started no
    /// later than the resolved one: an out-of-order copy of an occurrence that is over.
    ResolvedBefore {
        /// The resolved copy's `startsAt`.
        resolved_starts_ms: i64,
    },
}

impl Skip {
    /// A short key per kind of cause: a repeat of the same (work, alert, key) is journaled
    /// once.
    pub fn key(&self) -> &'static str {
        match self {
            Skip::Plan(_) => "plan",
            Skip::Cooldown { .. } => "cooldown",
            Skip::CircuitOpen { .. } => "circuit",
            Skip::Exhausted { .. } => "exhausted",
            Skip::QueueFull { .. } => "queue-full",
            Skip::DoneByPeer { .. } => "done-by-peer",
            Skip::Stale(_) => "stale",
        }
    }
}

/// The reason an [`Skip::Exhausted`] circuit opens with.
pub fn exhausted_reason(attempts: u32) -> String {
    format!("{attempts} attempts within the window did not clear the alert")
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Plan(reason) => f.write_str(reason),
            Skip::Cooldown { work, until_ms } => write!(
                f,
                "cooldown: {work} ran recently; next run allowed after {}",
                rfc3339_ms(*until_ms)
            ),
            Skip::CircuitOpen {
                since_ms,
                reason,
                target,
            } => write!(
                f,
                "circuit open since {} ({reason}); close it with POST /api/v1/targets/{target}/reset",
                rfc3339_ms(*since_ms)
            ),
            Skip::Exhausted { attempts } => write!(
                f,
                "attempts exhausted: {}; circuit opened, escalated",
                exhausted_reason(*attempts)
            ),
            Skip::QueueFull {
                budget,
                queued,
                max,
            } => write!(
                f,
                "queue full: {queued} {} executions already waiting ({} = {max}); \
                 this alert is journaled but nothing runs for it",
                budget.noun(),
                budget.key()
            ),
            Skip::DoneByPeer { by } => write!(
                f,
                "HA: already done by {by}; peers leave it alone for its cooldown"
            ),
            Skip::Stale(Staleness::Ended { ends_ms }) => write!(
                f,
                "stale: the alert's endsAt {} was already past when it arrived; nothing runs for a late or replayed alert",
                rfc3339_ms(*ends_ms)
            ),
            Skip::Stale(Staleness::ResolvedBefore { resolved_starts_ms }) => write!(
                f,
                "stale: a resolve of this alert (startsAt {}) arrived before this firing copy, which started no later; nothing runs for an out-of-order alert",
                rfc3339_ms(*resolved_starts_ms)
            ),
        }
    }
}

/// Why queued work was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Its alert resolved.
    Resolved,
    /// The service is shutting down.
    ShutDown,
}

impl fmt::Display for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cancel::Resolved => "the alert resolved before it started",
            Cancel::ShutDown => "the service shut down before it started",
        })
    }
}

/// Why an execution that started ended without finishing its steps normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// It ran to its end (succeeded, or a step failed with its `on_failure`).
    Completed,
    /// HA mode: its lock was no longer this instance's before a disruptive step.
    Fenced,
    /// The service shut down while it ran.
    ShutDown,
}
