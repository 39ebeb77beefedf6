//! Generated rule sets for the rule-matching benchmarks (`benches/rules.rs`) and for timing
//! `kafka-healing check` on many rules (`examples/gen_rules.rs`).
//!
//! `n` rules in one file, in four shapes that repeat, with the matchers SREs write: equality
//! on `alertname` and `severity`, anchored regexes on `alertname`, `cluster` and `instance`,
//! `!=` and `!~`. Half of the shapes put a regex before the `alertname` test, so a regex runs
//! for most rules even though only one rule matches. The last rule is the one that matches
//! [`alert_json`]: every other rule is evaluated and rejected first.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The alert matched against the generated rules (Alertmanager webhook v4 alert shape).
pub fn alert_json() -> serde_json::Value {
    serde_json::json!({
        "status": "firing",
        "labels": {"alertname": "KafkaBrokerDown", "cluster": "prod-east",
                   "instance": "kafka-2.example.com:9404", "job": "kafka", "severity": "critical"},
        "annotations": {"summary": "Kafka broker kafka-2 is down"},
        "startsAt": "2026-11-27T23:33:11Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "4bc93ef1eb7b9805"
    })
}

/// The rule file's text: `n` rules (at least 1) and two runbooks.
pub fn rules_yaml(n: usize) -> String {
    let mut out = String::from("rules:\n");
    for i in 0..n.saturating_sub(1) {
        let m: &[String] = &match i % 4 {
            0 => vec![
                format!("alertname=\"KafkaGenerated{i}\""),
                "severity=\"critical\"".into(),
            ],
            1 => vec![
                format!("alertname=~\"Kafka(UnderReplicated|Offline)Partitions{i}\""),
                "cluster=\"prod-east\"".into(),
            ],
            2 => vec![
                "cluster=~\"prod-.*\"".into(),
                "job=\"kafka\"".into(),
                format!("alertname=\"KafkaTopicLag{i}\""),
            ],
            _ => vec![
                "severity!=\"info\"".into(),
                "instance=~\"kafka-[0-9]+[.]example[.]com:9404\"".into(),
                "alertname!~\"Test.*|Watchdog\"".into(),
                format!("alertname=\"KafkaGenerated{i}\""),
            ],
        };
        let _ = writeln!(out, "  - name: generated-{i}");
        let _ = writeln!(out, "    description: generated rule {i}");
        let _ = writeln!(out, "    matchers:");
        for x in m {
            let _ = writeln!(out, "      - '{x}'");
        }
        let _ = writeln!(out, "    runbook: diagnose");
    }
    out.push_str(
        r#"  - name: broker-down
    description: the one rule that matches the benchmark alert
    matchers:
      - 'alertname="KafkaBrokerDown"'
      - 'severity=~"critical|page"'
      - 'cluster=~"prod-.*"'
    runbook: restart-broker
    params:
      unit: kafka.service
runbooks:
  diagnose:
    disruptive: false
    steps:
      - name: describe
        exec: ["echo", "{{alert.labels.alertname}}", "{{cluster.name}}"]
  restart-broker:
    disruptive: true
    steps:
      - name: restart
        exec: ["echo", "restart", "{{params.unit}}", "on", "{{target.host}}"]
"#,
    );
    out
}

/// Writes `config.yaml` and `rules.yaml` (with `n` rules) into `dir`; returns the config's
/// path. The config has three brokers and no self-monitoring.
pub fn write(dir: &Path, n: usize) -> std::io::Result<PathBuf> {
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        "cluster:
  name: prod-east
  kafka_brokers:
    - { node_id: kafka-1, host: kafka-1.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-2, host: kafka-2.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-3, host: kafka-3.example.com, port: 9092, jmx_port: 9404 }
monitoring: { methods: [] }
server: { listen: 127.0.0.1:0 }
rules: [rules.yaml]
state: { path: state/journal.db }
",
    )?;
    std::fs::write(dir.join("rules.yaml"), rules_yaml(n))?;
    Ok(cfg)
}
