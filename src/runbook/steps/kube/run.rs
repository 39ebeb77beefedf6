//! One try of a `kube` step: one Kubernetes API action through the `kube` client.
//!
//! The argv is `[ACTION, namespace=NS, name=NAME, …]` as rendered (names already checked
//! as DNS-1123 names). `evict_pod` goes through the Eviction API so PodDisruptionBudgets
//! are honoured (a 429 is a failure carrying the API server's message); `delete_pod`
//! deletes with an optional grace period; `rollout_restart` sets
//! `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]` of a
//! StatefulSet with a strategic merge patch, as `kubectl rollout restart` does; `scale`
//! merge-patches the StatefulSet's scale subresource; `wait_pod_ready` polls the pod until
//! its `Ready` condition is `True`, it is not being deleted, and it is not the pod this
//! service last evicted or deleted under that name (compared by uid).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use super::conn::KubeConn;
use super::names::{dns1123_label, dns1123_subdomain};
use crate::journal::StepStatus;
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome, error_chain};
use crate::runbook::render::RenderedStep;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The parsed argv.
struct Action<'a> {
    verb: &'a str,
    namespace: &'a str,
    name: &'a str,
    replicas: Option<i32>,
    grace: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ExecError {
    ExecError::InvalidStep {
        kind: "kube".to_string(),
        message: message.into(),
    }
}

fn parse(argv: &[String]) -> Result<Action<'_>, ExecError> {
    let [verb, rest @ ..] = argv else {
        return Err(ExecError::EmptyArgv);
    };
    let mut a = Action {
        verb,
        namespace: "",
        name: "",
        replicas: None,
        grace: None,
    };
    for kv in rest {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(invalid(format!("`{}` is not KEY=VALUE", kv.escape_debug())));
        };
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| invalid(format!("{k}: `{}` is not a count", v.escape_debug())))
        };
        match k {
            "namespace" => a.namespace = v,
            "name" => a.name = v,
            "replicas" => {
                a.replicas =
                    Some(i32::try_from(num(v)?).map_err(|_| invalid("replicas: too large"))?)
            }
            "grace_period_seconds" => a.grace = Some(num(v)?),
            other => return Err(invalid(format!("unknown argument `{other}`"))),
        }
    }
    // The renderer checked these; the executor does not trust its input either.
    dns1123_label(a.namespace).map_err(|m| invalid(format!("namespace: {m}")))?;
    dns1123_subdomain(a.name).map_err(|m| invalid(format!("name: {m}")))?;
    Ok(a)
}

/// One try of a `kube` step (see the module doc) within `timeout`.
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let action = match parse(&step.argv) {
        Ok(a) => a,
        Err(e) => return Outcome::fatal(e),
    };
    let Some(conn) = opts.kube.as_deref() else {
        return Outcome::fatal(invalid(
            "no `kubernetes:` section in the config: cannot reach the API server",
        ));
    };
    let work = async {
        let client = conn.client().await.map_err(Failure::Fatal)?;
        match action.verb {
            "evict_pod" => evict(conn, client, &action).await,
            "delete_pod" => delete(conn, client, &action).await,
            "rollout_restart" => restart(client, &action).await,
            "scale" => scale(client, &action).await,
            "wait_pod_ready" => wait_ready(conn, client, &action, opts.wait_interval).await,
            other => Err(Failure::Fatal(format!("unknown kube action `{other}`"))),
        }
    };
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, work) => r,
        _ = cancel.cancelled() => return Outcome::fatal(ExecError::Cancelled),
    };
    match result {
        Ok(Ok(done)) => Outcome {
            stdout: done,
            ..Outcome::new(StepStatus::Succeeded)
        },
        Ok(Err(Failure::Fatal(m))) => Outcome {
            final_: true,
            ..Outcome::failed(m)
        },
        Ok(Err(Failure::Retry(m))) => Outcome::failed(m),
        Err(_) => Outcome {
            error: Some(format!(
                "{} {}/{}: not done within {}",
                action.verb,
                action.namespace,
                action.name,
                humantime::format_duration(timeout)
            )),
            ..Outcome::new(StepStatus::TimedOut)
        },
    }
}

/// Why an action failed: `Fatal` when another try cannot help (bad config), else `Retry`.
enum Failure {
    Fatal(String),
    Retry(String),
}

fn api_error(what: &str, e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) => Failure::Retry(format!(
            "{what}: HTTP {} {}: {}",
            s.code,
            s.reason,
            if s.message.is_empty() {
                "(no message)"
            } else {
                &s.message
            }
        )),
        other => Failure::Retry(format!("{what}: {}", error_chain(other))),
    }
}

async fn evict(conn: &KubeConn, client: kube::Client, a: &Action<'_>) -> Result<String, Failure> {
    let what = format!("evict pod {}/{}", a.namespace, a.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), a.namespace);
    // The uid of the pod evicted, so that wait_pod_ready waits for its successor.
    let uid = pods
        .get(a.name)
        .await
        .map_err(|e| api_error(&what, &e))?
        .metadata
        .uid;
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some(a.name.to_string()),
            namespace: Some(a.namespace.to_string()),
            ..Default::default()
        },
        delete_options: None,
    };
    let body = serde_json::to_vec(&eviction).map_err(|e| Failure::Fatal(e.to_string()))?;
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        a.namespace, a.name
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(body)
    .map_err(|e| Failure::Fatal(e.to_string()))?;
    // Any 2xx is success, whatever its body (a `Status` today); errors carry the Status.
    match client.request_text(req).await {
        Ok(_) => {
            let uid_text = uid.clone().unwrap_or_default();
            conn.remember(a.namespace, a.name, uid);
            Ok(format!(
                "evicted pod {}/{} (uid {uid_text})",
                a.namespace, a.name
            ))
        }
        Err(kube::Error::Api(s)) if s.code == 429 => Err(Failure::Retry(format!(
            "{what}: refused by the API server (HTTP 429, a PodDisruptionBudget forbids it \
             now): {}",
            s.message
        ))),
        Err(e) => Err(api_error(&what, &e)),
    }
}

