//! Alertmanager silences honoured by the self-watch (issue 14, finding 12), against a real
//! Alertmanager (Debian's `prometheus-alertmanager`, as `scripts/kafka/stack` runs it): a
//! silence created through Alertmanager's API v2 stops the matching self-watch alert from
//! acting (journaled `skipped`, naming the silence, its creator and comment), and only that
//! one; with Alertmanager unreachable the alerts act (fail-open) and the log says why.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conditions::exporter;
use super::harness::*;
use crate::common::Scratch;
use crate::mailbox::free_port;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A real Alertmanager on 127.0.0.1 (gossip off), killed when dropped.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    async fn start(dir: &Path) -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: install Debian's prometheus-alertmanager \
             (scripts/check-alerting, which scripts/test runs, does)"
        );
        let conf = dir.join("alertmanager.yml");
        std::fs::write(
            &conf,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/-/ready", am.url)).await
                && r.status().is_success()
            {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 60 s:\n{}",
                std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a silence through API v2; returns its id.
    async fn silence(&self, matchers: Value, created_by: &str, comment: &str) -> String {
        let now = kafka_healing::clock::now_ms();
        let body = json!({
            "matchers": matchers,
            "startsAt": kafka_healing::clock::rfc3339_ms(now - 1000),
            "endsAt": kafka_healing::clock::rfc3339_ms(now + 3_600_000),
            "createdBy": created_by,
            "comment": comment,
        });
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/silences", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST /api/v2/silences");
        assert!(r.status().is_success(), "{}", r.status());
        let v: Value = r.json().await.expect("JSON");
        v["silenceID"].as_str().expect("silenceID").to_string()
    }
}

const URP: &str = "# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge\nkafka_server_replicamanager_underreplicatedpartitions 3\n";

/// Two brokers whose exporters report under-replicated partitions, a condition rule for
/// them, and `extra` config.
async fn setup(s: &Scratch, extra: &str) -> (String, String) {
    let rec = recorder(s.path());
    let (p1, _) = exporter(URP).await;
    let (p2, _) = exporter(URP).await;
    let cfg = format!(
        "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: 1, metrics_url: 'http://127.0.0.1:{p1}/metrics' }}\n    - {{ node_id: kafka-2, host: 127.0.0.1, port: 1, metrics_url: 'http://127.0.0.1:{p2}/metrics' }}\nmonitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [jmx] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n{extra}"
    );
    let rules = format!(
        r#"rules:
  - name: under-replicated
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
        exec: ["{}", "urp-{{{{target.node_id}}}}"]
"#,
        rec.display()
    );
    (cfg, rules)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silence_in_a_real_alertmanager_stops_its_self_watch_alert_and_only_that_one() {
    let s = Scratch::new();
    let am = Alertmanager::start(s.path()).await;
    let id = am
        .silence(
            json!([
                {"name": "alertname", "value": "KafkaUnderReplicated.*", "isRegex": true, "isEqual": true},
                {"name": "node_id", "value": "kafka-1", "isRegex": false, "isEqual": true},
            ]),
            "alice",
            "kafka-1 disk swap, \"ticket\" OPS-7",
        )
        .await;
    // Another silence that matches neither alert.
    am.silence(
        json!([{"name": "node_id", "value": "kafka-(1|2)", "isRegex": true, "isEqual": false}]),
        "bob",
        "not these",
    )
    .await;
    let (cfg, rules) = setup(&s, &format!("alertmanager: {{ url: '{}/' }}\n", am.url)).await;
    let srv = Server::start(&s, &cfg, &rules);
    let list = srv
        .wait_until(30, "kafka-1 skipped and kafka-2 run", |l| {
            l.iter().any(|e| e["target"] == "kafka-1")
                && l.iter()
                    .any(|e| e["target"] == "kafka-2" && e["status"] == "succeeded")
        })
        .await;
    let k1: Vec<&Value> = list.iter().filter(|e| e["target"] == "kafka-1").collect();
    assert_eq!(k1.len(), 1, "{}", json!(list));
    assert_eq!(k1[0]["status"], "skipped");
    let reason = k1[0]["reason"].as_str().unwrap();
    let want = format!(
        "silenced: Alertmanager silence {id} (created by \"alice\": \"kafka-1 disk swap, \\\"ticket\\\" OPS-7\") matches this self-watch alert until "
    );
    assert!(reason.starts_with(&want), "{reason}");
    assert!(
        reason.ends_with(
            "; nothing runs for it meanwhile; expire the silence to let it act (the alert is raised again within 5 minutes)"
        ),
        "{reason}"
    );
    assert!(recorded(s.path(), "urp-kafka-1").is_empty());
    assert_eq!(recorded(s.path(), "urp-kafka-2").len(), 1);
    // The alert itself is journaled as ever (source self).
    let j = kafka_healing::journal::Journal::open_read_only(&s.path().join("state/journal.db"))
        .unwrap();
    let rows = j
        .alerts_by_fingerprint(k1[0]["fingerprint"].as_str().unwrap())
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].1.source.as_str(), rows[0].1.status.as_str()),
        ("self", "firing")
    );
    let m = srv.metrics().await;
    for want in [
        "kafka_healing_alertmanager_up 1\n",
        "kafka_healing_alertmanager_silences_active 2\n",
        "kafka_healing_skips_total{cause=\"silenced\"} 1\n",
    ] {
        assert!(m.contains(want), "{want} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_alertmanager_unreachable_the_self_watch_acts_and_says_why() {
    let s = Scratch::new();
    let closed = free_port();
    let (cfg, rules) = setup(
        &s,
        &format!("alertmanager: {{ url: 'http://127.0.0.1:{closed}', timeout_seconds: 1 }}\n"),
    )
    .await;
    let srv = Server::start(&s, &cfg, &rules);
    srv.wait_until(30, "both run", |l| {
        l.iter().filter(|e| e["status"] == "succeeded").count() == 2
    })
    .await;
    let log = srv.log();
    assert!(
        log.contains(&format!(
            "cannot read Alertmanager's silences: the self-watch's alerts act as if none were silenced until it answers (pause a broker with kafka-healing pause) error=no answer from http://127.0.0.1:{closed}/api/v2/silences: "
        )),
        "{log}"
    );
    let m = srv.metrics().await;
    assert!(m.contains("kafka_healing_alertmanager_up 0\n"), "{m}");
}
