//! The Kafka protocol client and the `kafka` method against a real ZooKeeper-mode cluster:
//! `scripts/kafka/stack up --zookeeper` (three Kafka 3.9.1 brokers from Maven Central on
//! Debian's ZooKeeper, topic `demo` with 6 partitions, RF 3, `min.insync.replicas=2`), with
//! no alerting and kafka-healing's own watch off, so nothing restarts a broker behind the
//! test's back. One cluster start for everything:
//!
//! 1. ApiVersions of every broker: Metadata and DescribeConfigs offered, no DescribeQuorum.
//! 2. `cluster::summarize`: 3 brokers alive with ids 1..3, the ZooKeeper controller, `demo`
//!    fully in sync, `min.insync.replicas` 2, no quorum and no error for its absence.
//! 3. The `kafka` method's series (no quorum series in ZooKeeper mode).
//! 4. `kill -9` of kafka-3: it is not alive, the controller drops it from the ISR, and
//!    `partitions_below_min_isr_without` counts what restarting another broker would cost.
//! 5. `supervisorctl start kafka-3`: it registers again and rejoins every ISR.
//!
//! It prints `MEASURE` lines (cluster start, kill → ISR shrunk, restart → back in ISR,
//! total). Every wait is bounded; the stack is stopped on drop.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_healing::clock::now_ms;
use kafka_healing::config::Broker as ConfigBroker;
use kafka_healing::engine::Setup;
use kafka_healing::ingest::kafka_watch::KafkaWatch;
use kafka_healing::ingest::store::SeriesStore;
use kafka_healing::ingest::watch::{Observation, observe};
use kafka_healing::kafka::cluster::{ClusterSummary, partitions_below_min_isr_without, summarize};
use kafka_healing::kafka::{ClientOptions, ClusterMetadata, KafkaClient};
use serde_json::Value;

use crate::common::Scratch;
use crate::kafka::{run_bounded, supervised_pid, supervisorctl, tail};

/// Bound on each wait for the cluster to reach a state (seconds on an idle machine).
const LIMIT: Duration = Duration::from_secs(180);
/// Bound on one supervisorctl call (`start` waits the program's `startsecs`).
const CTL_LIMIT: Duration = Duration::from_secs(120);
const PARTITIONS: usize = 6;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A running ZooKeeper-mode stack; `stack down` when dropped.
struct ZkStack {
    dir: PathBuf,
    info: Value,
}

impl Drop for ZkStack {
    fn drop(&mut self) {
        let mut c = Command::new(repo().join("scripts/kafka/stack"));
        c.arg("down").arg(&self.dir);
        let _ = run_bounded(c, Duration::from_secs(120));
    }
}

