//! Reading a pod's health for the self-watch's `kubernetes` method: one GET of the pod
//! through the same client the `kube` steps use.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::conn::KubeConn;
use super::names::{dns1123_label, dns1123_subdomain};
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

/// GETs pod `namespace/name`. An error is anything but an answer about the pod (no
/// connection, a timeout, 403, 5xx): the caller must treat it as unknown, not as down.
/// The client's `request_timeout_seconds` bounds the request; callers add their own.
pub async fn look_pod(conn: &KubeConn, namespace: &str, name: &str) -> Result<PodLook, String> {
    dns1123_label(namespace).map_err(|m| format!("namespace: {m}"))?;
    dns1123_subdomain(name).map_err(|m| format!("pod: {m}"))?;
    let client = conn.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    match pods.get_opt(name).await {
        Ok(Some(p)) => Ok(PodLook::Found(health_of(&p))),
        Ok(None) => Ok(PodLook::Missing),
        Err(kube::Error::Api(s)) => Err(format!(
            "get pod {namespace}/{name}: HTTP {} {}: {}",
            s.code, s.reason, s.message
        )),
        Err(e) => Err(format!("get pod {namespace}/{name}: {}", error_chain(&e))),
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
