//! `deploy/` against the real service: the Grafana dashboard names only metrics a running
//! `serve` exports, the Deployment's probes answer 200 on it, and the ConfigMap's config
//! and rule file pass `kafka-healing check`. (Schemas, the Containerfile and the systemd
//! unit are checked by `scripts/check-deploy`.)

use std::collections::BTreeMap;
use std::path::Path;

use kafka_healing::yaml::Document;
use serde_json::Value;

use crate::common::*;
use crate::serve::harness::{Server, alert, config, down, webhook};

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Document::parse(&text)
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
        .value
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string("deploy/grafana/kafka-healing.json").expect("dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

/// `kafka_healing_*` names in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("kafka_healing_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_metrics_exist_and_probes_answer() {
    let s = Scratch::new();
    let rules = "rules:\n  - name: broker-down\n    matchers: ['alertname=\"KafkaBrokerDown\"']\n    runbook: noop\nrunbooks:\n  noop:\n    steps:\n      - name: noop\n        exec: [\"true\"]\n";
    let srv = Server::start(&s, &config(""), rules);
    // Labelled families appear once they have a sample: an alert, an execution with a
    // step, a refused request and a reload give every one of them one.
    let (st, _) = srv
        .post(&webhook("r", vec![alert("firing", down("kafka-1"))]))
        .await;
    assert_eq!(st, 200);
    srv.wait_until(20, "the execution", |l| {
        l.iter().any(|e| e["status"] == "succeeded")
    })
    .await;
    let (st, _) = srv.post_with("{}", None).await;
    assert_eq!(st, 401);
    let (st, _) = srv.post_path("/-/reload").await;
    assert_eq!(st, 200);
    let body = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    // Family name → type, from the exposition's TYPE lines.
    let families: BTreeMap<String, String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert!(families.len() >= 10, "{body}");
    let exists = |name: &str| {
        families.iter().any(|(f, t)| {
            let suffixes: &[&str] = match t.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            suffixes.iter().any(|s| format!("{f}{s}") == name)
        })
    };
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10);
    let mut used = 0;
    for e in &exprs {
        for n in metric_names(e) {
            used += 1;
            assert!(
                exists(&n),
                "dashboard uses `{n}`, which /metrics does not export:\n{body}"
            );
        }
    }
    assert!(used >= 15, "{used} metric references");
    // The Deployment's probes, on the same server.
    let dep = yaml("deploy/kubernetes/deployment.yaml");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().expect("probe path");
        let r = reqwest::get(format!("{}{path}", srv.url))
            .await
            .expect("probe");
        assert_eq!(r.status().as_u16(), 200, "{probe} {path}");
    }
}

#[test]
fn configmap_config_and_rules_pass_check() {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    let data = cm["data"].as_object().expect("data");
    let s = Scratch::new();
    for (name, text) in data {
        assert!(!name.contains('/'), "{name}");
        s.write(name, text.as_str().expect("text"));
    }
    let cfg = s.path().join("config.yaml");
    let o = run_env(
        &["check", "-c", cfg.to_str().expect("utf-8")],
        &[
            ("SMTP_USERNAME", "u"),
            ("SMTP_PASSWORD", "p"),
            ("KAFKA_HEALING_WEBHOOK_TOKEN", "t"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 rules, 2 runbooks, 3 brokers in cluster kafka"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stderr(&o), "", "no warnings");
    // The Deployment mounts that ConfigMap where `serve -c` looks, and serves the port the
    // config listens on.
    let dep = yaml("deploy/kubernetes/deployment.yaml");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][2], "/etc/kafka-healing/config.yaml");
    assert_eq!(c["ports"][0]["containerPort"], 5599);
    assert!(
        data["config.yaml"]
            .as_str()
            .expect("config")
            .contains("listen: 0.0.0.0:5599")
    );
    assert!(Path::new("deploy/Containerfile").exists());
}
