//! The connection to a cluster's Kubernetes API server that `kube` steps use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::KubernetesConfig;
use crate::runbook::exec::outcome::error_chain;

/// A connection to one cluster's API server, made on first use, and what this service
/// replaced there (so `wait_pod_ready` can tell a new pod from the old one).
pub struct KubeConn {
    cfg: KubernetesConfig,
    client: OnceCell<kube::Client>,
    /// (namespace, pod name) → uid of the pod last evicted or deleted by a step.
    replaced: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for KubeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConn").field("cfg", &self.cfg).finish()
    }
}

impl KubeConn {
    /// A connection described by `cfg`; `cfg.kubeconfig` must already be resolved
    /// (absolute, or relative to the working directory).
    pub fn new(cfg: KubernetesConfig) -> KubeConn {
        KubeConn {
            cfg,
            client: OnceCell::new(),
            replaced: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration this connection was made from.
    pub fn config(&self) -> &KubernetesConfig {
        &self.cfg
    }

    pub(super) async fn client(&self) -> Result<kube::Client, String> {
        self.client
            .get_or_try_init(|| connect(&self.cfg))
            .await
            .cloned()
    }

    pub(super) fn remember(&self, ns: &str, name: &str, uid: Option<String>) {
        if let (Some(uid), Ok(mut m)) = (uid, self.replaced.lock()) {
            m.insert((ns.to_string(), name.to_string()), uid);
        }
    }

    pub(super) fn replaced_uid(&self, ns: &str, name: &str) -> Option<String> {
        self.replaced
            .lock()
            .ok()
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())).cloned())
    }

    pub(super) fn forget(&self, ns: &str, name: &str) {
        if let Ok(mut m) = self.replaced.lock() {
            m.remove(&(ns.to_string(), name.to_string()));
        }
    }
}

async fn connect(cfg: &KubernetesConfig) -> Result<kube::Client, String> {
    let mut config = match (&cfg.kubeconfig, cfg.in_cluster) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {}", path.display(), error_chain(&e)))?;
            let opts = kube::config::KubeConfigOptions {
                context: cfg.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("kubeconfig {}: {}", path.display(), error_chain(&e)))?
        }
        (None, true) => kube::Config::incluster()
            .map_err(|e| format!("in-cluster config: {}", error_chain(&e)))?,
        (None, false) => return Err("no kubernetes connection configured".into()),
    };
    let t = Some(Duration::from_secs(cfg.request_timeout_seconds));
    config.connect_timeout = t;
    config.read_timeout = t;
    config.write_timeout = t;
    // kube retries 429/503/504 by itself; a 429 to an eviction is a PodDisruptionBudget
    // saying no, which must end the try now (the step's own `retries` decide what next).
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("kubernetes client: {}", error_chain(&e)))
}

/// Resolves a relative kubeconfig path against `base` (the config file's directory).
pub fn resolve_kubeconfig(mut cfg: KubernetesConfig, base: &std::path::Path) -> KubernetesConfig {
    if let Some(p) = &cfg.kubeconfig
        && p.is_relative()
    {
        cfg.kubeconfig = Some(PathBuf::from(base).join(p));
    }
    cfg
}
