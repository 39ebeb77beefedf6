//! The decision core, driven by hand: each policy rule, and the exact words of each reason
//! the README documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::{Core, Ha, LockAnswer, Outcome};
use crate::alert::{Alert, AlertStatus, fingerprint};
use crate::engine::effect::{Effect, MailKind};
use crate::engine::setup::Setup;
use crate::engine::why::EndCause;
use crate::journal::{EventKind, ExecStatus};

pub(super) const S: i64 = 1000;
/// A start time: 2026-12-01T00:00:00Z.
pub(super) const T0: i64 = 1_796_083_200_000;

/// The rules every core test decides with.
const RULES: &str = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
    broker_down: true
  - name: high-cpu
    matchers: ['alertname="HighCpu"']
    runbook: restart
  - name: lag
    matchers: ['alertname="TopicLag"']
    runbook: describe
    params:
      topic: { value: "{{alert.labels.topic}}", pattern: "[a-z0-9]+" }
  - name: rehearse
    matchers: ['alertname="Rehearse"']
    runbook: restart
    dry_run: true
  - name: restart-because
    matchers: ['alertname="Restart"']
    runbook: restart-because
    params:
      why: { value: "{{alert.annotations.why}}", pattern: "[a-z0-9 ]+" }
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/true", "{{target.node_id}}"]
  restart-because:
    steps:
      - name: restart
        exec: ["/bin/true", "{{target.node_id}}", "{{params.why}}"]
  describe:
    disruptive: false
    steps:
      - name: describe
        exec: ["/bin/true", "{{params.topic}}"]
"#;

/// A setup of three brokers with `recovery` (YAML flow mapping body) and [`RULES`],
/// loaded once per `recovery`.
pub(super) fn setup_with(recovery: &str) -> Arc<Setup> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Setup>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(recovery.to_string())
        .or_insert_with(|| load_setup(recovery))
        .clone()
}

fn load_setup(recovery: &str) -> Arc<Setup> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: k1.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-2, host: k2.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-3, host: k3.example.com, port: 9092, jmx_port: 9404 }}\nrules: [rules.yaml]\nstate: {{ path: journal.db }}\nrecovery: {{ {recovery} }}\nnotifications:\n  smtp: {{ host: 127.0.0.1, port: 25, tls: none, from_email: kh@example.com, to_emails: [oncall@example.com] }}\n"
    );
    std::fs::write(dir.path().join("config.yaml"), config).expect("config");
    std::fs::write(dir.path().join("rules.yaml"), RULES).expect("rules");
    match Setup::load(&dir.path().join("config.yaml")) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("test setup does not load: {e}"),
    }
}

/// The default test setup: 3 attempts, 10 s first backoff ×2, 300 s cooldown, one
/// disruptive slot, two diagnostics slots, at most 10 queued.
pub(super) fn setup() -> Arc<Setup> {
    setup_with(
        "max_attempts: 3, initial_delay_seconds: 10, backoff_multiplier: 2, \
         cooldown_seconds: 300, attempt_window_seconds: 3600, \
         circuit_reset_seconds: 1800, max_concurrent_per_cluster: 1, \
         max_concurrent_diagnostics: 2, max_queued: 10",
    )
}

/// An alert named `name` with `labels`.
pub(super) fn alert(status: AlertStatus, name: &str, labels: &[(&str, &str)]) -> Alert {
    let mut l: crate::alert::LabelSet = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("alertname".into(), name.into());
    Alert {
        status,
        fingerprint: fingerprint(&l),
        labels: l,
        annotations: Default::default(),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        external_url: String::new(),
    }
}

fn down(node: &str) -> Alert {
    alert(AlertStatus::Firing, "KafkaBrokerDown", &[("node_id", node)])
}

fn up(node: &str) -> Alert {
    alert(
        AlertStatus::Resolved,
        "KafkaBrokerDown",
        &[("node_id", node)],
    )
}

/// An outcome of `status` that ran from `start` to `end`.
pub(super) fn outcome(status: ExecStatus, cause: EndCause, start: i64, end: i64) -> Outcome {
    Outcome {
        status,
        reason: format!("it {}", status.as_str()),
        cause,
        steps: Vec::new(),
        unrecorded: 0,
        ran: (start, end),
    }
}

fn ok(t: i64) -> Outcome {
    outcome(ExecStatus::Succeeded, EndCause::Completed, t, t)
}

fn failed(t: i64) -> Outcome {
    outcome(ExecStatus::Failed, EndCause::Completed, t, t)
}

/// The executions created: (id, status, reason).
pub(super) fn created(fx: &[Effect]) -> Vec<(i64, ExecStatus, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Create(c) => Some((c.id.unwrap_or(0), c.status, c.reason.clone())),
            _ => None,
        })
        .collect()
}

/// The ids launched.
fn launched(fx: &[Effect]) -> Vec<i64> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(l) => Some(l.id),
            _ => None,
        })
        .collect()
}

/// Events of `kind`: (execution, message).
fn events(fx: &[Effect], kind: EventKind) -> Vec<(Option<i64>, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Event(ev) if ev.kind == kind => Some((ev.execution_id, ev.message.clone())),
            _ => None,
        })
        .collect()
}

/// Status changes: (id, status, reason).
fn statuses(fx: &[Effect]) -> Vec<(i64, ExecStatus, Option<String>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Status {
                id, status, reason, ..
            } => Some((*id, *status, reason.clone())),
            _ => None,
        })
        .collect()
}

