//! `kube` steps against a fake Kubernetes API server.
//!
//! Why a fake: no real API server can run on this machine (no kubelet, no etcd-backed
//! kube-apiserver binary from a package registry). The fake is an axum server on
//! 127.0.0.1:0 that speaks the API's wire format for exactly the calls the step makes
//! (pod GET with conditions, the policy/v1 Eviction subresource answering 201 or 429 with
//! a `Status` body like a PodDisruptionBudget refusal, pod DELETE, StatefulSet and scale
//! PATCH) and **records every request** (method, path, query, content type, token and
//! JSON body) so that each test asserts the exact requests the real client sent. The
//! client is the real `kube` client, configured by a real kubeconfig pointing at
//! `http://127.0.0.1:PORT` with a bearer token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kafka_healing::config::KubernetesConfig;
use kafka_healing::journal::StepStatus;
use kafka_healing::rules::model::OnFailure;
use kafka_healing::runbook::RenderedStep;
use kafka_healing::runbook::exec::{ExecOptions, KubeConn, run_step};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::serve::harness::{Server, alert, config, down, webhook};

mod watch;

/// The token the fake API server expects (from the kubeconfig).
const API_TOKEN: &str = "fake-sa-token";

/// One request as the fake API server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Default)]
struct FakeState {
    seen: Vec<Seen>,
    /// GET answers per pod name, in order; the last one repeats.
    pod_gets: HashMap<String, VecDeque<(u16, Value)>>,
    /// Refuse evictions as a PodDisruptionBudget would.
    pdb_blocks: bool,
    /// Requests that lacked the bearer token.
    unauthorized: usize,
}

/// The fake API server (see the module doc).
struct FakeApi {
    url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
    /// The self-signed certificate (PEM) when served over HTTPS.
    ca_pem: Option<String>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod(name: &str, uid: &str, ready: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "kafka", "uid": uid,
            "creationTimestamp": "2026-11-28T00:00:00Z"
        },
        "spec": { "containers": [ { "name": "kafka", "image": "kafka:4" } ] },
        "status": {
            "phase": "Running",
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": ready }
            ]
        }
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code
    })
}

/// The Status the API server answers when a PodDisruptionBudget blocks an eviction.
fn pdb_refusal() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests",
        "details": { "causes": [ { "reason": "DisruptionBudget",
            "message": "The disruption budget kafka-pdb needs 2 healthy pods and has 2 currently" } ] },
        "code": 429
    })
}

