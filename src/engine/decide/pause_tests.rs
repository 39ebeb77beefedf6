//! Pauses and silences in the decision core, driven by hand: what a pause does to new,
//! queued and running work, its end (resumed or expired), and the exact words the README
//! documents.

use super::Core;
use super::tests::{S, T0, alert, created, outcome, setup_with};
use crate::alert::{Alert, AlertStatus};
use crate::engine::effect::Effect;
use crate::engine::pause::{Pause, PauseError, PauseRequest, PauseScope};
use crate::engine::why::{EndCause, Silenced};
use crate::journal::{EventKind, ExecStatus, PauseEnd};

const MIN: i64 = 60 * S;

fn core() -> Core {
    Core::new(
        setup_with(
            "max_attempts: 3, initial_delay_seconds: 10, backoff_multiplier: 2, \
             cooldown_seconds: 300, attempt_window_seconds: 3600, \
             circuit_reset_seconds: 1800, max_concurrent_per_cluster: 1, \
             max_concurrent_diagnostics: 2, max_queued: 10",
        ),
        0,
        None,
    )
}

fn down(node: &str) -> Alert {
    alert(AlertStatus::Firing, "KafkaBrokerDown", &[("node_id", node)])
}

fn cpu(node: &str) -> Alert {
    alert(AlertStatus::Firing, "HighCpu", &[("node_id", node)])
}

fn target(t: &str) -> PauseScope {
    PauseScope::Target(t.into())
}

/// Pauses `scope` at `now` for `duration` as the runner does (plan, then put in force);
/// returns the journal writes planned and the effects of putting it in force.
fn pause(c: &mut Core, now: i64, scope: PauseScope, duration: &str) -> Vec<Effect> {
    let req = PauseRequest::new(scope, duration, "upgrade to 3.9").expect("valid request");
    let (p, mut writes) = c.plan_pause(now, req).expect("pause");
    writes.extend(c.pause(p));
    writes
}

/// Resumes `scope` at `now` as the runner does; returns the planned writes and the effects.
fn resume(c: &mut Core, now: i64, scope: PauseScope) -> Vec<Effect> {
    let (_, mut writes) = c.plan_resume(now, &scope).expect("a pause in force");
    writes.extend(c.resume(now, &scope));
    writes.extend(c.tick(now));
    writes
}

