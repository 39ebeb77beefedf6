//! Hostile label values: each stays exactly one argv element, byte for byte, and patterns
//! reject what they should. The rendered argv is then really executed (no shell) to show
//! the bytes arrive intact and that nothing the labels try to run ever runs.

use std::path::Path;
use std::process::Command;

use kafka_healing::config::{Loaded, load_with_env};
use kafka_healing::engine::{Decision, Plan, plan_alert};
use kafka_healing::ingest::{Alert, AlertStatus, fingerprint};
use kafka_healing::rules::{RuleSet, load_rules};

use crate::common::*;

const RULES: &str = r#"
rules:
  - name: echo
    matchers: ['alertname="Hostile"']
    runbook: echo
    params:
      v: "{{alert.labels.v}}"
  - name: guarded
    matchers: ['alertname="Hostile"']
    runbook: guarded
    params:
      name: { value: "{{alert.labels.v}}", pattern: "[a-z0-9][a-z0-9.-]{0,63}" }
  - name: remote-unit
    matchers: ['alertname="Hostile"']
    runbook: remote-unit
  - name: remote-host
    matchers: ['alertname="Hostile"']
    runbook: remote-host
  - name: ansible-limit
    matchers: ['alertname="Hostile"']
    runbook: ansible-limit
  - name: ansible-vars
    matchers: ['alertname="Hostile"']
    runbook: ansible-vars
runbooks:
  echo:
    steps:
      - name: label
        exec: [printf, "%s", "{{alert.labels.v}}"]
      - name: param
        exec: [printf, "%s", "{{params.v}}"]
      - name: mixed
        exec: [printf, "%s", "prefix-{{alert.labels.v}}-suffix"]
  guarded:
    steps:
      - name: p
        exec: [printf, "%s", "{{params.name}}"]
  remote-unit:
    steps:
      - name: u
        systemctl: { action: restart, unit: "{{alert.labels.v}}" }
  remote-host:
    steps:
      - name: h
        systemctl: { action: restart, unit: kafka.service, host: "{{alert.labels.v}}" }
  ansible-limit:
    steps:
      - name: a
        ansible: { playbook: site.yml, limit: "{{alert.labels.v}}", extra_vars: { label: "{{alert.labels.v}}" } }
  ansible-vars:
    steps:
      - name: a
        ansible: { playbook: site.yml, limit: kafka-1, extra_vars: { label: "{{alert.labels.v}}" } }
"#;

struct World {
    _scratch: Scratch,
    loaded: Loaded,
    rules: RuleSet,
}

fn world() -> World {
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &config_with(""));
    s.write("rules/hostile.yaml", RULES);
    let loaded = load_with_env(&cfg, Default::default()).expect("config");
    let (rules, diags) = load_rules(&loaded);
    assert!(!diags.has_errors(), "{diags}");
    World {
        _scratch: s,
        loaded,
        rules,
    }
}

fn alert(v: &str) -> Alert {
    let labels = [("alertname", "Hostile"), ("v", v), ("node_id", "kafka-1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Alert {
        status: AlertStatus::Firing,
        fingerprint: fingerprint(&labels),
        labels,
        annotations: Default::default(),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        external_url: String::new(),
    }
}

fn plan<'a>(plans: &'a [Plan], rule: &str) -> &'a Plan {
    plans
        .iter()
        .find(|p| p.rule == rule)
        .expect("plan for rule")
}

/// Runs argv directly (execve, no shell) and returns its stdout bytes.
fn exec(argv: &[String]) -> Vec<u8> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hostile_values(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("$(touch {c})"),
        format!("; touch {c}; rm -rf /"),
        format!("`touch {c}`"),
        format!("a\ntouch {c}\n"),
        format!("x && touch {c} || touch {c}"),
        format!("' \" ; touch {c} #"),
        "--flag".to_string(),
        "-rf".to_string(),
        "--config=/etc/shadow".to_string(),
        r"\xff\xfe\x00 \u0000 %s %n \\ \".to_string(),
        "ÿþ \u{202e}rtl \u{7f} \t tab".to_string(),
        "{{alert.labels.v}} {{#each}}".to_string(),
        "*".to_string(),
        "a b c".to_string(),
        String::new(),
        "x".repeat(100 * 1024),
    ]
}

