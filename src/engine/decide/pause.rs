//! Pauses and silences in the decision core: an operator's "hands off kafka-2 for 30
//! minutes", and an Alertmanager silence matching a self-watch alert. Pure, like the rest
//! of the core: every method takes `now` and returns effects.
//!
//! - **New work** a pause covers (its target's pause, or the cluster's) is skipped
//!   ([`Skip::Paused`], journaled once per work and alert) and its alert is **held**: when
//!   the pause ends (resumed, or expired) the held alerts that still fire are decided again,
//!   so a broker is healed after the maintenance without waiting for its alert to repeat.
//! - **Queued work** a pause covers waits ([`Wait::Paused`]) and starts after the pause,
//!   unless its alert resolves first (then it is cancelled, as always).
//! - **A run in progress** is not stopped: a pause is no kill switch. If it fails while its
//!   alert fires, its retry is queued and waits for the pause.
//! - A pause stops actions only, not knowledge: a paused broker's `broker_down` alert still
//!   marks it down, so the guard keeps the other brokers alone while it is down for its
//!   maintenance.
//! - **Silences**: the self-watch hands over a firing alert with the Alertmanager silence
//!   that matches it; its plans are skipped ([`Skip::Silenced`]); it still marks its broker
//!   down. It is not held: the self-watch raises it again every 5 minutes while it fires.
//!
//! Setting and ending a pause is two steps, so that the journal has it before it acts:
//! [`Core::plan_pause`] (checks, and the journal writes) then [`Core::pause`] once they are
//! committed; [`Core::plan_resume`] then [`Core::resume`] likewise. Expiry happens in
//! [`Core::tick`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::{Core, Queued};
use crate::alert::Alert;
use crate::clock::{parse_rfc3339_ms, rfc3339_ms};
use crate::engine::effect::{Effect, EngineEvent};
use crate::engine::pause::{Pause, PauseError, PauseRequest, PauseScope};
use crate::engine::plan::{Decision, Plan, plan_alert};
use crate::engine::why::{Silenced, Skip, Wait};
use crate::journal::{EventKind, PauseEnd};

/// Alerts held back by pauses, at most; beyond it the oldest are dropped (they are
/// decided again when they repeat). An alert is about 1–2 KB.
const HELD_REMEMBERED: usize = 10_000;

/// An alert a pause held back, with the rules whose work it skipped.
#[derive(Debug)]
struct HeldAlert {
    alert_id: i64,
    alert: Arc<Alert>,
    rules: BTreeSet<String>,
}

/// Held alerts by fingerprint (the newest copy of each), oldest first.
#[derive(Debug, Default)]
struct Held {
    by_fp: HashMap<String, HeldAlert>,
    order: VecDeque<String>,
}

impl Held {
    fn hold(&mut self, alert_id: i64, alert: &Arc<Alert>, rule: &str) {
        match self.by_fp.get_mut(&alert.fingerprint) {
            Some(h) => {
                if alert_id >= h.alert_id {
                    h.alert_id = alert_id;
                    h.alert = alert.clone();
                }
                h.rules.insert(rule.to_string());
            }
            None => {
                self.order.push_back(alert.fingerprint.clone());
                let h = HeldAlert {
                    alert_id,
                    alert: alert.clone(),
                    rules: BTreeSet::from([rule.to_string()]),
                };
                self.by_fp.insert(alert.fingerprint.clone(), h);
            }
        }
        // Removed alerts leave their place in `order`: compact before it outgrows the map.
        if self.order.len() > 2 * HELD_REMEMBERED + 16 {
            let by_fp = &self.by_fp;
            let mut live = std::collections::HashSet::new();
            self.order
                .retain(|fp| by_fp.contains_key(fp) && live.insert(fp.clone()));
        }
        while self.by_fp.len() > HELD_REMEMBERED {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.by_fp.remove(&old);
        }
    }

    fn remove(&mut self, fingerprint: &str) {
        self.by_fp.remove(fingerprint);
    }

    /// Every held alert, in arrival order (journal ids).
    fn take(&mut self) -> Vec<HeldAlert> {
        self.order.clear();
        let mut all: Vec<HeldAlert> = self.by_fp.drain().map(|(_, h)| h).collect();
        all.sort_by_key(|h| h.alert_id);
        all
    }
}