fn launched(fx: &[Effect]) -> Vec<(i64, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(l) => Some((l.id, l.plan.target.clone().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

fn events(fx: &[Effect], kind: EventKind) -> Vec<(Option<i64>, Option<String>, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Event(ev) if ev.kind == kind => {
                Some((ev.execution_id, ev.target.clone(), ev.message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn skipped_causes(fx: &[Effect]) -> Vec<&'static str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Skipped { cause } => Some(*cause),
            _ => None,
        })
        .collect()
}

const PAUSED_K2: &str = "paused: kafka-2 is paused until 2026-12-01T00:30:00Z (\"upgrade to 3.9\"); \
    nothing runs for it meanwhile, and the alert is decided again when the pause ends if it \
    still fires; end the pause early with kafka-healing resume --target kafka-2 (or DELETE \
    /api/v1/pauses/targets/kafka-2)";

#[test]
fn a_paused_broker_gets_no_new_work_and_is_healed_after_resume() {
    let mut c = core();
    let fx = pause(&mut c, T0, target("kafka-2"), "30m");
    // Journaled: the pause and a `paused` event, nothing else.
    assert!(matches!(
        &fx[0],
        Effect::SetPause(Pause { scope, from_ms: T0, until_ms, reason })
            if *scope == target("kafka-2") && *until_ms == T0 + 30 * MIN && reason == "upgrade to 3.9"
    ));
    assert_eq!(
        events(&fx, EventKind::Paused),
        vec![(
            None,
            Some("kafka-2".into()),
            "kafka-2 paused until 2026-12-01T00:30:00Z (30m): \"upgrade to 3.9\"; nothing runs \
             for it meanwhile; end it early with kafka-healing resume --target kafka-2 (or \
             DELETE /api/v1/pauses/targets/kafka-2)"
                .into()
        )]
    );
    assert_eq!(fx.len(), 2);
    // kafka-2 goes down for its upgrade: skipped, with the pause's words, once.
    let mut fx = c.alert(T0 + S, 1, down("kafka-2"));
    fx.extend(c.tick(T0 + S));
    assert_eq!(
        created(&fx),
        vec![(1, ExecStatus::Skipped, PAUSED_K2.into())]
    );
    assert_eq!(skipped_causes(&fx), vec!["paused"]);
    assert!(launched(&fx).is_empty());
    let fx = c.alert(T0 + 2 * S, 2, down("kafka-2"));
    assert!(created(&fx).is_empty(), "a repeat is not journaled again");
    // A pause stops actions, not knowledge: kafka-2 is down, so the guard keeps a healthy
    // broker's disruptive work waiting.
    let mut fx = c.alert(T0 + 3 * S, 3, cpu("kafka-1"));
    fx.extend(c.tick(T0 + 3 * S));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(2),
            Some("kafka-1".into()),
            "guard: broker kafka-2 is down; a healthy broker is not touched meanwhile".into()
        )]
    );
    assert_eq!(c.pauses(T0 + 3 * S).len(), 1);
    // Resumed early: journaled, then the held alert is decided again and kafka-2 restarts
    // (kafka-1's work still waits: kafka-2 is down).
    let t = T0 + 10 * MIN;
    let fx = resume(&mut c, t, target("kafka-2"));
    assert!(matches!(
        &fx[0],
        Effect::EndPause { target: Some(tg), at_ms, how: PauseEnd::Resumed } if tg == "kafka-2" && *at_ms == t
    ));
    assert_eq!(
        events(&fx, EventKind::Resumed),
        vec![(
            None,
            Some("kafka-2".into()),
            "kafka-2 resumed before its pause ended (it was paused until \
             2026-12-01T00:30:00Z: \"upgrade to 3.9\"); the alerts it held back are decided again"
                .into()
        )]
    );
    assert_eq!(
        created(&fx),
        vec![(
            3,
            ExecStatus::Queued,
            "matched; target kafka-2 (attempt 1/3)".into()
        )]
    );
    assert_eq!(launched(&fx), vec![(3, "kafka-2".into())]);
    let Some(Effect::Create(e)) = fx.iter().find(|e| matches!(e, Effect::Create(_))) else {
        panic!("no execution")
    };
    assert_eq!(e.alert_id, Some(2), "the newest copy of the held alert");
    assert!(c.pauses(t).is_empty());
    assert!(
        c.plan_resume(t, &target("kafka-2")).is_none(),
        "nothing left to resume"
    );
}

#[test]
fn queued_work_waits_for_a_pause_and_a_run_in_progress_is_not_stopped() {
    let mut c = core();
    let mut fx = c.alert(T0, 1, down("kafka-1"));
    fx.extend(c.tick(T0));
    assert_eq!(launched(&fx), vec![(1, "kafka-1".into())]);
    let mut fx = c.alert(T0, 2, down("kafka-2"));
    fx.extend(c.tick(T0));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued, "waits for the slot");
    // kafka-2 paused while its work is queued: it waits, and says why.
    let mut fx = pause(&mut c, T0 + S, target("kafka-2"), "30m");
    fx.extend(c.tick(T0 + S));
    assert_eq!(
        events(&fx, EventKind::Waiting),
        vec![(
            Some(2),
            Some("kafka-2".into()),
            "paused: kafka-2 is paused until 2026-12-01T00:30:01Z (\"upgrade to 3.9\"); this \
             waits and starts after the pause unless its alert resolves first; end the pause \
             early with kafka-healing resume --target kafka-2 (or DELETE \
             /api/v1/pauses/targets/kafka-2)"
                .into()
        )]
    );
    // kafka-1 paused while its run is in progress: nothing stops it.
    let fx = pause(&mut c, T0 + 2 * S, target("kafka-1"), "1h");
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Status { .. })),
        "{fx:?}"
    );
    assert_eq!(c.running(), 1);
    // It fails while its alert fires: the retry is queued and waits for the pause; the
    // free slot does not start kafka-2's paused work either.
    let mut fx = c.finished(
        T0 + 3 * S,
        1,
        outcome(ExecStatus::Failed, EndCause::Completed, T0, T0 + 3 * S),
    );
    fx.extend(c.tick(T0 + 3 * S));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
    assert!(
        events(&fx, EventKind::Waiting)
            .iter()
            .any(|(id, _, m)| *id == Some(3) && m.starts_with("paused: kafka-1 is paused until")),
        "{fx:?}"
    );
    assert!(launched(&fx).is_empty());
    assert!(launched(&c.tick(T0 + 10 * MIN)).is_empty(), "still paused");
    // kafka-2 resumed: its queued work starts; kafka-1's retry still waits.
    let fx = resume(&mut c, T0 + 20 * MIN, target("kafka-2"));
    assert_eq!(launched(&fx), vec![(2, "kafka-2".into())]);
    assert_eq!(c.queued(), 1);
}

