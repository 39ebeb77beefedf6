//! Reading a pod's health for the self-watch's `kubernetes` method: one GET of the pod
//! through the same client the `kube` steps use.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::conn::KubeConn;
use super::names::{NameError, dns1123_label, dns1123_subdomain};
use super::run::not_ready_reason;
use crate::runbook::exec::outcome::error_chain;

/// What the API server said about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodLook {
    /// The pod exists.
    Found(PodHealth),
    /// The API answered 404: there is no such pod (being recreated, or misnamed).
    Missing,
}

/// A pod's readiness and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHealth {
    /// Its `Ready` condition is `True` and it is not being deleted.
    pub ready: bool,
    /// Why it is not ready (empty when it is).
    pub why: String,
    /// The sum of its containers' `restartCount`.
    pub restarts: u64,
}

/// The health of `pod`: readiness as `wait_pod_ready` judges it (no replaced uid), and
/// the restarts of all its containers.
pub fn health_of(pod: &Pod) -> PodHealth {
    let why = not_ready_reason(pod, None);
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| u64::try_from(c.restart_count).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    PodHealth {
        ready: why.is_none(),
        why: why.unwrap_or_default(),
        restarts,
    }
}

/// Why there is no answer about a pod: its state is unknown, not down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookError {
    /// The namespace is not a DNS-1123 label.
    #[error("namespace: {0}")]
    Namespace(NameError),
    /// The pod's name is not a DNS-1123 subdomain.
    #[error("pod: {0}")]
    Pod(NameError),
    /// No client could be made from the `kubernetes:` section.
    #[error("{0}")]
    Connect(String),
    /// The API server answered with an error status (403, 5xx, …), not about the pod.
    #[error("get pod {namespace}/{name}: HTTP {code} {reason}: {message}")]
    Api {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The HTTP status code.
        code: u16,
        /// The status's reason.
        reason: String,
        /// The status's message.
        message: String,
    },
    /// The request got no answer (connection, TLS, timeout, decoding).
    #[error("get pod {namespace}/{name}: {chain}")]
    Request {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The client error and its causes, on one line.
        chain: String,
    },
}

/// GETs pod `namespace/name`. An error is anything but an answer about the pod (no
/// connection, a timeout, 403, 5xx): the caller must treat it as unknown, not as down.
/// The client's `request_timeout_seconds` bounds the request; callers add their own.
pub async fn look_pod(conn: &KubeConn, namespace: &str, name: &str) -> Result<PodLook, LookError> {
    dns1123_label(namespace).map_err(LookError::Namespace)?;
    dns1123_subdomain(name).map_err(LookError::Pod)?;
    let client = conn.client().await.map_err(LookError::Connect)?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    match pods.get_opt(name).await {
        Ok(Some(p)) => Ok(PodLook::Found(health_of(&p))),
        Ok(None) => Ok(PodLook::Missing),
        Err(kube::Error::Api(s)) => Err(LookError::Api {
            namespace: namespace.to_string(),
            name: name.to_string(),
            code: s.code,
            reason: s.reason,
            message: s.message,
        }),
        Err(e) => Err(LookError::Request {
            namespace: namespace.to_string(),
            name: name.to_string(),
            chain: error_chain(&e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};

    fn pod(ready: &str, restarts: &[i32]) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(
                    restarts
                        .iter()
                        .map(|n| ContainerStatus {
                            restart_count: *n,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn look_errors_say_what_they_said_as_text() {
        let e = LookError::Api {
            namespace: "kafka".into(),
            name: "kafka-0".into(),
            code: 403,
            reason: "Forbidden".into(),
            message: "pods is forbidden".into(),
        };
        assert_eq!(
            e.to_string(),
            "get pod kafka/kafka-0: HTTP 403 Forbidden: pods is forbidden"
        );
        let e = LookError::Request {
            namespace: "kafka".into(),
            name: "kafka-0".into(),
            chain: "connection refused".into(),
        };
        assert_eq!(e.to_string(), "get pod kafka/kafka-0: connection refused");
        let e = LookError::Namespace(NameError::Label("Kafka".into()));
        assert!(
            e.to_string()
                .starts_with("namespace: `Kafka` is not a DNS-1123 label"),
            "{e}"
        );
        assert_eq!(
            LookError::Connect("no config".into()).to_string(),
            "no config"
        );
    }

    #[test]
    fn health_sums_the_containers_restarts() {
        let h = health_of(&pod("True", &[2, 3]));
        assert_eq!(
            h,
            PodHealth {
                ready: true,
                why: String::new(),
                restarts: 5
            }
        );
        let h = health_of(&pod("False", &[]));
        assert!(!h.ready);
        assert_eq!(h.why, "has Ready=False");
        assert_eq!(h.restarts, 0);
        // A negative count (never sent by a real API server) counts as none.
        assert_eq!(health_of(&pod("True", &[-1, 4])).restarts, 4);
        assert!(!health_of(&Pod::default()).ready);
    }
}
