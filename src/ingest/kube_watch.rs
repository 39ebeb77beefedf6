//! The `kubernetes` monitoring method: each broker's pod read through the Kubernetes API
//! on every self-watch round, as series conditions can use:
//!
//! - `kafka_healing_probe_success{method="kubernetes",node_id}`: 1 when the API server
//!   answered about the broker's pod (found or not), 0 when it did not (unreachable, timed
//!   out, refused the request). At 0 no pod series is written, so the last ones go stale:
//!   the pod's state is unknown, never "not ready" (a serving broker must not be restarted
//!   because the API server is down).
//! - `kafka_healing_kube_pod_exists{node_id,namespace,pod}`: 1 or 0 (the API said 404).
//! - `kafka_healing_kube_pod_ready{node_id,namespace,pod}`: 1 when its `Ready` condition
//!   is `True` and it is not being deleted, else 0 (only for a pod that exists).
//! - `kafka_healing_kube_pod_restarts_total{node_id,namespace,pod}`: its containers'
//!   `restartCount`, summed (only for a pod that exists).
//!
//! The broker's pod is the one the built-in `restart_pod` action restarts: namespace
//! `recovery.action_params.namespace` (default `kafka`), name
//! `recovery.action_params.pod` (default `{{target.node_id}}`), each rendered with the
//! broker as `target` ([`pod_of`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::store::Labels;
use crate::config::{Broker, Config, KubernetesConfig, Loaded};
use crate::runbook::exec::{KubeConn, resolve_kubeconfig};
use crate::runbook::steps::kube::{NameError, PodLook, dns1123_label, dns1123_subdomain, look_pod};
use crate::runbook::template::{TemplateError, Templates};

/// The method's name in `probe_success` and the watch's metrics.
pub const METHOD: &str = "kubernetes";
/// 1 when the broker's pod exists, 0 when the API server says it does not.
pub const POD_EXISTS: &str = "kafka_healing_kube_pod_exists";
/// 1 when the broker's pod is ready, else 0.
pub const POD_READY: &str = "kafka_healing_kube_pod_ready";
/// The broker's pod's container restarts.
pub const POD_RESTARTS: &str = "kafka_healing_kube_pod_restarts_total";
/// The namespace when `recovery.action_params` names none (as `restart_pod`'s default).
pub const DEFAULT_NAMESPACE: &str = "kafka";
/// The pod name template when `recovery.action_params` gives none.
pub const DEFAULT_POD: &str = "{{target.node_id}}";

/// What one look at a broker's pod saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PodObservation {
    /// The broker.
    pub node_id: String,
    /// The pod's namespace (empty when it could not be named).
    pub namespace: String,
    /// The pod's name (empty when it could not be named).
    pub pod: String,
    /// What the API server answered, or why there is no answer (unknown).
    pub look: Result<PodLook, String>,
    /// How long the look took.
    pub duration: Duration,
}

impl PodObservation {
    /// Whether the API server answered about the pod.
    pub fn answered(&self) -> bool {
        self.look.is_ok()
    }

    /// What was seen, for logs and `scrape` output.
    pub fn detail(&self) -> String {
        let at = format!("pod {}/{}", self.namespace, self.pod);
        match &self.look {
            Ok(PodLook::Found(h)) if h.ready => {
                format!("{at} is ready ({} restarts)", h.restarts)
            }
            Ok(PodLook::Found(h)) => format!("{at} {} ({} restarts)", h.why, h.restarts),
            Ok(PodLook::Missing) => format!("{at} does not exist"),
            Err(e) => format!("unknown: {e}"),
        }
    }

    /// The look as series (see the module doc).
    pub fn series(&self) -> Vec<(Labels, f64)> {
        let probe = |name: &str| -> Labels {
            BTreeMap::from([
                ("__name__".to_string(), name.to_string()),
                ("node_id".to_string(), self.node_id.clone()),
                ("method".to_string(), METHOD.to_string()),
            ])
        };
        let pod = |name: &str| -> Labels {
            BTreeMap::from([
                ("__name__".to_string(), name.to_string()),
                ("node_id".to_string(), self.node_id.clone()),
                ("namespace".to_string(), self.namespace.clone()),
                ("pod".to_string(), self.pod.clone()),
            ])
        };
        let mut out = vec![
            (
                probe("kafka_healing_probe_success"),
                f64::from(u8::from(self.answered())),
            ),
            (
                probe("kafka_healing_probe_duration_seconds"),
                self.duration.as_secs_f64(),
            ),
        ];
        match &self.look {
            Ok(PodLook::Found(h)) => {
                out.push((pod(POD_EXISTS), 1.0));
                out.push((pod(POD_READY), f64::from(u8::from(h.ready))));
                out.push((pod(POD_RESTARTS), h.restarts as f64));
            }
            Ok(PodLook::Missing) => out.push((pod(POD_EXISTS), 0.0)),
            Err(_) => {}
        }
        out
    }
}

