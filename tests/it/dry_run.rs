//! `dry-run`: the JSON contract on the shipped examples; bad input; nothing executed.

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::common::*;

fn dry_run_json(alerts: &str) -> Value {
    let o = run(&[
        "dry-run",
        "-c",
        "examples/config.yaml",
        "--alerts",
        alerts,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        out.trim_end().lines().count(),
        1,
        "exactly one JSON object: {out}"
    );
    serde_json::from_str(&out).expect("JSON")
}

fn restart_steps(node: &str, host: &str) -> Value {
    json!([
        {
            "name": "restart",
            "kind": "systemctl",
            "argv": ["ssh", "-o", "BatchMode=yes", "--", host, "sudo", "-n", "systemctl", "restart", "--", "kafka.service"],
            "timeout_seconds": 120.0,
            "on_failure": "abort"
        },
        {
            "name": "wait-in-sync",
            "kind": "wait_in_sync",
            "argv": [node, format!("{host}:9092"), "timeout=600", "recovery_timeout=3600"],
            "timeout_seconds": 3600.0,
            "on_failure": "escalate"
        }
    ])
}

#[test]
fn two_brokers_down_from_real_alertmanager_payload() {
    let v = dry_run_json("examples/alerts/firing-two-brokers.json");
    let plans = v["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 2);
    let mut keys: Vec<&str> = plans[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "decision",
            "fingerprint",
            "reason",
            "requires",
            "rule",
            "runbook",
            "status",
            "steps",
            "target"
        ]
    );
    assert_eq!(plans[0]["rule"], "broker-down");
    assert_eq!(plans[0]["runbook"], "restart-broker");
    assert_eq!(plans[0]["target"], "kafka-2");
    assert_eq!(plans[0]["fingerprint"], "4bc93ef1eb7b9805");
    assert_eq!(plans[0]["status"], "firing");
    assert_eq!(plans[0]["decision"], "run");
    assert_eq!(plans[0]["reason"], "matched; target kafka-2");
    assert_eq!(
        plans[0]["requires"],
        json!(["broker_unreachable", "restart_safe", "not_starting"])
    );
    assert_eq!(
        plans[0]["steps"],
        restart_steps("kafka-2", "kafka-2.example.com")
    );
    assert_eq!(plans[1]["target"], "kafka-3");
    assert_eq!(plans[1]["decision"], "run");
    assert_eq!(
        plans[1]["reason"],
        "matched; target kafka-3; queued until kafka-2 finishes (max_concurrent_per_cluster = 1)"
    );
    assert_eq!(
        plans[1]["steps"],
        restart_steps("kafka-3", "kafka-3.example.com")
    );
    assert_eq!(v["unmatched"], json!([]));
}

#[test]
fn resolved_alert_is_decided_per_alert_not_by_group_status() {
    let v = dry_run_json("examples/alerts/resolved-one-broker.json");
    let plans = v["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0]["target"], "kafka-2");
    assert_eq!(plans[0]["status"], "resolved");
    assert_eq!(plans[0]["decision"], "skip");
    assert_eq!(
        plans[0]["reason"],
        "alert is resolved: nothing to remediate"
    );
    assert_eq!(plans[0]["steps"], json!([]));
    assert_eq!(plans[1]["target"], "kafka-3");
    assert_eq!(plans[1]["decision"], "run");
    assert_eq!(
        plans[1]["reason"], "matched; target kafka-3",
        "nothing ahead of it any more"
    );
}

#[test]
fn hostile_label_fails_its_pattern_and_the_clean_one_runs() {
    let v = dry_run_json("examples/alerts/hostile-labels.json");
    let plans = v["plans"].as_array().expect("plans");
    assert_eq!(plans[0]["decision"], "skip");
    assert_eq!(
        plans[0]["reason"],
        "param `topic` value \"orders$(touch /tmp/kafka-healing-canary)\" does not match its pattern `^(?:[A-Za-z0-9._-]{1,249})$`: nothing runs"
    );
    assert_eq!(plans[1]["decision"], "run");
    assert_eq!(
        plans[1]["steps"][0]["argv"],
        json!([
            "kafka-topics.sh",
            "--bootstrap-server",
            "kafka-1.example.com:9092,kafka-2.example.com:9092,kafka-3.example.com:9092",
            "--describe",
            "--topic",
            "payments.v2"
        ])
    );
}

fn payload(alerts: Value) -> String {
    json!({"version": "4", "status": "firing", "receiver": "r", "groupLabels": {}, "commonLabels": {},
           "commonAnnotations": {}, "externalURL": "", "groupKey": "k", "truncatedAlerts": 0,
           "alerts": alerts, "notification_reason": "new", "routeLabels": {"x": "y"}})
    .to_string()
}

fn dry_run_stdin(body: &str, json_out: bool) -> (Option<i32>, String, String) {
    let mut args = vec!["dry-run", "-c", "examples/config.yaml", "--alerts", "-"];
    if json_out {
        args.push("--json");
    }
    let mut child = bin()
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

#[test]
fn unmatched_duplicates_and_missing_target() {
    let alert = |labels: Value| json!({"status": "firing", "labels": labels, "annotations": {}, "startsAt": "", "endsAt": "", "generatorURL": ""});
    let body = payload(json!([
        alert(json!({"alertname": "SomethingElse"})),
        alert(
            json!({"alertname": "KafkaBrokerDown", "severity": "critical", "node_id": "kafka-1", "replica": "a"})
        ),
        alert(
            json!({"alertname": "KafkaBrokerDown", "severity": "critical", "node_id": "kafka-1", "replica": "b"})
        ),
        alert(
            json!({"alertname": "KafkaBrokerDown", "severity": "critical", "instance": "unknown.example.com:9404"})
        ),
        alert(json!({"alertname": "KafkaBrokerDown", "severity": "warning", "node_id": "kafka-3"})),
    ]));
    let (code, out, err) = dry_run_stdin(&body, true);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let plans = v["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 3, "{out}");
    assert_eq!(plans[0]["decision"], "run");
    assert_eq!(plans[0]["target"], "kafka-1");
    assert_eq!(plans[1]["decision"], "skip");
    let fp0 = plans[0]["fingerprint"].as_str().unwrap();
    assert_eq!(
        plans[1]["reason"],
        format!(
            "duplicate: alert {fp0} already runs rule `broker-down` on the same target (a disruptive runbook runs once per target, whatever its params)"
        )
    );
    assert_eq!(plans[2]["decision"], "skip");
    assert_eq!(plans[2]["target"], Value::Null);
    assert_eq!(
        plans[2]["reason"],
        "no target broker: instance=\"unknown.example.com:9404\" is not a configured broker; the runbook needs `target`"
    );
    // Fingerprints are computed as Alertmanager does when the payload lacks them.
    let unmatched = v["unmatched"].as_array().unwrap();
    assert_eq!(
        unmatched.len(),
        2,
        "SomethingElse and the warning-severity alert: {out}"
    );
    let fp = kafka_healing::ingest::fingerprint(
        &[("alertname".to_string(), "SomethingElse".to_string())].into(),
    );
    assert_eq!(unmatched[0], fp.as_str());
}

#[test]
fn human_output_says_what_would_run() {
    let o = run(&[
        "dry-run",
        "-c",
        "examples/config.yaml",
        "--alerts",
        "examples/alerts/firing-two-brokers.json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("RUN rule broker-down -> runbook restart-broker (target kafka-2)"),
        "{out}"
    );
    assert!(out.contains("1. restart [systemctl] ssh -o BatchMode=yes -- kafka-2.example.com sudo -n systemctl restart -- kafka.service"), "{out}");
    assert!(
        out.contains("2 alerts, 2 plans (2 run, 0 skip), 0 unmatched; nothing was executed"),
        "{out}"
    );
}

#[test]
fn malformed_input_exits_1_with_position() {
    let (code, _, err) = dry_run_stdin("{\"version\": \"4\",\n \"alerts\": [ }", false);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("malformed webhook body at line 2, column 14"),
        "{err}"
    );
    let (code, _, err) = dry_run_stdin(&payload(json!([])).replace("\"4\"", "\"3\""), false);
    assert_eq!(code, Some(1));
    assert!(err.contains("unsupported webhook version \"3\""), "{err}");
    let (code, _, err) = dry_run_stdin("{\"version\":\"4\"}", false);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing field `alerts`"), "{err}");
    let (code, _, err) = dry_run_stdin(
        &payload(json!([{"status": "pending", "labels": {}}])),
        false,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown variant `pending`"), "{err}");
    let (code, _, err) = dry_run_stdin(
        &payload(json!([{"status": "firing", "labels": {"a": 1}}])),
        false,
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("invalid type: integer `1`, expected a string"),
        "{err}"
    );
    let o = run(&[
        "dry-run",
        "-c",
        "examples/config.yaml",
        "--alerts",
        "/nonexistent.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read alerts /nonexistent.json"));
}

#[test]
fn invalid_config_or_rules_exit_1() {
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &config_with(""));
    s.write(
        "rules/a.yaml",
        "rules:\n  - name: r\n    matchers: ['x']\n    runbook: nope\n",
    );
    let o = run(&[
        "dry-run",
        "-c",
        cfg.to_str().unwrap(),
        "--alerts",
        "examples/alerts/firing-two-brokers.json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the rules are invalid (2 errors)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dry_run_executes_nothing() {
    let s = Scratch::new();
    let canary = s.path().join("canary");
    let cfg = s.write("c.yaml", &config_with(""));
    s.write(
        "rules/a.yaml",
        &format!(
            "rules:\n  - name: r\n    matchers: ['alertname=\"KafkaBrokerDown\"']\n    runbook: touch\nrunbooks:\n  touch:\n    steps:\n      - name: t\n        exec: [touch, '{}']\n      - name: h\n        http: {{ method: POST, url: 'http://127.0.0.1:9/x' }}\n",
            canary.display()
        ),
    );
    let o = run(&[
        "dry-run",
        "-c",
        cfg.to_str().unwrap(),
        "--alerts",
        "examples/alerts/firing-two-brokers.json",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["plans"][0]["decision"], "run");
    assert_eq!(
        v["plans"][0]["steps"][0]["argv"],
        json!(["touch", canary.to_str().unwrap()])
    );
    assert!(!canary.exists(), "dry-run must not execute anything");
}

#[test]
fn cluster_wide_diagnostics_need_no_target_broker() {
    // Prometheus's controller-count alert is summed per cluster: no instance, no node_id.
    let alert = json!({"status": "firing", "labels": {"alertname": "KafkaActiveControllerCountInvalid", "cluster": "prod-east"}, "annotations": {}});
    let (code, out, err) = dry_run_stdin(&payload(json!([alert])), true);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let p = &v["plans"][0];
    assert_eq!(p["rule"], "controller-count-invalid");
    assert_eq!(p["decision"], "run", "{p}");
    assert_eq!(p["target"], Value::Null);
    assert_eq!(
        p["steps"][0]["argv"],
        json!([
            "kafka-metadata-quorum.sh",
            "--bootstrap-server",
            "kafka-1.example.com:9092,kafka-2.example.com:9092,kafka-3.example.com:9092",
            "describe",
            "--status"
        ])
    );
}
