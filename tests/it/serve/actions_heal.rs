//! Issue 18, "Done when": a config in the seed's shape (no `rules:`, `recovery.actions:
//! [restart_service, ansible]`) heals a real broker under supervisord with no
//! Alertmanager. The built-in `broker-down` condition (the self-watch's socket probe) fires;
//! the first action, systemctl over ssh, is made to fail through its params (ssh to
//! loopback, where nothing listens on port 22); the second, the shipped Ansible playbook
//! with `service_manager: supervisor`, restarts the broker.
//!
//! Needs the Kafka jars (`bash scripts/kafka/fetch`), supervisor, ansible-core and ssh.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::*;
use super::kafka_heal::Supervised;
use crate::common::Scratch;

/// Bound on a broker start.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound from the kill to the execution's success: the built-in condition holds for 1m.
const HEAL_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn seed_shaped_config_heals_a_killed_broker_through_the_second_action() {
    assert!(
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], 22).into(), Duration::from_secs(2))
            .is_err(),
        "this test needs nothing listening on 127.0.0.1:22 (the first action must fail)"
    );
    let s = Scratch::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kdir = s.path().join("kafka");
    std::fs::create_dir_all(&kdir).unwrap();
    let mut sup = Supervised::start(&kdir);
    sup.wait_running(START_TIMEOUT, "first start").await;
    let pid0 = sup.pid().expect("supervisord reports the broker's pid");
    let inventory = s.path().join("inventory.ini");
    std::fs::write(&inventory, "[kafka]\nkafka-1 ansible_connection=local\n").unwrap();
    let cfg = format!(
        "cluster:\n  name: seed\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {port}, metrics_url: '{metrics}' }}\n\
         monitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket] }}\n\
         server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\n\
         state: {{ path: state/journal.db }}\n\
         recovery:\n  actions: [restart_service, ansible]\n  action_params:\n    ssh_host: 127.0.0.1\n    playbook: '{playbook}'\n    inventory: '{inventory}'\n    service_manager: supervisor\n    supervisor_conf: '{conf}'\n",
        port = sup.port,
        metrics = sup.metrics_url,
        playbook = repo.join("ansible/restart-broker.yml").display(),
        inventory = inventory.display(),
        conf = sup.conf.display(),
    );
    // The harness also writes a rules.yaml; the config does not name it.
    let srv = Server::start(&s, &cfg, "rules: []\n");

    let killed_at = Instant::now();
    let out = sup
        .ctl(&["signal", "KILL", "kafka-1"])
        .expect("supervisorctl signal");
    assert!(out.status.success(), "supervisorctl signal KILL kafka-1");
    let deadline = Instant::now() + Duration::from_secs(15);
    while sup.port_open() {
        assert!(
            Instant::now() < deadline,
            "the killed broker's port stays open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let list = srv
        .wait_until(
            HEAL_TIMEOUT.as_secs(),
            "a finished broker-down execution",
            |l| {
                l.iter().any(|e| {
                    e["rule"] == "broker-down"
                        && e["status"] != "running"
                        && e["status"] != "queued"
                })
            },
        )
        .await;
    let ex = list
        .iter()
        .find(|e| e["rule"] == "broker-down")
        .unwrap()
        .clone();
    let (st, detail) = srv.get(&format!("/api/v1/executions/{}", ex["id"])).await;
    assert_eq!(st, 200, "{detail}");
    eprintln!("{:.1?} after the kill: {detail}", killed_at.elapsed());
    assert_eq!(ex["status"], "succeeded", "{detail}\nlog:\n{}", srv.log());
    assert_eq!(ex["runbook"], "restart-broker");
    assert_eq!(ex["target"], "kafka-1");
    let steps: Vec<(String, String)> = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("restart_service/restart", "failed"),
            ("ansible/restart", "succeeded"),
            ("ansible/wait-in-sync", "succeeded"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{detail}"
    );
    let first = &detail["steps"][0];
    assert_eq!(first["argv"][0], "ssh");
    assert_eq!(first["argv"][4], "127.0.0.1");
    assert_eq!(first["exit_code"], 255, "{detail}");
    let reason = ex["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(
            "action `ansible` succeeded after: action `restart_service` failed: step \
             `restart_service/restart` failed with exit status 255"
        ),
        "{reason}"
    );
    // Each action's preconditions were judged before its disruptive step: twice.
    let judged: Vec<&Value> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "precondition")
        .collect();
    assert_eq!(judged.len(), 2, "{}", json!(judged));
    // The broker is back: a new JVM.
    let pid1 = sup.pid().expect("supervisord runs kafka-1 again");
    assert_ne!(pid0, pid1, "a new JVM");
    assert!(sup.port_open());
    drop(srv);
    drop(sup);
}