fn mails(fx: &[Effect]) -> Vec<MailKind> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Mail { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

/// One round as the runner does it: the input, then a tick.
fn round(core: &mut Core, now: i64, input: impl FnOnce(&mut Core) -> Vec<Effect>) -> Vec<Effect> {
    let mut fx = input(core);
    fx.extend(core.tick(now));
    fx
}

#[test]
fn a_new_alert_runs_at_once_and_its_copies_collapse() {
    let mut c = Core::new(setup(), 41, None);
    let fx = c.alert(T0, 7, down("kafka-1"));
    assert!(matches!(fx[0], Effect::Decided(7)));
    assert_eq!(
        created(&fx),
        vec![(
            42,
            ExecStatus::Running,
            "matched; target kafka-1 (attempt 1/3)".into()
        )]
    );
    assert_eq!(launched(&fx), vec![42], "ids follow the journal's last one");
    let fx = c.alert(T0 + S, 8, down("kafka-1"));
    assert!(created(&fx).is_empty());
    assert!(fx.iter().any(|e| matches!(e, Effect::Duplicate)));
    let fx = c.finished(T0 + 2 * S, 42, ok(T0));
    assert_eq!(
        events(&fx, EventKind::Duplicates),
        vec![(
            Some(42),
            "1 duplicate alert(s) collapsed into this execution".into()
        )]
    );
    assert_eq!(
        statuses(&fx),
        vec![(42, ExecStatus::Succeeded, Some("it succeeded".into()))]
    );
    assert_eq!(mails(&fx), vec![MailKind::Outcome]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn cooldown_then_backoff_then_exhaustion_open_the_circuit() {
    let mut c = Core::new(setup(), 0, None);
    c.alert(T0, 1, down("kafka-1"));
    c.finished(T0 + S, 1, ok(T0));
    // Cooldown: skipped with the documented words, once per alert.
    let fx = c.alert(T0 + 2 * S, 2, down("kafka-1"));
    assert_eq!(
        created(&fx),
        vec![(
            2,
            ExecStatus::Skipped,
            "cooldown: broker-down on kafka-1 ran recently; next run allowed after 2026-12-01T00:05:01Z".into()
        )]
    );
    assert!(created(&c.alert(T0 + 3 * S, 3, down("kafka-1"))).is_empty());
    // After the cooldown: attempt 2 fails, a retry is queued for its backoff.
    let t = T0 + 400 * S;
    let fx = c.alert(t, 4, down("kafka-1"));
    assert_eq!(launched(&fx), vec![3]);
    let fx = round(&mut c, t + S, |c| c.finished(t + S, 3, failed(t)));
    assert_eq!(
        events(&fx, EventKind::RetryScheduled),
        vec![(
            Some(3),
            "retry 3/3 of broker-down on kafka-1 after execution 3 failed; not before 2026-12-01T00:07:01Z".into()
        )]
    );
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(Some(4), "backoff until 2026-12-01T00:07:01Z".into())]
    );
    assert_eq!(c.next_wake(t + S), Some(t + 21 * S));
    assert!(
        launched(&c.tick(t + 20 * S)).is_empty(),
        "still backing off"
    );
    assert_eq!(launched(&c.tick(t + 21 * S)), vec![4]);
    // The last attempt fails while the alert fires: the circuit opens and escalates.
    let fx = c.finished(t + 22 * S, 4, failed(t + 21 * S));
    assert!(fx.iter().any(|e| matches!(e, Effect::OpenCircuit(_))));
    assert_eq!(
        events(&fx, EventKind::CircuitOpened),
        vec![(
            Some(4),
            "attempt 3/3 failed: no attempts left in the window".into()
        )]
    );
    assert!(mails(&fx).contains(&MailKind::Escalation(
        "circuit opened: attempt 3/3 failed: no attempts left in the window".into()
    )));
    let fx = c.alert(t + 30 * S, 5, down("kafka-1"));
    assert_eq!(
        created(&fx)[0].2,
        "circuit open since 2026-12-01T00:07:02Z (attempt 3/3 failed: no attempts left in the window); close it with POST /api/v1/targets/kafka-1/reset"
    );
    // Reset closes it; the next alert runs again.
    let (closed, fx) = c.reset(t + 40 * S, &crate::engine::policy::Scope::target("kafka-1"));
    assert_eq!(
        closed,
        vec![("broker-down".to_string(), Some("kafka-1".to_string()))]
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::CloseCircuit { .. })));
    assert_eq!(
        events(&fx, EventKind::CircuitClosed),
        vec![(None, "closed by reset".into())]
    );
    assert_eq!(launched(&c.alert(t + 41 * S, 6, down("kafka-1"))), vec![6]);
}

#[test]
fn successes_that_do_not_stick_exhaust_the_attempts() {
    let mut c = Core::new(setup(), 0, None);
    let mut id = 0;
    for i in 0..3 {
        let t = T0 + i * 400 * S;
        let fx = c.alert(t, i, down("kafka-2"));
        id = launched(&fx)[0];
        c.finished(t + S, id, ok(t));
    }
    let fx = c.alert(T0 + 1300 * S, 9, down("kafka-2"));
    assert_eq!(
        created(&fx)[0].2,
        "attempts exhausted: 3 attempts within the window did not clear the alert; circuit opened, escalated"
    );
    assert_eq!(created(&fx)[0].0, id + 1);
    assert_eq!(
        mails(&fx),
        vec![MailKind::Escalation(
            "circuit opened: 3 attempts within the window did not clear the alert".into()
        )]
    );
}