#[test]
fn each_value_is_exactly_one_argv_element_byte_for_byte() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    for v in hostile_values(&canary) {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(&v));
        let p = plan(&plans, "echo");
        assert_eq!(p.decision, Decision::Run, "{}", p.reason);
        let [label, param, mixed] = &p.steps[..] else {
            panic!("three steps")
        };
        assert_eq!(
            label.argv,
            vec!["printf".to_string(), "%s".into(), v.clone()]
        );
        assert_eq!(
            param.argv,
            vec!["printf".to_string(), "%s".into(), v.clone()]
        );
        assert_eq!(
            mixed.argv,
            vec![
                "printf".to_string(),
                "%s".into(),
                format!("prefix-{v}-suffix")
            ]
        );
        // Really run it: the bytes arrive intact, and nothing the value says is executed.
        assert_eq!(
            exec(&label.argv),
            v.as_bytes(),
            "value {:?}",
            &v[..v.len().min(40)]
        );
        assert_eq!(exec(&mixed.argv), format!("prefix-{v}-suffix").as_bytes());
    }
    assert!(!canary.exists(), "a label value was executed");
}

#[test]
fn patterns_reject_what_they_should() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    for v in hostile_values(&dir.path().join("c")) {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(&v));
        let p = plan(&plans, "guarded");
        assert_eq!(p.decision, Decision::Skip, "{v:?} must fail the pattern");
        assert!(
            p.reason.starts_with("param `name` value \""),
            "{}",
            p.reason
        );
        assert!(
            p.reason.ends_with(
                "does not match its pattern `^(?:[a-z0-9][a-z0-9.-]{0,63})$`: nothing runs"
            ),
            "{}",
            p.reason
        );
        assert!(p.steps.is_empty());
    }
    for ok in ["kafka-1", "k.example.com", "a"] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(ok));
        let p = plan(&plans, "guarded");
        assert_eq!(p.decision, Decision::Run, "{}", p.reason);
        assert_eq!(p.steps[0].argv[2], ok);
    }
    // Anchored: a valid prefix or suffix does not make a hostile value pass.
    for v in ["kafka-1;rm", "x\nkafka-1", "kafka-1\n"] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(v));
        assert_eq!(plan(&plans, "guarded").decision, Decision::Skip, "{v:?}");
    }
}

