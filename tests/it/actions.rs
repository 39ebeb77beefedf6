//! Issue 18: `recovery.actions` with no `rules:` runs the built-in pack, whose
//! `broker-down` runbook is the actions as a fallback chain.

use serde_json::{Value, json};

use crate::common::*;

const BROKERS: &str = "cluster:\n  name: test\n  kafka_brokers:\n    - { node_id: kafka-1, host: k1.example.com, port: 9092 }\n    - { node_id: kafka-2, host: k2.example.com, port: 9092 }\n    - { node_id: kafka-3, host: k3.example.com, port: 9092 }\nmonitoring:\n  methods: [socket, kafka]\n";

fn seed_config(s: &Scratch, recovery: &str) -> String {
    s.write("config.yaml", &format!("{BROKERS}recovery:\n{recovery}"))
        .to_string_lossy()
        .into_owned()
}

fn broker_down_alert(s: &Scratch, node: &str) -> String {
    let payload = json!({
        "receiver": "kafka-healing", "status": "firing", "version": "4",
        "groupKey": "{}", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am:9093", "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "KafkaBrokerDown", "severity": "critical", "node_id": node},
            "annotations": {}, "startsAt": "2026-12-05T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0123456789abcdef"
        }]
    });
    s.write("alerts.json", &payload.to_string())
        .to_string_lossy()
        .into_owned()
}

#[test]
fn check_names_the_built_in_rules_it_activated() {
    let s = Scratch::new();
    let cfg = seed_config(&s, "  actions: [restart_service, ansible]\n");
    let o = run(&["check", "-c", &cfg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(": 1 rule, 3 runbooks, 3 brokers"), "{out}");
    assert!(
        out.contains(
            "built-in rule pack (recovery.actions, no `rules:`): broker-down -> runbook \
             `restart-broker`: restart_service, then if it fails, ansible"
        ),
        "{out}"
    );
}

#[test]
fn rules_and_actions_together_is_an_error_naming_rules_as_used() {
    let s = Scratch::new();
    s.write("rules/a.yaml", GOOD_RULES);
    let cfg = s.write(
        "config.yaml",
        &format!("{BROKERS}rules: [rules/*.yaml]\nrecovery:\n  actions: [restart_service]\n"),
    );
    let o = run(&["check", "-c", &cfg.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "config.yaml:11: error: recovery.actions: `rules:` and `recovery.actions` are both given: `rules:` \
             wins (its rule files are the rules used) and `recovery.actions` would be ignored; \
             remove one of them"
        ),
        "{err}"
    );
}

#[test]
fn an_action_param_no_action_takes_is_an_error() {
    let s = Scratch::new();
    let cfg = seed_config(
        &s,
        "  actions: [restart_service]\n  action_params:\n    inventory: /x.ini\n",
    );
    let o = run(&["check", "-c", &cfg]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "config.yaml:12: error: recovery.action_params.inventory: no action of \
             recovery.actions (restart_service) takes the param `inventory`"
        ),
        "{}",
        stderr(&o)
    );
}

fn dry_run(cfg: &str, alerts: &str) -> Value {
    let o = run(&["dry-run", "-c", cfg, "--alerts", alerts, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("JSON")
}

#[test]
fn dry_run_plans_the_chain_of_a_seed_shaped_config() {
    let s = Scratch::new();
    let cfg = seed_config(
        &s,
        "  actions: [restart_service, ansible]\n  action_params:\n    unit: confluent-kafka.service\n    inventory: /etc/ansible/hosts\n",
    );
    let v = dry_run(&cfg, &broker_down_alert(&s, "kafka-2"));
    let plans = v["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1, "{v}");
    let p = &plans[0];
    assert_eq!(p["rule"], "broker-down");
    assert_eq!(p["runbook"], "restart-broker");
    assert_eq!(p["target"], "kafka-2");
    assert_eq!(p["decision"], "run");
    assert_eq!(
        p["requires"],
        json!(["broker_unreachable", "restart_safe", "not_starting"])
    );
    assert_eq!(
        p["actions"],
        json!([
            {"name": "restart_service", "start": 0, "len": 2},
            {"name": "ansible", "start": 2, "len": 2},
        ])
    );
    let names: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "restart_service/restart",
            "restart_service/wait-in-sync",
            "ansible/restart",
            "ansible/wait-in-sync"
        ]
    );
    // The action params reach both actions' steps.
    assert_eq!(
        p["steps"][0]["argv"],
        json!([
            "ssh",
            "-o",
            "BatchMode=yes",
            "--",
            "k2.example.com",
            "sudo",
            "-n",
            "systemctl",
            "restart",
            "--",
            "confluent-kafka.service"
        ])
    );
    let ansible: Vec<&str> = p["steps"][2]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &ansible[..5],
        [
            "ansible-playbook",
            "-i",
            "/etc/ansible/hosts",
            "--limit",
            "kafka-2"
        ]
    );
    assert!(
        ansible
            .iter()
            .any(|a| a.contains("confluent-kafka.service")),
        "{ansible:?}"
    );
    // Only the first action's failure lets the second run: the last action's wait escalates.
    assert_eq!(p["steps"][3]["on_failure"], "escalate");
}

#[test]
fn scale_statefulset_scales_back_to_the_broker_count() {
    let s = Scratch::new();
    let cfg = s.write(
        "config.yaml",
        &format!(
            "{BROKERS}kubernetes:\n  in_cluster: true\nrecovery:\n  actions: [restart_pod, scale_statefulset]\n  action_params:\n    namespace: streaming\n"
        ),
    );
    let v = dry_run(&cfg.to_string_lossy(), &broker_down_alert(&s, "kafka-3"));
    let steps = v["plans"][0]["steps"].as_array().expect("steps").clone();
    let argv: Vec<Value> = steps.iter().map(|s| s["argv"].clone()).collect();
    assert_eq!(
        argv[0],
        json!(["evict_pod", "namespace=streaming", "name=kafka-3"])
    );
    assert_eq!(
        argv[1],
        json!(["wait_pod_ready", "namespace=streaming", "name=kafka-3"])
    );
    assert_eq!(steps[1]["timeout_seconds"], 600.0);
    assert_eq!(
        argv[3],
        json!(["scale", "namespace=streaming", "name=kafka", "replicas=0"])
    );
    assert_eq!(
        argv[4],
        json!(["scale", "namespace=streaming", "name=kafka", "replicas=3"])
    );
}