#[test]
fn a_pause_expires_by_itself_and_the_alert_it_held_is_decided_again() {
    let mut c = core();
    pause(&mut c, T0, target("kafka-1"), "60s");
    let fx = c.alert(T0 + S, 1, down("kafka-1"));
    assert_eq!(created(&fx)[0].1, ExecStatus::Skipped);
    assert_eq!(c.next_wake(T0 + S), Some(T0 + MIN), "wakes when it ends");
    assert!(launched(&c.tick(T0 + MIN - 1)).is_empty());
    let fx = c.tick(T0 + MIN);
    assert!(matches!(
        &fx[0],
        Effect::EndPause { target: Some(t), at_ms, how: PauseEnd::Expired } if t == "kafka-1" && *at_ms == T0 + MIN
    ));
    assert_eq!(
        events(&fx, EventKind::Resumed),
        vec![(
            None,
            Some("kafka-1".into()),
            "kafka-1: the pause ended at 2026-12-01T00:01:00Z (it was set for 1m: \"upgrade to \
             3.9\"); the alerts it held back are decided again"
                .into()
        )]
    );
    assert_eq!(launched(&fx), vec![(2, "kafka-1".into())]);
    assert!(c.pauses(T0 + MIN).is_empty());
    assert_eq!(c.next_wake(T0 + MIN), None);
}

#[test]
fn a_cluster_pause_covers_all_work_and_outlives_a_brokers_resume() {
    let mut c = core();
    pause(&mut c, T0, PauseScope::Cluster, "2h");
    pause(&mut c, T0, target("kafka-1"), "10m");
    let lag = alert(AlertStatus::Firing, "TopicLag", &[("topic", "orders")]);
    let fx = c.alert(T0 + S, 1, lag);
    assert_eq!(
        created(&fx)[0].2,
        "paused: the cluster is paused until 2026-12-01T02:00:00Z (\"upgrade to 3.9\"); \
         nothing runs for it meanwhile, and the alert is decided again when the pause ends if \
         it still fires; end the pause early with kafka-healing resume --cluster (or DELETE \
         /api/v1/pauses/cluster)",
        "work without a target"
    );
    let fx = c.alert(T0 + S, 2, down("kafka-1"));
    assert!(
        created(&fx)[0]
            .2
            .starts_with("paused: the cluster is paused until"),
        "the pause that ends last is named: {fx:?}"
    );
    // kafka-1's own pause ends: the cluster's still holds its alert, without a second record.
    let fx = resume(&mut c, T0 + 2 * S, target("kafka-1"));
    assert!(
        created(&fx).is_empty() && launched(&fx).is_empty(),
        "{fx:?}"
    );
    // The cluster resumed: both alerts are decided again, in arrival order.
    let fx = resume(&mut c, T0 + 3 * S, PauseScope::Cluster);
    let ids: Vec<(i64, ExecStatus)> = created(&fx).iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(
        ids,
        vec![(3, ExecStatus::Running), (4, ExecStatus::Running)]
    );
    assert_eq!(launched(&fx).len(), 2);
}

