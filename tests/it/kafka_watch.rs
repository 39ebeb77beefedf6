//! The self-watch's `kafka` method against a real broker (the single KRaft broker of
//! tests/it/kafka.rs): rounds of `observe` with one shared client write
//! `kafka_healing_probe_success{method="kafka"}` 1, then 0 while the broker is SIGSTOPped
//! (its port still accepts), then 1 again after SIGCONT; the cluster-level series are in
//! the store and a rule condition reads them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_healing::clock::now_ms;
use kafka_healing::engine::Setup;
use kafka_healing::ingest::kafka_watch::KafkaWatch;
use kafka_healing::ingest::store::SeriesStore;
use kafka_healing::ingest::watch::{Observation, evaluate, observe};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::Scratch;
use crate::kafka::Broker;
use crate::kafka_client::wait_stopped;

/// Overall bound on each phase (rounds take a second or two; other tests run beside).
const PHASE_DEADLINE: Duration = Duration::from_secs(90);

const RULES: &str = r#"rules:
  - name: broker-unanswering
    condition:
      expr: kafka_healing_probe_success{method="kafka"} == 0
      for: 0s
      alertname: KafkaBrokerNotAnswering
    runbook: noop
runbooks:
  noop:
    steps:
      - name: noop
        exec: ["true"]
"#;

fn value(store: &Mutex<SeriesStore>, expr: &str) -> Vec<(String, f64)> {
    let store = store.lock().unwrap();
    kafka_healing::promql::eval(expr, &store, now_ms())
        .unwrap()
        .into_series()
        .into_iter()
        .map(|(mut l, v)| {
            l.remove("__name__");
            (kafka_healing::promql::format_labels(&l), v)
        })
        .collect()
}

/// Runs rounds until `kafka_healing_probe_success{method="kafka"}` is `want` (bounded).
async fn rounds_until(
    setup: &Setup,
    kafka: &KafkaWatch,
    store: &Mutex<SeriesStore>,
    want: f64,
) -> Vec<Observation> {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let obs = observe(setup, &client, kafka, store).await;
        let v = value(store, r#"kafka_healing_probe_success{method="kafka"}"#);
        if v.len() == 1 && v[0].1 == want {
            return obs;
        }
        assert!(
            t0.elapsed() < PHASE_DEADLINE,
            "kafka_healing_probe_success{{method=\"kafka\"}} not {want} after {PHASE_DEADLINE:?}: {v:?}; last round: {obs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_method_against_a_real_broker() {
    let s = Scratch::new();
    let broker = Broker::start_with(s.path(), "", &[]).await;
    s.write("rules/r.yaml", RULES);
    let cfg = s.write(
        "config.yaml",
        &format!(
            "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: 1, host: 127.0.0.1, port: {} }}\n\
             monitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [kafka] }}\n\
             rules:\n  - rules/*.yaml\n",
            broker.port
        ),
    );
    let setup = Setup::load(&cfg).expect("valid config");
    let kafka = KafkaWatch::new();
    let store = Mutex::new(SeriesStore::new(15 * 60 * 1000, 10_000));

    // a. Answering: probe 1, auth ok, cluster series from its metadata.
    let obs = rounds_until(&setup, &kafka, &store, 1.0).await;
    assert_eq!(
        value(&store, r#"kafka_healing_probe_success{method="kafka"}"#),
        [(r#"{method="kafka", node_id="1"}"#.to_string(), 1.0)]
    );
    assert_eq!(
        value(&store, "kafka_healing_kafka_auth_ok"),
        [(r#"{node_id="1"}"#.to_string(), 1.0)]
    );
    for state in ["under_replicated", "under_min_isr", "offline"] {
        assert_eq!(
            value(
                &store,
                &format!(r#"kafka_healing_kafka_partitions{{state="{state}"}}"#)
            ),
            [(format!(r#"{{state="{state}"}}"#), 0.0)],
            "{state}; last round: {obs:?}"
        );
    }
    // A fresh broker has no topic: nothing would fall below its minimum without it.
    assert_eq!(
        value(
            &store,
            "kafka_healing_kafka_broker_partitions_under_min_isr_without"
        ),
        [(r#"{node_id="1"}"#.to_string(), 0.0)]
    );
    assert_eq!(
        value(&store, "kafka_healing_kafka_quorum_voters"),
        [("{}".to_string(), 1.0)]
    );
    assert_eq!(
        value(&store, "kafka_healing_kafka_quorum_max_lag"),
        [("{}".to_string(), 0.0)]
    );
    let cond = evaluate(&setup, &store, now_ms());
    assert_eq!(cond.len(), 1);
    assert_eq!(cond[0].1, Ok(Vec::new()), "the condition does not hold");
    // `kafka-healing scrape` shows the series.
    let path = cfg.to_str().expect("utf-8 path").to_string();
    let out = tokio::task::spawn_blocking(move || crate::common::run(&["scrape", "-c", &path]))
        .await
        .expect("scrape ran");
    let text = crate::common::stdout(&out);
    for line in [
        r#"    kafka_healing_probe_success{method="kafka", node_id="1"} 1"#,
        r#"    kafka_healing_kafka_auth_ok{node_id="1"} 1"#,
        r#"    kafka_healing_kafka_partitions{state="offline"} 0"#,
        r#"    kafka_healing_kafka_quorum_voters{} 1"#,
        "  broker-unanswering: no series (would not fire)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "`{line}` missing from scrape's output:\n{text}"
        );
    }

    // b. SIGSTOP: the port accepts, nothing answers: 0, and the condition holds.
    let pid = broker.pid().expect("running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    wait_stopped(pid, true).await;
    let stopped = rounds_until(&setup, &kafka, &store, 0.0).await;
    let cond = evaluate(&setup, &store, now_ms());
    let series = cond[0].1.as_ref().expect("evaluates");
    assert_eq!(series.len(), 1, "{cond:?}");
    assert_eq!(series[0].0.get("node_id").map(String::as_str), Some("1"));
    assert_eq!(
        value(&store, "kafka_healing_kafka_auth_ok"),
        [],
        "unknown while it does not answer"
    );
    let cluster = stopped
        .iter()
        .find_map(|o| match o {
            Observation::Cluster(c) => Some(c),
            _ => None,
        })
        .expect("a cluster observation");
    assert!(cluster.samples.is_empty(), "{cluster:?}");

    // c. SIGCONT: 1 again, over the same client.
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    wait_stopped(pid, false).await;
    rounds_until(&setup, &kafka, &store, 1.0).await;
    assert_eq!(
        value(&store, "kafka_healing_kafka_auth_ok"),
        [(r#"{node_id="1"}"#.to_string(), 1.0)]
    );
}
