//! What SREs write in a rule file: rules (`rules:`) and runbooks (`runbooks:`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::duration::opt_duration;
pub use super::duration::{DurationError, MAX_DURATION, parse_duration};
// The steps and their kinds live with what renders and runs them; re-exported here, where
// rule files are modelled.
pub use crate::runbook::render::OnFailure;
pub use crate::runbook::steps::{
    AnsibleStep, HTTP_METHODS, HttpStep, KUBE_ACTIONS, KubeStep, MAX_RETRIES, STEP_KINDS,
    SYSTEMCTL_ACTIONS, Step, StepKind, SystemctlStep, WaitForStep,
};

/// A rule as written: which alerts it matches and which runbook answers them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name across all rule files.
    pub name: String,
    /// What the rule is for.
    #[serde(default)]
    pub description: String,
    /// Alertmanager matchers (`alertname="KafkaBrokerDown"`); all must match. A rule with
    /// a `condition` and no matchers matches the alerts its condition raises.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// A PromQL condition over the service's own scrapes, raising alerts by itself.
    #[serde(default)]
    pub condition: Option<ConditionSpec>,
    /// The runbook to run.
    pub runbook: String,
    /// Values the runbook's templates see as `params.NAME`.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Label whose value names the target broker, when `node_id`/`instance` do not.
    #[serde(default)]
    pub target_label: Option<String>,
    /// Overrides `recovery.cooldown_seconds` for this rule.
    #[serde(default)]
    pub cooldown_seconds: Option<u64>,
    /// Overrides `recovery.max_attempts` for this rule.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides `recovery.dry_run` for this rule.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Extra email recipients for this rule's outcomes.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Guard disruptive runs: wait while another broker is being remediated or known down.
    /// Set `false` only for runbooks that are safe with a broker down.
    #[serde(default = "yes")]
    pub guard: bool,
    /// The alerts this rule matches mean their target broker is down. The guard keeps
    /// disruptive work off healthy brokers while any broker is known down this way.
    #[serde(default)]
    pub broker_down: bool,
}

/// A rule's own condition: each series the expression returns for `for` becomes a firing
/// alert; it resolves when the series is no longer returned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// PromQL expression (the supported subset).
    pub expr: String,
    /// How long a series must hold before the alert fires (`0s` by default).
    #[serde(default, rename = "for", deserialize_with = "opt_duration")]
    pub for_: Option<Duration>,
    /// The `alertname` of the raised alerts (default: the rule's name). Use the same name
    /// as the Prometheus alerting rule for the same problem, and both sources collapse.
    #[serde(default)]
    pub alertname: Option<String>,
    /// Labels added to the raised alerts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the raised alerts.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A rule parameter: a template, optionally with an allow pattern for its rendered value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Handlebars template rendered against the alert.
    pub value: String,
    /// Anchored regex the rendered value must match, or the execution stops.
    pub pattern: Option<String>,
}

impl<'de> Deserialize<'de> for ParamSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            value: String,
            #[serde(default)]
            pattern: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a template string, or a map with `value` and optional `pattern`"
        )]
        enum Either {
            Text(String),
            Number(serde_json::Number),
            Full(Full),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(value) => ParamSpec {
                value,
                pattern: None,
            },
            Either::Number(n) => ParamSpec {
                value: n.to_string(),
                pattern: None,
            },
            Either::Full(f) => ParamSpec {
                value: f.value,
                pattern: f.pattern,
            },
        })
    }
}

/// A runbook: ordered steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// What the runbook does.
    #[serde(default)]
    pub description: String,
    /// Whether it changes the cluster (restart, reconfigure). Disruptive runbooks are
    /// serialized per cluster and guarded; diagnostics-only runbooks set `false`.
    #[serde(default = "yes")]
    pub disruptive: bool,
    /// Defaults for the `params.NAME` its steps use. A rule naming this runbook may
    /// override each one (e.g. a site's supervisord config path) by declaring the same name.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// What must hold, asked of Kafka itself, before the first disruptive step and again
    /// before each retry of one; a refusal ends the execution `refused`.
    #[serde(default)]
    pub requires: Vec<Precondition>,
    /// The steps, run in order. A runbook with `fallback` has none of its own: the loader
    /// fills them in from the runbooks it names.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Other runbooks, tried in order as a fallback chain: each one's steps run only when
    /// the one before failed (its failure is journaled, and does not end the execution).
    /// Each is an action whose preconditions are judged again before its first disruptive
    /// step. Their params and `requires` are merged into this runbook's.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Where each action of a fallback chain starts in `steps` (filled in by the loader;
    /// empty for a plain runbook).
    #[serde(skip)]
    pub actions: Vec<FallbackAction>,
}

/// One action of a fallback chain: a named run of consecutive steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FallbackAction {
    /// The runbook the action's steps come from.
    pub name: String,
    /// Index of its first step in the chain's steps.
    pub start: usize,
    /// How many steps it has.
    pub len: usize,
}

impl FallbackAction {
    /// The action holding step `i` of `actions`, by position in the chain.
    pub fn of_step(actions: &[FallbackAction], i: usize) -> Option<usize> {
        actions
            .iter()
            .position(|a| i >= a.start && i < a.start.saturating_add(a.len))
    }
}

/// A precondition a runbook requires of its target (a broker, or a ZooKeeper node for
/// `zookeeper_quorum_safe`), judged from the cluster as
/// Kafka's protocol (and the target's own exporter) shows it at that moment.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Precondition {
    /// The target does not answer ApiVersions in 2 tries within the timeout: a broker that
    /// answers is serving, whatever its exporter or an alert says.
    BrokerUnreachable,
    /// Without the target, every partition it is in sync for keeps `min.insync.replicas`
    /// in-sync replicas on brokers that answer, and KRaft's quorum keeps a majority. A
    /// target that is itself down passes: restarting it cannot lower availability.
    RestartSafe,
    /// The target's JVM does not report that it is starting, recovering its logs or
    /// shutting down (BrokerState 1, 2, 6, 7 on its exporter).
    NotStarting,
    /// The target is a ZooKeeper node, and restarting it leaves the ensemble a serving
    /// majority: from `srvr`/`mntr` of every configured node, the serving voters (leader
    /// and followers) less the target, when it serves, are still a majority of the
    /// ensemble.
    ZookeeperQuorumSafe,
}

impl Precondition {
    /// The name as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Precondition::BrokerUnreachable => "broker_unreachable",
            Precondition::RestartSafe => "restart_safe",
            Precondition::NotStarting => "not_starting",
            Precondition::ZookeeperQuorumSafe => "zookeeper_quorum_safe",
        }
    }
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn yes() -> bool {
    true
}