async fn handle(
    State(st): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = st.lock().expect("fake state");
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    if header("authorization").as_deref() != Some(&format!("Bearer {API_TOKEN}")) {
        s.unauthorized += 1;
    }
    s.seen.push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (code, answer) = match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "v1", "namespaces", "kafka", "pods", name]) => {
            match s.pod_gets.get_mut(*name) {
                Some(q) if q.len() > 1 => q.pop_front().expect("non-empty"),
                Some(q) => q.front().cloned().expect("non-empty"),
                None => (
                    404,
                    status(404, "NotFound", &format!("pods \"{name}\" not found")),
                ),
            }
        }
        ("POST", ["api", "v1", "namespaces", "kafka", "pods", _, "eviction"]) => {
            if s.pdb_blocks {
                (429, pdb_refusal())
            } else {
                (201, status(201, "", ""))
            }
        }
        ("DELETE", ["api", "v1", "namespaces", "kafka", "pods", name]) => {
            let mut p = pod(name, "uid-old", "True");
            p["metadata"]["deletionTimestamp"] = json!("2026-11-28T00:00:30Z");
            (200, p)
        }
        (
            "PATCH",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                "kafka",
                "statefulsets",
                name,
            ],
        ) => (
            200,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": name, "namespace": "kafka"}}),
        ),
        (
            "PATCH",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                "kafka",
                "statefulsets",
                name,
                "scale",
            ],
        ) => (
            200,
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": name, "namespace": "kafka"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2}}),
        ),
        _ => (404, status(404, "NotFound", "the server could not find it")),
    };
    (
        StatusCode::from_u16(code).expect("status"),
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

impl FakeApi {
    async fn start() -> FakeApi {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi {
            url: format!("http://{addr}"),
            state,
            task,
            ca_pem: None,
        }
    }

    /// The same server over HTTPS with a fresh self-signed certificate for 127.0.0.1, as
    /// real API servers are only reached over TLS; the kubeconfig carries it as the CA.
    async fn start_tls() -> FakeApi {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("self-signed certificate");
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.clone().into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("TLS config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let server = axum_server::from_tcp_rustls(listener, tls).expect("TLS server");
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        FakeApi {
            url: format!("https://{addr}"),
            state,
            task,
            ca_pem: Some(cert_pem),
        }
    }

    /// Scripts the answers to GETs of pod `name`.
    fn pod_gets(&self, name: &str, answers: Vec<(u16, Value)>) {
        self.state
            .lock()
            .expect("fake state")
            .pod_gets
            .insert(name.to_string(), answers.into());
    }

    fn block_evictions(&self) {
        self.state.lock().expect("fake state").pdb_blocks = true;
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("fake state").seen.clone()
    }

    fn unauthorized(&self) -> usize {
        self.state.lock().expect("fake state").unauthorized
    }

    /// A kubeconfig for this server (a real file the real client reads).
    fn kubeconfig(&self) -> String {
        use base64::Engine as _;
        let ca = match &self.ca_pem {
            Some(pem) => format!(
                "      certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            ),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: fake\n    cluster:\n      server: {}\n{ca}\
             contexts:\n  - name: fake\n    context: {{ cluster: fake, user: fake }}\n\
             current-context: fake\nusers:\n  - name: fake\n    user: {{ token: {API_TOKEN} }}\n",
            self.url
        )
    }
}

fn seen(method: &str, path: &str, content_type: Option<&str>, body: Value) -> Seen {
    Seen {
        method: method.into(),
        path: path.into(),
        query: None,
        content_type: content_type.map(String::from),
        body,
    }
}

/// A GET as the client sends it (no body, no content type).
fn get(path: &str) -> Seen {
    seen("GET", path, None, Value::Null)
}

const POD_PATH: &str = "/api/v1/namespaces/kafka/pods/kafka-2";

fn eviction_body() -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction",
           "metadata": {"name": "kafka-2", "namespace": "kafka"}})
}

/// Options whose `kube` connection is the fake API server.
fn opts_for(api: &FakeApi, dir: &Scratch) -> ExecOptions {
    let kc = dir.write("kubeconfig.yaml", &api.kubeconfig());
    ExecOptions {
        wait_interval: Duration::from_millis(50),
        retry_pause: Duration::from_millis(10),
        kube: Some(Arc::new(KubeConn::new(KubernetesConfig {
            kubeconfig: Some(kc),
            request_timeout_seconds: 5,
            ..Default::default()
        }))),
        ..ExecOptions::default()
    }
}

