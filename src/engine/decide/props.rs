//! Invariants of the decision core under random inputs (proptest): random sequences of
//! firing and resolved alerts (several rules, brokers and params), ends of runs
//! (succeeded, failed, escalated, interrupted), time passing, resets, and pauses set and
//! ended (of a broker or the cluster). After every step the effects are checked against an
//! independent model of what must always hold (nothing starts on paused work).
//!
//! `PROPTEST_CASES` raises the number of cases (default 2000 here; a few seconds).

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::tests::{S, T0, alert, outcome, setup_with};
use super::{Core, Outcome};
use crate::alert::{AlertStatus, fingerprint};
use crate::engine::effect::Effect;
use crate::engine::why::EndCause;
use crate::journal::ExecStatus;

const MAX_ATTEMPTS: usize = 3;
const COOLDOWN: i64 = 300 * S;
const WINDOW: i64 = 3600 * S;
const MAX_DIAGNOSTICS: usize = 2;

/// One input.
#[derive(Debug, Clone)]
enum Op {
    /// An alert: `rule` 0 broker-down (says its broker is down), 1 high-cpu (disruptive,
    /// guarded), 2 lag (diagnostics, per topic), 3 restart-because (disruptive, with a param
    /// from an annotation that varies with `topic`).
    Alert {
        rule: u8,
        node: u8,
        topic: u8,
        firing: bool,
        /// A late copy: its `endsAt` is long past.
        stale: bool,
    },
    /// The `pick`-th running execution ends with `result`.
    Finish { pick: usize, result: u8 },
    /// Time passes.
    Tick,
    /// `reset NODE`.
    Reset { node: u8 },
    /// `pause` of broker `node` (0: the cluster) for `secs` seconds.
    Pause { node: u8, secs: u16 },
    /// `resume` of broker `node` (0: the cluster).
    Resume { node: u8 },
}

fn op() -> impl Strategy<Value = (Op, u16)> {
    let op = prop_oneof![
        5 => (0u8..4, 1u8..4, 0u8..3, prop::bool::weighted(0.7), prop::bool::weighted(0.1))
            .prop_map(|(rule, node, topic, firing, stale)| Op::Alert {
                rule,
                node,
                topic,
                firing,
                stale
            }),
        3 => (0usize..8, 0u8..4).prop_map(|(pick, result)| Op::Finish { pick, result }),
        2 => Just(Op::Tick),
        1 => (1u8..4).prop_map(|node| Op::Reset { node }),
        1 => (0u8..4, 1u16..900).prop_map(|(node, secs)| Op::Pause { node, secs }),
        1 => (0u8..4).prop_map(|node| Op::Resume { node }),
    ];
    // Seconds before the input: mostly short, sometimes past a backoff or a cooldown.
    let dt = prop_oneof![6 => 0u16..20, 3 => 0u16..400, 1 => 0u16..4000];
    (op, dt)
}

/// A running execution, as its launch described it.
#[derive(Debug, Clone)]
struct Run {
    disruptive: bool,
    target: Option<String>,
    key: String,
}

/// What the model knows, from the inputs and the effects alone.
#[derive(Default)]
struct Model {
    running: HashMap<i64, Run>,
    /// Status per execution id (terminal once final).
    status: HashMap<i64, ExecStatus>,
    /// Alert fingerprint per execution id.
    fingerprint: HashMap<i64, String>,
    /// Brokers said down: fingerprint → node of firing broker-down alerts.
    down: HashMap<String, String>,
    /// Start times per work key.
    starts: HashMap<String, Vec<i64>>,
    /// Last success per work key (finish time).
    success: HashMap<String, i64>,
    /// Whether each alert's last word was "firing".
    firing: HashMap<String, bool>,
    /// Pauses set: broker (`None`: the cluster) → end.
    pauses: HashMap<Option<String>, i64>,
}

/// A work key as the model counts it: a disruptive runbook's work is (rule, target).
fn key_of(
    rule: &str,
    target: Option<&str>,
    disruptive: bool,
    params: &std::collections::BTreeMap<String, String>,
) -> String {
    let params = if disruptive {
        "{}".to_string()
    } else {
        format!("{params:?}")
    };
    format!("{rule}/{}/{params}", target.unwrap_or("-"))
}

