//! `ansible` steps: `ansible-playbook` with its extra vars as one JSON `--extra-vars`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::runbook::render::{Lowered, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "ansible";

/// `ansible` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleStep {
    /// Playbook path (template).
    pub playbook: String,
    /// Inventory (template).
    #[serde(default)]
    pub inventory: Option<String>,
    /// `--limit` host (template); must render to a configured broker's `node_id` or host.
    #[serde(default)]
    pub limit: Option<String>,
    /// Extra variables (each value a template), passed as one JSON `--extra-vars`.
    #[serde(default)]
    pub extra_vars: BTreeMap<String, String>,
}

impl AnsibleStep {
    /// Every template source: playbook, inventory, limit and each extra var's value.
    pub(crate) fn templates(&self) -> Vec<&str> {
        [
            Some(self.playbook.as_str()),
            self.inventory.as_deref(),
            self.limit.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain(self.extra_vars.values().map(String::as_str))
        .collect()
    }

    /// Any playbook may change a service.
    pub(crate) fn changes_a_service(&self) -> Option<String> {
        Some("ansible-playbook".into())
    }

    /// `ansible-playbook [-i INV] [--limit HOST] [--extra-vars JSON] PLAYBOOK`.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        let mut argv = vec!["ansible-playbook".to_string()];
        if let Some(inv) = &self.inventory {
            argv.extend(["-i".to_string(), r.one("inventory", inv)?]);
        }
        if let Some(l) = &self.limit {
            argv.extend(["--limit".to_string(), limit(r, l)?]);
        }
        if !self.extra_vars.is_empty() {
            // Ansible templates variable values again when a task uses them, so a
            // label like `{{ lookup('pipe', …) }}` would run on the controller. Values
            // are marked unsafe (Ansible's JSON form of `!unsafe`): used verbatim.
            let mut vars = serde_json::Map::new();
            for (k, v) in &self.extra_vars {
                let value = r.one(&format!("extra_vars.{k}"), v)?;
                vars.insert(k.clone(), serde_json::json!({ "__ansible_unsafe": value }));
            }
            argv.extend(["--extra-vars".to_string(), Value::Object(vars).to_string()]);
        }
        let playbook = r.one("playbook", &self.playbook)?;
        if playbook.starts_with('-') {
            return Err(r.error("playbook: a path may not start with `-`"));
        }
        argv.push(playbook);
        Ok(Lowered::argv(argv))
    }
}

/// Renders `--limit`: exactly one configured broker's `node_id` or host. A plain name can
/// still be an inventory group (`kafka_brokers`, `ungrouped`), which Ansible prefers to a
/// host of that name, so only the cluster's own names are allowed.
fn limit(r: &Renderer<'_>, src: &str) -> Result<String, StepError> {
    let limit = r.host("limit", src)?;
    if ["all", "ungrouped"].contains(&limit.to_ascii_lowercase().as_str()) {
        return Err(r.error(format!("limit: `{limit}` would select a whole group")));
    }
    if !r
        .brokers
        .iter()
        .any(|b| b.node_id == limit || b.host == limit)
    {
        return Err(r.error(format!(
            "limit: `{limit}` is no configured broker's node_id or host (a group or \
             pattern could select many hosts)"
        )));
    }
    Ok(limit)
}

/// A playbook may do anything.
pub(crate) fn is_disruptive(_argv: &[String]) -> bool {
    true
}

/// One try: the argv as a child process, as `exec` runs it.
pub(crate) use super::exec::run;