fn kube_step(argv: &[&str], timeout: f64) -> RenderedStep {
    RenderedStep {
        name: "k".into(),
        kind: "kube",
        argv: argv.iter().map(|s| s.to_string()).collect(),
        body: None,
        timeout_seconds: Some(timeout),
        retries: 0,
        on_failure: OnFailure::Abort,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pdb_refusal_is_a_failed_step_with_the_api_message() {
    let api = FakeApi::start().await;
    api.pod_gets("kafka-2", vec![(200, pod("kafka-2", "uid-1", "True"))]);
    api.block_evictions();
    let s = Scratch::new();
    let o = opts_for(&api, &s);
    let step = kube_step(&["evict_pod", "namespace=kafka", "name=kafka-2"], 10.0);
    let rec = run_step(&step, 0, &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::Failed, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some(
            "evict pod kafka/kafka-2: refused by the API server (HTTP 429, a \
             PodDisruptionBudget forbids it now): Cannot evict pod as it would violate the \
             pod's disruption budget."
        )
    );
    assert_eq!(
        api.seen(),
        vec![
            get(POD_PATH),
            seen(
                "POST",
                &format!("{POD_PATH}/eviction"),
                Some("application/json"),
                eviction_body()
            ),
        ]
    );
    assert_eq!(api.unauthorized(), 0, "every request carried the token");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_grace_then_wait_for_the_new_pod() {
    let api = FakeApi::start().await;
    // After the delete: the old pod (still Ready, same uid), gone, the new pod not ready,
    // then ready. Only the last one ends the wait.
    api.pod_gets(
        "kafka-2",
        vec![
            (200, pod("kafka-2", "uid-old", "True")),
            (404, status(404, "NotFound", "pods \"kafka-2\" not found")),
            (200, pod("kafka-2", "uid-new", "False")),
            (200, pod("kafka-2", "uid-new", "True")),
        ],
    );
    let s = Scratch::new();
    let o = opts_for(&api, &s);
    let cancel = CancellationToken::new();
    let del = kube_step(
        &[
            "delete_pod",
            "namespace=kafka",
            "name=kafka-2",
            "grace_period_seconds=30",
        ],
        10.0,
    );
    let rec = run_step(&del, 0, &o, &cancel).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout, "deleted pod kafka/kafka-2 (uid uid-old)");
    let wait = kube_step(&["wait_pod_ready", "namespace=kafka", "name=kafka-2"], 10.0);
    let rec = run_step(&wait, 1, &o, &cancel).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.stdout, "pod kafka/kafka-2 is ready (uid uid-new)");
    assert_eq!(
        api.seen(),
        vec![
            Seen {
                query: Some("".into()),
                ..seen(
                    "DELETE",
                    POD_PATH,
                    Some("application/json"),
                    json!({"gracePeriodSeconds": 30})
                )
            },
            get(POD_PATH),
            get(POD_PATH),
            get(POD_PATH),
            get(POD_PATH),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_pod_ready_is_bounded_by_its_timeout() {
    let api = FakeApi::start().await;
    api.pod_gets("kafka-2", vec![(200, pod("kafka-2", "uid-1", "False"))]);
    let s = Scratch::new();
    let o = opts_for(&api, &s);
    let step = kube_step(&["wait_pod_ready", "namespace=kafka", "name=kafka-2"], 0.5);
    let t0 = std::time::Instant::now();
    let rec = run_step(&step, 0, &o, &CancellationToken::new()).await;
    assert_eq!(rec.status, StepStatus::TimedOut, "{rec:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(
        rec.error.as_deref(),
        Some("wait_pod_ready kafka/kafka-2: not done within 500ms")
    );
    let n = api.seen().len();
    assert!(n >= 2, "polled more than once: {n}");
    assert!(api.seen().iter().all(|r| *r == get(POD_PATH)));
}

#[tokio::test(flavor = "multi_thread")]
async fn executor_rejects_a_bad_name_without_a_request() {
    let api = FakeApi::start().await;
    let s = Scratch::new();
    let o = opts_for(&api, &s);
    for argv in [
        ["evict_pod", "namespace=kafka", "name=../../secrets/x"],
        ["evict_pod", "namespace=kube-system/", "name=kafka-2"],
        ["delete_pod", "namespace=kafka", "name=Kafka_2"],
    ] {
        let rec = run_step(&kube_step(&argv, 5.0), 0, &o, &CancellationToken::new()).await;
        assert_eq!(rec.status, StepStatus::Failed, "{rec:?}");
        assert!(
            rec.error
                .as_deref()
                .is_some_and(|e| e.contains("is not a DNS-1123")),
            "{rec:?}"
        );
    }
    assert_eq!(api.seen(), vec![]);
}

fn e2e_rules(extra_steps: &str) -> String {
    format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: k8s
  - name: hostile
    matchers: ['alertname="PodStuck"']
    runbook: hostile
runbooks:
  k8s:
    steps:
      - name: evict broker pod
        kube: {{ action: evict_pod, namespace: kafka, name: "{{{{target.node_id}}}}" }}
      - name: wait for the new pod
        kube: {{ action: wait_pod_ready, namespace: kafka, name: "{{{{target.node_id}}}}", timeout: 20s }}
{extra_steps}  hostile:
    steps:
      - name: evict the labelled pod
        kube: {{ action: evict_pod, namespace: kafka, name: "{{{{alert.labels.pod}}}}" }}
"#
    )
}

/// End to end through `kafka-healing serve`: the alert runs evict, wait (past the old pod),
/// rollout restart and scale, each exactly as the fake API server recorded it.
#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_kube_steps_with_exact_requests() {
    let api = FakeApi::start().await;
    api.pod_gets(
        "kafka-2",
        vec![
            (200, pod("kafka-2", "uid-1", "True")), // before the eviction
            (200, pod("kafka-2", "uid-1", "True")), // stale: still the evicted pod
            (200, pod("kafka-2", "uid-2", "False")),
            (200, pod("kafka-2", "uid-2", "True")),
        ],
    );
    let s = Scratch::new();
    s.write("kubeconfig.yaml", &api.kubeconfig());
    let extra = "      - name: restart the statefulset\n        kube: { action: rollout_restart, namespace: kafka, name: kafka }\n      - name: scale\n        kube: { action: scale, namespace: kafka, name: kafka, replicas: 3 }\n";
    let srv = Server::start(
        &s,
        &config("kubernetes: { kubeconfig: kubeconfig.yaml }\n"),
        &e2e_rules(extra),
    );
    let (st, _) = srv
        .post(&webhook("r", vec![alert("firing", down("kafka-2"))]))
        .await;
    assert_eq!(st, 200);
    let list = srv
        .wait_until(30, "the kube execution to end", |l| {
            l.iter()
                .any(|e| e["status"] == "succeeded" || e["status"] == "failed")
        })
        .await;
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(list[0]["status"], "succeeded", "{detail}");
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4, "{detail}");
    assert_eq!(
        steps[0]["argv"],
        json!(["evict_pod", "namespace=kafka", "name=kafka-2"])
    );
    assert_eq!(steps[1]["stdout"], "pod kafka/kafka-2 is ready (uid uid-2)");
    assert_eq!(
        steps[3]["argv"],
        json!(["scale", "namespace=kafka", "name=kafka", "replicas=3"])
    );
    let mut seen_list = api.seen();
    // The restart time is the server's clock: checked for shape, then fixed for comparison.
    let at = seen_list[5].body["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .expect("restartedAt")
        .to_string();
    assert!(
        humantime::parse_rfc3339(&at).is_ok(),
        "restartedAt `{at}` is RFC 3339"
    );
    seen_list[5].body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!("AT");
    let sts = "/apis/apps/v1/namespaces/kafka/statefulsets/kafka";
    assert_eq!(
        seen_list,
        vec![
            get(POD_PATH),
            seen(
                "POST",
                &format!("{POD_PATH}/eviction"),
                Some("application/json"),
                eviction_body()
            ),
            get(POD_PATH),
            get(POD_PATH),
            get(POD_PATH),
            Seen {
                query: Some("".into()),
                ..seen(
                    "PATCH",
                    sts,
                    Some("application/strategic-merge-patch+json"),
                    json!({"spec": {"template": {"metadata": {"annotations":
                        {"kubectl.kubernetes.io/restartedAt": "AT"}}}}})
                )
            },
            Seen {
                query: Some("".into()),
                ..seen(
                    "PATCH",
                    &format!("{sts}/scale"),
                    Some("application/merge-patch+json"),
                    json!({"spec": {"replicas": 3}})
                )
            },
        ]
    );
    assert_eq!(api.unauthorized(), 0);
}

/// A hostile label that would make an invalid pod name stops the execution before any
/// request; a PDB refusal through serve fails the execution with the API's message.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_hostile_pod_name_and_reports_a_pdb_refusal() {
    let api = FakeApi::start().await;
    let s = Scratch::new();
    s.write("kubeconfig.yaml", &api.kubeconfig());
    let srv = Server::start(
        &s,
        &config("kubernetes: { kubeconfig: kubeconfig.yaml }\nrecovery: { max_attempts: 1 }\n"),
        &e2e_rules(""),
    );
    let hostile = json!({"alertname": "PodStuck", "node_id": "kafka-1",
                         "pod": "kafka-0/../../../api/v1/namespaces/kube-system/secrets"});
    srv.post(&webhook("r", vec![alert("firing", hostile)]))
        .await;
    let list = srv
        .wait_until(20, "the hostile execution to end", |l| {
            l.iter()
                .any(|e| e["rule"] == "hostile" && e["status"] != "running")
        })
        .await;
    let e = list
        .iter()
        .find(|e| e["rule"] == "hostile")
        .expect("hostile");
    assert_eq!(e["status"], "skipped", "{e}");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "name: `kafka-0/../../../api/v1/namespaces/kube-system/secrets` is not a DNS-1123 name"
        ) && reason.ends_with("nothing runs"),
        "reason names the check: {e}"
    );
    assert_eq!(api.seen(), vec![], "no request reached the API server");

    api.pod_gets("kafka-2", vec![(200, pod("kafka-2", "uid-1", "True"))]);
    api.block_evictions();
    srv.post(&webhook("r", vec![alert("firing", down("kafka-2"))]))
        .await;
    let list = srv
        .wait_until(20, "the refused eviction", |l| {
            l.iter()
                .any(|e| e["rule"] == "broker-down" && e["status"] == "failed")
        })
        .await;
    let e = list
        .iter()
        .find(|e| e["rule"] == "broker-down")
        .expect("broker-down");
    let (_, detail) = srv.get(&format!("/api/v1/executions/{}", e["id"])).await;
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "the wait step never ran: {detail}");
    assert!(
        steps[0]["error"]
            .as_str()
            .is_some_and(|m| m.contains("HTTP 429")
                && m.contains("Cannot evict pod as it would violate the pod's disruption budget.")),
        "{detail}"
    );
    assert_eq!(api.seen().len(), 2, "GET and the refused POST only");
}

