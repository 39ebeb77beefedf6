//! `deploy/` against the real service: the Grafana dashboard names only metrics a running
//! `serve` exports, the Deployment's probes answer 200 on it, and the ConfigMaps' config
//! and rule files pass `kafka-healing check`, from deploy/kubernetes/ and as the Helm
//! chart renders them (`helm`). (Schemas, the Containerfile and the systemd unit are
//! checked by `scripts/check-deploy`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use kafka_healing::yaml::Document;
use serde_json::Value;

use crate::common::*;
use crate::serve::harness::{Server, alert, config, down, webhook};

mod helm;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    Document::parse(&read(path))
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
    // The coordination_* families exist only with a `coordination:` section (HA), which
    // this serve has not: they must be absent here, and present in an HA instance's
    // exposition (the same registry, built as serve builds it with coordination).
    let ha_body = kafka_healing::metrics::Metrics::with_coordination(true).encode();
    let ha_families: Vec<&str> = ha_body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10);
    let (mut used, mut ha_only) = (0, 0);
    for e in &exprs {
        for n in metric_names(e) {
            used += 1;
            if n.starts_with("kafka_healing_coordination_") {
                ha_only += 1;
                assert!(!exists(&n), "`{n}` is exported without HA:\n{body}");
                assert!(
                    ha_families.iter().any(|f| n.starts_with(f)),
                    "dashboard uses `{n}`, which an HA instance does not export:\n{ha_body}"
                );
                continue;
            }
            assert!(
                exists(&n),
                "dashboard uses `{n}`, which /metrics does not export:\n{body}"
            );
        }
    }
    assert!(used >= 15, "{used} metric references");
    assert!(ha_only >= 1, "the dashboard shows no coordination panel");
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

/// Every object of a multi-document YAML text (documents separated by `---` lines).
pub fn objects(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.iter()
        .map(|d| {
            Document::parse(d)
                .unwrap_or_else(|e| panic!("{e:?}\n{d}"))
                .value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The object of `kind` named `name` among `objs`.
pub fn object<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// [`check_as_mounted`] on the `kafka-healing` Deployment with its config and rules
/// ConfigMaps from `objs` (the shipped pack: 2 rules, 2 runbooks, 3 brokers), without a
/// warning; returns the Deployment.
pub fn shipped_pack_passes_check_as_mounted(objs: &[Value]) -> &Value {
    let dep = object(objs, "Deployment", "kafka-healing");
    let s = Scratch::new();
    let o = check_as_mounted(
        &s,
        dep,
        object(objs, "ConfigMap", "kafka-healing-config"),
        Some(object(objs, "ConfigMap", "kafka-healing-rules")),
    );
    assert!(
        stdout(&o).contains("2 rules, 2 runbooks, 3 brokers in cluster kafka"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stderr(&o), "", "no warnings");
    dep
}

/// Lays out the config ConfigMap and the rules ConfigMap (when given) as the Deployment
/// mounts them (config/config.yaml, rules/*.yaml), checks the mounts agree with that,
/// and runs `kafka-healing check` on it with the env variables the container gets;
/// returns check's output after asserting it passed.
pub fn check_as_mounted(
    s: &Scratch,
    deployment: &Value,
    config: &Value,
    rules: Option<&Value>,
) -> Output {
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mount = |vol: &str| {
        c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == vol)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount {vol}"))
            .to_string()
    };
    assert_eq!(c["args"][2], format!("{}/config.yaml", mount("config")));
    let text = config["data"]["config.yaml"].as_str().expect("config.yaml");
    s.write("config/config.yaml", text);
    if let Some(r) = rules {
        assert_eq!(mount("rules"), "/etc/kafka-healing/rules");
        assert_eq!(mount("config"), "/etc/kafka-healing/config");
        for (name, body) in r["data"].as_object().expect("rules data") {
            assert!(name.ends_with(".yaml") && !name.contains('/'), "{name}");
            s.write(&format!("rules/{name}"), body.as_str().expect("text"));
        }
    }
    // Every ${NAME} of the config comes from a Secret in the container's env: never
    // plaintext in the ConfigMap, never unset.
    let env: Vec<&Value> = c["env"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').expect("closing brace");
        let name = &rest[i + 2..i + end];
        let e = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("${{{name}}} has no env entry"));
        assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string(), "{e}");
        vars.push((name.to_string(), format!("value-of-{name}")));
        rest = &rest[i + end..];
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = s.path().join("config/config.yaml");
    let o = run_env(&["check", "-c", cfg.to_str().expect("utf-8")], &vars);
    assert_eq!(o.status.code(), Some(0), "{}\n{text}", stderr(&o));
    o
}

#[test]
fn configmap_config_and_rules_pass_check() {
    let objs: Vec<Value> = ["configmap", "rules-configmap", "deployment"]
        .iter()
        .flat_map(|f| objects(&read(&format!("deploy/kubernetes/{f}.yaml"))))
        .collect();
    let dep = shipped_pack_passes_check_as_mounted(&objs);
    // The Deployment serves the port the config listens on.
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 5599);
    let cfg = object(&objs, "ConfigMap", "kafka-healing-config");
    assert!(
        cfg["data"]["config.yaml"]
            .as_str()
            .expect("config")
            .contains("listen: 0.0.0.0:5599")
    );
    assert!(Path::new("deploy/Containerfile").exists());
}
