//! Steps: the common options of a step, and its kind.
//!
//! Each kind is one module holding everything about it: the spec as written (serde), its
//! constants, the template sources it renders (`templates`), the shape checks the loader
//! makes (`problems`), what it changes (`changes_a_service`, `is_disruptive`), its lowering
//! to a [`RenderedStep`] (`lower`) and one try of it (`run`). This module only delegates,
//! one `match` per concern: adding a kind is one new module and one arm in each match (the
//! matches over [`StepKind`] are exhaustive, so the compiler names every one).
//!
//! An enum rather than a trait: the specs stay plain public structs (tests build them),
//! `exec`'s spec stays a bare argv, and `run` is async, which a trait object cannot be.

pub mod ansible;
pub mod exec;
pub mod http;
pub mod kube;
pub mod systemctl;
pub mod wait_for;
pub mod wait_in_sync;

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::render::{OnFailure, RenderedStep, Renderer, StepError};
use super::template::Templates;
use crate::config::Broker;
use crate::rules::duration::parse_duration;
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome};

pub use ansible::AnsibleStep;
pub use http::{HTTP_METHODS, HttpStep};
pub use kube::{KUBE_ACTIONS, KubeStep};
pub use systemctl::{SYSTEMCTL_ACTIONS, SystemctlStep};
pub use wait_for::WaitForStep;
pub use wait_in_sync::WaitInSyncStep;

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
    /// Wait until the target broker answers, is registered and is back in the ISR of
    /// every partition it hosts.
    WaitInSync(WaitInSyncStep),
    /// A Kubernetes API action (evict or delete a pod, restart or scale a StatefulSet,
    /// wait for a pod to be ready).
    Kube(KubeStep),
}

/// The step kind keys, for error messages.
pub const STEP_KINDS: &[&str] = &[
    exec::KEY,
    systemctl::KEY,
    ansible::KEY,
    http::KEY,
    wait_for::KEY,
    wait_in_sync::KEY,
    kube::KEY,
];

/// The most `retries` a step may have.
pub const MAX_RETRIES: u32 = 10;

impl StepKind {
    /// The key this kind is written with.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Exec(_) => exec::KEY,
            StepKind::Systemctl(_) => systemctl::KEY,
            StepKind::Ansible(_) => ansible::KEY,
            StepKind::Http(_) => http::KEY,
            StepKind::WaitFor(_) => wait_for::KEY,
            StepKind::WaitInSync(_) => wait_in_sync::KEY,
            StepKind::Kube(_) => kube::KEY,
        }
    }

    /// The kind written as `key: body` in step `step`; `key` is one of [`STEP_KINDS`].
    fn parse(key: &str, body: Value, step: &str) -> Result<StepKind, String> {
        Ok(match key {
            exec::KEY => StepKind::Exec(exec::checked(field(key, body)?, step)?),
            systemctl::KEY => StepKind::Systemctl(field(key, body)?),
            ansible::KEY => StepKind::Ansible(field(key, body)?),
            http::KEY => StepKind::Http(field(key, body)?),
            wait_for::KEY => StepKind::WaitFor(field(key, body)?),
            wait_in_sync::KEY => StepKind::WaitInSync(field(key, body)?),
            kube::KEY => StepKind::Kube(field(key, body)?),
            other => return Err(format!("unknown step kind `{other}`")),
        })
    }

    /// Every template source the kind renders.
    pub fn templates(&self) -> Vec<&str> {
        match self {
            StepKind::Exec(argv) => exec::templates(argv),
            StepKind::Systemctl(s) => s.templates(),
            StepKind::Ansible(a) => a.templates(),
            StepKind::Http(h) => h.templates(),
            StepKind::WaitFor(w) => w.templates(),
            StepKind::WaitInSync(w) => w.templates(),
            StepKind::Kube(k) => k.templates(),
        }
    }

    /// What is wrong with the kind's shape in step `step`, one message per problem (as
    /// `check` reports them); empty when it is fine.
    pub fn problems(&self, step: &str) -> Vec<String> {
        match self {
            StepKind::Exec(_) | StepKind::Ansible(_) => Vec::new(),
            StepKind::Systemctl(s) => s.problems(),
            StepKind::Http(h) => h.problems(),
            StepKind::WaitFor(w) => w.problems(),
            StepKind::WaitInSync(w) => w.problems(),
            StepKind::Kube(k) => k.problems_of(step),
        }
    }

    /// What the kind does when it surely changes a service, so that its runbook must be
    /// disruptive (`exec` may do anything, and the runbook's word is taken for it).
    pub fn changes_a_service(&self) -> Option<String> {
        match self {
            StepKind::Exec(_)
            | StepKind::Http(_)
            | StepKind::WaitFor(_)
            | StepKind::WaitInSync(_) => None,
            StepKind::Systemctl(s) => s.changes_a_service(),
            StepKind::Ansible(a) => a.changes_a_service(),
            StepKind::Kube(k) => k.changes_a_service(),
        }
    }

    fn lower(&self, r: &Renderer<'_>) -> Result<super::render::Lowered, StepError> {
        match self {
            StepKind::Exec(argv) => exec::lower(argv, r),
            StepKind::Systemctl(s) => s.lower(r),
            StepKind::Ansible(a) => a.lower(r),
            StepKind::Http(h) => h.lower(r),
            StepKind::WaitFor(w) => w.lower(r),
            StepKind::WaitInSync(w) => w.lower(r),
            StepKind::Kube(k) => k.lower(r),
        }
    }
}