/// Over HTTPS, as against a real cluster: the kubeconfig's CA is trusted and the request
/// arrives intact through `serve`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_reaches_a_tls_api_server_with_the_kubeconfig_ca() {
    let api = FakeApi::start_tls().await;
    assert!(api.url.starts_with("https://127.0.0.1:"), "{}", api.url);
    let s = Scratch::new();
    s.write("kubeconfig.yaml", &api.kubeconfig());
    let rules = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: scale
runbooks:
  scale:
    steps:
      - name: scale
        kube: { action: scale, namespace: kafka, name: kafka, replicas: 3 }
"#;
    let srv = Server::start(
        &s,
        &config("kubernetes: { kubeconfig: kubeconfig.yaml }\n"),
        rules,
    );
    srv.post(&webhook("r", vec![alert("firing", down("kafka-2"))]))
        .await;
    let list = srv
        .wait_until(20, "the scale execution to end", |l| {
            l.iter()
                .any(|e| e["status"] == "succeeded" || e["status"] == "failed")
        })
        .await;
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(list[0]["status"], "succeeded", "{detail}");
    assert_eq!(
        api.seen(),
        vec![Seen {
            query: Some("".into()),
            ..seen(
                "PATCH",
                "/apis/apps/v1/namespaces/kafka/statefulsets/kafka/scale",
                Some("application/merge-patch+json"),
                json!({"spec": {"replicas": 3}})
            )
        }]
    );
    assert_eq!(api.unauthorized(), 0);
}

