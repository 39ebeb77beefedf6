//! The built-in rule pack, compiled in from `rules/builtin/`: what a config in the
//! seed's shape (`recovery.actions`, no `rules:`) runs. Its `broker-down` rule's runbook,
//! `restart-broker`, is a fallback chain of the configured actions, in their order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::RuleSet;
use super::load::load_rule_texts;
use super::model::StepKind;
use crate::config::{Loaded, RecoveryAction};
use crate::diag::Diagnostics;
use crate::yaml::{Document, join_key};

/// The pack's rules.
const RULES: &str = include_str!("../../rules/builtin/rules.yaml");

/// The name of the chain runbook the loader makes from `recovery.actions`.
pub const CHAIN_RUNBOOK: &str = "restart-broker";

/// The param of `scale_statefulset` that is a count, not a template.
const REPLICAS: &str = "replicas";

/// The runbook (and file) name of an action.
pub fn action_name(a: RecoveryAction) -> &'static str {
    match a {
        RecoveryAction::RestartService => "restart_service",
        RecoveryAction::Ansible => "ansible",
        RecoveryAction::RestartPod => "restart_pod",
        RecoveryAction::ScaleStatefulset => "scale_statefulset",
    }
}

fn action_text(a: RecoveryAction) -> &'static str {
    match a {
        RecoveryAction::RestartService => include_str!("../../rules/builtin/restart_service.yaml"),
        RecoveryAction::Ansible => include_str!("../../rules/builtin/ansible.yaml"),
        RecoveryAction::RestartPod => include_str!("../../rules/builtin/restart_pod.yaml"),
        RecoveryAction::ScaleStatefulset => {
            include_str!("../../rules/builtin/scale_statefulset.yaml")
        }
    }
}

fn builtin_path(file: &str) -> PathBuf {
    Path::new("<built-in>").join("rules/builtin").join(file)
}

/// Loads the pack for `cfg`'s `recovery.actions` (each once, in order), with
/// `recovery.action_params` over the actions' defaults. An action param no listed
/// action takes is an error at its key.
pub(super) fn load(cfg: &Loaded) -> (RuleSet, Diagnostics) {
    let rec = &cfg.config.recovery;
    let mut actions: Vec<RecoveryAction> = Vec::new();
    for a in &rec.actions {
        if !actions.contains(a) {
            actions.push(*a);
        }
    }
    let names: Vec<&str> = actions.iter().map(|a| action_name(*a)).collect();
    let mut files = vec![(builtin_path("rules.yaml"), Ok(RULES.to_string()))];
    for (a, name) in actions.iter().zip(&names) {
        files.push((
            builtin_path(&format!("{name}.yaml")),
            Ok(action_text(*a).to_string()),
        ));
    }
    let params: BTreeMap<&String, &String> = rec
        .action_params
        .iter()
        .filter(|(k, _)| k.as_str() != REPLICAS)
        .collect();
    // JSON is YAML: the chain needs no template of its own.
    let chain = json!({ "runbooks": { CHAIN_RUNBOOK: {
        "description": "recovery.actions, in order: the next only when the one before failed",
        "fallback": names,
        "params": params,
    }}});
    files.push((builtin_path("recovery.actions"), Ok(chain.to_string())));
    let (mut set, mut diags) = load_rule_texts(files);

    let doc = std::fs::read_to_string(&cfg.path)
        .ok()
        .and_then(|t| Document::parse(&t).ok())
        .unwrap_or_default();
    let at = |k: &str| join_key("recovery.action_params", k);
    let taken = |k: &str| {
        names.iter().any(|n| {
            set.runbooks
                .get(*n)
                .is_some_and(|rb| rb.params.contains_key(k))
        })
    };
    // The `kubernetes` method names the broker's pod by these too (ingest::kube_watch).
    let watched = |k: &str| {
        matches!(k, "namespace" | "pod")
            && cfg
                .config
                .monitoring
                .methods
                .contains(&crate::config::MonitoringMethod::Kubernetes)
    };
    for k in rec.action_params.keys() {
        let scale = actions.contains(&RecoveryAction::ScaleStatefulset);
        if (k == REPLICAS && !scale) || (k != REPLICAS && !taken(k) && !watched(k)) {
            diags.error_at(
                &cfg.path,
                &doc,
                &at(k),
                format!(
                    "no action of recovery.actions ({}) takes the param `{k}`",
                    names.join(", ")
                ),
            );
        }
    }
    let replicas = match rec.action_params.get(REPLICAS) {
        None => u32::try_from(cfg.config.cluster.kafka_brokers.len()).unwrap_or(u32::MAX),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                diags.error_at(
                    &cfg.path,
                    &doc,
                    &at(REPLICAS),
                    format!("`{v}` is not a replica count from 1 to 1000"),
                );
                1
            }
        },
    };
    // scale_statefulset scales back to `replicas`: a count the step holds, not a template.
    for rb in set.runbooks.values_mut() {
        for step in &mut rb.steps {
            if let StepKind::Kube(k) = &mut step.kind
                && k.action == "scale"
                && k.replicas != Some(0)
            {
                k.replicas = Some(replicas);
            }
        }
    }
    let rules: Vec<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
    set.builtin = Some(format!(
        "built-in rule pack (recovery.actions, no `rules:`): {} -> runbook `{CHAIN_RUNBOOK}`: {}",
        rules.join(", "),
        names.join(", then if it fails, ")
    ));
    (set, diags)
}