/// Why a broker's pod cannot be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodNameError {
    /// `recovery.action_params.<key>` does not render with the broker as `target`.
    #[error("recovery.action_params.{key}: {source}")]
    Template {
        /// `namespace` or `pod`.
        key: &'static str,
        /// The template's error.
        source: TemplateError,
    },
    /// The rendered namespace is not a DNS-1123 label.
    #[error("namespace: {0}")]
    Namespace(NameError),
    /// The rendered pod name is not a DNS-1123 subdomain.
    #[error("pod: {0}")]
    Pod(NameError),
}

/// The (namespace, pod name) of broker `b`: `recovery.action_params.namespace` and `.pod`
/// (templates) rendered with the broker as `target`, or their defaults.
pub fn pod_of(cfg: &Config, b: &Broker) -> Result<(String, String), PodNameError> {
    let params = &cfg.recovery.action_params;
    let mut t = json!({ "kind": "broker", "node_id": b.node_id, "host": b.host, "port": b.port });
    if let Some(j) = b.jmx_port {
        t["jmx_port"] = json!(j);
    }
    let ctx = json!({ "target": t, "cluster": { "name": cfg.cluster.name } });
    let render = |key: &'static str, default: &str| -> Result<String, PodNameError> {
        let src = params.get(key).map(String::as_str).unwrap_or(default);
        let mut templates = Templates::default();
        templates
            .add(src)
            .and_then(|_| templates.render(src, &ctx))
            .map_err(|source| PodNameError::Template { key, source })
    };
    let (ns, pod) = (
        render("namespace", DEFAULT_NAMESPACE)?,
        render("pod", DEFAULT_POD)?,
    );
    // The same checks as a `kube` step's: nothing else may reach an API path.
    dns1123_label(&ns).map_err(PodNameError::Namespace)?;
    dns1123_subdomain(&pod).map_err(PodNameError::Pod)?;
    Ok((ns, pod))
}

/// The method's API connection, kept between rounds while `kubernetes:` stays the same.
#[derive(Debug, Default)]
pub struct PodWatch {
    current: Mutex<Option<Arc<KubeConn>>>,
}

impl PodWatch {
    /// No connection yet.
    pub fn new() -> PodWatch {
        PodWatch::default()
    }

    /// The connection for `loaded`'s `kubernetes:` section (a new one when it changed),
    /// or none without a section.
    fn conn(&self, loaded: &Loaded) -> Option<Arc<KubeConn>> {
        let k: KubernetesConfig = loaded.config.kubernetes.clone()?;
        let k = resolve_kubeconfig(k, &loaded.base_dir);
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        match cur.as_ref() {
            Some(c) if c.config() == &k => Some(c.clone()),
            _ => {
                let c = Arc::new(KubeConn::new(k));
                *cur = Some(c.clone());
                Some(c)
            }
        }
    }