/// `in_cluster: true` reads the service account the way a pod has it: the API server from
/// `KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA from
/// `/var/run/secrets/kubernetes.io/serviceaccount/`. The server runs in its own mount
/// namespace (`unshare --mount`, root only) with a tmpfs over `/run` holding those files, so
/// the host's `/run` is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn serve_in_cluster_uses_the_service_account() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"))
            == 0,
        "this test mounts a tmpfs in a private mount namespace: it needs root (CI runs as root)"
    );
    let api = FakeApi::start_tls().await;
    let port = api.url.rsplit(':').next().expect("port").to_string();
    let s = Scratch::new();
    let sa = s.path().join("sa");
    std::fs::create_dir_all(&sa).expect("mkdir");
    std::fs::write(sa.join("token"), API_TOKEN).expect("token");
    std::fs::write(sa.join("ca.crt"), api.ca_pem.as_deref().expect("TLS CA")).expect("ca");
    std::fs::write(sa.join("namespace"), "kafka-healing").expect("namespace");
    let wrap = s.write(
        "wrap.sh",
        "#!/bin/sh\nset -e\nmount -t tmpfs tmpfs /run\nmkdir -p /run/secrets/kubernetes.io/serviceaccount\ncp \"$SA\"/* /run/secrets/kubernetes.io/serviceaccount/\nexec \"$@\"\n",
    );
    let rules = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: scale
