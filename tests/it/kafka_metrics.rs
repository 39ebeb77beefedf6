//! The `kafka` method's series on a real `serve`'s `/metrics`, against the real KRaft
//! broker of tests/it/kafka.rs: `kafka_healing_kafka_broker_up` is 1 while the broker
//! answers, 0 after SIGKILL (with the cluster-level series gone: no broker gives metadata),
//! labels come from the config and not from alerts, and a reload without the method
//! removes every series.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::common::Scratch;
use crate::kafka::Broker;
use crate::serve::harness::{Server, TOKEN, alert, webhook};

/// Bound on each phase (a round every 5 s; the first needs the JVM's first answers).
const PHASE_DEADLINE: Duration = Duration::from_secs(90);

const RULES: &str = r#"rules:
  - name: quiet
    matchers: ['alertname="NothingSendsThis"']
    runbook: notify-only
runbooks:
  notify-only:
    disruptive: false
    steps: []
"#;

fn config(port: u16, methods: &str) -> String {
    format!(
        "cluster:\n  name: itc\n  kafka_brokers:\n    - {{ node_id: b1, host: 127.0.0.1, port: {port} }}\n\
         monitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [{methods}] }}\n\
         server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\n\
         rules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n"
    )
}

/// The `/metrics` lines (no comments) whose name starts with `kafka_healing_kafka_`.
fn kafka_lines(text: &str) -> Vec<String> {
    let mut l: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("kafka_healing_kafka_"))
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

/// Polls `/metrics` until `done` holds for its `kafka_healing_kafka_` lines (bounded).
async fn metrics_until(srv: &Server, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let lines = kafka_lines(&srv.metrics().await);
        if done(&lines) {
            return lines;
        }
        assert!(
            t0.elapsed() < PHASE_DEADLINE,
            "{what}: not after {PHASE_DEADLINE:?}: {lines:#?}\nlog:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_series_on_metrics_from_a_real_broker() {
    let s = Scratch::new();
    let broker = Broker::start_with(s.path(), "", &[]).await;
    let srv = Server::start(&s, &config(broker.port, "kafka, socket"), RULES);

    // a. Answering: up 1, credentials fine, a fresh broker: no partition at risk.
    let up = r#"kafka_healing_kafka_broker_up{cluster="itc",node_id="b1"} 1"#;
    let lines = metrics_until(&srv, "broker up", |l| l.iter().any(|x| x == up)).await;
    assert_eq!(
        lines,
        [
            r#"kafka_healing_kafka_auth_ok{cluster="itc",node_id="b1"} 1"#,
            r#"kafka_healing_kafka_broker_partitions_offline{cluster="itc",node_id="b1"} 0"#,
            r#"kafka_healing_kafka_broker_partitions_under_min_isr_without{cluster="itc",node_id="b1"} 0"#,
            r#"kafka_healing_kafka_broker_partitions_under_replicated{cluster="itc",node_id="b1"} 0"#,
            up,
            r#"kafka_healing_kafka_partitions{cluster="itc",state="offline"} 0"#,
            r#"kafka_healing_kafka_partitions{cluster="itc",state="under_min_isr"} 0"#,
            r#"kafka_healing_kafka_partitions{cluster="itc",state="under_replicated"} 0"#,
            r#"kafka_healing_kafka_quorum_max_lag{cluster="itc"} 0"#,
            r#"kafka_healing_kafka_quorum_voters{cluster="itc"} 1"#,
        ]
    );

    // An alert naming other brokers and clusters adds no label value.
    let a = alert(
        "firing",
        json!({"alertname": "KafkaBrokerDown", "node_id": "evil", "cluster": "elsewhere"}),
    );
    assert_eq!(srv.post(&webhook("am", vec![a])).await.0, 200);

    // b. SIGKILL: up 0; nothing gives metadata, so the cluster-level series go.
    let pid = broker.pid().expect("running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the broker");
    let down = r#"kafka_healing_kafka_broker_up{cluster="itc",node_id="b1"} 0"#;
    let lines = metrics_until(&srv, "broker down", |l| l.iter().any(|x| x == down)).await;
    assert_eq!(lines, [down], "only the liveness is known");
    let text = srv.metrics().await;
    assert!(
        !text.contains("evil") && !text.contains("elsewhere"),
        "{text}"
    );
    assert!(
        text.contains(r#"kafka_healing_target_up{node_id="b1",method="kafka"} 0"#),
        "{text}"
    );

    // c. The method removed by a reload: every kafka series goes.
    s.write("config.yaml", &config(broker.port, "socket"));
    let (status, body) = srv.post_path("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    metrics_until(&srv, "series removed", <[String]>::is_empty).await;
}