/// The pauses in force, the alerts they hold back, and the silence of the alert being
/// decided.
#[derive(Debug, Default)]
pub(super) struct PauseState {
    active: BTreeMap<PauseScope, Pause>,
    held: Held,
    /// Set only while [`Core::silenced`] decides its alert.
    silence: Option<Silenced>,
}

/// An event about a pause (no execution, no rule; the broker when it is a target's).
fn pause_event(now: i64, scope: &PauseScope, kind: EventKind, message: String) -> Effect {
    Effect::Event(EngineEvent {
        at_ms: now,
        execution_id: None,
        rule: None,
        target: scope.target().map(str::to_string),
        kind,
        message,
    })
}

impl Core {
    /// Checks a pause asked for at `now` and returns it with the journal writes that
    /// record it (the pause, a `paused` event). Nothing changes until [`pause`](Self::pause)
    /// is called with it, once those writes are committed.
    pub fn plan_pause(
        &self,
        now: i64,
        req: PauseRequest,
    ) -> Result<(Pause, Vec<Effect>), PauseError> {
        if let PauseScope::Target(t) = &req.scope
            && !self.setup.is_target(t)
        {
            return Err(PauseError::UnknownTarget(t.clone()));
        }
        let pause = Pause {
            scope: req.scope,
            from_ms: now,
            until_ms: now.saturating_add(req.duration_ms),
            reason: req.reason,
        };
        let mut msg = format!(
            "{} paused until {} ({}): {:?}; nothing runs for it meanwhile; end it early with {} (or {})",
            pause.scope,
            rfc3339_ms(pause.until_ms),
            pause.length(),
            pause.reason,
            pause.scope.resume_command(),
            pause.scope.resume_route()
        );
        if let Some(old) = self
            .pauses
            .active
            .get(&pause.scope)
            .filter(|p| p.active(now))
        {
            msg.push_str(&format!(
                "; it replaces the pause until {} ({:?})",
                rfc3339_ms(old.until_ms),
                old.reason
            ));
        }
        let fx = vec![
            Effect::SetPause(pause.clone()),
            pause_event(now, &pause.scope, EventKind::Paused, msg),
        ];
        Ok((pause, fx))
    }

    /// Puts `pause` in force (replacing one of the same scope). Work it covers is skipped
    /// from now on, and queued work waits (the next tick journals why).
    pub fn pause(&mut self, pause: Pause) -> Vec<Effect> {
        self.pauses.active.insert(pause.scope.clone(), pause);
        self.wake_known = false;
        self.take()
    }

    /// The pause of `scope` in force at `now`, with the journal writes that end it early
    /// (the pause's end, a `resumed` event); `None` when there is none. Nothing changes
    /// until [`resume`](Self::resume) is called, once those writes are committed.
    pub fn plan_resume(&self, now: i64, scope: &PauseScope) -> Option<(Pause, Vec<Effect>)> {
        let p = self.pauses.active.get(scope).filter(|p| p.active(now))?;
        let msg = format!(
            "{} resumed before its pause ended (it was paused until {}: {:?}); the alerts it held back are decided again",
            p.scope,
            rfc3339_ms(p.until_ms),
            p.reason
        );
        let fx = vec![
            Effect::EndPause {
                target: scope.target().map(str::to_string),
                at_ms: now,
                how: PauseEnd::Resumed,
            },
            pause_event(now, scope, EventKind::Resumed, msg),
        ];
        Some((p.clone(), fx))
    }

    /// Ends the pause of `scope`: the alerts it held back that still fire are decided
    /// again now, and queued work it held may start (at the tick).
    pub fn resume(&mut self, now: i64, scope: &PauseScope) -> Vec<Effect> {
        if self.pauses.active.remove(scope).is_some() {
            self.wake_known = false;
            self.release_held(now);
        }
        self.take()
    }

    /// Restores a pause from the journal (at start-up).
    pub fn restore_pause(&mut self, pause: Pause) {
        self.pauses.active.insert(pause.scope.clone(), pause);
    }

    /// The pauses in force at `now`: the cluster's first, then by broker.
    pub fn pauses(&self, now: i64) -> Vec<Pause> {
        self.pauses
            .active
            .values()
            .filter(|p| p.active(now))
            .cloned()
            .collect()
    }

