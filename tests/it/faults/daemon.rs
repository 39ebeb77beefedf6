//! A runbook step that leaves a daemon behind: double fork, `setsid` (so it leaves the
//! step's process group) and SIGTERM ignored. When the step times out the daemon must be
//! gone too, not only the step's process group.

use crate::common::Scratch;
use crate::serve::harness::*;

use super::{kill_if_alive, poll, process_gone, read_pid};

/// The step: starts the daemon (a subshell that forks it and exits, so it is reparented),
/// writes the daemon's pid, then outlives its timeout.
const STEP: &str = r#"#!/bin/sh
( setsid sh -c 'trap "" TERM; echo $$ > daemon.pid.tmp; mv daemon.pid.tmp daemon.pid; exec sleep 300' </dev/null >/dev/null 2>&1 & )
echo $$ > step.pid
trap "" TERM
sleep 300
"#;

const RULES: &str = r#"rules:
  - name: daemon
    matchers: ['alertname="Daemon"']
    runbook: daemon
runbooks:
  daemon:
    disruptive: false
    steps:
      - name: forks-a-daemon
        exec: ["/bin/sh", "./step.sh"]
        timeout: 1s
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_a_step_leaves_behind_is_gone_after_the_step_timeout() {
    let s = Scratch::new();
    s.write("step.sh", STEP);
    let srv = Server::start(
        &s,
        &config("recovery: { kill_grace_seconds: 1, max_attempts: 1 }\n"),
        RULES,
    );
    let body = webhook(
        "r",
        vec![alert(
            "firing",
            serde_json::json!({"alertname": "Daemon", "node_id": "kafka-1"}),
        )],
    );
    assert_eq!(srv.post(&body).await.0, 200);
    let daemon = read_pid(&s.path().join("daemon.pid"));
    let step = read_pid(&s.path().join("step.pid"));
    let list = srv
        .wait_until(30, "the step to time out", |l| {
            l.iter().any(|e| e["status"] == "failed")
        })
        .await;
    let gone = poll(10, || process_gone(daemon));
    kill_if_alive(daemon);
    kill_if_alive(step);
    assert!(process_gone(step), "the step itself was stopped");
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(detail["steps"][0]["status"], "timed_out", "{detail}");
    assert!(
        gone,
        "the daemon (pid {daemon}, own session, ignores SIGTERM) outlived its step; log:\n{}",
        srv.log()
    );
}