#[test]
fn values_reaching_ssh_or_host_selection_are_vetted() {
    let w = world();
    for v in [
        "kafka.service; reboot",
        "$(id).service",
        "-H",
        "--user",
        "a b",
        "k\n",
    ] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(v));
        let p = plan(&plans, "remote-unit");
        assert_eq!(p.decision, Decision::Skip, "unit {v:?}");
        assert!(
            p.reason.contains("is not a systemd unit name"),
            "{}",
            p.reason
        );
        let p = plan(&plans, "remote-host");
        assert_eq!(p.decision, Decision::Skip, "host {v:?}");
        assert!(
            p.reason.contains("is not a plain host name"),
            "{}",
            p.reason
        );
    }
    for v in ["all", "*", "web,db", "!kafka-1", "kafka-*", "-i"] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(v));
        let p = plan(&plans, "ansible-limit");
        assert_eq!(p.decision, Decision::Skip, "limit {v:?}: {}", p.reason);
    }
    // Plain names that are inventory groups, or hosts of no configured broker (issue 17,
    // finding 7): only a broker's node_id or host selects exactly one host.
    for (v, why) in [
        ("kafka_brokers", "is no configured broker's node_id or host"),
        (
            "kafka-1.example.com",
            "is no configured broker's node_id or host",
        ),
        ("ungrouped", "would select a whole group"),
        ("ALL", "would select a whole group"),
        ("All", "would select a whole group"),
        ("kafka-1:kafka-2", "is not a plain host name"),
        ("kafka-1&kafka-2", "is not a plain host name"),
        ("kafka-1,kafka-2", "is not a plain host name"),
        ("k*", "is not a plain host name"),
        ("~kafka.*", "is not a plain host name"),
        ("@hosts.txt", "is not a plain host name"),
    ] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(v));
        let p = plan(&plans, "ansible-limit");
        assert_eq!(p.decision, Decision::Skip, "limit {v:?}: {}", p.reason);
        assert!(p.steps.is_empty(), "limit {v:?}: nothing rendered");
        assert_eq!(
            p.reason,
            if why == "is not a plain host name" {
                format!(
                    "step `a`: limit: `{v}` is not a plain host name (letters, digits, `.`, \
                     `-`, `_`): nothing runs"
                )
            } else if why == "would select a whole group" {
                format!("step `a`: limit: `{v}` {why}: nothing runs")
            } else {
                format!(
                    "step `a`: limit: `{v}` {why} (a group or pattern could select many \
                     hosts): nothing runs"
                )
            },
            "limit {v:?}"
        );
    }
    for ok in ["kafka-2", "k2.example.com"] {
        let plans = plan_alert(&w.loaded.config, &w.rules, &alert(ok));
        let p = plan(&plans, "ansible-limit");
        assert_eq!(p.decision, Decision::Run, "limit {ok:?}: {}", p.reason);
        assert_eq!(
            p.steps[0].argv[1..3],
            ["--limit".to_string(), ok.to_string()]
        );
    }
    let plans = plan_alert(&w.loaded.config, &w.rules, &alert("kafka-1.example.com"));
    assert_eq!(
        plan(&plans, "remote-host").steps[0].argv,
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "--",
            "kafka-1.example.com",
            "systemctl",
            "restart",
            "--",
            "kafka.service"
        ]
    );
    let plans = plan_alert(&w.loaded.config, &w.rules, &alert("k1.example.com"));
    assert_eq!(
        plan(&plans, "ansible-limit").steps[0].argv,
        [
            "ansible-playbook",
            "--limit",
            "k1.example.com",
            "--extra-vars",
            r#"{"label":{"__ansible_unsafe":"k1.example.com"}}"#,
            "site.yml"
        ]
    );
    // Extra vars are JSON-encoded: a hostile value stays one JSON string.
    let v = "x\", \"ansible_become\": true, \"y\": \"";
    let plans = plan_alert(&w.loaded.config, &w.rules, &alert(v));
    let argv = &plan(&plans, "ansible-vars").steps[0].argv;
    assert_eq!(argv[3], "--extra-vars");
    let vars: serde_json::Value = serde_json::from_str(&argv[4]).unwrap();
    assert_eq!(
        vars,
        serde_json::json!({ "label": { "__ansible_unsafe": v } }),
        "exactly one key, the value intact"
    );
}

#[test]
fn nul_bytes_cannot_reach_execve() {
    let w = world();
    let plans = plan_alert(&w.loaded.config, &w.rules, &alert("a\0b"));
    let p = plan(&plans, "echo");
    assert_eq!(p.decision, Decision::Skip);
    assert_eq!(
        p.reason,
        "step `label`: exec[2]: rendered value contains a NUL byte: nothing runs"
    );
}

#[test]
fn missing_label_is_an_error_not_an_empty_argument() {
    let w = world();
    let mut a = alert("x");
    a.labels.remove("v");
    let plans = plan_alert(&w.loaded.config, &w.rules, &a);
    let p = plan(&plans, "echo");
    assert_eq!(p.decision, Decision::Skip);
    assert!(p.reason.starts_with("param `v`: "), "{}", p.reason);
    assert!(p.reason.contains("alert.labels.v"), "{}", p.reason);
}
