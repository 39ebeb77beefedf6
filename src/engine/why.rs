//! Why the engine decided what it did, as types: each cause has one place that words it,
//! so the journal, the log and the email say the same thing and code matches on variants,
//! never on text.

use std::fmt;

use crate::clock::rfc3339_ms;
use crate::engine::pause::PauseScope;

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
    /// An operator paused its target (or the cluster): it starts once the pause ends.
    Paused {
        /// What the pause covers.
        scope: PauseScope,
        /// When it ends by itself.
        until_ms: i64,
        /// The operator's reason.
        reason: String,
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
            Wait::Paused {
                scope,
                until_ms,
                reason,
            } => write!(
                f,
                "paused: {} until {} ({reason:?}); this waits and starts after the pause \
                 unless its alert resolves first; end the pause early with {} (or {})",
                paused_words(scope),
                rfc3339_ms(*until_ms),
                scope.resume_command(),
                scope.resume_route()
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
        /// The rule.
        rule: String,
        /// The target, if the runbook has one.
        target: Option<String>,
    },
    /// Attempts ran out in the window: the circuit opens now.
    Exhausted {
        /// Attempts made in the window.
        attempts: u32,
    },
    /// The diagnostics queue is full.
    QueueFull {
        /// Diagnostics waiting.
        queued: usize,
        /// `max_queued`.
        max: usize,
    },
    /// HA mode: a peer did the work recently.
    DoneByPeer {
        /// Who and how, in words.
        by: String,
    },
    /// The alert is stale: it ended already, or a resolve of it came first.
    Stale(Staleness),
    /// An operator paused its target (or the cluster).
    Paused {
        /// What the pause covers.
        scope: PauseScope,
        /// When it ends by itself.
        until_ms: i64,
        /// The operator's reason.
        reason: String,
    },
    /// The self-watch's alert is silenced in Alertmanager.
    Silenced(Silenced),
}

/// An Alertmanager silence that matched a self-watch alert, as the skip names it. The
/// texts come from Alertmanager (whoever created the silence): untrusted, cut to a bound
/// and shown escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silenced {
    /// The silence's id.
    pub id: String,
    /// Its `createdBy`.
    pub created_by: String,
    /// Its `comment`.
    pub comment: String,
    /// Its `endsAt`, when it parses.
    pub ends_ms: Option<i64>,
}

/// "kafka-2 is paused" / "the cluster is paused".
fn paused_words(scope: &PauseScope) -> String {
    format!("{scope} is paused")
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
            Skip::Paused { .. } => "paused",
            Skip::Silenced(_) => "silenced",
        }
    }
}

/// The API route that closes the circuit of `rule` on `target` (a rule-level circuit when
/// the runbook has no target).
pub fn reset_route(rule: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("/api/v1/targets/{t}/reset"),
        None => format!("/api/v1/rules/{rule}/reset"),
    }
}

/// How to close the circuit of `rule` on `target`, on the command line and over the API.
pub fn reset_hint(rule: &str, target: Option<&str>) -> String {
    let cli = match target {
        Some(t) => format!("kafka-healing reset -c CONFIG {t}"),
        None => format!("kafka-healing reset -c CONFIG --rule {rule}"),
    };
    format!("{cli} (or POST {})", reset_route(rule, target))
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
                rule,
                target,
            } => write!(
                f,
                "circuit open since {} ({reason}); close it with POST {}",
                rfc3339_ms(*since_ms),
                reset_route(rule, target.as_deref())
            ),
            Skip::Exhausted { attempts } => write!(
                f,
                "attempts exhausted: {}; circuit opened, escalated",
                exhausted_reason(*attempts)
            ),
            Skip::QueueFull { queued, max } => write!(
                f,
                "queue full: {queued} diagnostics executions already waiting (max_queued = {max}); \
                 this alert is journaled but nothing runs for it"
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
            Skip::Paused {
                scope,
                until_ms,
                reason,
            } => write!(
                f,
                "paused: {} until {} ({reason:?}); nothing runs for it meanwhile, and the \
                 alert is decided again when the pause ends if it still fires; end the \
                 pause early with {} (or {})",
                paused_words(scope),
                rfc3339_ms(*until_ms),
                scope.resume_command(),
                scope.resume_route()
            ),
            Skip::Silenced(s) => {
                let until = s.ends_ms.map_or_else(|| "its end".to_string(), rfc3339_ms);
                write!(
                    f,
                    "silenced: Alertmanager silence {} (created by {:?}: {:?}) matches this \
                     self-watch alert until {until}; nothing runs for it meanwhile; expire \
                     the silence to let it act (the alert is raised again within 5 minutes)",
                    s.id, s.created_by, s.comment
                )
            }
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
    /// A step failed in a way no later run can fix (its argv cannot run as rendered): the
    /// run is recorded, but counts as no attempt and opens no circuit.
    Unfixable,
    /// This precondition (the first that did not hold) refused a disruptive step: counts
    /// as no attempt, opens no circuit; judged again later while the alert fires.
    Refused(crate::rules::model::Precondition),
}