impl RenderedStep {
    /// Whether the step can change the cluster, so that (in HA mode) it only runs while
    /// this instance provably holds the lock. Read-only: `wait_for`, `http` GET and HEAD,
    /// `systemctl is-active` and `status`, `kube` `wait_pod_ready`. Everything else (`exec`, `ansible`, other
    /// `systemctl` actions and HTTP methods) is disruptive: an `exec` may do anything.
    pub fn is_disruptive(&self) -> bool {
        let argv = self.argv.as_slice();
        match self.kind {
            exec::KEY => exec::is_disruptive(argv),
            systemctl::KEY => systemctl::is_disruptive(argv),
            ansible::KEY => ansible::is_disruptive(argv),
            http::KEY => http::is_disruptive(argv),
            wait_for::KEY => wait_for::is_disruptive(argv),
            wait_in_sync::KEY => wait_in_sync::is_disruptive(argv),
            kube::KEY => kube::is_disruptive(argv),
            _ => true,
        }
    }
}

/// One try of `step` within `timeout`, by its kind.
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    match step.kind {
        exec::KEY => exec::run(step, timeout, opts, cancel).await,
        systemctl::KEY => systemctl::run(step, timeout, opts, cancel).await,
        ansible::KEY => ansible::run(step, timeout, opts, cancel).await,
        http::KEY => http::run(step, timeout, opts, cancel).await,
        wait_for::KEY => wait_for::run(step, timeout, opts, cancel).await,
        wait_in_sync::KEY => wait_in_sync::run(step, timeout, opts, cancel).await,
        kube::KEY => kube::run(step, timeout, opts, cancel).await,
        other => Outcome::fatal(ExecError::UnknownKind(other.to_string())),
    }
}

/// Renders every step of a runbook for a cluster of `brokers`; the first step that fails
/// stops it all.
pub fn render_steps(
    steps: &[Step],
    templates: &Templates,
    ctx: &Value,
    brokers: &[Broker],
) -> Result<Vec<RenderedStep>, StepError> {
    steps
        .iter()
        .map(|step| {
            render_step(
                step,
                &Renderer {
                    templates,
                    ctx,
                    step: &step.name,
                    brokers,
                },
            )
        })
        .collect()
}

fn render_step(step: &Step, r: &Renderer<'_>) -> Result<RenderedStep, StepError> {
    let lowered = step.kind.lower(r)?;
    let timeout = match (step.timeout, lowered.timeout) {
        (Some(t), Some(own)) => Some(t.min(own)),
        (t, own) => t.or(own),
    };
    Ok(RenderedStep {
        name: step.name.clone(),
        kind: step.kind.name(),
        argv: lowered.argv,
        body: lowered.body,
        timeout_seconds: timeout.map(|d: Duration| d.as_secs_f64()),
        retries: step.retries,
        on_failure: step.on_failure,
    })
}

fn field<T: serde::de::DeserializeOwned>(key: &str, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("`{key}`: {e}"))
}

