//! Plans: for each alert, which rules match, what their runbooks would run, and whether
//! they should run. `dry-run` prints plans; `serve` executes the ones that say `run`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::target::{Kinds, Target, find_node};
use crate::config::Config;
use crate::ingest::{Alert, AlertStatus, WebhookPayload};
use crate::rules::model::{FallbackAction, Precondition};
use crate::rules::{Rule, RuleSet};
use crate::runbook::{RenderedStep, render_steps};

/// Run or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The runbook should run (or, under dry_run, be recorded as if it ran).
    Run,
    /// Nothing runs; `reason` says why.
    Skip,
}

/// One (alert, rule) decision.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Rule name.
    pub rule: String,
    /// Runbook name.
    pub runbook: String,
    /// Target broker's node_id, when one was found.
    pub target: Option<String>,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's status.
    pub status: AlertStatus,
    /// Run or skip.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// Rendered steps (empty when skipped).
    pub steps: Vec<RenderedStep>,
    /// A fallback chain's actions over `steps` (empty for a plain runbook): the next
    /// action runs only when the one before failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<FallbackAction>,
    /// Whether the runbook is disruptive.
    #[serde(skip)]
    pub disruptive: bool,
    /// The runbook's preconditions, judged before its first disruptive step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Precondition>,
    /// Whether dry_run applies (recorded, not executed).
    #[serde(skip)]
    pub dry_run: bool,
    /// Rendered params: with rule and target, what makes two plans the same work.
    #[serde(skip)]
    pub params: BTreeMap<String, String>,
}

/// What makes two plans the same work: rule, target and rendered params. Replicas and
/// repeats of an alert share it; a per-topic rule has one per topic. A disruptive runbook's
/// work is its rule and target alone: params that come from an alert (an annotation, a
/// label) must not make a new work key, with its own cooldown, attempts and circuit, for
/// each text a sender makes up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkKey {
    /// Rule name.
    pub rule: String,
    /// Target node_id.
    pub target: Option<String>,
    /// Rendered params.
    pub params: BTreeMap<String, String>,
}

impl std::fmt::Display for WorkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {}",
            self.rule,
            self.target.as_deref().unwrap_or("-")
        )?;
        for (k, v) in &self.params {
            write!(f, " {k}={v:?}")?;
        }
        Ok(())
    }
}

impl Plan {
    /// The plan's [`WorkKey`].
    pub fn work_key(&self) -> WorkKey {
        WorkKey {
            rule: self.rule.clone(),
            target: self.target.clone(),
            params: if self.disruptive {
                BTreeMap::new()
            } else {
                self.params.clone()
            },
        }
    }
}

/// Plans for a whole webhook payload.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSet {
    /// One per matching (alert, rule).
    pub plans: Vec<Plan>,
    /// Fingerprints of alerts no rule matched.
    pub unmatched: Vec<String>,
}

/// The template context for an alert (params added separately).
pub fn render_context(cfg: &Config, rule: &Rule, alert: &Alert, target: Option<Target>) -> Value {
    let mut ctx = json!({
        "alert": {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "status": alert.status.as_str(),
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at,
            "ends_at": alert.ends_at,
            "generator_url": alert.generator_url,
        },
        "cluster": {
            "name": cfg.cluster.name,
            "bootstrap": cfg
                .cluster
                .kafka_brokers
                .iter()
                .map(|b| format!("{}:{}", b.host, b.port))
                .collect::<Vec<_>>()
                .join(","),
        },
        "rule": { "name": rule.name },
    });
    match target {
        Some(Target::Broker(b)) => {
            let mut t =
                json!({ "kind": "broker", "node_id": b.node_id, "host": b.host, "port": b.port });
            if let Some(j) = b.jmx_port {
                t["jmx_port"] = json!(j);
            }
            ctx["target"] = t;
        }
        Some(Target::Zookeeper(z)) => {
            ctx["target"] = json!({ "kind": "zookeeper", "node_id": z.node_id, "host": z.host, "port": z.port });
        }
        None => {}
    }
    ctx
}

/// Plans every rule that matches one alert, in rule order.
pub fn plan_alert(cfg: &Config, rules: &RuleSet, alert: &Alert) -> Vec<Plan> {
    rules
        .rules
        .iter()
        .filter(|r| r.matches(&alert.labels))
        .map(|r| plan_rule(cfg, rules, r, alert))
        .collect()
}

