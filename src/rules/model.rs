//! What SREs write in a rule file: rules (`rules:`) and runbooks (`runbooks:`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

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

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_duration(&Value::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
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
    /// The steps, run in order.
    pub steps: Vec<Step>,
}

/// A precondition a runbook requires of its target broker, judged from the cluster as
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
}

impl Precondition {
    /// The name as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Precondition::BrokerUnreachable => "broker_unreachable",
            Precondition::RestartSafe => "restart_safe",
            Precondition::NotStarting => "not_starting",
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

/// What happens when a step fails after its retries.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the runbook; the execution fails.
    #[default]
    Abort,
    /// Go on with the next step.
    Continue,
    /// Stop and escalate to the escalation recipients.
    Escalate,
}

/// One step: a name, exactly one kind, and common options.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name shown in plans, records and emails.
    pub name: String,
    /// What the step does.
    pub kind: StepKind,
    /// Longest the step may run (all tries together are bounded by tries × timeout).
    pub timeout: Option<Duration>,
    /// Extra tries after a failure.
    pub retries: u32,
    /// What to do when it still fails.
    pub on_failure: OnFailure,
}

/// The kinds of step. Each lowers to a plain argv (or an HTTP request).
#[derive(Debug, Clone)]
pub enum StepKind {
    /// A command: argv elements, each a template.
    Exec(Vec<String>),
    /// `systemctl ACTION UNIT`, locally or over ssh.
    Systemctl(SystemctlStep),
    /// `ansible-playbook` with extra vars as JSON.
    Ansible(AnsibleStep),
    /// An HTTP request.
    Http(HttpStep),
    /// Wait until a TCP port accepts connections or an URL answers 2xx.
    WaitFor(WaitForStep),
    /// A Kubernetes API action (evict or delete a pod, restart or scale a StatefulSet,
    /// wait for a pod to be ready).
    Kube(KubeStep),
}

impl StepKind {
    /// The key this kind is written with.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Exec(_) => "exec",
            StepKind::Systemctl(_) => "systemctl",
            StepKind::Ansible(_) => "ansible",
            StepKind::Http(_) => "http",
            StepKind::WaitFor(_) => "wait_for",
            StepKind::Kube(_) => "kube",
        }
    }
}

/// The step kind keys, for error messages.
pub const STEP_KINDS: &[&str] = &["exec", "systemctl", "ansible", "http", "wait_for", "kube"];

/// `systemctl` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemctlStep {
    /// `start`, `stop`, `restart`, `try-restart`, `reload`, `reload-or-restart`,
    /// `is-active` or `status`.
    pub action: String,
    /// Unit name (template).
    pub unit: String,
    /// Remote host (template): run over `ssh -o BatchMode=yes`.
    #[serde(default)]
    pub host: Option<String>,
    /// Prefix with `sudo -n` (no password prompt).
    #[serde(default)]
    pub sudo: bool,
}

/// The systemctl actions a step may use.
pub const SYSTEMCTL_ACTIONS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "try-restart",
    "reload",
    "reload-or-restart",
    "is-active",
    "status",
];

/// `ansible` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleStep {
    /// Playbook path (template).
    pub playbook: String,
    /// Inventory (template).
    #[serde(default)]
    pub inventory: Option<String>,
    /// `--limit` host (template); must render to a single host name.
    #[serde(default)]
    pub limit: Option<String>,
    /// Extra variables (each value a template), passed as one JSON `--extra-vars`.
    #[serde(default)]
    pub extra_vars: BTreeMap<String, String>,
}

/// `http` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Method: GET, POST, PUT, PATCH, DELETE or HEAD.
    #[serde(default = "get")]
    pub method: String,
    /// URL (template); http or https.
    pub url: String,
    /// Request body (template).
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// The HTTP methods a step may use.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// `wait_for` step: exactly one of `tcp` and `http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForStep {
    /// `host:port` to connect to (template).
    #[serde(default)]
    pub tcp: Option<String>,
    /// URL that must answer 2xx (template).
    #[serde(default)]
    pub http: Option<String>,
    /// How long to keep trying.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

/// `kube` step: one Kubernetes API action on one object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeStep {
    /// One of [`KUBE_ACTIONS`].
    pub action: String,
    /// Namespace (template); must render to a DNS-1123 label.
    pub namespace: String,
    /// Pod name (`evict_pod`, `delete_pod`, `wait_pod_ready`) or StatefulSet name
    /// (`rollout_restart`, `scale`) (template); must render to a DNS-1123 subdomain.
    pub name: String,
    /// The replica count to set (`scale` only, required there).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// How long to wait for the pod to be ready (`wait_pod_ready` only, required there).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Termination grace period in seconds (`delete_pod` only; default: the pod's own).
    #[serde(default)]
    pub grace_period_seconds: Option<u32>,
}

