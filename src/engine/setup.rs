//! The setup the engine decides with: configuration, rules and message templates, loaded
//! together and replaced whole on reload, so a decision never sees half of each.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tracing::warn;

use super::policy::Limits;
use crate::config::{LoadError, Loaded};
use crate::notify::message::Composer;
use crate::rules::{Rule, RuleSet};

/// A consistent snapshot of configuration, rules and message templates; replaced whole
/// on reload.
#[derive(Debug)]
pub struct Setup {
    /// The configuration.
    pub loaded: Loaded,
    /// The rules.
    pub rules: RuleSet,
    /// Message templates, when email is configured.
    pub composer: Option<Composer>,
}

impl Setup {
    /// Loads the config and its rule files; any error makes the whole setup invalid (a
    /// reload then keeps the previous one). Warnings are logged.
    pub fn load(path: &Path) -> Result<Setup, LoadError> {
        Setup::load_files(&[path.to_path_buf()])
    }

    /// Loads the config files, deep-merged in order (see [`crate::config::load_files`]),
    /// and the rule files they name, as [`Setup::load`] does.
    pub fn load_files(paths: &[PathBuf]) -> Result<Setup, LoadError> {
        let loaded = crate::config::load_files(paths)?;
        let (rules, mut diags) = crate::rules::load_rules(&loaded);
        if diags.has_errors() {
            diags.sort();
            return Err(LoadError::Invalid(diags));
        }
        for w in loaded.warnings.items.iter().chain(&diags.items) {
            warn!("{w}");
        }
        let n = &loaded.config.notifications;
        let composer = match n.smtp {
            Some(_) => match Composer::new(&n.templates, &loaded.base_dir) {
                Ok(c) => Some(c),
                Err(e) => {
                    diags.error(&loaded.path, None, format!("notifications.templates: {e}"));
                    return Err(LoadError::Invalid(diags));
                }
            },
            None => None,
        };
        Ok(Setup {
            loaded,
            rules,
            composer,
        })
    }

    /// The policy limits of `rule` (its overrides over `recovery:`), or of `recovery:`
    /// alone. Seconds become milliseconds, saturating.
    pub fn limits(&self, rule: Option<&Rule>) -> Limits {
        let r = &self.loaded.config.recovery;
        let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
        Limits {
            cooldown_ms: ms(rule
                .and_then(|r| r.cooldown_seconds)
                .unwrap_or(r.cooldown_seconds)),
            max_attempts: rule.and_then(|r| r.max_attempts).unwrap_or(r.max_attempts),
            initial_delay_ms: ms(r.initial_delay_seconds),
            backoff_multiplier: r.backoff_multiplier,
            window_ms: ms(r.attempt_window_seconds),
            circuit_reset_ms: ms(r.circuit_reset_seconds),
            recheck_ms: ms(r.precondition_recheck_seconds),
        }
    }

    /// Whether `alert` would only ever take a diagnostics queue slot: it fires, some rule
    /// with a non-disruptive, not dry-run runbook matches it, and no rule with a disruptive
    /// runbook or `broker_down` does. Such alerts are the ones the webhook may hold back while the
    /// diagnostics queue is full; any other alert is always taken at once.
    pub fn only_diagnostics(&self, alert: &crate::alert::Alert) -> bool {
        if alert.status != crate::alert::AlertStatus::Firing {
            return false;
        }
        let dry_run = self.loaded.config.recovery.dry_run;
        let mut diagnostics = false;
        for rule in self.rules.rules.iter().filter(|r| r.matches(&alert.labels)) {
            if self.is_remediation(rule) {
                return false;
            }
            diagnostics |= !rule.dry_run.unwrap_or(dry_run);
        }
        diagnostics
    }

    /// How many remediation plans `alert` could make: the rules it fires whose work is
    /// remediation (a disruptive runbook, or a `broker_down` rule), not dry-run. The webhook
    /// refuses a request with any while the remediation budget is full.
    pub fn remediation_plans(&self, alert: &crate::alert::Alert) -> usize {
        if alert.status != crate::alert::AlertStatus::Firing {
            return 0;
        }
        let dry_run = self.loaded.config.recovery.dry_run;
        self.rules
            .rules
            .iter()
            .filter(|r| !r.dry_run.unwrap_or(dry_run) && r.matches(&alert.labels))
            .filter(|r| self.is_remediation(r))
            .count()
    }

    /// Whether `rule`'s work is remediation (its own queue budget, never shed as a
    /// diagnostic): its runbook is disruptive, or the rule says a broker is down.
    pub fn is_remediation(&self, rule: &Rule) -> bool {
        rule.broker_down
            || self
                .rules
                .runbooks
                .get(&rule.runbook)
                .is_some_and(|rb| rb.disruptive)
    }

    /// The broker a target node_id names, when it is a configured one.
    pub fn broker(&self, node_id: &str) -> Option<&crate::config::Broker> {
        self.loaded
            .config
            .cluster
            .kafka_brokers
            .iter()
            .find(|b| b.node_id == node_id)
    }

    /// Whether `name` is a target the config has: a broker's node_id, or `zookeeper/ID`
    /// of a configured ZooKeeper node (as plans, pauses and circuits name it).
    pub fn is_target(&self, name: &str) -> bool {
        let zk = |id: &str| {
            let nodes = &self.loaded.config.cluster.zookeeper_nodes;
            nodes.iter().any(|z| z.node_id == id)
        };
        self.broker(name).is_some() || super::target::zookeeper_id(name).is_some_and(zk)
    }
}

/// The current setup, shared by the parts that read it (webhook auth, the self-watch,
/// the mail sender) and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct SetupCell(Arc<RwLock<Arc<Setup>>>);

impl SetupCell {
    /// A cell holding `setup`.
    pub fn new(setup: Arc<Setup>) -> SetupCell {
        SetupCell(Arc::new(RwLock::new(setup)))
    }

    /// The current setup.
    pub fn current(&self) -> Arc<Setup> {
        match self.0.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the setup.
    pub fn replace(&self, setup: Arc<Setup>) {
        match self.0.write() {
            Ok(mut s) => *s = setup,
            Err(poisoned) => *poisoned.into_inner() = setup,
        }
    }
}