fn plan_rule(cfg: &Config, rules: &RuleSet, rule: &Rule, alert: &Alert) -> Plan {
    let runbook = rules.runbooks.get(&rule.runbook);
    let kinds = runbook.map_or(Kinds::Any, |r| kinds(&r.requires));
    let target = find_node(
        &cfg.cluster,
        &alert.labels,
        rule.target_label.as_deref(),
        kinds,
    );
    let mut plan = Plan {
        rule: rule.name.clone(),
        runbook: rule.runbook.clone(),
        target: target.as_ref().ok().map(Target::name),
        fingerprint: alert.fingerprint.clone(),
        status: alert.status,
        decision: Decision::Skip,
        reason: String::new(),
        steps: Vec::new(),
        actions: Vec::new(),
        disruptive: runbook.is_some_and(|r| r.disruptive),
        requires: runbook.map(|r| r.requires.clone()).unwrap_or_default(),
        dry_run: rule.dry_run.unwrap_or(cfg.recovery.dry_run),
        params: BTreeMap::new(),
    };
    let skip = |mut p: Plan, reason: String| {
        p.reason = reason;
        p
    };
    if alert.status == AlertStatus::Resolved {
        return skip(plan, "alert is resolved: nothing to remediate".into());
    }
    let Some(runbook) = runbook else {
        return skip(plan, format!("runbook `{}` is not defined", rule.runbook));
    };
    let broker = match target {
        Ok(b) => Some(b),
        Err(why) if rule.needs_target => {
            return skip(
                plan,
                format!(
                    "no target {}: {why}; the runbook needs `target`",
                    if kinds == Kinds::Zookeeper {
                        "ZooKeeper node"
                    } else {
                        "broker"
                    }
                ),
            );
        }
        Err(_) => None,
    };
    let mut ctx = render_context(cfg, rule, alert, broker);
    let mut params = Map::new();
    for p in &rule.params {
        let value = match rules.templates.render(&p.template, &ctx) {
            Ok(v) => v,
            Err(e) => return skip(plan, format!("param `{}`: {e}", p.name)),
        };
        if let Some(re) = &p.pattern
            && !re.is_match(&value)
        {
            return skip(
                plan,
                format!(
                    "param `{}` value \"{}\" does not match its pattern `{}`: nothing runs",
                    p.name,
                    truncate(&value, 200).escape_debug(),
                    re.as_str()
                ),
            );
        }
        plan.params.insert(p.name.clone(), value.clone());
        params.insert(p.name.clone(), Value::String(value));
    }
    ctx["params"] = Value::Object(params);
    match render_steps(
        &runbook.steps,
        &rules.templates,
        &ctx,
        &cfg.cluster.kafka_brokers,
    ) {
        Ok(steps) => {
            plan.steps = steps;
            plan.actions.clone_from(&runbook.actions);
        }
        Err(e) => return skip(plan, format!("{e}: nothing runs")),
    }
    plan.decision = Decision::Run;
    plan.reason = match (&plan.target, plan.dry_run) {
        (Some(t), false) => format!("matched; target {t}"),
        (None, false) => "matched".into(),
        (Some(t), true) => {
            format!("matched; target {t}; dry_run: steps are recorded, not executed")
        }
        (None, true) => "matched; dry_run: steps are recorded, not executed".into(),
    };
    plan
}

/// Where a runbook's target may be: its preconditions say which kind it was written for.
fn kinds(requires: &[Precondition]) -> Kinds {
    if requires.contains(&Precondition::ZookeeperQuorumSafe) {
        Kinds::Zookeeper
    } else if requires.is_empty() {
        Kinds::Any
    } else {
        Kinds::Brokers
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Plans a whole payload: per alert (never from the group status), then the policy that
/// needs no history: one execution per (rule, target, params) — replicas and repeats of an
/// alert collapse, a per-topic rule still runs once per topic — and at most
/// `recovery.max_concurrent_per_cluster` disruptive runbooks at once (the rest queue).
pub fn plan_payload(cfg: &Config, rules: &RuleSet, payload: &WebhookPayload) -> PlanSet {
    let mut plans = Vec::new();
    let mut unmatched = Vec::new();
    for alert in &payload.alerts {
        let p = plan_alert(cfg, rules, alert);
        if p.is_empty() {
            unmatched.push(alert.fingerprint.clone());
        }
        plans.extend(p);
    }
    let mut first: HashMap<WorkKey, String> = HashMap::new();
    for p in plans.iter_mut().filter(|p| p.decision == Decision::Run) {
        if let Some(fp) = first.get(&p.work_key()) {
            p.decision = Decision::Skip;
            let same = if p.disruptive {
                "(a disruptive runbook runs once per target, whatever its params)"
            } else {
                "with the same params"
            };
            p.reason = format!(
                "duplicate: alert {fp} already runs rule `{}` on the same target {same}",
                p.rule
            );
            p.steps.clear();
            p.actions.clear();
        } else {
            first.insert(p.work_key(), p.fingerprint.clone());
        }
    }
    let limit = cfg.recovery.max_concurrent_per_cluster.max(1) as usize;
    let mut running: Vec<String> = Vec::new();
    for p in plans
        .iter_mut()
        .filter(|p| p.decision == Decision::Run && p.disruptive && !p.dry_run)
    {
        let who = match &p.target {
            Some(t) => t.clone(),
            None => format!("rule {}", p.rule),
        };
        if running.len() < limit {
            running.push(who);
        } else {
            p.reason.push_str(&format!(
                "; queued until {} finishes (max_concurrent_per_cluster = {limit})",
                running.join(", ")
            ));
        }
    }
    PlanSet { plans, unmatched }
}

/// The JSON stored as an execution's `plan`: rendered steps and params.
pub fn plan_json(p: &Plan) -> Value {
    if p.actions.is_empty() {
        json!({ "steps": p.steps, "params": p.params })
    } else {
        json!({ "steps": p.steps, "params": p.params, "actions": p.actions })
    }
}
