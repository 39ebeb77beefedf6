//! Runbooks run for real from a posted payload: argv and environment as recorded by the
//! child itself; Ansible; hostile labels; dry_run.

use serde_json::json;

use super::harness::*;
use crate::common::Scratch;

fn rules(rec: &str, extra_rule: &str) -> String {
    format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: record
    params:
      why: "{{{{alert.annotations.summary}}}}"
{extra_rule}
runbooks:
  record:
    steps:
      - name: record
        exec: ["{rec}", "{{{{rule.name}}}}-out", "{{{{target.host}}}}:{{{{target.port}}}}", "{{{{params.why}}}}", "{{{{alert.labels.v}}}}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn posted_alert_runs_the_runbook_with_exact_argv_and_clean_env() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let srv = Server::start_env_in(
        &s,
        &config(""),
        &rules(rec.to_str().unwrap(), ""),
        &[("SECRET_IN_PARENT", "leak")],
    );
    let mut labels = down("kafka-2");
    labels["v"] = json!("value with spaces; $(touch canary) `x`\nnext");
    let (status, body) = srv
        .post(&webhook("kafka-healing", vec![alert("firing", labels)]))
        .await;
    assert_eq!((status, body["alerts"].clone()), (200, json!(1)));
    let list = srv
        .wait_until(20, "the execution to succeed", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    assert_eq!(list.len(), 1);
    let e = &list[0];
    assert_eq!(e["rule"], "broker-down");
    assert_eq!(e["target"], "kafka-2");
    assert_eq!(e["attempt"], 1);
    let calls = recorded(s.path(), "broker-down-out");
    assert_eq!(calls.len(), 1, "ran exactly once");
    let (_, _, argv, env) = &calls[0];
    assert_eq!(
        argv,
        &vec![
            "k2.example.com:9092".to_string(),
            "test".into(),
            "value with spaces; $(touch canary) `x`\nnext".into()
        ]
    );
    assert!(!s.path().join("canary").exists());
    assert!(env.contains("KAFKA_HEALING_RULE=broker-down\n"), "{env}");
    assert!(env.contains("KAFKA_HEALING_TARGET=kafka-2\n"), "{env}");
    assert!(
        env.contains("KAFKA_HEALING_TARGET_HOST=k2.example.com\n"),
        "{env}"
    );
    assert!(
        env.contains("KAFKA_HEALING_ALERTNAME=KafkaBrokerDown\n"),
        "{env}"
    );
    assert!(
        env.contains(&format!("KAFKA_HEALING_EXECUTION_ID={}\n", e["id"])),
        "{env}"
    );
    assert!(
        !env.contains("SECRET_IN_PARENT"),
        "the environment is cleared to an allowlist: {env}"
    );
    // The execution record matches what ran.
    let (st, detail) = srv.get(&format!("/api/v1/executions/{}", e["id"])).await;
    assert_eq!(st, 200);
    let step = &detail["steps"][0];
    assert_eq!(step["name"], "record");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["exit_code"], 0);
    assert_eq!(step["argv"][0], rec.to_str().unwrap());
    assert_eq!(
        step["argv"][4],
        "value with spaces; $(touch canary) `x`\nnext"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_step_is_recorded_with_its_exit_status() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let cfg = config("recovery: { max_attempts: 1 }\n");
    s.write("exit", "3");
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    let mut labels = down("kafka-1");
    labels["v"] = json!("x");
    srv.post(&webhook("r", vec![alert("firing", labels)])).await;
    let list = srv
        .wait_until(20, "a failure", |l| {
            l.iter().any(|e| e["status"] == "failed")
        })
        .await;
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(detail["steps"][0]["exit_code"], 3);
    assert_eq!(detail["steps"][0]["status"], "failed");
    assert_eq!(
        detail["execution"]["reason"],
        "step `record` failed with exit status 3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_records_and_executes_nothing() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let srv = Server::start(
        &s,
        &config("recovery: { dry_run: true }\n"),
        &rules(rec.to_str().unwrap(), ""),
    );
    let mut labels = down("kafka-1");
    labels["v"] = json!("x");
    srv.post(&webhook("r", vec![alert("firing", labels)])).await;
    let list = srv
        .wait_until(20, "a dry_run record", |l| {
            l.iter().any(|e| e["status"] == "dry_run")
        })
        .await;
    assert_eq!(
        list[0]["plan"]["steps"][0]["argv"][2],
        "k1.example.com:9092"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        recorded(s.path(), "broker-down-out").is_empty(),
        "dry_run must not execute"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_labels_arrive_as_single_arguments_and_patterns_stop_them() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let canary = s.path().join("canary");
    let c = canary.display();
    let guarded = r#"  - name: guarded
    matchers: ['alertname="Topic"']
    runbook: topic
    params:
      topic: { value: "{{alert.labels.topic}}", pattern: "[A-Za-z0-9._-]{1,249}" }
"#;
    let rules = format!(
        "{}  topic:\n    disruptive: false\n    steps:\n      - name: t\n        exec: [\"{}\", topic-out, \"{{{{params.topic}}}}\"]\n",
        rules(rec.to_str().unwrap(), guarded),
        rec.display()
    );
    let srv = Server::start(
        &s,
        &config("recovery: { cooldown_seconds: 0, max_attempts: 10 }\n"),
        &rules,
    );
    let values = [
        format!("$(touch {c})"),
        format!("; touch {c}"),
        format!("`touch {c}`"),
        format!("x\ntouch {c}"),
        "--flag".to_string(),
        "x".repeat(100 * 1024),
    ];
    let alerts: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut l = down("kafka-1");
            l["v"] = json!(v);
            l["i"] = json!(i.to_string());
            alert("firing", l)
        })
        .collect();
    // One alert at a time: each is a separate work key only by its labels' params, which
    // here are equal, so they would collapse; post them one by one and wait for each.
    for (i, a) in alerts.into_iter().enumerate() {
        let (st, _) = srv.post(&webhook("r", vec![a])).await;
        assert_eq!(st, 200);
        srv.wait_until(20, "the run", |l| {
            l.iter().filter(|e| e["status"] == "succeeded").count() > i
        })
        .await;
    }
    let calls = recorded(s.path(), "broker-down-out");
    let got: Vec<&String> = calls.iter().map(|c| &c.2[2]).collect();
    let mut want: Vec<&String> = values.iter().collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(
        got_sorted, want,
        "each value arrived byte for byte as one argument"
    );
    assert!(
        calls.iter().all(|c| c.2.len() == 3),
        "never split into more arguments"
    );
    // The guarded rule: a hostile topic is refused with the param named; a clean one runs.
    let bad = alert(
        "firing",
        json!({"alertname": "Topic", "node_id": "kafka-1", "topic": format!("t;touch {c}")}),
    );
    let good = alert(
        "firing",
        json!({"alertname": "Topic", "node_id": "kafka-1", "topic": "orders.v1"}),
    );
    srv.post(&webhook("r", vec![bad, good])).await;
    let list = srv
        .wait_until(20, "topic runs", |l| {
            l.iter()
                .any(|e| e["rule"] == "guarded" && e["status"] == "succeeded")
        })
        .await;
    let skipped: Vec<_> = list
        .iter()
        .filter(|e| e["rule"] == "guarded" && e["status"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("param `topic` value \"t;touch ")
    );
    let topic_calls = recorded(s.path(), "topic-out");
    assert_eq!(topic_calls.len(), 1);
    assert_eq!(topic_calls[0].2, vec!["orders.v1".to_string()]);
    assert!(!canary.exists(), "nothing a label said was executed");
}

#[tokio::test(flavor = "multi_thread")]
async fn ansible_playbook_runs_for_real_and_labels_cannot_inject_jinja() {
    let s = Scratch::new();
    let dir = s.path().display().to_string();
    s.write(
        "restart.yml",
        "- hosts: all\n  connection: local\n  gather_facts: false\n  tasks:\n    - name: record what the alert said\n      copy:\n        content: \"{{ label }}|{{ inventory_hostname }}\"\n        dest: \"{{ out }}\"\n",
    );
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: ansible-restart
runbooks:
  ansible-restart:
    steps:
      - name: playbook
        ansible:
          playbook: "{dir}/restart.yml"
          inventory: "{{{{target.node_id}}}},"
          limit: "{{{{target.node_id}}}}"
          extra_vars:
            label: "{{{{alert.labels.v}}}}"
            out: "{dir}/ansible-out"
        timeout: 120s
"#
    );
    let srv = Server::start(&s, &config(""), &rules);
    let canary = s.path().join("canary");
    let hostile = format!(
        "{{{{ lookup('pipe', 'touch {}') }}}} and \"quotes\"",
        canary.display()
    );
    let mut labels = down("kafka-2");
    labels["v"] = json!(hostile);
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", labels)]))
            .await
            .0,
        200
    );
    let list = srv
        .wait_until(120, "the playbook to finish", |l| {
            l.iter()
                .any(|e| e["status"] == "succeeded" || e["status"] == "failed")
        })
        .await;
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(list[0]["status"], "succeeded", "{detail}");
    let step = &detail["steps"][0];
    assert_eq!(step["argv"][0], "ansible-playbook");
    assert_eq!(
        step["argv"].as_array().unwrap()[1..5],
        [
            json!("-i"),
            json!("kafka-2,"),
            json!("--limit"),
            json!("kafka-2")
        ]
    );
    assert!(step["stdout"].as_str().unwrap().contains("ok=1"), "{step}");
    let written = std::fs::read_to_string(s.path().join("ansible-out")).unwrap();
    assert_eq!(
        written,
        format!("{hostile}|kafka-2"),
        "the label arrived verbatim, untemplated"
    );
    assert!(
        !canary.exists(),
        "Ansible must not evaluate templates inside alert data"
    );
}