runbooks:
  scale:
    steps:
      - name: scale
        kube: { action: scale, namespace: kafka, name: kafka, replicas: 3 }
"#;
    s.write("config.yaml", &config("kubernetes: { in_cluster: true }\n"));
    s.write("rules.yaml", rules);
    let sa_dir = sa.to_str().expect("utf-8").to_string();
    let srv = Server::start_wrapped(
        s.path(),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            wrap.to_str().expect("utf-8"),
        ],
        &[
            ("SA", sa_dir.as_str()),
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", port.as_str()),
        ],
    );
    srv.post(&webhook("r", vec![alert("firing", down("kafka-2"))]))
        .await;
    let list = srv
        .wait_until(20, "the scale execution to end", |l| {
            l.iter()
                .any(|e| e["status"] == "succeeded" || e["status"] == "failed")
        })
        .await;
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[0]["id"]))
        .await;
    assert_eq!(list[0]["status"], "succeeded", "{detail}\n{}", srv.log());
    assert_eq!(
        api.seen(),
        vec![Seen {
            query: Some("".into()),
            ..seen(
                "PATCH",
                "/apis/apps/v1/namespaces/kafka/statefulsets/kafka/scale",
                Some("application/merge-patch+json"),
                json!({"spec": {"replicas": 3}})
            )
        }]
    );
    assert_eq!(
        api.unauthorized(),
        0,
        "the service account's token was sent"
    );
    // The host's /run did not get the files.
    assert_ne!(
        std::fs::read_to_string("/run/secrets/kubernetes.io/serviceaccount/token")
            .ok()
            .as_deref(),
        Some(API_TOKEN)
    );
}

#[test]
fn dry_run_shows_the_kube_action() {
    let s = Scratch::new();
    s.write("config.yaml", &config("kubernetes: { in_cluster: true }\n"));
    s.write("rules.yaml", &e2e_rules(""));
    let alerts = s.write(
        "alerts.json",
        &webhook("r", vec![alert("firing", down("kafka-2"))]),
    );
    let o = run(&[
        "dry-run",
        "-c",
        s.path().join("config.yaml").to_str().expect("utf-8"),
        "--alerts",
        alerts.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("    1. evict broker pod [kube] evict_pod namespace=kafka name=kafka-2\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    2. wait for the new pod [kube] wait_pod_ready namespace=kafka name=kafka-2\n"
        ),
        "{out}"
    );
}

/// Runs `check` on `config` with `rules.yaml`; returns (exit code, stderr with the
/// scratch path removed).
fn check(config: &str, rules: &str) -> (Option<i32>, String) {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", config);
    s.write("rules.yaml", rules);
    let o = run(&["check", "-c", cfg.to_str().expect("utf-8")]);
    let prefix = format!("{}/", s.path().display());
    (o.status.code(), stderr(&o).replace(&prefix, ""))
}

#[test]
fn check_reports_a_kube_step_without_kubernetes_config() {
    let (code, err) = check(&config(""), &e2e_rules(""));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "rules.yaml:11: error: runbooks.k8s.steps[0]: a `kube` step needs the `kubernetes:` section"
        ),
        "{err}"
    );
    assert!(
        err.contains("rules.yaml:17: error: runbooks.hostile.steps[0]: a `kube` step needs"),
        "{err}"
    );
    let (code, err) = check(
        &config("kubernetes: { in_cluster: true }\n"),
        &e2e_rules(""),
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn check_reports_bad_kube_fields_with_their_lines() {
    let rules = r#"rules:
  - name: r
    matchers: ['alertname="X"']
    runbook: bad
runbooks:
  bad:
    steps:
      - name: scale without replicas
        kube: { action: scale, namespace: kafka, name: kafka }
      - name: replicas on evict
        kube: { action: evict_pod, namespace: kafka, name: kafka-0, replicas: 2 }
      - name: unknown action
        kube: { action: drain_node, namespace: kafka, name: n1 }
      - name: wait without timeout
        kube: { action: wait_pod_ready, namespace: kafka, name: kafka-0 }
      - name: grace on scale
        kube: { action: scale, namespace: kafka, name: kafka, replicas: 1, grace_period_seconds: 5 }
      - name: undefined variable
        kube: { action: evict_pod, namespace: kafka, name: "{{target.pod}}" }
"#;
    let (code, err) = check(&config("kubernetes: { in_cluster: true }\n"), rules);
    assert_eq!(code, Some(1), "{err}");
    for want in [
        "rules.yaml:9: error: runbooks.bad.steps[0].kube: step `scale without replicas`: kube action `scale` needs `replicas`",
        "rules.yaml:11: error: runbooks.bad.steps[1].kube: step `replicas on evict`: `replicas` only applies to `scale`, not `evict_pod`",
        "rules.yaml:13: error: runbooks.bad.steps[2].kube: step `unknown action`: kube action `drain_node` is not one of evict_pod, delete_pod, rollout_restart, scale, wait_pod_ready",
        "rules.yaml:15: error: runbooks.bad.steps[3].kube: step `wait without timeout`: kube action `wait_pod_ready` needs `timeout`",
        "rules.yaml:17: error: runbooks.bad.steps[4].kube: step `grace on scale`: `grace_period_seconds` only applies to `delete_pod`, not `scale`",
        "rules.yaml:19: error: runbooks.bad.steps[5].kube: step `undefined variable`:",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    // An unknown key makes the whole runbook unreadable, so it is checked alone.
    let unknown = rules.replace("replicas: 2 }", "force: true }");
    let (code, err) = check(&config("kubernetes: { in_cluster: true }\n"), &unknown);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "rules.yaml:11: error: runbooks.bad.steps[1].kube: `kube`: unknown field `force`"
        ),
        "{err}"
    );
}