#[test]
fn one_disruptive_slot_and_the_guard() {
    let mut c = Core::new(setup(), 0, None);
    let fx = round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    assert_eq!(launched(&fx), vec![1]);
    // kafka-2 down too: it waits for the slot (the words name who holds it).
    let fx = round(&mut c, T0, |c| c.alert(T0, 2, down("kafka-2")));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(2),
            "waiting for a cluster slot: broker-down on kafka-1 running (max_concurrent_per_cluster = 1)".into()
        )]
    );
    // A healthy broker's disruptive work waits while another is down, once kafka-1 ends.
    let fx = round(&mut c, T0, |c| {
        c.alert(
            T0,
            3,
            alert(AlertStatus::Firing, "HighCpu", &[("node_id", "kafka-3")]),
        )
    });
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    let fx = round(&mut c, T0 + S, |c| c.finished(T0 + S, 1, ok(T0)));
    assert_eq!(launched(&fx), vec![2], "kafka-2 (down) goes first");
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(3),
            "waiting for a cluster slot: broker-down on kafka-2 running (max_concurrent_per_cluster = 1)".into()
        )]
    );
    let fx = round(&mut c, T0 + 2 * S, |c| c.finished(T0 + 2 * S, 2, ok(T0)));
    assert!(launched(&fx).is_empty());
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(3),
            "guard: broker kafka-1, kafka-2 is down; a healthy broker is not touched meanwhile"
                .into()
        )]
    );
    // Both resolve: the healthy broker's work may start.
    c.alert(T0 + 3 * S, 4, up("kafka-1"));
    let fx = round(&mut c, T0 + 3 * S, |c| {
        c.alert(T0 + 3 * S, 5, up("kafka-2"))
    });
    assert_eq!(launched(&fx), vec![3]);
}

#[test]
fn a_resolved_alert_cancels_its_queued_work() {
    let mut c = Core::new(setup(), 0, None);
    round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    round(&mut c, T0, |c| c.alert(T0, 2, down("kafka-2")));
    let fx = c.alert(T0 + S, 3, up("kafka-2"));
    assert_eq!(
        statuses(&fx),
        vec![(
            2,
            ExecStatus::Cancelled,
            Some("the alert resolved before it started".into())
        )]
    );
    assert_eq!(c.queued(), 0);
    // It does not start once the slot frees.
    assert!(
        launched(&round(&mut c, T0 + 2 * S, |c| c.finished(
            T0 + 2 * S,
            1,
            ok(T0)
        )))
        .is_empty()
    );
}

#[test]
fn diagnostics_have_slots_a_queue_bound_and_keep_their_order() {
    let mut c = Core::new(setup(), 0, None);
    let lag = |t: &str| alert(AlertStatus::Firing, "TopicLag", &[("topic", t)]);
    let mut all = Vec::new();
    for i in 0..15 {
        all.extend(round(&mut c, T0, |c| c.alert(T0, i, lag(&format!("t{i}")))));
    }
    assert_eq!(launched(&all), vec![1, 2]);
    let skipped: Vec<_> = created(&all)
        .into_iter()
        .filter(|e| e.1 == ExecStatus::Skipped)
        .collect();
    assert_eq!(skipped.len(), 3);
    assert_eq!(
        skipped[0].2,
        "queue full: 10 diagnostics executions already waiting (max_queued = 10); this alert is journaled but nothing runs for it"
    );
    assert_eq!(
        events(&all, EventKind::Waiting)[0],
        (
            Some(3),
            "waiting for a diagnostics slot (max_concurrent_diagnostics = 2)".into()
        )
    );
    // A slot frees: the oldest queued starts, not a newcomer.
    let mut fx = c.finished(T0 + S, 1, ok(T0));
    fx.extend(c.alert(T0 + S, 20, lag("new")));
    fx.extend(c.tick(T0 + S));
    assert_eq!(launched(&fx), vec![3]);
}

#[test]
fn dry_run_records_and_mails_once_per_alert() {
    let mut c = Core::new(setup(), 0, None);
    let a = alert(AlertStatus::Firing, "Rehearse", &[("node_id", "kafka-1")]);
    let fx = c.alert(T0, 1, a.clone());
    assert_eq!(
        created(&fx),
        vec![(
            1,
            ExecStatus::DryRun,
            "matched; target kafka-1; dry_run: steps are recorded, not executed".into()
        )]
    );
    assert!(launched(&fx).is_empty());
    assert_eq!(mails(&fx), vec![MailKind::Outcome]);
    let fx = c.alert(T0 + S, 2, a);
    assert!(created(&fx).is_empty() && mails(&fx).is_empty());
}

