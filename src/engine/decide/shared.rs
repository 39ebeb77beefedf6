//! HA mode: what etcd knew about a piece of work when its lock was taken (the attempts
//! every instance made, and its open circuit) replaces this instance's memory of it, and
//! the policy decides again with it. A failover therefore grants no fresh attempts, and
//! a reset or a circuit opened on one instance holds on all.

use super::{Core, Queued};
use crate::coord::Shared;
use crate::engine::effect::Effect;
use crate::engine::policy::{Admission, Attempt, OpenCircuit};
use crate::engine::why::Skip;
use crate::journal::{Circuit, EventKind};

/// What the shared record says about work whose lock was just taken.
pub(super) enum Adopted {
    /// Run it, as attempt `attempt`.
    Go,
    /// Not before this time (a backoff after a peer's failed attempt).
    Wait(i64),
    /// Not at all.
    Skip(Skip),
}

impl Core {
    /// Adopts `shared` for `q`'s work and decides again.
    pub(super) fn adopt_shared(&mut self, now: i64, q: &mut Queued, shared: &Shared) -> Adopted {
        let attempts = shared
            .attempts
            .iter()
            .map(|a| Attempt {
                started_ms: a.started_ms,
                finished: Some((a.finished_ms, a.ok)),
            })
            .collect();
        self.policy.replace_history(&q.key, attempts);
        let (rule, target) = (q.key.rule.clone(), q.key.target.clone());
        let local = self.policy.circuit(&rule, target.as_deref()).is_some();
        match (&shared.circuit, local) {
            (Some(c), false) => {
                // A peer opened it: this instance holds it open too, and journals it.
                let circuit = OpenCircuit {
                    opened_ms: c.opened_ms,
                    reason: c.reason.clone(),
                    healthy_since_ms: c.healthy_since_ms,
                };
                self.policy
                    .restore_circuit(rule.clone(), target.clone(), circuit);
                self.out.push(Effect::OpenCircuit(Circuit {
                    rule: rule.clone(),
                    target: target.clone().unwrap_or_else(|| "-".into()),
                    opened_ms: c.opened_ms,
                    reason: c.reason.clone(),
                    healthy_since_ms: c.healthy_since_ms,
                }));
                let msg = format!("opened by instance {}: {}", c.instance, c.reason);
                self.event(now, Some(q.id), &q.key, EventKind::CircuitOpened, msg);
            }
            (None, true) => {
                // No instance holds it open any more (a reset, or it closed elsewhere).
                self.policy.drop_circuit(&rule, target.as_deref());
                self.out.push(Effect::CloseCircuit {
                    rule: rule.clone(),
                    target: target.clone().unwrap_or_else(|| "-".into()),
                });
                let msg =
                    "closed: etcd holds it open no more (reset or closed on another instance)";
                self.event(
                    now,
                    Some(q.id),
                    &q.key,
                    EventKind::CircuitClosed,
                    msg.into(),
                );
            }
            _ => {}
        }
        let setup = self.setup.clone();
        let l = setup.limits(setup.rules.rule(&rule));
        match self.policy.admit(&q.key, now, &l) {
            Admission::Allow { attempt } => {
                q.attempt = attempt;
                Adopted::Go
            }
            Admission::Backoff { attempt, until_ms } => {
                q.attempt = attempt;
                Adopted::Wait(until_ms)
            }
            Admission::Cooldown { until_ms } => Adopted::Skip(Skip::Cooldown {
                work: q.key.to_string(),
                until_ms,
            }),
            Admission::CircuitOpen { since_ms, reason } => Adopted::Skip(Skip::CircuitOpen {
                since_ms,
                reason,
                rule,
                target,
            }),
            Admission::Exhausted { attempts } => {
                let (plan, alert) = (q.plan.clone(), q.alert.clone());
                self.exhaust(now, &plan, &alert, attempts);
                Adopted::Skip(Skip::Exhausted { attempts })
            }
        }
    }
}