#[test]
fn check_reports_bad_kubernetes_config() {
    let rules = "rules: []\n";
    for (section, want) in [
        (
            "kubernetes: { in_cluster: true, kubeconfig: k.yaml }\n",
            "config.yaml:12: error: kubernetes: set either in_cluster: true or kubeconfig, not both",
        ),
        (
            "kubernetes: {}\n",
            "config.yaml:12: error: kubernetes: set in_cluster: true (service account) or kubeconfig: PATH",
        ),
        (
            "kubernetes:\n  kubeconfig: missing.yaml\n",
            "config.yaml:13: error: kubernetes.kubeconfig: cannot read kubeconfig",
        ),
        (
            "kubernetes:\n  in_cluster: true\n  context: prod\n",
            "config.yaml:14: error: kubernetes.context: a context only applies to a kubeconfig",
        ),
        (
            "kubernetes:\n  in_cluster: true\n  namespace: kafka\n",
            "unknown field `namespace`",
        ),
    ] {
        let (code, err) = check(&config(section), rules);
        assert_eq!(code, Some(1), "{section}: {err}");
        assert!(err.contains(want), "{section}: missing `{want}` in:\n{err}");
    }
}

#[tokio::test]
async fn without_a_kubernetes_connection_the_step_fails_at_once() {
    let step = kube_step(&["evict_pod", "namespace=kafka", "name=kafka-2"], 5.0);
    let o = ExecOptions {
        retry_pause: Duration::from_millis(10),
        ..ExecOptions::default()
    };
    let rec = run_step(
        &RenderedStep { retries: 3, ..step },
        0,
        &o,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(rec.status, StepStatus::Failed);
    assert_eq!(rec.attempts, 1, "no retry can help");
    assert_eq!(
        rec.error.as_deref(),
        Some(
            "invalid kube step: no `kubernetes:` section in the config: cannot reach the API server"
        )
    );
}

/// A reload that points `kubernetes:` at another API server makes the next step use it;
/// one that adds a `kube` step without the section is refused and the old setup kept.
#[tokio::test(flavor = "multi_thread")]
async fn reload_switches_the_api_server_and_refuses_a_kube_step_without_config() {
    let (a, b) = (FakeApi::start().await, FakeApi::start().await);
    let s = Scratch::new();
    s.write("a.yaml", &a.kubeconfig());
    s.write("b.yaml", &b.kubeconfig());
    let rules = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: scale
runbooks:
  scale:
    steps:
      - name: scale
        kube: { action: scale, namespace: kafka, name: kafka, replicas: 3 }
"#;
    let cfg = |kc: &str| {
        config(&format!(
            "kubernetes: {{ kubeconfig: {kc} }}\nrecovery: {{ cooldown_seconds: 0 }}\n"
        ))
    };
    let srv = Server::start(&s, &cfg("a.yaml"), rules);
    let fire = |node: &str| webhook("r", vec![alert("firing", down(node))]);
    srv.post(&fire("kafka-1")).await;
    srv.wait_until(20, "the first run", |l| {
        l.iter().any(|e| e["status"] == "succeeded")
    })
    .await;
    // Without the section, the kube step makes the new setup invalid: refused.
    s.write(
        "config.yaml",
        &config("recovery: { cooldown_seconds: 0 }\n"),
    );
    let (st, v) = srv.post_path("/-/reload").await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("a `kube` step needs the `kubernetes:` section")),
        "{v}"
    );
    s.write("config.yaml", &cfg("b.yaml"));
    let (st, v) = srv.post_path("/-/reload").await;
    assert_eq!(st, 200, "{v}");
    srv.post(&fire("kafka-2")).await;
    srv.wait_until(20, "the second run", |l| {
        l.iter().filter(|e| e["status"] == "succeeded").count() == 2
    })
    .await;
    assert_eq!(a.seen().len(), 1, "one request to the first server");
    assert_eq!(b.seen().len(), 1, "the next one to the second");
    assert_eq!(
        b.seen()[0].path,
        "/apis/apps/v1/namespaces/kafka/statefulsets/kafka/scale"
    );
}

