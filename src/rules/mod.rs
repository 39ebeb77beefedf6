//! Rules: which alerts are answered by which runbook, with what params.
//!
//! [`model`] is what SREs write, [`matcher`] is Alertmanager's matcher language, and
//! [`load`](load::load_rule_files) reads, compiles and checks rule files into a [`RuleSet`].

pub mod builtin;
pub mod condition;
pub mod duration;
mod fallback;
mod load;
pub mod matcher;
pub mod model;
mod select;
pub mod unittest;

use std::collections::BTreeMap;
use std::path::PathBuf;

use regex::Regex;

pub use load::{load_rule_files, load_rule_texts, load_rules_of_file};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use model::{Runbook, Step, StepKind};
pub use select::load_rules;

use crate::runbook::Templates;

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// PromQL expression.
    pub expr: String,
    /// Hold time before firing, ms.
    pub for_ms: i64,
    /// `alertname` of the raised alerts.
    pub alertname: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A compiled rule param.
#[derive(Debug, Clone)]
pub struct Param {
    /// Name (`params.NAME` in templates).
    pub name: String,
    /// Template source.
    pub template: String,
    /// Anchored allow pattern for the rendered value.
    pub pattern: Option<Regex>,
}

/// A compiled, checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// The rule's own PromQL condition, when it has one.
    pub condition: Option<Condition>,
    /// Runbook name (always defined in the [`RuleSet`]).
    pub runbook: String,
    /// Params in name order.
    pub params: Vec<Param>,
    /// Label naming the target broker.
    pub target_label: Option<String>,
    /// Whether the rule's params or runbook refer to `target`.
    pub needs_target: bool,
    /// Cooldown override, seconds.
    pub cooldown_seconds: Option<u64>,
    /// Max attempts override.
    pub max_attempts: Option<u32>,
    /// Dry-run override.
    pub dry_run: Option<bool>,
    /// Extra recipients.
    pub notify: Vec<String>,
    /// Whether the cluster guard applies.
    pub guard: bool,
    /// Whether its alerts mean the target broker is down.
    pub broker_down: bool,
    /// File the rule is defined in.
    pub file: PathBuf,
    /// Line of its definition.
    pub line: Option<usize>,
}

impl Rule {
    /// Whether every matcher matches the labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Every rule and runbook, compiled, with their templates.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// Runbooks by name.
    pub runbooks: BTreeMap<String, Runbook>,
    /// All compiled templates.
    pub templates: Templates,
    /// Where `kube` steps are: file, line and YAML path (for "no `kubernetes:` config").
    pub kube_steps: Vec<(std::path::PathBuf, Option<usize>, String)>,
    /// When the rules are the built-in pack (`recovery.actions`): what it activated.
    pub builtin: Option<String>,
    /// Rule positions by name (built by [`RuleSet::index`]; names are unique once loaded).
    by_name: std::collections::HashMap<String, usize>,
}

impl RuleSet {
    /// Rebuilds the name index (after `rules` changed).
    pub fn index(&mut self) {
        self.by_name = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
    }

    /// The rule named `name`: through the index, or a scan when `rules` changed since.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        match self.by_name.get(name).and_then(|&i| self.rules.get(i)) {
            Some(r) if r.name == name => Some(r),
            _ => self.rules.iter().find(|r| r.name == name),
        }
    }
}