/// The scope of pause op `node`.
fn pause_scope(node: u8) -> crate::engine::pause::PauseScope {
    use crate::engine::pause::PauseScope;
    match node {
        0 => PauseScope::Cluster,
        n => PauseScope::Target(format!("kafka-{n}")),
    }
}

impl Model {
    /// Whether a pause in force at `now` covers work on `target`.
    fn paused(&self, now: i64, target: Option<&String>) -> bool {
        self.pauses
            .iter()
            .any(|(scope, until)| *until > now && (scope.is_none() || scope.as_ref() == target))
    }

    /// A queued execution whose alert's last word was "resolved", if any.
    fn queued_for_resolved(&self) -> Option<(i64, &String)> {
        self.status
            .iter()
            .filter(|(_, s)| **s == ExecStatus::Queued)
            .filter_map(|(id, _)| Some((*id, self.fingerprint.get(id)?)))
            .find(|(_, fp)| self.firing.get(*fp) == Some(&false))
    }

    /// Applies one step's effects, checking each invariant as it goes.
    fn apply(&mut self, now: i64, max_cluster: usize, fx: &[Effect]) -> Result<(), String> {
        let mut marked_running: BTreeSet<i64> = BTreeSet::new();
        for e in fx {
            match e {
                Effect::Create(c) => {
                    let id = c.id.ok_or("an execution without an id")?;
                    if self.status.contains_key(&id) {
                        return Err(format!("id {id} given twice"));
                    }
                    if c.reason.starts_with("paused:") && !self.paused(now, c.target.as_ref()) {
                        return Err(format!("execution {id} skipped for a pause not in force"));
                    }
                    self.status.insert(id, c.status);
                    self.fingerprint.insert(id, c.fingerprint.clone());
                    if c.status == ExecStatus::Running {
                        marked_running.insert(id);
                    }
                }
                Effect::Status { id, status, .. } => {
                    let old = self
                        .status
                        .get(id)
                        .ok_or(format!("status of unknown execution {id}"))?;
                    if old.is_terminal() {
                        return Err(format!("execution {id} changed after {old:?}"));
                    }
                    if *status == ExecStatus::Running {
                        marked_running.insert(*id);
                    }
                    self.status.insert(*id, *status);
                }
                Effect::Event(ev) => {
                    if let Some(id) = ev.execution_id
                        && !self.status.contains_key(&id)
                    {
                        return Err(format!("event about unknown execution {id}"));
                    }
                }
                Effect::Launch(l) => {
                    if !marked_running.contains(&l.id) {
                        return Err(format!("launch of {} before it is recorded running", l.id));
                    }
                    let run = Run {
                        disruptive: l.plan.disruptive,
                        target: l.plan.target.clone(),
                        key: key_of(
                            &l.plan.rule,
                            l.plan.target.as_deref(),
                            l.plan.disruptive,
                            &l.plan.params,
                        ),
                    };
                    self.check_launch(now, max_cluster, &run)?;
                    self.starts.entry(run.key.clone()).or_default().push(now);
                    self.running.insert(l.id, run);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_launch(&self, now: i64, max_cluster: usize, run: &Run) -> Result<(), String> {
        if self.paused(now, run.target.as_ref()) {
            return Err(format!("{} started while paused", run.key));
        }
        let disruptive: Vec<&Run> = self.running.values().filter(|r| r.disruptive).collect();
        if run.disruptive {
            if disruptive.len() + 1 > max_cluster {
                return Err(format!("more than {max_cluster} disruptive runs at once"));
            }
            // The guard (every disruptive rule here is guarded).
            if let Some(other) = disruptive.iter().find(|r| r.target != run.target) {
                return Err(format!(
                    "disruptive run on {:?} while {:?} is being remediated",
                    run.target, other.target
                ));
            }
            let down: BTreeSet<&String> = self.down.values().collect();
            let me_down = run.target.as_ref().is_some_and(|t| down.contains(t));
            if !me_down && down.iter().any(|d| Some(*d) != run.target.as_ref()) {
                return Err(format!(
                    "disruptive run on healthy {:?} while {down:?} are down",
                    run.target
                ));
            }
        } else if self.running.values().filter(|r| !r.disruptive).count() + 1 > MAX_DIAGNOSTICS {
            return Err("more diagnostics at once than max_concurrent_diagnostics".into());
        }
        let recent = self
            .starts
            .get(&run.key)
            .map_or(0, |v| v.iter().filter(|t| **t >= now - WINDOW).count());
        if recent + 1 > MAX_ATTEMPTS {
            return Err(format!(
                "attempt {} of {} within the window",
                recent + 1,
                run.key
            ));
        }
        if let Some(t) = self.success.get(&run.key)
            && now < t + COOLDOWN
        {
            return Err(format!("{} started inside its cooldown", run.key));
        }
        Ok(())
    }
}

/// Runs `ops` on a fresh core; returns every step's effects (for determinism), or the
/// first broken invariant.
fn drive(ops: &[(Op, u16)], max_cluster: usize) -> Result<Vec<String>, String> {
    let setup = setup_with(&format!(
        "max_attempts: {MAX_ATTEMPTS}, initial_delay_seconds: 10, backoff_multiplier: 2, \
         cooldown_seconds: 300, attempt_window_seconds: 3600, circuit_reset_seconds: 604800, \
         max_concurrent_per_cluster: {max_cluster}, max_concurrent_diagnostics: {MAX_DIAGNOSTICS}, \
         max_queued: 10, max_queued_remediation: 3"
    ));
    let mut core = Core::new(setup, 0, None);
    let mut m = Model::default();
    let mut trace = Vec::new();
    let mut now = T0;
    for (i, (op, dt)) in ops.iter().enumerate() {
        now += i64::from(*dt) * S;
        let mut fx = match op {
            Op::Alert {
                rule,
                node,
                topic,
                firing,
                stale,
            } => {
                let status = if *firing {
                    AlertStatus::Firing
                } else {
                    AlertStatus::Resolved
                };
                let node = format!("kafka-{node}");
                let topic = format!("t{topic}");
                let a = match rule {
                    0 => alert(status, "KafkaBrokerDown", &[("node_id", &node)]),
                    1 => alert(status, "HighCpu", &[("node_id", &node)]),
                    2 => alert(status, "TopicLag", &[("topic", &topic)]),
                    _ => {
                        let mut a = alert(status, "Restart", &[("node_id", &node)]);
                        a.annotations
                            .insert("why".into(), format!("because {topic}"));
                        a
                    }
                };
                let mut a = a;
                if *stale && *firing {
                    // Late: it neither fires for the model nor may it start anything.
                    a.ends_at = "2020-01-01T00:05:00Z".into();
                    let fx = core.alert(now, i as i64 + 1, a);
                    if let Some(e) = fx.iter().find(|e| match e {
                        Effect::Launch(_) => true,
                        Effect::Create(c) => !c.status.is_terminal(),
                        _ => false,
                    }) {
                        return Err(format!("step {i}: a stale alert started work: {e:?}"));
                    }
                    fx
                } else {
                    m.firing.insert(a.fingerprint.clone(), *firing);
                    if *rule == 0 {
                        match status {
                            AlertStatus::Firing => m.down.insert(a.fingerprint.clone(), node),
                            AlertStatus::Resolved => m.down.remove(&a.fingerprint),
                        };
                    }
                    core.alert(now, i as i64 + 1, a)
                }
            }
            Op::Finish { pick, result } => {
                let mut ids: Vec<i64> = m.running.keys().copied().collect();
                ids.sort_unstable();
                if ids.is_empty() {
                    Vec::new()
                } else {
                    let id = ids[pick % ids.len()];
                    let (status, cause) = match result {
                        0 => (ExecStatus::Succeeded, EndCause::Completed),
                        1 => (ExecStatus::Failed, EndCause::Completed),
                        2 => (ExecStatus::Escalated, EndCause::Completed),
                        _ => (ExecStatus::Interrupted, EndCause::ShutDown),
                    };
                    let run = m.running.remove(&id).ok_or("picked a run not running")?;
                    if status == ExecStatus::Succeeded {
                        m.success.insert(run.key, now);
                    }
                    core.finished(now, id, outcome(status, cause, now, now))
                }
            }
            Op::Tick => Vec::new(),
            Op::Reset { node } => {
                let target = format!("kafka-{node}");
                let (_, fx) = core.reset(now, &crate::engine::policy::Scope::target(&target));
                let mine = |k: &String| k.contains(&format!("/{target}/"));
                m.starts.retain(|k, _| !mine(k));
                m.success.retain(|k, _| !mine(k));
                fx
            }
            Op::Pause { node, secs } => {
                let duration = format!("{secs}s");
                let req =
                    crate::engine::pause::PauseRequest::new(pause_scope(*node), &duration, "p")
                        .map_err(|e| format!("step {i}: {e}"))?;
                let (p, mut fx) = core
                    .plan_pause(now, req)
                    .map_err(|e| format!("step {i}: {e}"))?;
                m.pauses
                    .insert(p.scope.target().map(str::to_string), p.until_ms);
                fx.extend(core.pause(p));
                fx
            }
            Op::Resume { node } => {
                let scope = pause_scope(*node);
                match core.plan_resume(now, &scope) {
                    Some((_, mut fx)) => {
                        m.pauses.remove(&scope.target().map(str::to_string));
                        fx.extend(core.resume(now, &scope));
                        fx
                    }
                    None => Vec::new(),
                }
            }
        };
        fx.extend(core.tick(now));
        m.apply(now, max_cluster, &fx)
            .map_err(|e| format!("step {i} ({op:?}): {e}"))?;
        // The remediation count is exact, and remediation is never skipped for a full
        // queue.
        let remediation = core.queue.iter().filter(|q| q.remediation).count();
        if remediation != core.queued_remediation() {
            return Err(format!(
                "step {i}: {} counted in the remediation budget, {remediation} queued",
                core.queued_remediation()
            ));
        }
        if let Some(c) = fx.iter().find_map(|e| match e {
            Effect::Create(c) if c.rule != "lag" && c.reason.starts_with("queue full") => Some(c),
            _ => None,
        }) {
            return Err(format!(
                "step {i}: remediation skipped for diagnostics: {c:?}"
            ));
        }
        // A resolved alert leaves none of its queued work behind.
        if let Some((id, fp)) = m.queued_for_resolved() {
            return Err(format!(
                "step {i} ({op:?}): execution {id} queued for resolved alert {fp}"
            ));
        }
        trace.push(format!("{fx:?}"));
    }
    // The end: drain, let everything running finish; every execution is then final.
    now += S;
    let mut fx = core.drain(now);
    let mut ids: Vec<i64> = m.running.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        m.running.remove(&id);
        fx.extend(core.finished(
            now,
            id,
            Outcome {
                status: ExecStatus::Succeeded,
                reason: "done".into(),
                cause: EndCause::Completed,
                steps: Vec::new(),
                unrecorded: 0,
                ran: (now, now),
            },
        ));
    }
    fx.extend(core.tick(now));
    m.apply(now, max_cluster, &fx)?;
    if let Some((id, s)) = m.status.iter().find(|(_, s)| !s.is_terminal()) {
        return Err(format!("execution {id} left {s:?} at the end"));
    }
    if core.in_flight() != 0 {
        return Err(format!(
            "{} still in flight after the drain",
            core.in_flight()
        ));
    }
    trace.push(format!("{fx:?}"));
    Ok(trace)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Every invariant holds after every step, with one cluster slot and with two.
    #[test]
    fn invariants_hold_after_every_step(
        ops in prop::collection::vec(op(), 1..60),
        slots in 1usize..3,
    ) {
        if let Err(e) = drive(&ops, slots) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Identical inputs give identical effects.
    #[test]
    fn identical_input_gives_identical_output(ops in prop::collection::vec(op(), 1..40)) {
        let a = drive(&ops, 1);
        let b = drive(&ops, 1);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn fingerprints_in_the_model_match_the_alerts() {
    // The model tracks "down" by the fingerprint the core sees.
    let a = alert(
        AlertStatus::Firing,
        "KafkaBrokerDown",
        &[("node_id", "kafka-1")],
    );
    assert_eq!(a.fingerprint, fingerprint(&a.labels));
}