/// Why a step as written is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepSpecError {
    /// The key of the step the problem is in (`retries`, `shell`), so that `check` points
    /// at its line; `None` when it is the step's as a whole (no kind, several kinds).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl StepSpecError {
    fn at(key: &str) -> impl FnOnce(String) -> StepSpecError + '_ {
        move |message| StepSpecError {
            key: Some(key.to_string()),
            message,
        }
    }

    fn whole(message: String) -> StepSpecError {
        StepSpecError { key: None, message }
    }
}

impl Step {
    /// A step from its mapping as written.
    pub fn from_value(v: Value) -> Result<Step, StepSpecError> {
        match v {
            Value::Object(m) => Step::from_map(m),
            _ => Err(StepSpecError::whole(
                "a step is a mapping with `name` and one kind".into(),
            )),
        }
    }

    fn from_map(mut m: Map<String, Value>) -> Result<Step, StepSpecError> {
        let name = match m.remove("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(_) => {
                return Err(StepSpecError::at("name")(
                    "`name` must be a non-empty string".into(),
                ));
            }
            None => return Err(StepSpecError::whole("missing `name`".into())),
        };
        let timeout = m
            .remove("timeout")
            .map(|v| parse_duration(&v).map_err(|e| format!("`timeout`: {e}")))
            .transpose()
            .map_err(StepSpecError::at("timeout"))?;
        let retries = m
            .remove("retries")
            .map(|v| field::<u32>("retries", v))
            .transpose()
            .map_err(StepSpecError::at("retries"))?
            .unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(StepSpecError::at("retries")(format!(
                "`retries` must be at most {MAX_RETRIES}, got {retries}"
            )));
        }
        let on_failure = m
            .remove("on_failure")
            .map(|v| field::<OnFailure>("on_failure", v))
            .transpose()
            .map_err(StepSpecError::at("on_failure"))?
            .unwrap_or_default();
        let kinds: Vec<&String> = m
            .keys()
            .filter(|k| STEP_KINDS.contains(&k.as_str()))
            .collect();
        if let Some(other) = m.keys().find(|k| !STEP_KINDS.contains(&k.as_str())) {
            return Err(StepSpecError::at(other)(format!(
                "unknown key `{other}` in step `{name}`; a step has name, timeout, retries, \
                 on_failure and one of {}",
                STEP_KINDS.join(", ")
            )));
        }
        let key = match kinds.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(StepSpecError::whole(format!(
                    "step `{name}` has no kind; give one of {}",
                    STEP_KINDS.join(", ")
                )));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                return Err(StepSpecError::whole(format!(
                    "step `{name}` has several kinds ({}); give exactly one",
                    names.join(", ")
                )));
            }
        };
        let body = m.remove(&key).unwrap_or(Value::Null);
        let kind = StepKind::parse(&key, body, &name).map_err(StepSpecError::at(&key))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: &'static str, argv: &[&str]) -> RenderedStep {
        RenderedStep {
            name: "s".into(),
            kind,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            body: None,
            timeout_seconds: None,
            retries: 0,
            on_failure: OnFailure::Abort,
        }
    }

    #[test]
    fn only_read_only_steps_are_not_disruptive() {
        assert!(!step("wait_for", &["tcp", "k1:9092"]).is_disruptive());
        assert!(!step("http", &["GET", "http://x/"]).is_disruptive());
        assert!(!step("http", &["HEAD", "http://x/"]).is_disruptive());
        assert!(step("http", &["POST", "http://x/"]).is_disruptive());
        let ro = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "--",
            "k1",
            "systemctl",
            "is-active",
            "--",
            "kafka",
        ];
        assert!(!step("systemctl", &ro).is_disruptive());
        assert!(!step("systemctl", &["systemctl", "status", "--", "kafka"]).is_disruptive());
        assert!(
            step(
                "systemctl",
                &["sudo", "-n", "systemctl", "restart", "--", "status"]
            )
            .is_disruptive()
        );
        assert!(step("exec", &["/bin/true"]).is_disruptive());
        assert!(step("ansible", &["ansible-playbook", "p.yml"]).is_disruptive());
        assert!(step("kube", &["evict_pod", "namespace=k", "name=p"]).is_disruptive());
        assert!(step("kube", &["scale", "namespace=k", "name=s", "replicas=1"]).is_disruptive());
        assert!(!step("kube", &["wait_pod_ready", "namespace=k", "name=p"]).is_disruptive());
    }
}
