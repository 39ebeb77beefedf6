//! The executor's fallback chains, with real child processes (`/bin/true`, `/bin/false`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::engine::plan::Decision;
use crate::rules::model::FallbackAction;
use crate::runbook::RenderedStep;

fn step(name: &str, program: &str, on_failure: OnFailure) -> RenderedStep {
    RenderedStep {
        name: name.into(),
        kind: "exec",
        argv: vec![program.into()],
        body: None,
        timeout_seconds: Some(10.0),
        retries: 0,
        on_failure,
    }
}

fn action(name: &str, start: usize, len: usize) -> FallbackAction {
    FallbackAction {
        name: name.into(),
        start,
        len,
    }
}

/// Runs `steps` split into `actions`; the records' (name, succeeded), the status and reason.
async fn run(
    steps: Vec<RenderedStep>,
    actions: Vec<FallbackAction>,
) -> (Vec<(String, bool)>, ExecStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(&dir.path().join("j.db")).unwrap();
    let plan = Plan {
        rule: "broker-down".into(),
        runbook: "restart-broker".into(),
        target: None,
        fingerprint: "f".into(),
        status: crate::alert::AlertStatus::Firing,
        decision: Decision::Run,
        reason: String::new(),
        steps,
        actions,
        // Diagnostics-shaped: no preconditions to judge, no parent-death wrapper.
        disruptive: false,
        requires: Vec::new(),
        dry_run: false,
        params: Default::default(),
    };
    let alert = Alert {
        fingerprint: "f".into(),
        ..Alert::firing(Default::default())
    };
    let job = Execution {
        id: 1,
        plan,
        alert: Arc::new(alert),
        attempt: 1,
        cluster: "c".into(),
        broker: None,
        fence: None,
        safety: Err("not needed".into()),
        zookeeper: None,
    };
    let opts = ExecOptions {
        retry_pause: Duration::from_millis(10),
        ..ExecOptions::new(Vec::new())
    };
    let out = execute(
        job,
        &journal,
        &Metrics::new(),
        opts,
        &CancellationToken::new(),
    )
    .await;
    let recs = out
        .steps
        .iter()
        .map(|r| (r.name.clone(), r.status == StepStatus::Succeeded))
        .collect();
    (recs, out.status, out.reason)
}

fn names(recs: &[(String, bool)]) -> Vec<(&str, bool)> {
    recs.iter().map(|(n, ok)| (n.as_str(), *ok)).collect()
}

#[tokio::test]
async fn when_the_first_action_fails_the_second_runs() {
    let steps = vec![
        step("a/restart", "/bin/false", OnFailure::Abort),
        step("a/wait", "/bin/true", OnFailure::Escalate),
        step("b/restart", "/bin/true", OnFailure::Abort),
        step("b/wait", "/bin/true", OnFailure::Escalate),
    ];
    let (recs, status, reason) = run(steps, vec![action("a", 0, 2), action("b", 2, 2)]).await;
    // a's second step is skipped: the action failed at its first.
    assert_eq!(
        names(&recs),
        [("a/restart", false), ("b/restart", true), ("b/wait", true)]
    );
    assert_eq!(status, ExecStatus::Succeeded);
    assert!(reason.starts_with("action `b` succeeded after: action `a` failed: step `a/restart` failed with exit status 1"), "{reason}");
}

#[tokio::test]
async fn when_the_first_action_succeeds_the_second_does_not_run() {
    let steps = vec![
        step("a/restart", "/bin/true", OnFailure::Abort),
        step("b/restart", "/bin/false", OnFailure::Abort),
    ];
    let (recs, status, reason) = run(steps, vec![action("a", 0, 1), action("b", 1, 1)]).await;
    assert_eq!(names(&recs), [("a/restart", true)]);
    assert_eq!(status, ExecStatus::Succeeded);
    assert_eq!(reason, "action `a` succeeded");
}

#[tokio::test]
async fn when_every_action_fails_the_last_ones_on_failure_decides() {
    let steps = vec![
        step("a/restart", "/bin/false", OnFailure::Abort),
        step("b/restart", "/bin/true", OnFailure::Abort),
        step("b/wait", "/bin/false", OnFailure::Escalate),
    ];
    let (recs, status, reason) = run(steps, vec![action("a", 0, 1), action("b", 1, 2)]).await;
    assert_eq!(
        names(&recs),
        [("a/restart", false), ("b/restart", true), ("b/wait", false)]
    );
    assert_eq!(status, ExecStatus::Escalated);
    assert!(reason.starts_with("action `a` failed: step `a/restart` failed with exit status 1; then step `b/wait` failed"), "{reason}");
    assert!(reason.ends_with("on_failure: escalate"), "{reason}");
}

#[tokio::test]
async fn a_continue_step_does_not_end_its_action() {
    let steps = vec![
        step("a/note", "/bin/false", OnFailure::Continue),
        step("a/restart", "/bin/true", OnFailure::Abort),
        step("b/restart", "/bin/true", OnFailure::Abort),
    ];
    let (recs, status, _) = run(steps, vec![action("a", 0, 2), action("b", 2, 1)]).await;
    assert_eq!(names(&recs), [("a/note", false), ("a/restart", true)]);
    assert_eq!(status, ExecStatus::Succeeded);
}
