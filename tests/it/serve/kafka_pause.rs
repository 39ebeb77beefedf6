//! The issue's acceptance test for pauses (issue 14, finding 12): a real Kafka broker
//! (KRaft, JMX exporter, under Debian's supervisord, as in kafka_heal.rs) is paused with
//! `kafka-healing pause`, then SIGKILLed under the self-watch: its alert is decided and
//! skipped for the pause, and nothing restarts it. `kafka-healing resume` then decides the
//! held alert again at once, and the shipped supervisorctl restart flavour heals it.
//!
//! Needs the Kafka jars (`bash scripts/kafka/fetch`) and supervisor; scripts/test provides
//! them. Without them the test fails (it never skips).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::*;
use super::kafka_heal::Supervised;
use crate::common::{Scratch, run, stderr, stdout};

/// Bound on a broker start (about 3.5 s on an idle machine; other tests run beside).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on each wait for the service (the alert's `for`, a round, a restart).
const LIMIT: u64 = 120;

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_broker_killed_under_the_self_watch_gets_no_action_and_is_healed_after_resume() {
    let s = Scratch::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kdir = s.path().join("kafka");
    std::fs::create_dir_all(&kdir).unwrap();
    let mut sup = Supervised::start(&kdir);
    sup.wait_running(START_TIMEOUT, "first start").await;
    let pid0 = sup.pid().expect("supervisord reports the broker's pid");

    let cfg = format!(
        "cluster:\n  name: pause\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {}, metrics_url: '{}' }}\nmonitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml, '{}']\nstate: {{ path: state/journal.db }}\n",
        sup.port,
        sup.metrics_url,
        repo.join("rules/restart/supervisorctl.yaml").display(),
    );
    let rules = format!(
        r#"rules:
  - name: broker-down
    condition:
      expr: up{{job="kafka"}} == 0 or kafka_healing_probe_success{{method="socket"}} == 0
      for: 5s
      alertname: KafkaBrokerDown
      labels: {{ severity: critical }}
    broker_down: true
    runbook: restart-broker
    params:
      supervisor_conf: "{}"
"#,
        sup.conf.display()
    );
    let srv = Server::start(&s, &cfg, &rules);
    let config = s.path().join("config.yaml");
    let config = config.to_str().unwrap();

    // The operator pauses kafka-1 for its maintenance, through the CLI.
    let o = run(&[
        "pause",
        "-c",
        config,
        "--url",
        &srv.url,
        "--target",
        "kafka-1",
        "--for",
        "10m",
        "--reason",
        "broker upgrade",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("kafka-1: paused until "),
        "{}",
        stdout(&o)
    );

    // ... and stops the broker hard (SIGKILL; autorestart=false keeps it down).
    let out = sup
        .ctl(&["signal", "KILL", "kafka-1"])
        .expect("supervisorctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while sup.port_open() {
        assert!(
            Instant::now() < deadline,
            "the killed broker's port stays open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed_at = Instant::now();

    // The self-watch sees it down and decides: skipped for the pause, nothing runs.
    let paused = |e: &Value| {
        e["target"] == "kafka-1"
            && e["status"] == "skipped"
            && e["reason"].as_str().is_some_and(|r| {
                r.starts_with("paused: kafka-1 is paused until ")
                    && r.contains("(\"broker upgrade\")")
            })
    };
    let list = srv
        .wait_until(LIMIT, "the paused broker's alert decided", |l| {
            l.iter().any(paused)
        })
        .await;
    let skip = list.iter().find(|e| paused(e)).unwrap().clone();
    eprintln!(
        "kill -> skipped for the pause in {:.1?}",
        killed_at.elapsed()
    );
    // One more round (5 s): still nothing but the skip, and the broker stays down.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let list = srv.executions().await;
    assert!(list.iter().all(paused), "only the skip: {}", json!(list));
    assert_eq!(sup.pid(), None, "nobody restarted it");
    assert!(!sup.port_open());

    // The maintenance is over: resume. The held alert is decided again at once.
    let resumed_at = Instant::now();
    let o = run(&[
        "resume", "-c", config, "--url", &srv.url, "--target", "kafka-1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("kafka-1: resumed (the pause until ")
            && stdout(&o).ends_with(", \"broker upgrade\", ended early)\n"),
        "{}",
        stdout(&o)
    );
    let list = srv
        .wait_until(LIMIT, "the restart after resume", |l| {
            l.iter()
                .any(|e| e["target"] == "kafka-1" && e["status"] == "succeeded")
        })
        .await;
    let run_ = list.iter().find(|e| e["status"] == "succeeded").unwrap();
    assert_eq!(
        run_["alert_id"], skip["alert_id"],
        "the alert the pause held is the one that healed it"
    );
    assert_eq!(run_["rule"], "broker-down");
    let healed = resumed_at.elapsed();
    sup.wait_running(START_TIMEOUT, "after the heal").await;
    let pid1 = sup.pid().expect("running again");
    assert_ne!(pid0, pid1, "a new JVM");
    eprintln!(
        "resume -> restart succeeded in {healed:.1?}; broker running {:.1?} after the resume",
        resumed_at.elapsed()
    );
    drop(srv);
    drop(sup);
}