async fn delete(conn: &KubeConn, client: kube::Client, a: &Action<'_>) -> Result<String, Failure> {
    let what = format!("delete pod {}/{}", a.namespace, a.name);
    let pods: Api<Pod> = Api::namespaced(client, a.namespace);
    let dp = DeleteParams {
        grace_period_seconds: a.grace,
        ..Default::default()
    };
    let uid = match pods.delete(a.name, &dp).await {
        Ok(either) => either.left().and_then(|p| p.metadata.uid),
        Err(e) => return Err(api_error(&what, &e)),
    };
    let uid_text = uid.clone().unwrap_or_default();
    conn.remember(a.namespace, a.name, uid);
    Ok(format!(
        "deleted pod {}/{} (uid {uid_text})",
        a.namespace, a.name
    ))
}

async fn restart(client: kube::Client, a: &Action<'_>) -> Result<String, Failure> {
    let what = format!("rollout restart statefulset {}/{}", a.namespace, a.name);
    let sts: Api<StatefulSet> = Api::namespaced(client, a.namespace);
    let now = humantime::format_rfc3339_seconds(crate::clock::system_time(crate::clock::now_ms()))
        .to_string();
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: now } } } }
    });
    sts.patch(a.name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(|e| api_error(&what, &e))?;
    Ok(format!(
        "restarted statefulset {}/{} ({RESTARTED_AT}={now})",
        a.namespace, a.name
    ))
}

async fn scale(client: kube::Client, a: &Action<'_>) -> Result<String, Failure> {
    let Some(n) = a.replicas else {
        return Err(Failure::Fatal("scale needs replicas=N".into()));
    };
    let what = format!("scale statefulset {}/{}", a.namespace, a.name);
    let sts: Api<StatefulSet> = Api::namespaced(client, a.namespace);
    let patch = serde_json::json!({ "spec": { "replicas": n } });
    sts.patch_scale(a.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| api_error(&what, &e))?;
    Ok(format!(
        "scaled statefulset {}/{} to {n} replicas",
        a.namespace, a.name
    ))
}

/// Why a pod does not count as ready yet, or `None` when it does.
pub fn not_ready_reason(pod: &Pod, replaced_uid: Option<&str>) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("is being deleted".into());
    }
    if let (Some(old), Some(uid)) = (replaced_uid, pod.metadata.uid.as_deref())
        && old == uid
    {
        return Some(format!("is still the replaced pod (uid {uid})"));
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(format!("has Ready={}", c.status)),
        None => Some("has no Ready condition yet".into()),
    }
}

async fn wait_ready(
    conn: &KubeConn,
    client: kube::Client,
    a: &Action<'_>,
    interval: Duration,
) -> Result<String, Failure> {
    let pods: Api<Pod> = Api::namespaced(client, a.namespace);
    let replaced = conn.replaced_uid(a.namespace, a.name);
    loop {
        let why = match pods.get_opt(a.name).await {
            Ok(Some(pod)) => match not_ready_reason(&pod, replaced.as_deref()) {
                None => {
                    conn.forget(a.namespace, a.name);
                    return Ok(format!(
                        "pod {}/{} is ready (uid {})",
                        a.namespace,
                        a.name,
                        pod.metadata.uid.unwrap_or_default()
                    ));
                }
                Some(why) => why,
            },
            Ok(None) => "does not exist yet".into(),
            Err(e) => match api_error("get", &e) {
                Failure::Fatal(m) | Failure::Retry(m) => m,
            },
        };
        tracing::debug!(
            namespace = a.namespace,
            pod = a.name,
            why,
            "pod not ready yet"
        );
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod(uid: &str, ready: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: ready.map(|r| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: r.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn readiness() {
        assert_eq!(not_ready_reason(&pod("a", Some("True")), None), None);
        assert_eq!(not_ready_reason(&pod("b", Some("True")), Some("a")), None);
        assert_eq!(
            not_ready_reason(&pod("a", Some("True")), Some("a")).as_deref(),
            Some("is still the replaced pod (uid a)")
        );
        assert_eq!(
            not_ready_reason(&pod("a", Some("False")), None).as_deref(),
            Some("has Ready=False")
        );
        assert_eq!(
            not_ready_reason(&pod("a", None), None).as_deref(),
            Some("has no Ready condition yet")
        );
    }

    #[test]
    fn argv_is_checked_again() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).err();
        assert!(a(&["evict_pod", "namespace=kafka", "name=kafka-0"]).is_none());
        assert!(a(&["evict_pod", "namespace=kafka", "name=../x"]).is_some());
        assert!(a(&["evict_pod", "namespace=Kafka", "name=kafka-0"]).is_some());
        assert!(a(&["scale", "namespace=k", "name=s", "replicas=-1"]).is_some());
        assert!(a(&["scale", "namespace=k", "name=s", "bogus=1"]).is_some());
        assert!(a(&[]).is_some());
    }
}