    /// Decides alert `alert_id`, which the self-watch raised while `silence` (an
    /// Alertmanager silence) matches it: as [`alert`](Self::alert), except that the work
    /// it would start is skipped ([`Skip::Silenced`]). A resolved alert is decided as ever.
    pub fn silenced(
        &mut self,
        now: i64,
        alert_id: i64,
        alert: Alert,
        silence: Silenced,
    ) -> Vec<Effect> {
        self.pauses.silence = Some(silence);
        let fx = self.alert(now, alert_id, alert);
        self.pauses.silence = None;
        fx
    }

    /// Ends the pauses whose time is up at `now`, and decides again what they held.
    pub(super) fn expire_pauses(&mut self, now: i64) {
        let ended: Vec<Pause> = self
            .pauses
            .active
            .values()
            .filter(|p| !p.active(now))
            .cloned()
            .collect();
        if ended.is_empty() {
            return;
        }
        for p in ended {
            self.pauses.active.remove(&p.scope);
            self.out.push(Effect::EndPause {
                target: p.scope.target().map(str::to_string),
                at_ms: p.until_ms,
                how: PauseEnd::Expired,
            });
            let msg = format!(
                "{}: the pause ended at {} (it was set for {}: {:?}); the alerts it held back are decided again",
                p.scope,
                rfc3339_ms(p.until_ms),
                p.length(),
                p.reason
            );
            self.out
                .push(pause_event(now, &p.scope, EventKind::Resumed, msg));
        }
        self.wake_known = false;
        self.release_held(now);
    }

    /// When the next pause ends by itself.
    pub(super) fn next_pause_end(&self) -> Option<i64> {
        self.pauses.active.values().map(|p| p.until_ms).min()
    }

    /// The pause in force at `now` that covers work on `target`: of a target's pause and
    /// the cluster's, the one that ends last.
    fn pause_of(&self, now: i64, target: Option<&str>) -> Option<&Pause> {
        self.pauses
            .active
            .values()
            .filter(|p| p.active(now) && p.scope.covers(target))
            .max_by_key(|p| p.until_ms)
    }

    /// Why queued work `q` waits for a pause, if one covers it.
    pub(super) fn paused_wait(&self, now: i64, q: &Queued) -> Option<Wait> {
        let p = self.pause_of(now, q.key.target.as_deref())?;
        Some(Wait::Paused {
            scope: p.scope.clone(),
            until_ms: p.until_ms,
            reason: p.reason.clone(),
        })
    }

    /// Why plan `p` of alert `alert_id` must not act now: a pause covers its target (the
    /// alert is then held, to be decided again when the pause ends, unless it is silenced
    /// too: the silence's end is noticed at its next repeat), or its alert is silenced.
    pub(super) fn hands_off(
        &mut self,
        now: i64,
        alert_id: i64,
        alert: &Arc<Alert>,
        p: &Plan,
    ) -> Option<Skip> {
        if let Some(pause) = self.pause_of(now, p.target.as_deref()) {
            let why = Skip::Paused {
                scope: pause.scope.clone(),
                until_ms: pause.until_ms,
                reason: pause.reason.clone(),
            };
            if self.pauses.silence.is_none() {
                self.pauses.held.hold(alert_id, alert, &p.rule);
            }
            return Some(why);
        }
        self.pauses.silence.clone().map(Skip::Silenced)
    }

    /// Alert `fingerprint` resolved: nothing is held for it any more.
    pub(super) fn unhold(&mut self, fingerprint: &str) {
        self.pauses.held.remove(fingerprint);
    }

    /// Decides again the held plans of the held alerts (those of rules that were paused),
    /// in arrival order. A plan still paused (another pause covers it) is held again,
    /// without a second skip record.
    fn release_held(&mut self, now: i64) {
        let held = self.pauses.held.take();
        if held.is_empty() {
            return;
        }
        let setup = self.setup.clone();
        for h in held {
            // An alert whose end has passed meanwhile is over.
            if parse_rfc3339_ms(&h.alert.ends_at).is_some_and(|e| e <= now) {
                continue;
            }
            let plans = plan_alert(&setup.loaded.config, &setup.rules, &h.alert);
            for p in plans {
                if p.decision != Decision::Run || !h.rules.contains(&p.rule) {
                    continue;
                }
                if self.pause_of(now, p.target.as_deref()).is_none() {
                    // A new story: a later pause of it is journaled again.
                    self.seen
                        .forget_one(&p.work_key(), &p.fingerprint, "paused");
                }
                self.decide(now, h.alert_id, &h.alert, p);
            }
        }
    }
}
