//! The `kubernetes:` section: how `kube` steps reach the API server.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;
use crate::yaml::Document;

/// The Kubernetes API connection used by `kube` steps: exactly one of `in_cluster` and
/// `kubeconfig`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Use the pod's service account (token and CA under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`, `KUBERNETES_SERVICE_HOST/PORT`).
    #[serde(default)]
    pub in_cluster: bool,
    /// A kubeconfig file (relative to the config file's directory).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; default: the file's `current-context`.
    #[serde(default)]
    pub context: Option<String>,
    /// Time limit of one API request, in seconds (a step's own timeout still bounds it all).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
}

fn default_request_timeout() -> u64 {
    30
}

/// Checks the section: one connection mode, a context only with a kubeconfig that has it.
pub(super) fn validate(k: &KubernetesConfig, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);
    match (k.in_cluster, &k.kubeconfig) {
        (true, Some(_)) => err(
            "kubernetes",
            "set either in_cluster: true or kubeconfig, not both".into(),
        ),
        (false, None) => err(
            "kubernetes",
            "set in_cluster: true (service account) or kubeconfig: PATH".into(),
        ),
        _ => {}
    }
    if k.context.is_some() && k.kubeconfig.is_none() {
        err(
            "kubernetes.context",
            "a context only applies to a kubeconfig".into(),
        );
    }
    if k.context.as_deref().is_some_and(|c| c.trim().is_empty()) {
        err("kubernetes.context", "must not be empty".into());
    }
    if !(1..=600).contains(&k.request_timeout_seconds) {
        err(
            "kubernetes.request_timeout_seconds",
            format!(
                "must be between 1 and 600, got {}",
                k.request_timeout_seconds
            ),
        );
    }
    if let Some(p) = &k.kubeconfig {
        let base = file.parent().unwrap_or(Path::new("."));
        let full = if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        };
        match kube::config::Kubeconfig::read_from(&full) {
            Ok(kc) => {
                if let Some(ctx) = &k.context
                    && !kc.contexts.iter().any(|c| &c.name == ctx)
                {
                    err(
                        "kubernetes.context",
                        format!("context `{ctx}` is not in {}", full.display()),
                    );
                }
            }
            Err(e) => err(
                "kubernetes.kubeconfig",
                format!("cannot read kubeconfig {}: {e}", full.display()),
            ),
        }
    }
}