impl ZkStack {
    fn up(dir: &Path) -> ZkStack {
        let mut c = Command::new(repo().join("scripts/kafka/stack"));
        c.arg("up")
            .arg(dir)
            .args(["--bin", env!("CARGO_BIN_EXE_kafka-healing")])
            .args(["--zookeeper", "--no-alerting", "--no-self-watch"]);
        let out = run_bounded(c, Duration::from_secs(600));
        if !matches!(&out, Ok(o) if o.status.success()) {
            let logs: String = ["zookeeper", "kafka-1", "kafka-2", "kafka-3"]
                .iter()
                .map(|p| {
                    format!(
                        "--- {p}:\n{}\n",
                        tail(&dir.join(format!("logs/{p}.log")), 20)
                    )
                })
                .collect();
            let out = match out {
                Ok(o) => format!(
                    "{}\n{}{}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => e,
            };
            panic!("scripts/kafka/stack up --zookeeper failed: {out}\n{logs}");
        }
        let info = serde_json::from_str(
            &std::fs::read_to_string(dir.join("stack.json")).expect("stack.json"),
        )
        .expect("stack.json is JSON");
        ZkStack {
            dir: dir.to_path_buf(),
            info,
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("supervisord.conf")
    }

    /// The brokers as the stack's own config names them (`kafka-N`, not Kafka's ids).
    fn brokers(&self) -> Vec<ConfigBroker> {
        self.info["kafka"]
            .as_array()
            .expect("kafka")
            .iter()
            .map(|n| ConfigBroker {
                node_id: n["node_id"].as_str().unwrap().to_string(),
                host: "127.0.0.1".into(),
                port: n["port"].as_u64().unwrap() as u16,
                jmx_port: Some(n["jmx_port"].as_u64().unwrap() as u16),
                metrics_url: None,
            })
            .collect()
    }

    fn logs(&self) -> String {
        ["kafka-1", "kafka-2", "kafka-3"]
            .iter()
            .map(|p| {
                let log = self.dir.join(format!("logs/{p}.log"));
                format!("--- {p}:\n{}\n", tail(&log, 15))
            })
            .collect()
    }
}

/// `demo`'s partitions, by index.
fn demo(m: &ClusterMetadata) -> Vec<&kafka_healing::kafka::PartitionInfo> {
    let t = m
        .topics
        .iter()
        .find(|t| t.name == "demo")
        .expect("topic demo");
    let mut p: Vec<_> = t.partitions.iter().collect();
    p.sort_by_key(|p| p.partition);
    p
}

fn sorted(v: &[i32]) -> Vec<i32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Summaries until `done` holds (bounded by [`LIMIT`]); the last one.
async fn summarize_until(
    stack: &ZkStack,
    client: &Arc<KafkaClient>,
    brokers: &[ConfigBroker],
    what: &str,
    done: impl Fn(&ClusterSummary) -> bool,
) -> ClusterSummary {
    let t0 = Instant::now();
    loop {
        let s = summarize(client, brokers).await;
        if done(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; last summary: {s:#?}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `demo` has every partition led, with replicas and ISR both exactly `ids`.
fn demo_in_sync(s: &ClusterSummary, ids: &[i32]) -> bool {
    let Some(m) = &s.metadata else { return false };
    if !m.topics.iter().any(|t| t.name == "demo") {
        return false;
    }
    let parts = demo(m);
    parts.len() == PARTITIONS
        && parts.iter().all(|p| {
            p.error_code == 0
                && p.leader.is_some()
                && sorted(&p.isr) == ids
                && p.replicas.len() == 3
        })
}

fn value(store: &Mutex<SeriesStore>, expr: &str) -> Vec<(String, f64)> {
    let store = store.lock().unwrap();
    let mut v: Vec<_> = kafka_healing::promql::eval(expr, &store, now_ms())
        .unwrap()
        .into_series()
        .into_iter()
        .map(|(mut l, v)| {
            l.remove("__name__");
            (kafka_healing::promql::format_labels(&l), v)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Rounds of the `kafka` method until `expr` gives `want` (bounded); the last round.
async fn rounds_until(
    setup: &Setup,
    kafka: &KafkaWatch,
    store: &Mutex<SeriesStore>,
    expr: &str,
    want: &[(String, f64)],
) -> Vec<Observation> {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let obs = observe(setup, &client, kafka, store).await;
        let v = value(store, expr);
        if v == want {
            return obs;
        }
        assert!(
            t0.elapsed() < LIMIT,
            "{expr} not {want:?} after {LIMIT:?}: {v:?}; last round: {obs:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn per_broker(values: &[(&str, f64)], method: bool) -> Vec<(String, f64)> {
    values
        .iter()
        .map(|(n, v)| {
            let l = if method {
                format!(r#"{{method="kafka", node_id="{n}"}}"#)
            } else {
                format!(r#"{{node_id="{n}"}}"#)
            };
            (l, *v)
        })
        .collect()
}

fn cluster_series(obs: &[Observation]) -> &kafka_healing::ingest::kafka_watch::ClusterObservation {
    obs.iter()
        .find_map(|o| match o {
            Observation::Cluster(c) => Some(c),
            _ => None,
        })
        .expect("a cluster observation")
}

/// Expected partitions at risk without `target`, counted from the metadata alone: ISR
/// members that answer, other than the target, fewer than the topic's minimum.
fn expected_at_risk(s: &ClusterSummary, target: i32) -> Vec<(String, i32, Vec<i32>)> {
    let (m, min) = (s.metadata.as_ref().unwrap(), s.min_isr.as_ref().unwrap());
    let alive = s.alive_ids();
    let mut out = Vec::new();
    for t in &m.topics {
        for p in &t.partitions {
            let left: Vec<i32> = p
                .isr
                .iter()
                .copied()
                .filter(|r| *r != target && alive.contains(r))
                .collect();
            if left.len() < min.of(&t.name) as usize {
                out.push((t.name.clone(), p.partition, left));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_mode_cluster_through_the_protocol() {
    let t_all = Instant::now();
    let s = Scratch::new();
    let stack = ZkStack::up(&s.path().join("stack"));
    let t_up = t_all.elapsed();
    println!("MEASURE kafka_zk stack up (3 ZooKeeper-mode brokers + topic): {t_up:.1?}");
    assert_eq!(stack.info["mode"], "zookeeper");
    let chroot = stack.info["zookeeper"]["chroot"].as_str().expect("chroot");
    assert!(chroot.starts_with("/kafka-healing-"), "{chroot}");
    let brokers = stack.brokers();
    assert_eq!(brokers.len(), 3);
    let client = Arc::new(KafkaClient::new(ClientOptions::plaintext(
        Duration::from_secs(10),
    )));

    // 1. ApiVersions: Kafka 3.9.1's ranges; DescribeQuorum is a KRaft API, not offered.
    for b in &brokers {
        let v = client
            .api_versions(&b.host, b.port)
            .await
            .expect("ApiVersions");
        assert_eq!(
            v.ranges.get(&18),
            Some(&(0, 4)),
            "{}: ApiVersions",
            b.node_id
        );
        assert_eq!(v.ranges.get(&3), Some(&(0, 12)), "{}: Metadata", b.node_id);
        assert_eq!(
            v.ranges.get(&32),
            Some(&(0, 4)),
            "{}: DescribeConfigs",
            b.node_id
        );
        assert_eq!(v.ranges.get(&55), None, "{}: DescribeQuorum", b.node_id);
        let q = client.describe_quorum(&b.host, b.port).await;
        assert!(matches!(q, Ok(None)), "{}: {q:?}", b.node_id);
    }

    // 2. The summary of the healthy cluster.
    let sum = summarize_until(&stack, &client, &brokers, "demo fully in sync", |s| {
        demo_in_sync(s, &[1, 2, 3])
    })
    .await;
    let ids: Vec<_> = sum
        .brokers
        .iter()
        .map(|b| (b.node_id.as_str(), b.kafka_id, b.alive, b.in_config))
        .collect();
    assert_eq!(
        ids,
        [
            ("kafka-1", Some(1), true, true),
            ("kafka-2", Some(2), true, true),
            ("kafka-3", Some(3), true, true)
        ]
    );
    assert!(sum.brokers.iter().all(|b| b.error.is_none()), "{sum:#?}");
    let m = sum.metadata.as_ref().expect("metadata");
    let registered: Vec<_> = m.brokers.iter().map(|b| (b.node_id, b.port)).collect();
    let ports: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(i, b)| (i as i32 + 1, i32::from(b.port)))
        .collect();
    assert_eq!(sorted_pairs(registered), ports);
    let controller = m.controller_id.expect("a ZooKeeper controller");
    assert!((1..=3).contains(&controller), "controller {controller}");
    assert!(m.cluster_id.as_deref().is_some_and(|c| !c.is_empty()));
    for p in demo(m) {
        assert_eq!(sorted(&p.replicas), [1, 2, 3], "demo-{}", p.partition);
        assert_eq!(sorted(&p.isr), [1, 2, 3], "demo-{}", p.partition);
        assert!(p.offline.is_empty(), "demo-{}", p.partition);
    }
    let min = sum.min_isr.as_ref().expect("min.insync.replicas");
    assert_eq!(min.of("demo"), 2);
    assert_eq!(min.topics.get("demo"), Some(&2));
    assert_eq!(min.broker_default, Some(2));
    assert!(min.errors.is_empty(), "{min:?}");
    assert_eq!(sum.quorum, None, "ZooKeeper mode has no controller quorum");
    assert_eq!(
        sum.errors,
        Vec::<String>::new(),
        "no DescribeQuorum is no error"
    );
    let all: BTreeSet<i32> = [1, 2, 3].into();
    assert_eq!(sum.alive_ids(), all);
    for target in 1..=3 {
        assert_eq!(
            partitions_below_min_isr_without(target, m, min, &all),
            vec![],
            "RF 3, min 2: any one broker may go"
        );
    }

    // 3. The `kafka` method: every broker answers, no quorum series.
    s.write("rules/none.yaml", "rules: []\n");
    let cfg = s.write(
        "config.yaml",
        &format!(
            "cluster:\n  name: zk\n  kafka_brokers:\n{}\
             monitoring: {{ interval_seconds: 10, timeout_seconds: 6, methods: [kafka] }}\n\
             rules:\n  - rules/*.yaml\n",
            brokers
                .iter()
                .map(|b| format!(
                    "    - {{ node_id: {}, host: 127.0.0.1, port: {} }}\n",
                    b.node_id, b.port
                ))
                .collect::<String>()
        ),
    );
    let setup = Setup::load(&cfg).expect("valid config");
    let kafka = KafkaWatch::new();
    let store = Mutex::new(SeriesStore::new(15 * 60 * 1000, 10_000));
    let probe = r#"kafka_healing_probe_success{method="kafka"}"#;
    let obs = rounds_until(
        &setup,
        &kafka,
        &store,
        probe,
        &per_broker(
            &[("kafka-1", 1.0), ("kafka-2", 1.0), ("kafka-3", 1.0)],
            true,
        ),
    )
    .await;
    let topics = m.topics.len();
    assert_eq!(
        cluster_series(&obs).detail,
        format!("metadata from kafka-1: 3 brokers registered, {topics} topics"),
        "no error appended: DescribeQuorum's absence is not one"
    );
    assert_eq!(
        value(&store, "kafka_healing_kafka_auth_ok"),
        per_broker(
            &[("kafka-1", 1.0), ("kafka-2", 1.0), ("kafka-3", 1.0)],
            false
        )
    );
    assert_eq!(
        value(
            &store,
            "kafka_healing_kafka_broker_partitions_under_min_isr_without"
        ),
        per_broker(
            &[("kafka-1", 0.0), ("kafka-2", 0.0), ("kafka-3", 0.0)],
            false
        )
    );
    assert_eq!(
        value(&store, "kafka_healing_kafka_partitions"),
        [
            (r#"{state="offline"}"#.to_string(), 0.0),
            (r#"{state="under_min_isr"}"#.to_string(), 0.0),
            (r#"{state="under_replicated"}"#.to_string(), 0.0),
        ]
    );
    assert_eq!(value(&store, "kafka_healing_kafka_quorum_voters"), []);
    assert_eq!(value(&store, "kafka_healing_kafka_quorum_max_lag"), []);

    // 4. kill -9 kafka-3: not alive at once; after its ZooKeeper session expires the
    // controller deregisters it and drops it from every ISR.
    let pid = supervised_pid(&stack.conf(), "kafka-3", CTL_LIMIT).expect("kafka-3 runs");
    let t_kill = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let down = summarize_until(&stack, &client, &brokers, "kafka-3 out of the ISR", |s| {
        s.broker("kafka-3").is_some_and(|b| !b.alive)
            && s.metadata.as_ref().is_some_and(|m| m.brokers.len() == 2)
            && demo_in_sync(s, &[1, 2])
    })
    .await;
    println!(
        "MEASURE kafka_zk kill -9 -> deregistered and out of every ISR: {:.1?}",
        t_kill.elapsed()
    );
    let k3 = down.broker("kafka-3").unwrap();
    assert!(k3.error.is_some() && k3.latency.is_none(), "{k3:?}");
    let alive: BTreeSet<i32> = [1, 2].into();
    assert_eq!(down.alive_ids(), alive);
    let m = down.metadata.as_ref().unwrap();
    let min = down.min_isr.as_ref().expect("min.insync.replicas");
    assert_eq!(min.of("demo"), 2);
    assert_eq!(down.quorum, None);
    for (target, other) in [(1, 2), (2, 1)] {
        let got = partitions_below_min_isr_without(target, m, min, &alive);
        let want = expected_at_risk(&down, target);
        let demo_at_risk = want.iter().filter(|(t, _, _)| t == "demo").count();
        assert_eq!(
            demo_at_risk, PARTITIONS,
            "every demo partition keeps only {other}"
        );
        assert_eq!(
            got.iter()
                .map(|p| (p.topic.clone(), p.partition, p.in_sync.clone()))
                .collect::<Vec<_>>(),
            want,
            "without {target}"
        );
        assert!(
            got.iter()
                .all(|p| p.target_in_sync && p.min_isr == 2 && p.in_sync == [other])
        );
    }
    assert_eq!(
        partitions_below_min_isr_without(3, m, min, &alive),
        vec![],
        "the dead broker's restart takes nothing below its minimum"
    );
    let under_replicated = m
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.isr.len() < p.replicas.len())
        .count();
    assert!(under_replicated >= PARTITIONS, "{under_replicated}");
    // The `kafka` method sees the same.
    rounds_until(
        &setup,
        &kafka,
        &store,
        probe,
        &per_broker(
            &[("kafka-1", 1.0), ("kafka-2", 1.0), ("kafka-3", 0.0)],
            true,
        ),
    )
    .await;
    rounds_until(
        &setup,
        &kafka,
        &store,
        r#"kafka_healing_kafka_partitions{state="under_replicated"}"#,
        &[(
            r#"{state="under_replicated"}"#.to_string(),
            under_replicated as f64,
        )],
    )
    .await;
    let at_risk = expected_at_risk(&down, 1).len() as f64;
    assert_eq!(
        value(
            &store,
            "kafka_healing_kafka_broker_partitions_under_min_isr_without"
        ),
        // kafka-3 is no longer registered: its Kafka id is unknown, so no series.
        per_broker(
            &[
                ("kafka-1", at_risk),
                ("kafka-2", expected_at_risk(&down, 2).len() as f64)
            ],
            false
        )
    );
    assert_eq!(
        value(
            &store,
            r#"kafka_healing_kafka_partitions{state="under_min_isr"}"#
        ),
        [(r#"{state="under_min_isr"}"#.to_string(), 0.0)]
    );

    // 5. Restarted, it registers again (its old session has expired) and rejoins every ISR.
    let t_start = Instant::now();
    let out =
        supervisorctl(&stack.conf(), &["start", "kafka-3"], CTL_LIMIT).expect("supervisorctl");
    assert!(
        out.status.success(),
        "start kafka-3: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stack.logs()
    );
    let back = summarize_until(
        &stack,
        &client,
        &brokers,
        "kafka-3 back in every ISR",
        |s| s.alive_ids() == all && demo_in_sync(s, &[1, 2, 3]),
    )
    .await;
    println!(
        "MEASURE kafka_zk supervisorctl start -> back in every ISR: {:.1?}",
        t_start.elapsed()
    );
    assert_eq!(back.metadata.as_ref().unwrap().brokers.len(), 3);
    println!("MEASURE kafka_zk total: {:.1?}", t_all.elapsed());
}

fn sorted_pairs(mut v: Vec<(i32, i32)>) -> Vec<(i32, i32)> {
    v.sort_unstable();
    v
}