/// The actions a `kube` step may take.
pub const KUBE_ACTIONS: &[&str] = &[
    "evict_pod",
    "delete_pod",
    "rollout_restart",
    "scale",
    "wait_pod_ready",
];

impl KubeStep {
    /// What is wrong with the step's shape (unknown action, a field its action does not
    /// take or misses), one message per problem; empty when it is fine.
    pub fn problems(&self) -> Vec<String> {
        let a = self.action.as_str();
        let mut out = Vec::new();
        if !KUBE_ACTIONS.contains(&a) {
            out.push(format!(
                "kube action `{a}` is not one of {}",
                KUBE_ACTIONS.join(", ")
            ));
            return out;
        }
        match (a, self.replicas) {
            ("scale", None) => out.push("kube action `scale` needs `replicas`".into()),
            ("scale", _) | (_, None) => {}
            (_, Some(_)) => out.push(format!("`replicas` only applies to `scale`, not `{a}`")),
        }
        match (a, self.timeout) {
            ("wait_pod_ready", None) => {
                out.push("kube action `wait_pod_ready` needs `timeout`".into())
            }
            ("wait_pod_ready", _) | (_, None) => {}
            (_, Some(_)) => out.push(format!(
                "`timeout` inside `kube` only applies to `wait_pod_ready`, not `{a}` \
                 (the step's own `timeout` bounds any step)"
            )),
        }
        if let Some(n) = self.replicas.filter(|n| *n > 1000) {
            out.push(format!("`replicas` must be at most 1000, got {n}"));
        }
        if let Some(g) = self.grace_period_seconds.filter(|g| *g > 3600) {
            out.push(format!(
                "`grace_period_seconds` must be at most 3600, got {g}"
            ));
        }
        if self.grace_period_seconds.is_some() && a != "delete_pod" {
            out.push(format!(
                "`grace_period_seconds` only applies to `delete_pod`, not `{a}`"
            ));
        }
        out
    }
}

/// The longest duration a rule file may give (a condition's `for`, a step's `timeout`):
/// longer is a typo, not a policy, and would overflow the engine's millisecond arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Parses `30`, `"30s"`, `"5m"`, `"1h30m"` or `"500ms"`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{n}` is not a whole number of seconds")),
        Value::String(s) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration like 30s, 5m or 1h ({e})")),
        other => Err(format!("expected a duration like 30s, got {other}")),
    }?;
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most 7d (604800 s), got {}",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// The most `retries` a step may have.
pub const MAX_RETRIES: u32 = 10;

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn field<T: serde::de::DeserializeOwned>(key: &str, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("`{key}`: {e}"))
}

impl Step {
    fn from_map(mut m: Map<String, Value>) -> Result<Step, String> {
        let name = match m.remove("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(_) => return Err("`name` must be a non-empty string".into()),
            None => return Err("missing `name`".into()),
        };
        let timeout = m
            .remove("timeout")
            .map(|v| parse_duration(&v).map_err(|e| format!("`timeout`: {e}")))
            .transpose()?;
        let retries = m
            .remove("retries")
            .map(|v| field::<u32>("retries", v))
            .transpose()?
            .unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(format!(
                "`retries` must be at most {MAX_RETRIES}, got {retries}"
            ));
        }
        let on_failure = m
            .remove("on_failure")
            .map(|v| field::<OnFailure>("on_failure", v))
            .transpose()?
            .unwrap_or_default();
        let kinds: Vec<&String> = m
            .keys()
            .filter(|k| STEP_KINDS.contains(&k.as_str()))
            .collect();
        if let Some(other) = m.keys().find(|k| !STEP_KINDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key `{other}` in step `{name}`; a step has name, timeout, retries, \
                 on_failure and one of {}",
                STEP_KINDS.join(", ")
            ));
        }
        let key = match kinds.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(format!(
                    "step `{name}` has no kind; give one of {}",
                    STEP_KINDS.join(", ")
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                return Err(format!(
                    "step `{name}` has several kinds ({}); give exactly one",
                    names.join(", ")
                ));
            }
        };
        let body = m.remove(&key).unwrap_or(Value::Null);
        let kind = match key.as_str() {
            "exec" => {
                let argv: Vec<String> = field("exec", body)?;
                if argv.is_empty() {
                    return Err(format!("step `{name}`: `exec` needs at least the program"));
                }
                StepKind::Exec(argv)
            }
            "systemctl" => StepKind::Systemctl(field("systemctl", body)?),
            "ansible" => StepKind::Ansible(field("ansible", body)?),
            "http" => StepKind::Http(field("http", body)?),
            "kube" => StepKind::Kube(field("kube", body)?),
            _ => StepKind::WaitFor(field("wait_for", body)?),
        };
        Ok(Step {
            name,
            kind,
            timeout,
            retries,
            on_failure,
        })
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = Map::<String, Value>::deserialize(d)?;
        Step::from_map(m).map_err(serde::de::Error::custom)
    }
}
