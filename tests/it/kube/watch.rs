//! The `kubernetes` monitoring method against the fake API server of [`super`] (the same
//! reason for a fake: no real API server can run here): `kafka-healing scrape` reads each
//! broker's pod by GET, as the real client sends it, and shows the series a condition
//! reads; with the API server gone, the pods' state is unknown, not "not ready".

use serde_json::{Value, json};

use super::{API_TOKEN, FakeApi, get, pod};
use crate::common::*;

/// A pod as the API server answers it, with its containers' restart counts.
fn pod_restarted(name: &str, ready: &str, restarts: &[u32]) -> Value {
    let mut p = pod(name, &format!("uid-{name}"), ready);
    p["status"]["containerStatuses"] = restarts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"name": format!("c{i}"), "ready": ready == "True", "restartCount": n,
                   "image": "kafka:4", "imageID": "kafka@sha256:0"})
        })
        .collect();
    p
}

const RULES: &str = r#"rules:
  - name: pod-not-ready
    matchers: ['alertname="KafkaPodNotReady"']
    runbook: evict
    condition: { expr: 'kafka_healing_kube_pod_ready == 0', alertname: KafkaPodNotReady }
  - name: pod-restarting
    matchers: ['alertname="KafkaPodRestarting"']
    runbook: evict
    condition: { expr: 'kafka_healing_kube_pod_restarts_total > 5', alertname: KafkaPodRestarting }
runbooks:
  evict:
    steps:
      - name: evict the broker's pod
        kube: { action: evict_pod, namespace: kafka, name: "{{target.node_id}}" }
"#;

/// Three brokers watched by `kubernetes` alone, through `kubeconfig.yaml`.
fn setup(api: &FakeApi) -> Scratch {
    let s = Scratch::new();
    s.write("kubeconfig.yaml", &api.kubeconfig());
    s.write("rules.yaml", RULES);
    s.write(
        "config.yaml",
        "cluster:\n  kafka_brokers:\n    - { node_id: kafka-0, host: 127.0.0.1, port: 9 }\n    \
         - { node_id: kafka-1, host: 127.0.0.1, port: 9 }\n    - { node_id: kafka-2, host: 127.0.0.1, port: 9 }\n\
         monitoring: { methods: [kubernetes], interval_seconds: 10, timeout_seconds: 3 }\n\
         kubernetes: { kubeconfig: kubeconfig.yaml, request_timeout_seconds: 2 }\n\
         rules: [rules.yaml]\nstate: { path: state/journal.db }\n",
    );
    s
}