#[test]
fn drain_cancels_the_queue_and_starts_nothing_more() {
    let mut c = Core::new(setup(), 0, None);
    round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    round(&mut c, T0, |c| c.alert(T0, 2, down("kafka-2")));
    let fx = c.drain(T0 + S);
    assert_eq!(
        statuses(&fx),
        vec![(
            2,
            ExecStatus::Cancelled,
            Some("the service shut down before it started".into())
        )]
    );
    // The running one ends while draining: no retry, nothing starts.
    let fx = round(&mut c, T0 + 2 * S, |c| {
        c.finished(T0 + 2 * S, 1, failed(T0))
    });
    assert!(launched(&fx).is_empty() && created(&fx).is_empty());
    let fx = round(&mut c, T0 + 3 * S, |c| {
        c.alert(T0 + 3 * S, 3, down("kafka-3"))
    });
    assert!(launched(&fx).is_empty());
    assert_eq!(
        created(&fx),
        vec![(
            3,
            ExecStatus::Cancelled,
            "the service shut down before it started".into()
        )],
        "work decided while draining neither runs nor waits"
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn an_interrupted_run_is_escalated_and_never_retried() {
    let mut c = Core::new(setup(), 0, None);
    c.alert(T0, 1, down("kafka-1"));
    let fx = c.finished(
        T0 + S,
        1,
        outcome(ExecStatus::Interrupted, EndCause::Fenced, T0, T0 + S),
    );
    assert_eq!(
        mails(&fx),
        vec![
            MailKind::Outcome,
            MailKind::Escalation(
                "an execution was stopped half-way: this instance lost its lock (fenced)".into()
            )
        ]
    );
    assert!(created(&fx).is_empty(), "no retry");
    let Some(Effect::Mail { report, .. }) = fx.iter().find(|e| matches!(e, Effect::Mail { .. }))
    else {
        panic!("no mail")
    };
    assert!(
        report
            .next
            .starts_with("Nothing here: this instance lost its lock")
    );
}

#[test]
fn an_abandoned_launch_is_forgotten() {
    let mut c = Core::new(setup(), 0, None);
    c.alert(T0, 1, down("kafka-1"));
    c.abandon(1);
    assert_eq!(c.in_flight(), 0);
    // Not counted as an attempt, not in flight: the next copy runs at once.
    let fx = c.alert(T0 + S, 2, down("kafka-1"));
    assert_eq!(created(&fx)[0].2, "matched; target kafka-1 (attempt 1/3)");
    assert_eq!(launched(&fx), vec![2]);
}

#[test]
fn ha_work_runs_only_under_its_lock() {
    let ha = Ha {
        instance: "i-1".into(),
        retry_ms: 500,
    };
    let mut c = Core::new(setup(), 0, Some(ha));
    let fx = round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert!(launched(&fx).is_empty());
    assert!(matches!(fx.last(), Some(Effect::RequestLock { id: 1, .. })));
    // Held elsewhere: it waits and asks again after the retry period.
    let fx = c.lock_answer(T0 + S, 1, LockAnswer::Held("instance i-2".into()));
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(Some(1), "HA: the lock is held by instance i-2; this instance runs it only if that one dies (lease expiry) before finishing".into())]
    );
    assert_eq!(c.next_wake(T0 + S), Some(T0 + S + 500));
    assert!(
        c.tick(T0 + S + 499)
            .iter()
            .all(|e| !matches!(e, Effect::RequestLock { .. }))
    );
    let fx = c.tick(T0 + S + 500);
    assert!(matches!(fx.last(), Some(Effect::RequestLock { id: 1, .. })));
    // The holder died mid-step: the lock is free but its step may still run. It waits,
    // says whose step and until when, and asks again after the retry period.
    let step = "step `restart` of instance i-2 (its execution 4: broker-down on kafka-1), which may run until 2026-12-01T00:00:30Z";
    let fx = c.lock_answer(T0 + S + 600, 1, LockAnswer::StepRunning(step.into()));
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(1),
            format!(
                "HA: the lock is free but {step}; this instance takes the work only after that deadline, so the two never run at once"
            )
        )]
    );
    assert!(launched(&fx).is_empty());
    assert_eq!(c.next_wake(T0 + S + 600), Some(T0 + S + 1100));
    let fx = c.tick(T0 + S + 1100);
    assert!(matches!(fx.last(), Some(Effect::RequestLock { id: 1, .. })));
    // The same answer again is not journaled again.
    let fx = c.lock_answer(T0 + S + 1200, 1, LockAnswer::StepRunning(step.into()));
    assert!(events(&fx, EventKind::Waiting).is_empty());
    c.tick(T0 + S + 1700);
    // etcd down for a lease TTL: waits, and escalates once per rate-limit period.
    let unavailable = || LockAnswer::Unavailable {
        error: "no lease".into(),
        outage: true,
    };
    let fx = c.lock_answer(T0 + 2 * S, 1, unavailable());
    assert_eq!(
        mails(&fx),
        vec![MailKind::Escalation(
            "coordination (etcd) unavailable: no remediation runs".into()
        )]
    );
    c.tick(T0 + 3 * S);
    let fx = c.lock_answer(T0 + 4 * S, 1, unavailable());
    assert!(mails(&fx).is_empty(), "not again within the rate limit");
    // Done by a peer: skipped.
    c.tick(T0 + 5 * S);
    let fx = c.lock_answer(T0 + 6 * S, 1, LockAnswer::Done("i-2 (succeeded)".into()));
    assert_eq!(
        statuses(&fx),
        vec![(
            1,
            ExecStatus::Skipped,
            Some(
                "HA: already done by i-2 (succeeded); peers leave it alone for its cooldown".into()
            )
        )]
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn typed_reasons_read_as_documented() {
    use crate::engine::why::{Cancel, Skip, Wait};
    let w = |w: Wait| w.to_string();
    assert_eq!(
        w(Wait::Backoff { until_ms: T0 }),
        "backoff until 2026-12-01T00:00:00Z"
    );
    assert_eq!(
        w(Wait::GuardDown {
            brokers: vec!["kafka-1".into()]
        }),
        "guard: broker kafka-1 is down; a healthy broker is not touched meanwhile"
    );
    assert_eq!(
        w(Wait::CoordinationUnavailable { error: "x".into() }),
        "HA: coordination unavailable, nothing runs without the lock: x"
    );
    assert_eq!(Skip::Plan("p".into()).to_string(), "p");
    assert_eq!(
        Cancel::ShutDown.to_string(),
        "the service shut down before it started"
    );
}

#[test]
fn the_guard_waits_for_a_remediation_elsewhere_even_with_slots_free() {
    let mut c = Core::new(setup_with("max_concurrent_per_cluster: 2"), 0, None);
    round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    let cpu = alert(AlertStatus::Firing, "HighCpu", &[("node_id", "kafka-3")]);
    let fx = round(&mut c, T0, |c| c.alert(T0, 2, cpu));
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(Some(2), "guard: broker kafka-1 is being remediated".into())]
    );
}

