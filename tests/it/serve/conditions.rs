//! Self-watch end to end: kafka-healing scrapes a (test) JMX exporter itself, a rule's
//! PromQL condition fires, the runbook runs, and the alert resolves when the metric clears;
//! the same problem arriving from Alertmanager collapses into the same execution.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::harness::*;
use crate::common::Scratch;

/// An exporter whose body the test controls; returns (port, body handle).
pub(super) async fn exporter(body: &str) -> (u16, Arc<Mutex<String>>) {
    let state = Arc::new(Mutex::new(body.to_string()));
    let s = state.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = s.clone();
            async move { s.lock().unwrap().clone() }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, state)
}

const URP: &str = "# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge\nkafka_server_replicamanager_underreplicatedpartitions 3\n";

#[tokio::test(flavor = "multi_thread")]
async fn condition_fires_runs_and_resolves_and_collapses_with_alertmanager() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let (port, body) = exporter(URP).await;
    let cfg = format!(
        "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: 1, metrics_url: 'http://127.0.0.1:{port}/metrics' }}\nmonitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [jmx] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\nrecovery: {{ cooldown_seconds: 0 }}\n"
    );
    let rules = format!(
        r#"rules:
  - name: under-replicated
    matchers: ['alertname="KafkaUnderReplicatedPartitions"']
    condition:
      expr: kafka_server_replicamanager_underreplicatedpartitions > 0
      for: 0s
      alertname: KafkaUnderReplicatedPartitions
      labels: {{ severity: warning }}
    runbook: describe
runbooks:
  describe:
    disruptive: false
    steps:
      - name: describe
        exec: ["{}", "urp", "{{{{target.node_id}}}}", "{{{{alert.labels.severity}}}}"]
"#,
        rec.display()
    );
    s.write("sleep", "2");
    let srv = Server::start(&s, &cfg, &rules);
    // The first round (at start) sees the metric and fires at once (for: 0s).
    let list = srv
        .wait_until(15, "the condition's execution", |l| {
            l.iter().any(|e| e["status"] == "running")
        })
        .await;
    assert_eq!(list[0]["rule"], "under-replicated");
    let m = srv.metrics().await;
    assert!(
        m.contains("kafka_healing_target_up{node_id=\"kafka-1\",method=\"jmx\"} 1"),
        "{m}"
    );
    assert!(m.contains("kafka_healing_series_in_memory "), "{m}");
    assert_eq!(list[0]["target"], "kafka-1");
    // The same problem from Alertmanager, meanwhile: collapses into the running execution.
    let am = alert(
        "firing",
        json!({"alertname": "KafkaUnderReplicatedPartitions", "node_id": "kafka-1", "severity": "warning"}),
    );
    assert_eq!(srv.post(&webhook("am", vec![am])).await.0, 200);
    let list = srv
        .wait_until(15, "success", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    assert_eq!(
        list.len(),
        1,
        "one execution for both sources: {}",
        json!(list)
    );
    let calls = recorded(s.path(), "urp");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].2,
        vec!["kafka-1".to_string(), "warning".to_string()]
    );
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert!(
        detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "1 duplicate alert(s) collapsed into this execution"),
        "{detail}"
    );
    // The metric clears: the next round resolves the condition's alert.
    *body.lock().unwrap() = URP.replace(" 3\n", " 0\n");
    let j = kafka_healing::journal::Journal::open_read_only(&s.path().join("state/journal.db"))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let fp = list[0]["fingerprint"].as_str().unwrap().to_string();
        let rows = j.alerts_by_fingerprint(&fp).unwrap();
        if rows
            .iter()
            .any(|(_, a)| a.status == "resolved" && a.source == "self")
        {
            assert!(
                rows.iter()
                    .any(|(_, a)| a.status == "firing" && a.source == "self")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resolved self alert: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