/// Every value of the shared injection corpus (`tests/data/hostile-values.txt`) as the pod
/// name and as the namespace of a `kube` step: rendered only when Kubernetes' own name
/// pattern (apimachinery's DNS-1123 regexes, an independent oracle) accepts it, and then
/// byte for byte; refused with the name check otherwise.
#[test]
fn hostile_corpus_values_never_become_an_api_path() {
    use kafka_healing::rules::model::{KubeStep, Step, StepKind};
    use kafka_healing::runbook::{Templates, render_steps};
    let subdomain =
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .expect("regex");
    let label = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("regex");
    let tpl = "{{alert.labels.v}}";
    let mut t = Templates::default();
    t.add(tpl).expect("template");
    let step = |namespace: &str, name: &str| Step {
        name: "evict".into(),
        kind: StepKind::Kube(KubeStep {
            action: "evict_pod".into(),
            namespace: namespace.into(),
            name: name.into(),
            replicas: None,
            timeout: None,
            grace_period_seconds: None,
        }),
        timeout: None,
        retries: 0,
        on_failure: OnFailure::Abort,
    };
    let values = crate::faults::injection::corpus("/tmp/kube-canary-");
    assert!(values.len() > 200, "{}", values.len());
    let (mut accepted, mut refused) = (0, 0);
    for v in &values {
        let ctx = json!({"alert": {"labels": {"v": v}}});
        let as_name = render_steps(&[step("kafka", tpl)], &t, &ctx, &[]);
        let as_namespace = render_steps(&[step(tpl, "kafka-0")], &t, &ctx, &[]);
        if subdomain.is_match(v) && v.len() <= 253 {
            let r = as_name.unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(r[0].argv[2], format!("name={v}"));
            accepted += 1;
        } else {
            let e = as_name.expect_err(v);
            let why = if v.contains('\0') {
                "rendered value contains a NUL byte"
            } else {
                "is not a DNS-1123 name"
            };
            assert!(e.message.contains(why), "{v:?}: {e}");
            refused += 1;
        }
        if label.is_match(v) && v.len() <= 63 {
            let r = as_namespace.unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(r[0].argv[1], format!("namespace={v}"));
        } else {
            let e = as_namespace.expect_err(v);
            let why = if v.contains('\0') {
                "rendered value contains a NUL byte"
            } else {
                "is not a DNS-1123 label"
            };
            assert!(e.message.contains(why), "{v:?}: {e}");
        }
    }
    assert!(refused > 200, "{refused} refused, {accepted} accepted");
}