#[test]
fn the_last_step_is_journaled_with_the_end_in_one_round() {
    use crate::journal::{StepRecord, StepStatus};
    let mut c = Core::new(setup(), 0, None);
    c.alert(T0, 1, down("kafka-1"));
    let step = |index: u32| StepRecord {
        index,
        name: format!("s{index}"),
        kind: "exec".into(),
        argv: vec!["/bin/true".into()],
        status: StepStatus::Succeeded,
        exit_code: Some(0),
        signal: None,
        attempts: 1,
        started_ms: T0,
        duration_ms: 1,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        error: None,
    };
    let mut o = ok(T0);
    o.steps = vec![step(0), step(1)];
    o.unrecorded = 1;
    let fx = c.finished(T0 + S, 1, o);
    let order: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Step { id: 1, record } if record.index == 1 => Some("step 1"),
            Effect::Step { .. } => Some("another step"),
            Effect::Status { id: 1, .. } => Some("status"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec!["step 1", "status"],
        "only the unrecorded step, before the end"
    );
}

#[test]
fn params_from_an_alert_do_not_make_new_disruptive_work() {
    // A disruptive rule whose param comes from an annotation: each new text must not be
    // a new work key with its own attempts and cooldown.
    let mut c = Core::new(
        setup_with("max_attempts: 1, cooldown_seconds: 3600, max_concurrent_per_cluster: 1"),
        0,
        None,
    );
    let restart = |why: &str| {
        let mut a = alert(AlertStatus::Firing, "Restart", &[("node_id", "kafka-1")]);
        a.annotations.insert("why".into(), why.into());
        a
    };
    let fx = round(&mut c, T0, |c| c.alert(T0, 1, restart("one")));
    assert_eq!(launched(&fx), vec![1]);
    for (i, why) in ["two", "three", "four", "five", "six"].iter().enumerate() {
        let fx = round(&mut c, T0, |c| c.alert(T0, i as i64 + 2, restart(why)));
        assert!(
            created(&fx).is_empty(),
            "{why}: collapsed into the run in flight"
        );
        assert!(fx.iter().any(|e| matches!(e, Effect::Duplicate)));
    }
    round(&mut c, T0 + S, |c| c.finished(T0 + S, 1, ok(T0)));
    let fx = round(&mut c, T0 + 2 * S, |c| {
        c.alert(T0 + 2 * S, 9, restart("seven"))
    });
    assert!(launched(&fx).is_empty());
    assert!(
        created(&fx)[0]
            .2
            .starts_with("cooldown: restart-because on kafka-1 ran recently"),
        "{:?}",
        created(&fx)
    );
    // A different target is other work.
    let mut other = restart("one");
    other.labels.insert("node_id".into(), "kafka-2".into());
    other.fingerprint = fingerprint(&other.labels);
    let fx = round(&mut c, T0 + 3 * S, |c| c.alert(T0 + 3 * S, 10, other));
    assert_eq!(launched(&fx).len(), 1);
}

fn at(a: &mut Alert, starts: &str, ends: &str) {
    a.starts_at = starts.into();
    a.ends_at = ends.into();
}

#[test]
fn a_firing_alert_that_already_ended_is_stale_and_marks_nothing_down() {
    let mut c = Core::new(setup(), 0, None);
    let mut old = down("kafka-3");
    at(&mut old, "2020-01-01T00:00:00Z", "2020-01-01T00:05:00Z");
    let fx = round(&mut c, T0, |c| c.alert(T0, 1, old.clone()));
    assert!(launched(&fx).is_empty());
    assert_eq!(
        created(&fx),
        vec![(
            1,
            ExecStatus::Skipped,
            "stale: the alert's endsAt 2020-01-01T00:05:00Z was already past when it arrived; nothing runs for a late or replayed alert".into()
        )]
    );
    assert!(
        created(&c.alert(T0 + S, 2, old)).is_empty(),
        "journaled once"
    );
    // kafka-3 is not marked down: a healthy broker's work is not held by the guard.
    let cpu = alert(AlertStatus::Firing, "HighCpu", &[("node_id", "kafka-1")]);
    let fx = round(&mut c, T0 + 2 * S, |c| c.alert(T0 + 2 * S, 3, cpu));
    assert_eq!(launched(&fx).len(), 1);
}