#[test]
fn a_resolved_alert_is_no_longer_held() {
    let mut c = core();
    pause(&mut c, T0, target("kafka-1"), "30m");
    c.alert(T0 + S, 1, down("kafka-1"));
    let up = alert(
        AlertStatus::Resolved,
        "KafkaBrokerDown",
        &[("node_id", "kafka-1")],
    );
    c.alert(T0 + 2 * S, 2, up);
    let fx = resume(&mut c, T0 + 3 * S, target("kafka-1"));
    assert!(
        created(&fx).is_empty() && launched(&fx).is_empty(),
        "{fx:?}"
    );
}

#[test]
fn a_new_pause_after_a_resume_is_journaled_again_and_a_replacement_names_the_old_one() {
    let mut c = core();
    // kafka-1 was restarted a moment ago: in cooldown.
    c.alert(T0, 1, down("kafka-1"));
    c.finished(
        T0 + S,
        1,
        outcome(ExecStatus::Succeeded, EndCause::Completed, T0, T0 + S),
    );
    pause(&mut c, T0 + 2 * S, target("kafka-1"), "30m");
    let fx = c.alert(T0 + 3 * S, 2, down("kafka-1"));
    assert_eq!(skipped_causes(&fx), vec!["paused"]);
    // Resumed: the held alert is decided again and meets the cooldown.
    let fx = resume(&mut c, T0 + 4 * S, target("kafka-1"));
    assert_eq!(skipped_causes(&fx), vec!["cooldown"]);
    assert!(launched(&fx).is_empty());
    // Paused again: the same alert's skip is a new story, journaled again.
    pause(&mut c, T0 + 5 * S, target("kafka-1"), "30m");
    let fx = c.alert(T0 + 6 * S, 3, down("kafka-1"));
    assert_eq!(skipped_causes(&fx), vec!["paused"]);
    // Set again: the new one replaces it, and says so.
    let fx = pause(&mut c, T0 + 7 * S, target("kafka-1"), "2h");
    assert!(
        events(&fx, EventKind::Paused)[0]
            .2
            .ends_with("; it replaces the pause until 2026-12-01T00:30:05Z (\"upgrade to 3.9\")"),
        "{fx:?}"
    );
    assert_eq!(c.pauses(T0 + 7 * S)[0].until_ms, T0 + 7 * S + 120 * MIN);
}

#[test]
fn only_configured_brokers_can_be_paused_and_a_restored_pause_is_in_force() {
    let mut c = core();
    let req = PauseRequest::new(target("kafka-9"), "30m", "x").expect("valid text");
    assert_eq!(
        c.plan_pause(T0, req).map(|_| ()),
        Err(PauseError::UnknownTarget("kafka-9".into()))
    );
    assert_eq!(
        PauseError::UnknownTarget("kafka-9".into()).to_string(),
        "`kafka-9` is not a configured broker"
    );
    c.restore_pause(Pause {
        scope: target("kafka-3"),
        from_ms: T0 - MIN,
        until_ms: T0 + MIN,
        reason: "disk swap".into(),
    });
    let fx = c.alert(T0, 1, down("kafka-3"));
    assert!(created(&fx)[0].2.starts_with(
        "paused: kafka-3 is paused until 2026-12-01T00:01:00Z (\"disk swap\"); nothing runs"
    ));
    assert_eq!(c.pauses(T0 + MIN - 1).len(), 1);
    assert!(c.pauses(T0 + MIN).is_empty(), "over at its end");
}

