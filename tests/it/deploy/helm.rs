//! The Helm chart (deploy/helm/kafka-healing) rendered by the real `helm` that
//! `scripts/check-deploy` builds (it runs before the tests in `scripts/test`): the config
//! it renders passes `kafka-healing check`, every option lands where the service reads
//! it, and the chart refuses replicas > 1 without coordination. Without helm the tests
//! print why and return.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{check_as_mounted, object, objects, read, shipped_pack_passes_check_as_mounted};
use crate::common::*;

const CHART: &str = "deploy/helm/kafka-healing";

/// The helm binary check-deploy builds (its pinned version, in its tools dir), else
/// `helm` on PATH.
fn helm() -> Option<PathBuf> {
    let script = read("scripts/check-deploy");
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("HELM_VERSION="))
        .expect("HELM_VERSION in scripts/check-deploy");
    let tools = std::env::var_os("KAFKA_HEALING_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/kafka-healing/deploy-tools"))
        })?;
    let built = tools.join(format!("helm-{version}/helm"));
    if built.is_file() {
        return Some(built);
    }
    let on_path = Command::new("helm").arg("version").output();
    match on_path {
        Ok(o) if o.status.success() => Some(PathBuf::from("helm")),
        _ => {
            println!(
                "skipped: no helm at {} nor on PATH (scripts/check-deploy builds it)",
                built.display()
            );
            None
        }
    }
}

/// `helm template` of the chart with `args`; the output when it succeeded.
fn template(helm: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(helm)
        .args([
            "template",
            "kafka-healing",
            CHART,
            "--namespace",
            "kafka-healing",
        ])
        .args(args)
        .output()
        .expect("run helm")
}

fn rendered(helm: &PathBuf, args: &[&str]) -> Vec<Value> {
    let o = template(helm, args);
    assert!(o.status.success(), "{}", stderr(&o));
    objects(&stdout(&o))
}