#[test]
fn a_firing_copy_after_its_resolve_is_stale_and_a_new_occurrence_is_not() {
    let mut c = Core::new(setup(), 0, None);
    let (mut firing, mut resolved) = (down("kafka-2"), up("kafka-2"));
    at(
        &mut resolved,
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    );
    c.alert(T0, 1, resolved);
    at(&mut firing, "2026-12-01T00:00:00Z", "0001-01-01T00:00:00Z");
    let fx = round(&mut c, T0 + 500, |c| c.alert(T0 + 500, 2, firing.clone()));
    assert!(launched(&fx).is_empty());
    assert!(created(&fx)[0].2.starts_with(
        "stale: a resolve of this alert (startsAt 2026-12-01T00:00:00Z) arrived before this firing copy"
    ));
    // The next occurrence starts later: it runs.
    at(&mut firing, "2026-12-01T00:10:00Z", "0001-01-01T00:00:00Z");
    let fx = round(&mut c, T0 + 600 * S, |c| c.alert(T0 + 600 * S, 3, firing));
    assert_eq!(launched(&fx).len(), 1);
}

#[test]
fn a_down_mark_expires_at_its_alerts_end_when_no_resolve_comes() {
    let mut c = Core::new(setup(), 0, None);
    let mut d = down("kafka-1");
    at(&mut d, "2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z");
    assert_eq!(launched(&round(&mut c, T0, |c| c.alert(T0, 1, d))), vec![1]);
    round(&mut c, T0 + S, |c| c.finished(T0 + S, 1, ok(T0)));
    let cpu = alert(AlertStatus::Firing, "HighCpu", &[("node_id", "kafka-3")]);
    let fx = round(&mut c, T0 + 2 * S, |c| c.alert(T0 + 2 * S, 2, cpu));
    assert!(
        launched(&fx).is_empty(),
        "held by the guard while kafka-1 is down"
    );
    assert_eq!(
        c.next_wake(T0 + 2 * S),
        Some(T0 + 60 * S),
        "wakes when the mark ends"
    );
    assert!(launched(&c.tick(T0 + 59 * S)).is_empty());
    assert_eq!(
        launched(&c.tick(T0 + 60 * S)),
        vec![2],
        "the lost resolve holds nothing"
    );
}

#[test]
fn a_wake_time_that_passed_since_the_tick_still_wakes() {
    // Found by the HA test under load: the backoff end was ahead at the tick, the runner
    // asked a moment later, and a filter on "still ahead" left the retry asleep forever.
    let mut c = Core::new(setup(), 0, None);
    c.alert(T0, 1, down("kafka-1"));
    round(&mut c, T0 + S, |c| c.finished(T0 + S, 1, failed(T0)));
    let due = T0 + 11 * S;
    assert_eq!(c.next_wake(T0 + S), Some(due));
    assert_eq!(
        c.next_wake(due + 5),
        Some(due),
        "passed since the tick: wake at once"
    );
    assert_eq!(launched(&c.tick(due + 5)).len(), 1);
    assert_eq!(c.next_wake(due + 6), None, "nothing left to wake for");
}

/// Finding 5: diagnostics never take remediation's room. With the diagnostics queue full
/// (10 of 10), a broker-down alert that must wait is queued in its own budget, not skipped;
/// only a full remediation budget skips it (the webhook refuses such a request first).
#[test]
fn a_full_diagnostics_queue_never_skips_remediation() {
    let mut c = Core::new(
        setup_with(
            "max_concurrent_per_cluster: 1, max_concurrent_diagnostics: 2, max_queued: 10, \
             max_queued_remediation: 2",
        ),
        0,
        None,
    );
    let lag = |t: &str| alert(AlertStatus::Firing, "TopicLag", &[("topic", t)]);
    let mut all = Vec::new();
    for i in 0..12 {
        all.extend(round(&mut c, T0, |c| c.alert(T0, i, lag(&format!("t{i}")))));
    }
    assert_eq!((c.queued_diagnostics(), c.queued_remediation()), (10, 0));
    // kafka-1 restarts (the cluster slot), kafka-2 and kafka-3 wait for it.
    let fx = round(&mut c, T0, |c| c.alert(T0, 20, down("kafka-1")));
    assert_eq!(launched(&fx), vec![13]);
    let fx = round(&mut c, T0, |c| c.alert(T0, 21, down("kafka-2")));
    assert_eq!(
        created(&fx),
        vec![(
            14,
            ExecStatus::Queued,
            "matched; target kafka-2 (attempt 1/3)".into()
        )]
    );
    let fx = round(&mut c, T0, |c| c.alert(T0, 22, down("kafka-3")));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert_eq!((c.queued_diagnostics(), c.queued_remediation()), (10, 2));
    // Remediation taken is never skipped for a full queue, even beyond its budget (which
    // the webhook enforces before journaling); a diagnostic is.
    let cpu = alert(AlertStatus::Firing, "HighCpu", &[("node_id", "kafka-2")]);
    let fx = round(&mut c, T0, |c| c.alert(T0, 23, cpu));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert_eq!((c.queued_diagnostics(), c.queued_remediation()), (10, 3));
    let fx = round(&mut c, T0, |c| c.alert(T0, 24, lag("t99")));
    assert_eq!(created(&fx)[0].1, ExecStatus::Skipped);
    let fx = round(&mut c, T0, |c| c.alert(T0, 25, up("kafka-3")));
    assert_eq!(created(&fx), vec![]);
    assert_eq!((c.queued_diagnostics(), c.queued_remediation()), (10, 2));
    round(&mut c, T0 + S, |c| c.finished(T0 + S, 13, ok(T0)));
    assert_eq!(c.queued_remediation(), 1, "kafka-2 started");
    round(&mut c, T0 + S, |c| c.drain(T0 + S));
    assert_eq!((c.queued_diagnostics(), c.queued_remediation()), (0, 0));
}