/// `scrape --json` on the scratch config: (targets by node_id, conditions by rule).
async fn scrape(s: &Scratch) -> (Vec<Value>, Value) {
    let cfg = s.path().join("config.yaml");
    let o = tokio::task::spawn_blocking(move || {
        run(&["scrape", "-c", cfg.to_str().expect("utf-8"), "--json"])
    })
    .await
    .expect("scrape ran");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let targets = v["targets"].as_array().expect("targets").clone();
    let mut conditions = json!({});
    for c in v["conditions"].as_array().expect("conditions") {
        let mut series: Vec<Value> = c["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|s| json!([s["labels"]["node_id"], s["value"]]))
            .collect();
        series.sort_by_key(|s| s.to_string());
        conditions[c["rule"].as_str().expect("rule")] = json!(series);
    }
    (targets, conditions)
}

/// The series of one target as `NAME{label=value,…} = value`, sorted, durations left out.
fn series_of(t: &Value) -> Vec<String> {
    let mut out: Vec<String> = t["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|s| s["labels"]["__name__"] != "kafka_healing_probe_duration_seconds")
        .map(|s| {
            let l = s["labels"].as_object().expect("labels");
            let rest: Vec<String> = l
                .iter()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect();
            format!(
                "{}{{{}}} = {}",
                l["__name__"].as_str().unwrap_or("?"),
                rest.join(","),
                s["value"]
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_readiness_and_restarts_are_series_a_condition_reads() {
    let api = FakeApi::start().await;
    api.pod_gets(
        "kafka-0",
        vec![(200, pod_restarted("kafka-0", "True", &[1, 2]))],
    );
    api.pod_gets(
        "kafka-1",
        vec![(200, pod_restarted("kafka-1", "False", &[7]))],
    );
    // kafka-2: no such pod (the fake answers 404 as the API server does).
    let s = setup(&api);
    let (targets, conditions) = scrape(&s).await;
    let by = |id: &str| {
        targets
            .iter()
            .find(|t| t["node_id"] == id && t["method"] == "kubernetes")
            .unwrap_or_else(|| panic!("no kubernetes target {id} in {targets:?}"))
    };
    assert_eq!(
        series_of(by("kafka-0")),
        vec![
            "kafka_healing_kube_pod_exists{namespace=kafka,node_id=kafka-0,pod=kafka-0} = 1.0",
            "kafka_healing_kube_pod_ready{namespace=kafka,node_id=kafka-0,pod=kafka-0} = 1.0",
            "kafka_healing_kube_pod_restarts_total{namespace=kafka,node_id=kafka-0,pod=kafka-0} = 3.0",
            "kafka_healing_probe_success{method=kubernetes,node_id=kafka-0} = 1.0",
        ]
    );
    assert_eq!(
        by("kafka-0")["detail"],
        "pod kafka/kafka-0 is ready (3 restarts)"
    );
    assert_eq!(
        series_of(by("kafka-1")),
        vec![
            "kafka_healing_kube_pod_exists{namespace=kafka,node_id=kafka-1,pod=kafka-1} = 1.0",
            "kafka_healing_kube_pod_ready{namespace=kafka,node_id=kafka-1,pod=kafka-1} = 0.0",
            "kafka_healing_kube_pod_restarts_total{namespace=kafka,node_id=kafka-1,pod=kafka-1} = 7.0",
            "kafka_healing_probe_success{method=kubernetes,node_id=kafka-1} = 1.0",
        ]
    );
    assert_eq!(
        series_of(by("kafka-2")),
        vec![
            "kafka_healing_kube_pod_exists{namespace=kafka,node_id=kafka-2,pod=kafka-2} = 0.0",
            "kafka_healing_probe_success{method=kubernetes,node_id=kafka-2} = 1.0",
        ]
    );
    // Both conditions see kafka-1 alone (a missing pod is neither ready nor not ready).
    assert_eq!(
        conditions,
        json!({"pod-not-ready": [["kafka-1", 0.0]], "pod-restarting": [["kafka-1", 7.0]]})
    );
    // One GET per broker's pod, as the real client sends it, with the kubeconfig's token.
    let mut seen = api.seen();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        seen,
        ["kafka-0", "kafka-1", "kafka-2"]
            .map(|p| get(&format!("/api/v1/namespaces/kafka/pods/{p}")))
            .to_vec()
    );
    assert_eq!(api.unauthorized(), 0, "every request carried {API_TOKEN}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_server_is_unknown_not_not_ready() {
    let api = FakeApi::start().await;
    let s = setup(&api);
    // The API server goes away: its port refuses connections.
    drop(api);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (targets, conditions) = scrape(&s).await;
    let kube: Vec<&Value> = targets
        .iter()
        .filter(|t| t["method"] == "kubernetes")
        .collect();
    assert_eq!(kube.len(), 3, "{targets:?}");
    for t in kube {
        let id = t["node_id"].as_str().expect("node_id");
        assert_eq!(t["up"], false, "{t}");
        // Only "did the API answer", never a pod series.
        assert_eq!(
            series_of(t),
            vec![format!(
                "kafka_healing_probe_success{{method=kubernetes,node_id={id}}} = 0.0"
            )]
        );
        let detail = t["detail"].as_str().expect("detail");
        assert!(
            detail.starts_with(&format!("unknown: get pod kafka/{id}: ")),
            "{detail}"
        );
    }
    // No condition sees a pod that is not ready, so nothing is planned.
    assert_eq!(
        conditions,
        json!({"pod-not-ready": [], "pod-restarting": []})
    );
}

/// Through `serve`, no Alertmanager: while the API server cannot be reached, rounds pass
/// and nothing is planned; once a reload points at one that answers, the condition over
/// `kafka_healing_kube_pod_ready` fires for the one pod that is not ready and its runbook
/// evicts exactly that pod.
#[tokio::test(flavor = "multi_thread")]
async fn serve_acts_on_a_not_ready_pod_and_never_while_the_api_is_down() {
    use crate::serve::harness::{Server, TOKEN};
    let gone = FakeApi::start().await;
    let up = FakeApi::start().await;
    let s = Scratch::new();
    s.write("down.yaml", &gone.kubeconfig());
    s.write("up.yaml", &up.kubeconfig());
    drop(gone);
    up.pod_gets(
        "kafka-0",
        vec![(200, pod_restarted("kafka-0", "True", &[0]))],
    );
    up.pod_gets(
        // 2 restarts: under `pod-restarting`'s 5, so only `pod-not-ready` fires.
        "kafka-1",
        vec![(200, pod_restarted("kafka-1", "False", &[2]))],
    );
    up.pod_gets(
        "kafka-2",
        vec![(200, pod_restarted("kafka-2", "True", &[1]))],
    );
    let cfg = |kc: &str| {
        format!(
            "cluster:\n  kafka_brokers:\n    - {{ node_id: kafka-0, host: 127.0.0.1, port: 9 }}\n    \
             - {{ node_id: kafka-1, host: 127.0.0.1, port: 9 }}\n    - {{ node_id: kafka-2, host: 127.0.0.1, port: 9 }}\n\
             monitoring: {{ methods: [kubernetes], interval_seconds: 5, timeout_seconds: 2 }}\n\
             kubernetes: {{ kubeconfig: {kc}, request_timeout_seconds: 2 }}\n\
             server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\n\
             rules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n"
        )
    };
    let srv = Server::start(&s, &cfg("down.yaml"), RULES);
    // Two rounds that found the API server unreachable (bounded: 30 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let unknown = "kafka_healing_target_up{node_id=\"kafka-1\",method=\"kubernetes\"} 0";
    let mut rounds = 0;
    while rounds < 2 && std::time::Instant::now() < deadline {
        if srv.metrics().await.contains(unknown) {
            rounds += 1;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert_eq!(rounds, 2, "{}", srv.metrics().await);
    assert_eq!(
        srv.executions().await,
        Vec::<Value>::new(),
        "nothing planned"
    );
    // The API server answers: kafka-1's pod is not ready, and only it is evicted.
    s.write("config.yaml", &cfg("up.yaml"));
    let (st, v) = srv.post_path("/-/reload").await;
    assert_eq!(st, 200, "{v}");
    let list = srv
        .wait_until(30, "the eviction of kafka-1's pod", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["rule"], &list[0]["target"]),
        (&json!("pod-not-ready"), &json!("kafka-1"))
    );
    let evictions: Vec<String> = up
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        evictions,
        vec!["/api/v1/namespaces/kafka/pods/kafka-1/eviction".to_string()]
    );
}

/// `recovery.action_params.namespace` and `.pod` name the watched pods even when no
/// listed action takes them (the `kubernetes` method does); without the method they are
/// still an error there.
#[test]
fn action_params_name_the_pods_for_the_kubernetes_method() {
    let check = |methods: &str| {
        let s = Scratch::new();
        let cfg = s.write(
            "c.yaml",
            &format!(
                "cluster:\n  kafka_brokers:\n    - {{ node_id: kafka-0, host: 127.0.0.1, port: 9092 }}\n\
                 monitoring: {{ methods: {methods} }}\nrecovery:\n  actions: [restart_service]\n  \
                 action_params: {{ namespace: kafka-prod, pod: \"broker-{{{{target.node_id}}}}\" }}\n"
            ),
        );
        let o = run(&["check", "-c", cfg.to_str().expect("utf-8")]);
        let prefix = format!("{}/", s.path().display());
        (o.status.code(), stderr(&o).replace(&prefix, ""))
    };
    let (code, err) = check("[socket, kubernetes]");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check("[socket]");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: recovery.action_params.pod: no action of recovery.actions (restart_service) takes the param `pod`"),
        "{err}"
    );
}
