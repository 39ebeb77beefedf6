//! Scenario 5: a single-node KRaft broker whose only listener the service knows is
//! SASL_SSL (rcgen certificates, SCRAM users added by Kafka's own storage tool, as in
//! `kafka_client.rs`). The kafka probe and the preconditions work over it; a wrong
//! password is an authentication error of a live broker, never "broker down": no restart.
//! The broker answers throughout, so every restart the wrapper logs is unsafe.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_healing::clock::now_ms;
use kafka_healing::kafka::cluster::partitions_below_min_isr_without;
use kafka_healing::kafka::{ClientOptions, KafkaClient, SaslCredentials};
use serde_json::{Value, json};

use super::Measure;
use crate::common::Scratch;
use crate::kafka::{Broker, run_bounded};
use crate::kafka_client::{TOPIC, create_topic, pki, sasl_ssl_props};
use crate::mailbox::free_port;
use crate::serve::harness::{Server, TOKEN, alert, webhook};

/// Bound on each wait.
const LIMIT: Duration = Duration::from_secs(90);

/// A step that only logs (the broker is not under supervisord here): `ms node_id`.
const WRAPPER: &str = "#!/bin/sh\necho \"$(/bin/date +%s%3N) $2\" >> \"$1\"\n";

const RULES: &str = r#"rules:
  - name: broker-down
    broker_down: true
    matchers: ['alertname="KafkaBrokerDown"']
    condition:
      expr: kafka_healing_probe_success{method="kafka"} == 0
      for: 4s
      alertname: KafkaBrokerDown
      labels: { severity: critical }
    runbook: restart-broker
  - name: rolling-restart
    matchers: ['alertname="RollingRestart"']
    runbook: rolling-restart
runbooks:
  restart-broker:
    disruptive: true
    requires: [broker_unreachable, restart_safe]
    steps:
      - name: restart
        exec: ["@WRAPPER@", "@LOG@", "{{target.node_id}}"]
      - name: back in sync
        wait_in_sync: { timeout: 1m, recovery_timeout: 2m }
  rolling-restart:
    disruptive: true
    requires: [restart_safe]
    steps:
      - name: restart
        exec: ["@WRAPPER@", "@LOG@", "{{target.node_id}}"]
"#;

fn config(port: u16, password_file: &str) -> String {
    format!(
        "cluster:\n  name: sasl\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {port} }}\n\
monitoring: {{ interval_seconds: 5, timeout_seconds: 4, methods: [kafka] }}\n\
recovery: {{ max_attempts: 3, initial_delay_seconds: 1, cooldown_seconds: 5 }}\n\
security:\n  ssl:\n    enabled: true\n    ca_file: ca.pem\n    cert_file: client.pem\n    key_file: client.key\n    server_name: kafka.test\n  sasl:\n    enabled: true\n    mechanism: SCRAM-SHA-512\n    username: healer\n    password_file: {password_file}\n\
server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\n\
rules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n"
    )
}

/// The value of the first series `name{…}` in `text` whose labels contain every `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `kafka-healing scrape` on the service's own config: one round of its checks, printed.
fn scrape(s: &Scratch) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-healing"));
    c.arg("scrape").arg("-c").arg(s.path().join("config.yaml"));
    match run_bounded(c, LIMIT) {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("[5] kafka-healing scrape: {e}"),
    }
}