/// Finding 7: a failure no run can fix is recorded, escalated by mail, and counts as no
/// attempt: however often it comes, no retry, no backoff, no circuit.
#[test]
fn unfixable_failures_count_as_no_attempt() {
    let mut c = Core::new(setup(), 0, None);
    for n in 0..5 {
        let t = T0 + n * 100 * S;
        let fx = round(&mut c, t, |c| c.alert(t, n, down("kafka-1")));
        let id = launched(&fx)[0];
        assert_eq!(created(&fx)[0].2, "matched; target kafka-1 (attempt 1/3)");
        let end = outcome(ExecStatus::Failed, EndCause::Unfixable, t, t + S);
        let fx = round(&mut c, t + S, |c| c.finished(t + S, id, end));
        assert!(
            !fx.iter().any(|e| matches!(
                e,
                Effect::OpenCircuit(_) | Effect::Create(_) | Effect::Launch(_)
            )),
            "no circuit, no retry: {fx:?}"
        );
        let escalations = fx
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Mail {
                        kind: MailKind::Escalation(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(escalations, 1);
    }
    assert!(c.open_circuits().is_empty());
}

/// Finding 9: a circuit closes by itself once its problem has stayed resolved for
/// `circuit_reset_seconds`, at that moment (a tick), without waiting for a new alert; an
/// alert that fires again sooner stops the clock, and its next resolve starts it again.
/// Each change of the clock is journaled, so a restart keeps it.
#[test]
fn a_circuit_closes_by_itself_after_staying_resolved() {
    let mut c = Core::new(setup(), 0, None);
    let t = T0;
    let fx = c.alert(t, 1, down("kafka-1"));
    let id = launched(&fx)[0];
    let fx = c.finished(
        t + S,
        id,
        outcome(ExecStatus::Escalated, EndCause::Completed, t, t + S),
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::OpenCircuit(_))));
    assert_eq!(c.open_circuits().len(), 1);
    let health = |fx: &[Effect]| -> Vec<Option<i64>> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::CircuitHealth {
                    healthy_since_ms, ..
                } => Some(*healthy_since_ms),
                _ => None,
            })
            .collect()
    };
    // Resolved at t+10 s; fires again at t+100 s (flapping): the clock stops.
    let fx = round(&mut c, t + 10 * S, |c| {
        c.alert(t + 10 * S, 2, up("kafka-1"))
    });
    assert_eq!(health(&fx), vec![Some(t + 10 * S)]);
    assert_eq!(c.next_wake(t + 10 * S), Some(t + 1810 * S));
    let fx = round(&mut c, t + 100 * S, |c| {
        c.alert(t + 100 * S, 3, down("kafka-1"))
    });
    assert_eq!(health(&fx), vec![None]);
    assert!(
        created(&fx)[0].2.starts_with("circuit open since"),
        "{fx:?}"
    );
    assert_eq!(c.next_wake(t + 100 * S), None);
    // Resolved again at t+200 s: it closes at t+2000 s, by itself.
    let fx = round(&mut c, t + 200 * S, |c| {
        c.alert(t + 200 * S, 4, up("kafka-1"))
    });
    assert_eq!(health(&fx), vec![Some(t + 200 * S)]);
    assert_eq!(c.next_wake(t + 300 * S), Some(t + 2000 * S));
    assert!(c.tick(t + 1999 * S).is_empty());
    let fx = c.tick(t + 2000 * S);
    assert!(fx.iter().any(|e| matches!(e, Effect::CloseCircuit { .. })));
    assert_eq!(
        events(&fx, EventKind::CircuitClosed),
        vec![(
            None,
            "closed by itself: the problem stayed resolved for circuit_reset_seconds (1800 s); \
             the next alert gets fresh attempts"
                .into()
        )]
    );
    assert!(c.open_circuits().is_empty());
    let fx = round(&mut c, t + 2100 * S, |c| {
        c.alert(t + 2100 * S, 5, down("kafka-1"))
    });
    assert_eq!(created(&fx)[0].2, "matched; target kafka-1 (attempt 1/3)");
}