#[test]
fn helm_default_values_config_passes_check() {
    let Some(helm) = helm() else { return };
    let objs = rendered(&helm, &[]);
    let dep = shipped_pack_passes_check_as_mounted(&objs);
    assert_eq!(dep["spec"]["replicas"], 1);
    let cfg = object(&objs, "ConfigMap", "kafka-healing-config")["data"]["config.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    assert!(!cfg.contains("coordination"), "{cfg}");
    // Off by default: no ServiceMonitor (a CRD most clusters lack); a namespace Role in
    // the brokers' namespace, with only the verbs the kube steps use.
    assert!(!objs.iter().any(|o| o["kind"] == "ServiceMonitor"));
    assert!(!objs.iter().any(|o| o["kind"] == "ClusterRole"));
    let role = object(&objs, "Role", "kafka-healing");
    assert_eq!(role["metadata"]["namespace"], "kafka");
    let verbs: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| format!("{}:{}", r["resources"][0], r["verbs"]))
        .collect();
    assert_eq!(
        verbs,
        [
            r#""pods":["get","delete"]"#,
            r#""pods/eviction":["create"]"#,
            r#""statefulsets":["patch"]"#,
            r#""statefulsets/scale":["patch"]"#,
        ]
    );
    let pdb = object(&objs, "PodDisruptionBudget", "kafka-healing");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(
        dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}

/// The stand-in for the user's rules ConfigMap: with the image's rule pack it supplies
/// the pack's `restart-broker` (rules/restart/ has no Kubernetes flavour), and one rule
/// of its own.
const SCALE_RULES: &str = r#"rules:
  - name: scale-out
    matchers: ['alertname="KafkaUnderProvisioned"']
    runbook: scale-out
runbooks:
  scale-out:
    steps:
      - name: add a broker
        kube: { action: scale, namespace: kafka, name: kafka, replicas: 4 }
  restart-broker:
    steps:
      - name: evict broker pod
        kube: { action: evict_pod, namespace: kafka, name: "{{target.node_id}}" }
      - name: wait for the new broker pod
        kube: { action: wait_pod_ready, namespace: kafka, name: "{{target.node_id}}", timeout: 10m }
"#;

#[test]
fn helm_every_option_lands_in_config_and_objects() {
    let Some(helm) = helm() else { return };
    let objs = rendered(
        &helm,
        &["-f", &format!("{CHART}/ci/all-options-values.yaml")],
    );
    let dep = object(&objs, "Deployment", "healer");
    let config = object(&objs, "ConfigMap", "healer-config");
    // The rules come from a ConfigMap the chart does not create: a small rule file stands
    // in for it, and the repo's rule pack for the image's copy (extraPaths).
    assert!(!objs.iter().any(|o| o["metadata"]["name"] == "healer-rules"));
    let vol = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "rules")
        .expect("rules volume");
    assert_eq!(vol["configMap"]["name"], "my-kafka-rules");
    let mine = serde_json::json!({ "data": { "scale.yaml": SCALE_RULES } });
    let s = Scratch::new();
    s.write("pack/kafka.yaml", &read("rules/kafka.yaml"));
    let pack = s.path().join("pack").display().to_string();
    let text = config["data"]["config.yaml"].as_str().expect("config");
    assert!(
        text.contains("/usr/share/kafka-healing/rules/*.yaml"),
        "{text}"
    );
    let mut local = config.clone();
    local["data"]["config.yaml"] =
        Value::from(text.replace("/usr/share/kafka-healing/rules", &pack));
    let o = check_as_mounted(&s, dep, &local, Some(&mine));
    assert!(
        stdout(&o).contains("3 brokers in cluster prod-kafka"),
        "{}",
        stdout(&o)
    );
    // Each value where the service reads it.
    let cfg = kafka_healing::yaml::Document::parse(text)
        .expect("config")
        .value;
    assert_eq!(cfg["coordination"]["backend"], "etcd");
    assert_eq!(
        cfg["coordination"]["endpoints"][1],
        "http://etcd-1.etcd.kafka-healing.svc:2379"
    );
    assert_eq!(cfg["coordination"]["lease_ttl_seconds"], 15);
    assert_eq!(cfg["coordination"]["key_prefix"], "/kafka-healing-prod/");
    assert_eq!(cfg["coordination"]["password"], "${ETCD_PASSWORD}");
    assert_eq!(cfg["server"]["listen"], "0.0.0.0:8080");
    assert_eq!(cfg["notifications"]["smtp"]["port"], 465);
    assert_eq!(cfg["notifications"]["smtp"]["tls"], "tls");
    assert_eq!(
        cfg["notifications"]["smtp"]["to_emails"][1],
        "b@example.com"
    );
    assert_eq!(cfg["notifications"]["rate_limit_seconds"], 120);
    assert_eq!(cfg["recovery"]["max_attempts"], 2);
    assert_eq!(cfg["logging"]["level"], "DEBUG");
    let spec = &dep["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        c["image"],
        "registry.example.com/kafka-healing:0.1.0-custom"
    );
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    let secret_of = |var: &str| {
        let e = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var}"));
        let r = &e["valueFrom"]["secretKeyRef"];
        format!(
            "{}/{}",
            r["name"].as_str().expect("name"),
            r["key"].as_str().expect("key")
        )
    };
    assert_eq!(secret_of("SMTP_PASSWORD"), "smtp-login/pass");
    assert_eq!(
        secret_of("KAFKA_HEALING_WEBHOOK_TOKEN"),
        "webhook-token/token"
    );
    assert_eq!(secret_of("ETCD_USERNAME"), "kafka-healing-etcd/username");
    assert_eq!(spec["serviceAccountName"], "healer-sa");
    assert_eq!(spec["terminationGracePeriodSeconds"], 90);
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    let binding = object(&objs, "ClusterRoleBinding", "healer");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["name"], "healer-sa");
    assert_eq!(binding["subjects"][0]["namespace"], "kafka-healing");
    assert!(!objs.iter().any(|o| o["kind"] == "Role"));
    let sm = object(&objs, "ServiceMonitor", "healer");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    let svc = object(&objs, "Service", "healer");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn helm_refuses_replicas_without_coordination() {
    let Some(helm) = helm() else { return };
    let o = template(&helm, &["--set", "replicas=2"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("replicas is 2 but coordination.enabled is false"),
        "{}",
        stderr(&o)
    );
    let o = template(
        &helm,
        &["--set", "replicas=2", "--set", "coordination.enabled=true"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("coordination.endpoints is empty"),
        "{}",
        stderr(&o)
    );
    // With an endpoint, 2 replicas render, and the config carries it.
    let objs = rendered(
        &helm,
        &[
            "--set",
            "replicas=2",
            "--set",
            "coordination.enabled=true",
            "--set",
            "coordination.endpoints={http://etcd:2379}",
        ],
    );
    assert_eq!(
        object(&objs, "Deployment", "kafka-healing")["spec"]["replicas"],
        2
    );
    let cfg = object(&objs, "ConfigMap", "kafka-healing-config")["data"]["config.yaml"]
        .as_str()
        .expect("config");
    assert!(cfg.contains("http://etcd:2379"), "{cfg}");
}
