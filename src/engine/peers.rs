//! HA mode: what this instance tells its peers through etcd besides locks, in order, in
//! the background: circuits it opened, closed or saw resolved, and resets. Attempts are
//! shared by the lock holder when a run ends ([`Coordinator::finish`]).
//!
//! Best effort: a write that fails is logged. The lock transaction reads these records, so
//! a lost write can at worst let a peer grant one attempt again, never run work at once.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::effect::Effect;
use super::policy::Scope;
use crate::coord::{Coordinator, SharedCircuit};

/// One write for the peers.
#[derive(Debug)]
pub struct Write(Kind);

#[derive(Debug)]
enum Kind {
    Open(SharedCircuit),
    Health {
        rule: String,
        target: Option<String>,
        since: Option<i64>,
    },
    Forget(Scope),
}

/// The queue of writes to etcd, carried out one by one by a background task.
#[derive(Debug, Clone)]
pub struct Peers {
    tx: mpsc::UnboundedSender<Write>,
}

fn target_of(t: &str) -> Option<String> {
    (t != "-").then(|| t.to_string())
}

impl Peers {
    /// Starts the writer for `coord`.
    pub fn start(coord: Arc<Coordinator>) -> Peers {
        let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
        tokio::spawn(async move {
            while let Some(w) = rx.recv().await {
                let r = match &w.0 {
                    Kind::Open(c) => coord.open_circuit(c.clone()).await,
                    Kind::Health {
                        rule,
                        target,
                        since,
                    } => coord.circuit_health(rule, target.as_deref(), *since).await,
                    Kind::Forget(scope) => {
                        coord.forget(|r, t| scope.covers(r, t)).await.map(|_| ())
                    }
                };
                if let Err(e) = r {
                    warn!(error = %e, write = ?w, "coordination: cannot tell the peers");
                }
            }
        });
        Peers { tx }
    }

    /// What the peers must be told of `e`, if it concerns them (send it once the effect
    /// is committed).
    pub fn write_for(e: &Effect, instance: &str) -> Option<Write> {
        let k = match e {
            Effect::OpenCircuit(c) => Kind::Open(SharedCircuit {
                rule: c.rule.clone(),
                target: target_of(&c.target),
                opened_ms: c.opened_ms,
                reason: c.reason.clone(),
                healthy_since_ms: c.healthy_since_ms,
                instance: instance.to_string(),
            }),
            Effect::CloseCircuit { rule, target } => Kind::Forget(Scope {
                rule: Some(rule.clone()),
                target: Some(target_of(target)),
            }),
            Effect::CircuitHealth {
                rule,
                target,
                healthy_since_ms,
            } => Kind::Health {
                rule: rule.clone(),
                target: target_of(target),
                since: *healthy_since_ms,
            },
            _ => return None,
        };
        Some(Write(k))
    }

    /// Sends `w` to the peers.
    pub fn send(&self, w: Write) {
        let _ = self.tx.send(w);
    }

    /// A reset: every instance forgets the circuits and attempts in `scope`.
    pub fn reset(&self, scope: Scope) {
        let _ = self.tx.send(Write(Kind::Forget(scope)));
    }
}