#[test]
fn a_silenced_self_watch_alert_is_skipped_and_still_marks_its_broker_down() {
    let mut c = core();
    let silence = Silenced {
        id: "5f0c0a1e-36a5-4a0b-9c3e-0f2b4c3d2e1f".into(),
        created_by: "alice".into(),
        comment: "kafka-1 upgrade\n<b>".into(),
        ends_ms: Some(T0 + 30 * MIN),
    };
    let mut fx = c.silenced(T0, 1, down("kafka-1"), silence.clone());
    fx.extend(c.tick(T0));
    assert_eq!(
        created(&fx),
        vec![(
            1,
            ExecStatus::Skipped,
            "silenced: Alertmanager silence 5f0c0a1e-36a5-4a0b-9c3e-0f2b4c3d2e1f (created by \
             \"alice\": \"kafka-1 upgrade\\n<b>\") matches this self-watch alert until \
             2026-12-01T00:30:00Z; nothing runs for it meanwhile; expire the silence to let \
             it act (the alert is raised again within 5 minutes)"
                .into()
        )]
    );
    assert_eq!(skipped_causes(&fx), vec!["silenced"]);
    assert!(launched(&fx).is_empty());
    // The silence is for that alert only: the next alert is decided as ever, and kafka-1
    // is known down (the guard holds a healthy broker's work).
    let mut fx = c.alert(T0 + S, 2, cpu("kafka-2"));
    fx.extend(c.tick(T0 + S));
    assert_eq!(
        events(&fx, EventKind::Waiting)[0].2,
        "guard: broker kafka-1 is down; a healthy broker is not touched meanwhile"
    );
    // Its resolve, silenced or not, releases the guard.
    let up = alert(
        AlertStatus::Resolved,
        "KafkaBrokerDown",
        &[("node_id", "kafka-1")],
    );
    let mut fx = c.silenced(T0 + 2 * S, 3, up, silence);
    fx.extend(c.tick(T0 + 2 * S));
    assert_eq!(launched(&fx), vec![(2, "kafka-2".into())]);
    // No silence sticks to the core: an unsilenced alert later runs.
    let fx = c.alert(T0 + 3 * S, 4, cpu("kafka-3"));
    assert_eq!(created(&fx)[0].1, ExecStatus::Queued);
}

#[test]
fn an_alert_both_paused_and_silenced_names_the_pause_and_is_not_released_past_its_silence() {
    let mut c = core();
    pause(&mut c, T0, target("kafka-1"), "30m");
    let silence = Silenced {
        id: "s1".into(),
        created_by: "alice".into(),
        comment: "disk swap".into(),
        ends_ms: Some(T0 + 120 * MIN),
    };
    let fx = c.silenced(T0 + S, 1, down("kafka-1"), silence);
    assert_eq!(
        skipped_causes(&fx),
        vec!["paused"],
        "the operator's pause is named"
    );
    // The pause ends; the silence may not have: nothing is decided again (the self-watch's
    // next repeat checks the silence).
    let fx = resume(&mut c, T0 + 2 * S, target("kafka-1"));
    assert!(
        created(&fx).is_empty() && launched(&fx).is_empty(),
        "{fx:?}"
    );
}

#[test]
fn drain_cancels_work_a_pause_held_in_the_queue() {
    let mut c = core();
    c.alert(T0, 1, down("kafka-1"));
    c.tick(T0);
    c.alert(T0, 2, down("kafka-2"));
    pause(&mut c, T0, target("kafka-2"), "30m");
    c.tick(T0 + S);
    let fx = c.drain(T0 + 2 * S);
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Status {
                id: 2,
                status: ExecStatus::Cancelled,
                ..
            }
        )),
        "{fx:?}"
    );
}