/// Runs `scrape` (at most 3 rounds) until `name{labels}` is `want`; returns the output.
fn scrape_until(s: &Scratch, name: &str, labels: &[&str], want: f64) -> String {
    let mut out = String::new();
    for _ in 0..3 {
        out = scrape(s);
        if series(&out, name, labels) == Some(want) {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("[5] {name}{labels:?} is not {want}:\n{out}");
}

/// Posts one alert; waits for its execution (created after `from`) to be decided.
async fn decided(srv: &Server, labels: Value, rule: &str, from: i64) -> Value {
    let (st, v) = srv
        .post(&webhook("safety", vec![alert("firing", labels)]))
        .await;
    assert_eq!(st, 200, "{v}");
    let list = srv
        .wait_until(LIMIT.as_secs(), rule, |l| {
            l.iter().any(|e| {
                e["rule"] == rule
                    && e["created_ms"].as_i64() >= Some(from)
                    && !matches!(e["status"].as_str(), Some("queued" | "running"))
            })
        })
        .await;
    // The first decided one (a refusal queues its own re-judgement after it).
    list.into_iter()
        .find(|e| {
            e["rule"] == rule
                && e["created_ms"].as_i64() >= Some(from)
                && !matches!(e["status"].as_str(), Some("queued" | "running"))
        })
        .expect("execution")
}

fn restarts(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn safety_sasl_ssl_probe_and_preconditions() {
    let s = Scratch::new();
    pki(s.path());
    let sasl_port = free_port();
    let scram = |m: &str| format!("{m}=[name=healer,password=scram-secret]");
    let broker = Broker::start_with(
        s.path(),
        &sasl_ssl_props(s.path(), sasl_port),
        &[
            "--add-scram".into(),
            scram("SCRAM-SHA-256"),
            "--add-scram".into(),
            scram("SCRAM-SHA-512"),
        ],
    )
    .await;
    let port = broker.port;
    tokio::task::spawn_blocking(move || create_topic(port))
        .await
        .expect("join")
        .expect("create topic");
    let mut m = Measure::start("5");
    let wrapper = s.write("restart.sh", WRAPPER);
    let mut perm = std::fs::metadata(&wrapper).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&wrapper, perm).expect("chmod");
    let log = s.path().join("restarts.log");
    let rules = RULES
        .replace("@WRAPPER@", &wrapper.display().to_string())
        .replace("@LOG@", &log.display().to_string());
    let srv = Server::start(&s, &config(sasl_port, "scram.pw"), &rules);
    let node = ["node_id=\"kafka-1\""];
    let kafka = ["node_id=\"kafka-1\"", "method=\"kafka\""];

    // a. The probe over SASL_SSL: alive, authenticated.
    scrape_until(&s, "kafka_healing_probe_success", &kafka, 1.0);
    scrape_until(&s, "kafka_healing_kafka_auth_ok", &node, 1.0);

    // b. restart_safe reads the cluster over SASL_SSL: without its only broker, every
    //    partition of the topic falls below its minimum. The count from our own client.
    let c = KafkaClient::new(ClientOptions {
        sasl: Some(SaslCredentials {
            mechanism: kafka_healing::config::SaslMechanism::ScramSha512,
            username: "healer".into(),
            password: kafka_healing::config::Secret("scram-secret".into()),
        }),
        tls: Some(
            kafka_healing::kafka::tls::TlsSettings::from_files(
                &s.path().join("ca.pem"),
                Some((&s.path().join("client.pem"), &s.path().join("client.key"))),
                Some("kafka.test"),
            )
            .expect("tls"),
        ),
        ..ClientOptions::plaintext(Duration::from_secs(10))
    });
    let md = c.metadata("127.0.0.1", sasl_port).await.expect("metadata");
    let min = c
        .min_insync_replicas("127.0.0.1", sasl_port, &[TOPIC.to_string()], Some(1))
        .await
        .expect("min isr");
    let expected = partitions_below_min_isr_without(1, &md, &min, &BTreeSet::from([1]))
        .iter()
        .filter(|r| r.target_in_sync)
        .count();
    assert!(expected >= 3, "{md:?}");
    let from = now_ms();
    let ex = decided(
        &srv,
        json!({"alertname": "RollingRestart", "node_id": "kafka-1"}),
        "rolling-restart",
        from,
    )
    .await;
    assert_eq!(ex["status"], "refused", "[5] {ex}");
    let why = super::refusal(ex["reason"].as_str().unwrap_or_default());
    assert!(why.starts_with("restart_safe:"), "[5] {why}");
    assert!(
        why.contains(&format!("{expected} partition")),
        "[5] the count {expected} in: {why}"
    );

    // c. broker_unreachable over SASL_SSL: the broker answers, no restart.
    let down =
        json!({"alertname": "KafkaBrokerDown", "node_id": "kafka-1", "severity": "critical"});
    let ex = decided(&srv, down.clone(), "broker-down", now_ms()).await;
    assert_eq!(ex["status"], "refused", "[5] {ex}");
    assert!(
        super::refusal(ex["reason"].as_str().unwrap_or_default())
            .starts_with("broker_unreachable:"),
        "[5] {ex}"
    );

    // d. A wrong password: an authentication error of a live broker, not "down".
    s.write("wrong.pw", "not-the-password\n");
    s.write("config.yaml", &config(sasl_port, "wrong.pw"));
    let (st, v) = srv.post_path("/-/reload").await;
    assert_eq!(st, 200, "{v}");
    let text = scrape_until(&s, "kafka_healing_kafka_auth_ok", &node, 0.0);
    assert_eq!(
        series(&text, "kafka_healing_probe_success", &kafka),
        Some(1.0),
        "[5] a refused password is not a dead broker"
    );
    let quiet_from = now_ms();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let own: Vec<Value> = srv
        .executions()
        .await
        .into_iter()
        .filter(|e| e["created_ms"].as_i64() >= Some(quiet_from))
        .collect();
    assert_eq!(own, Vec::<Value>::new(), "[5] the condition never fires");
    let ex = decided(&srv, down, "broker-down", now_ms()).await;
    assert_eq!(ex["status"], "refused", "[5] {ex}");
    let why = super::refusal(ex["reason"].as_str().unwrap_or_default()).to_string();
    assert!(
        why.starts_with("broker_unreachable:") && why.to_lowercase().contains("auth"),
        "[5] a clear authentication error: {why}"
    );
    assert!(
        srv.log().contains("SASL authentication failed"),
        "[5] the log says why:\n{}",
        srv.log()
    );
    // The broker answered throughout: any restart would be unsafe.
    let plain = KafkaClient::new(ClientOptions::plaintext(Duration::from_secs(5)));
    assert!(plain.api_versions("127.0.0.1", broker.port).await.is_ok());
    m.unsafe_actions.extend(
        restarts(&log)
            .into_iter()
            .map(|l| format!("restart of an answering broker: {l}")),
    );
    m.figure("expected_below_min_isr", expected);
    m.finish();
}