/// Issue 17, finding 7: with the real `ansible-playbook` and an inventory whose group
/// holds all three brokers, a `--limit` naming a group is refused before anything runs,
/// and a node_id selects exactly that one host.
#[tokio::test(flavor = "multi_thread")]
async fn ansible_limit_selects_one_configured_broker_never_a_group() {
    let s = Scratch::new();
    let dir = s.path().display().to_string();
    std::fs::create_dir(s.path().join("ran")).unwrap();
    s.write(
        "hosts.ini",
        "[kafka_brokers]\nkafka-1 ansible_connection=local\nkafka-2 ansible_connection=local\n\
         kafka-3 ansible_connection=local\n",
    );
    s.write(
        "restart.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: record the host\n      copy:\n        content: \"{{ inventory_hostname }}\"\n        dest: \"{{ out }}/{{ inventory_hostname }}\"\n",
    );
    let rules = format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: ansible-restart
    params:
      lim: "{{{{alert.labels.limit}}}}"
runbooks:
  ansible-restart:
    steps:
      - name: playbook
        ansible:
          playbook: "{dir}/restart.yml"
          inventory: "{dir}/hosts.ini"
          limit: "{{{{params.lim}}}}"
          extra_vars:
            out: "{dir}/ran"
        timeout: 120s
"#
    );
    // What the refusal prevents: to the real ansible-playbook, the group is all three.
    let listed = std::process::Command::new("ansible-playbook")
        .args([
            "-i",
            &format!("{dir}/hosts.ini"),
            "--limit",
            "kafka_brokers",
        ])
        .args(["--list-hosts", &format!("{dir}/restart.yml")])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("hosts (3):"), "{listed}");
    let srv = Server::start(&s, &config(""), &rules);
    let refused = [
        "kafka_brokers",
        "ungrouped",
        "ALL",
        "all",
        "kafka*",
        "kafka-1:kafka-3",
    ];
    let alerts = refused
        .iter()
        .map(|l| {
            let mut labels = down("kafka-1");
            labels["limit"] = json!(l);
            alert("firing", labels)
        })
        .collect();
    assert_eq!(srv.post(&webhook("r", alerts)).await.0, 200);
    let list = srv
        .wait_until(20, "every group limit refused", |l| {
            l.iter().filter(|e| e["status"] == "skipped").count() == refused.len()
        })
        .await;
    for e in &list {
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("step `playbook`: limit: `") && reason.ends_with(": nothing runs"),
            "{e}"
        );
    }
    assert!(
        list.iter().any(|e| e["reason"]
            .as_str()
            .unwrap()
            .contains("`kafka_brokers` is no configured broker's node_id or host")),
        "{list:?}"
    );
    let ran = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(s.path().join("ran"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ran(), Vec::<String>::new(), "nothing ran for a group");
    let mut labels = down("kafka-2");
    labels["limit"] = json!("kafka-2");
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", labels)]))
            .await
            .0,
        200
    );
    let list = srv
        .wait_until(120, "the playbook to finish", |l| {
            l.iter()
                .any(|e| e["status"] == "succeeded" || e["status"] == "failed")
        })
        .await;
    let done = list
        .iter()
        .find(|e| e["status"] == "succeeded" || e["status"] == "failed")
        .unwrap();
    let (_, detail) = srv.get(&format!("/api/v1/executions/{}", done["id"])).await;
    assert_eq!(done["status"], "succeeded", "{detail}");
    let step = &detail["steps"][0];
    assert_eq!(
        step["argv"].as_array().unwrap()[1..5],
        [
            json!("-i"),
            json!(format!("{dir}/hosts.ini")),
            json!("--limit"),
            json!("kafka-2")
        ]
    );
    let stdout = step["stdout"].as_str().unwrap();
    assert!(stdout.contains("kafka-2"), "{stdout}");
    assert!(
        !stdout.contains("kafka-1") && !stdout.contains("kafka-3"),
        "{stdout}"
    );
    assert_eq!(ran(), ["kafka-2"], "exactly one host was selected");
    assert_eq!(
        std::fs::read_to_string(s.path().join("ran/kafka-2")).unwrap(),
        "kafka-2"
    );
}