/// Finding 10: in HA mode the attempts and circuits every instance shared through etcd,
/// read with the lock, decide: a survivor continues the count of a dead holder (attempt
/// 3/3, then the circuit), used-up attempts open the circuit without a run, and a circuit
/// this instance remembers but etcd no longer holds (a peer's reset) is closed.
#[test]
fn ha_decides_with_the_attempts_and_circuits_every_instance_shared() {
    use crate::coord::{Shared, SharedAttempt, WorkLock};
    let ha = Some(Ha {
        instance: "ha-2".into(),
        retry_ms: 1000,
    });
    let failed_at = |start: i64| SharedAttempt {
        started_ms: start,
        finished_ms: start + S,
        ok: false,
    };
    let shared = |n: i64| Shared {
        attempts: (0..n).map(|i| failed_at(T0 - (100 - 30 * i) * S)).collect(),
        circuit: None,
    };
    let lock_requests = |fx: &[Effect]| -> Vec<i64> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::RequestLock { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    };
    // Two failed attempts by a dead peer: this one is attempt 3 of 3.
    let mut c = Core::new(setup(), 0, ha.clone());
    let fx = round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    assert_eq!(lock_requests(&fx), vec![1]);
    let lock = WorkLock::for_test(1, shared(2));
    let fx = round(&mut c, T0, |c| {
        c.lock_answer(T0, 1, LockAnswer::Acquired(lock))
    });
    assert_eq!(launched(&fx), vec![1]);
    assert_eq!(
        events(&fx, EventKind::LockAcquired)[0].1,
        "lock taken in etcd by instance ha-2 at revision 7; attempt 3/3 counting every instance's"
    );
    let fx = c.finished(T0 + S, 1, failed(T0));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::OpenCircuit(_))),
        "3/3 failed"
    );

    // Three failed attempts shared: no run, the circuit opens, the lock goes back.
    let mut c = Core::new(setup(), 0, ha.clone());
    round(&mut c, T0, |c| c.alert(T0, 1, down("kafka-1")));
    let lock = WorkLock::for_test(1, shared(3));
    let fx = round(&mut c, T0, |c| {
        c.lock_answer(T0, 1, LockAnswer::Acquired(lock))
    });
    assert!(launched(&fx).is_empty());
    assert!(fx.iter().any(|e| matches!(e, Effect::ReleaseLock(_))));
    assert!(fx.iter().any(|e| matches!(e, Effect::OpenCircuit(_))));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Status { id: 1, status: ExecStatus::Skipped, reason: Some(r), .. }
            if r.starts_with("attempts exhausted: 3 attempts")
    )));
    assert_eq!(c.open_circuits().len(), 1);

    // The circuit is open here, but a peer reset it (etcd holds nothing): the alert is
    // queued for the lock rather than skipped, and runs as attempt 1.
    let fx = round(&mut c, T0 + 10 * S, |c| {
        c.alert(T0 + 10 * S, 2, down("kafka-1"))
    });
    assert_eq!(lock_requests(&fx), vec![2]);
    let lock = WorkLock::for_test(2, Shared::default());
    let fx = round(&mut c, T0 + 10 * S, |c| {
        c.lock_answer(T0 + 10 * S, 2, LockAnswer::Acquired(lock))
    });
    assert!(fx.iter().any(|e| matches!(e, Effect::CloseCircuit { .. })));
    assert_eq!(launched(&fx), vec![2]);
    assert!(c.open_circuits().is_empty());
}

/// Issue 15: a precondition's refusal counts as no attempt and opens no circuit, however
/// often it comes; while the alert fires, the work is judged again after
/// `precondition_recheck_seconds` as the same attempt; the NOTICE goes out once per
/// streak (again when another precondition refuses, or after the alert resolved).
#[test]
fn refusals_count_as_no_attempt_and_are_rechecked() {
    use crate::rules::model::Precondition;
    let mut c = Core::new(setup(), 0, None);
    let t = T0;
    let fx = round(&mut c, t, |c| c.alert(t, 1, down("kafka-1")));
    let mut id = launched(&fx)[0];
    let mut now = t;
    let mut notices = Vec::new();
    for (n, by) in [
        Precondition::BrokerUnreachable,
        Precondition::BrokerUnreachable,
        Precondition::BrokerUnreachable,
        Precondition::BrokerUnreachable,
        Precondition::NotStarting,
        Precondition::NotStarting,
    ]
    .into_iter()
    .enumerate()
    {
        let end = outcome(ExecStatus::Refused, EndCause::Refused(by), now, now + S);
        now += S;
        let fx = round(&mut c, now, |c| c.finished(now, id, end));
        assert_eq!(statuses(&fx)[0].1, ExecStatus::Refused);
        assert!(
            !fx.iter().any(|e| matches!(e, Effect::OpenCircuit(_))),
            "{n}"
        );
        notices.push(mails(&fx).len());
        let made = created(&fx);
        assert_eq!(made.len(), 1, "one recheck queued: {fx:?}");
        assert_eq!(made[0].1, ExecStatus::Queued);
        assert!(
            made[0]
                .2
                .starts_with("broker-down on kafka-1 refused by a precondition in execution"),
            "{}",
            made[0].2
        );
        // 30 s later (the default recheck), as attempt 1 again: nothing before.
        assert!(launched(&c.tick(now + 29 * S)).is_empty());
        now += 30 * S;
        let fx = c.tick(now);
        id = launched(&fx)[0];
        assert_eq!(id, made[0].0);
    }
    assert_eq!(notices, [1, 0, 0, 0, 1, 0], "a NOTICE per streak");
    // Then it runs and fails: that is attempt 1 of 3, the refusals counted nothing.
    now += S;
    let fx = round(&mut c, now, |c| c.finished(now, id, failed(now)));
    let made = created(&fx);
    assert!(
        made[0].2.starts_with("retry 2/3 of broker-down on kafka-1"),
        "{}",
        made[0].2
    );
    // The alert resolves: the retry is cancelled, and the streak forgotten.
    let fx = round(&mut c, now + S, |c| c.alert(now + S, 2, up("kafka-1")));
    assert_eq!(statuses(&fx)[0].1, ExecStatus::Cancelled);
    // (The failed attempt's backoff still applies to the new occurrence.)
    now += 60 * S;
    let fx = round(&mut c, now, |c| c.alert(now, 3, down("kafka-1")));
    let id = launched(&fx)[0];
    let end = outcome(
        ExecStatus::Refused,
        EndCause::Refused(Precondition::BrokerUnreachable),
        now,
        now + S,
    );
    let fx = round(&mut c, now + S, |c| c.finished(now + S, id, end));
    assert_eq!(mails(&fx).len(), 1, "a new occurrence is told again");
    // A refusal after the alert resolved: nothing queued.
    let fx = round(&mut c, now + 2 * S, |c| {
        c.alert(now + 2 * S, 4, up("kafka-1"))
    });
    assert_eq!(statuses(&fx)[0].1, ExecStatus::Cancelled);
}
