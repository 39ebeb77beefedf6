//! `kube` steps: one Kubernetes API action on one object (evict or delete a pod, restart
//! or scale a StatefulSet, wait for a pod to be ready).
//!
//! Here: the spec, its checks and its lowering to `[ACTION, namespace=NS, name=NAME, …]`.
//! [`conn`] is the API connection, [`mod@run`] one try, [`names`] the name checks
//! both use, [`pods`] the self-watch's read of a pod's health.

pub mod conn;
pub mod names;
pub mod pods;
pub mod run;

use std::time::Duration;

use serde::Deserialize;

use crate::rules::duration::opt_duration;
use crate::runbook::render::{Lowered, Renderer, StepError};

pub use conn::{KubeConn, resolve_kubeconfig};
pub use names::{NameError, dns1123_label, dns1123_subdomain};
pub use pods::{LookError, PodHealth, PodLook, look_pod};
pub(crate) use run::run;
pub use run::{RESTARTED_AT, not_ready_reason};

/// The key the kind is written with.
pub const KEY: &str = "kube";

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

/// The one action that only reads.
const READ_ONLY: &str = "wait_pod_ready";

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

    /// [`KubeStep::problems`] as `check` reports them in step `step`.
    pub(crate) fn problems_of(&self, step: &str) -> Vec<String> {
        self.problems()
            .into_iter()
            .map(|m| format!("step `{step}`: {m}"))
            .collect()
    }

    /// Every template source: the namespace and the name.
    pub(crate) fn templates(&self) -> Vec<&str> {
        vec![self.namespace.as_str(), self.name.as_str()]
    }

    /// Every action but `wait_pod_ready` changes the cluster.
    pub(crate) fn changes_a_service(&self) -> Option<String> {
        (self.action != READ_ONLY).then(|| format!("kube {}", self.action))
    }

    /// The action checked, namespace and name rendered and checked as DNS-1123 names
    /// (alert labels are untrusted: nothing else may reach an API path); a
    /// `wait_pod_ready` runs within its own `timeout`.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        if let Some(p) = self.problems().into_iter().next() {
            return Err(r.error(p));
        }
        let namespace = r.one("namespace", &self.namespace)?;
        if let Err(m) = dns1123_label(&namespace) {
            return Err(r.error(format!("namespace: {m}")));
        }
        let name = r.one("name", &self.name)?;
        if let Err(m) = dns1123_subdomain(&name) {
            return Err(r.error(format!("name: {m}")));
        }
        let mut argv = vec![
            self.action.clone(),
            format!("namespace={namespace}"),
            format!("name={name}"),
        ];
        if let Some(n) = self.replicas {
            argv.push(format!("replicas={n}"));
        }
        if let Some(g) = self.grace_period_seconds {
            argv.push(format!("grace_period_seconds={g}"));
        }
        Ok(Lowered {
            argv,
            body: None,
            timeout: self.timeout,
        })
    }
}

/// Only waiting for a pod reads; every other action changes the cluster.
pub(crate) fn is_disruptive(argv: &[String]) -> bool {
    argv.first().map(String::as_str) != Some(READ_ONLY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::render::OnFailure;
    use crate::runbook::steps::{Step, StepKind, render_steps};
    use crate::runbook::template::Templates;

    fn kube(action: &str, name: &str) -> Step {
        Step {
            name: "k".into(),
            kind: StepKind::Kube(KubeStep {
                action: action.into(),
                namespace: "kafka".into(),
                name: name.into(),
                replicas: (action == "scale").then_some(3),
                timeout: (action == "wait_pod_ready").then_some(Duration::from_secs(60)),
                grace_period_seconds: None,
            }),
            timeout: Some(Duration::from_secs(30)),
            retries: 0,
            on_failure: OnFailure::Abort,
        }
    }

    #[test]
    fn kube_steps_render_to_action_and_checked_names() {
        let mut t = Templates::default();
        let src = "kafka-{{alert.labels.id}}";
        t.add(src).expect("template");
        let ctx = |id: &str| serde_json::json!({"alert": {"labels": {"id": id}}});
        let r = render_steps(&[kube("evict_pod", src)], &t, &ctx("2"), &[]).expect("renders");
        assert_eq!(
            r[0].argv,
            ["evict_pod", "namespace=kafka", "name=kafka-2"].map(String::from)
        );
        assert_eq!(r[0].kind, "kube");
        let r = render_steps(&[kube("scale", "kafka")], &t, &ctx("2"), &[]).expect("renders");
        assert_eq!(
            r[0].argv,
            ["scale", "namespace=kafka", "name=kafka", "replicas=3"].map(String::from)
        );
        // The shorter of the step's timeout and the wait's own.
        let r = render_steps(&[kube("wait_pod_ready", "p")], &t, &ctx("2"), &[]).expect("renders");
        assert_eq!(r[0].timeout_seconds, Some(30.0));
        for hostile in ["2/../../secrets", "2;rm -rf", "X", "2\n", "2 ", ""] {
            let e =
                render_steps(&[kube("evict_pod", src)], &t, &ctx(hostile), &[]).expect_err(hostile);
            assert!(e.message.starts_with("name: `"), "{e}");
            assert!(e.message.contains("is not a DNS-1123 name"), "{e}");
        }
        let e = render_steps(&[kube("drain", "p")], &t, &ctx("2"), &[]).expect_err("action");
        assert!(
            e.message.contains("kube action `drain` is not one of"),
            "{e}"
        );
    }
}