    /// A task that looks at broker `b`'s pod within `timeout`; it never fails (no answer
    /// is an observation of its own).
    pub fn look(
        &self,
        loaded: &Loaded,
        b: &Broker,
        timeout: Duration,
    ) -> impl std::future::Future<Output = PodObservation> + Send + 'static {
        let conn = self.conn(loaded);
        let named = pod_of(&loaded.config, b);
        let node_id = b.node_id.clone();
        async move {
            let t0 = Instant::now();
            let (namespace, pod, look) = match (named, conn) {
                (Err(e), _) => (String::new(), String::new(), Err(e.to_string())),
                (Ok((ns, pod)), None) => {
                    let e = "no `kubernetes:` section: cannot reach the API server".to_string();
                    (ns, pod, Err(e))
                }
                (Ok((ns, pod)), Some(conn)) => {
                    let look = match tokio::time::timeout(timeout, look_pod(&conn, &ns, &pod)).await
                    {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "get pod {ns}/{pod}: no answer within {}",
                            humantime::format_duration(timeout)
                        )),
                    };
                    (ns, pod, look)
                }
            };
            PodObservation {
                node_id,
                namespace,
                pod,
                look,
                duration: t0.elapsed(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::steps::kube::PodHealth;

    fn obs(look: Result<PodLook, String>) -> PodObservation {
        PodObservation {
            node_id: "kafka-1".into(),
            namespace: "kafka".into(),
            pod: "kafka-1".into(),
            look,
            duration: Duration::from_millis(5),
        }
    }

    fn values(o: &PodObservation) -> Vec<(String, f64)> {
        o.series()
            .into_iter()
            .filter(|(l, _)| l["__name__"] != "kafka_healing_probe_duration_seconds")
            .map(|(l, v)| (l["__name__"].clone(), v))
            .collect()
    }

    fn config(params: &str) -> Config {
        let text = format!(
            "cluster:\n  kafka_brokers:\n    - {{ node_id: kafka-0, host: h0, port: 9092 }}\n    - {{ node_id: 7, host: h1, port: 9092 }}\n\
             monitoring: {{ methods: [socket] }}\nrecovery:\n  actions: [restart_pod]\n{params}"
        );
        crate::config::load_text(
            &text,
            std::path::Path::new("/cfg/c.yaml"),
            Default::default(),
        )
        .map(|l| l.config)
        .map_err(|e| e.to_string())
        .unwrap()
    }

    #[test]
    fn pods_are_named_as_restart_pod_names_them() {
        let c = config("");
        let b = &c.cluster.kafka_brokers;
        assert_eq!(pod_of(&c, &b[0]), Ok(("kafka".into(), "kafka-0".into())));
        assert_eq!(pod_of(&c, &b[1]), Ok(("kafka".into(), "7".into())));
        let c = config(
            "  action_params: { namespace: \"{{cluster.name}}-ns\", pod: \"broker-{{target.node_id}}\" }\n",
        );
        let b = &c.cluster.kafka_brokers;
        assert_eq!(
            pod_of(&c, &b[1]),
            Ok(("kafka-ns".into(), "broker-7".into()))
        );
        let c = config("  action_params: { pod: \"{{alert.labels.pod}}\" }\n");
        let e = pod_of(&c, &c.cluster.kafka_brokers[0]).unwrap_err();
        assert!(
            matches!(e, PodNameError::Template { key: "pod", .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("recovery.action_params.pod: "),
            "{e}"
        );
        let c = config("  action_params: { pod: \"Kafka_{{target.node_id}}\" }\n");
        let e = pod_of(&c, &c.cluster.kafka_brokers[0]).unwrap_err();
        assert_eq!(
            e,
            PodNameError::Pod(NameError::Subdomain("Kafka_kafka-0".into()))
        );
        assert!(
            e.to_string()
                .starts_with("pod: `Kafka_kafka-0` is not a DNS-1123 name"),
            "{e}"
        );
    }

    #[test]
    fn series_say_ready_missing_and_unknown_apart() {
        let ready = obs(Ok(PodLook::Found(PodHealth {
            ready: false,
            why: "has Ready=False".into(),
            restarts: 4,
        })));
        assert_eq!(
            values(&ready),
            vec![
                ("kafka_healing_probe_success".to_string(), 1.0),
                (POD_EXISTS.to_string(), 1.0),
                (POD_READY.to_string(), 0.0),
                (POD_RESTARTS.to_string(), 4.0),
            ]
        );
        let labels = &ready.series()[3].0;
        assert_eq!(labels["namespace"], "kafka");
        assert_eq!(labels["pod"], "kafka-1");
        assert_eq!(labels["node_id"], "kafka-1");
        assert_eq!(
            ready.detail(),
            "pod kafka/kafka-1 has Ready=False (4 restarts)"
        );
        assert_eq!(
            values(&obs(Ok(PodLook::Missing))),
            vec![
                ("kafka_healing_probe_success".to_string(), 1.0),
                (POD_EXISTS.to_string(), 0.0),
            ]
        );
        // No answer: no pod series at all, so nothing reads as "not ready".
        let unknown = obs(Err("connection refused".into()));
        assert_eq!(
            values(&unknown),
            vec![("kafka_healing_probe_success".to_string(), 0.0)]
        );
        assert_eq!(unknown.detail(), "unknown: connection refused");
    }
}
