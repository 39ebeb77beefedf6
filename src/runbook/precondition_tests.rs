use std::collections::BTreeMap;

use super::*;
use crate::kafka::{
    BrokerInfo, ClusterMetadata, MinIsr, PartitionInfo, QuorumInfo, QuorumReplica, TopicInfo,
};

fn live(id: i32, alive: bool, error: Option<&str>) -> BrokerLiveness {
    BrokerLiveness {
        node_id: id.to_string(),
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        kafka_id: Some(id),
        in_config: true,
        alive,
        latency: alive.then(|| Duration::from_millis(3)),
        error: error.map(String::from),
    }
}

fn part(partition: i32, isr: &[i32]) -> PartitionInfo {
    PartitionInfo {
        partition,
        leader: isr.first().copied(),
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        offline: vec![],
        error_code: 0,
    }
}

/// Three brokers; topic `demo` (6 partitions, min ISR 2) and `logs` (2 partitions, min 1),
/// every replica in sync.
fn summary(alive: &[i32]) -> ClusterSummary {
    let topics = vec![
        TopicInfo {
            name: "demo".into(),
            internal: false,
            error_code: 0,
            partitions: (0..6).map(|p| part(p, &[1, 2, 3])).collect(),
        },
        TopicInfo {
            name: "logs".into(),
            internal: false,
            error_code: 0,
            partitions: (0..2).map(|p| part(p, &[1, 2, 3])).collect(),
        },
    ];
    ClusterSummary {
        brokers: (1..=3).map(|i| live(i, alive.contains(&i), None)).collect(),
        source: Some("1".into()),
        metadata: Some(ClusterMetadata {
            cluster_id: Some("c".into()),
            controller_id: Some(1),
            brokers: (1..=3)
                .map(|i| BrokerInfo {
                    node_id: i,
                    host: "127.0.0.1".into(),
                    port: 9000 + i,
                    rack: None,
                })
                .collect(),
            topics,
        }),
        min_isr: Some(MinIsr {
            broker_default: Some(1),
            topics: [("demo".to_string(), 2), ("logs".to_string(), 1)]
                .into_iter()
                .collect(),
            errors: BTreeMap::new(),
        }),
        quorum: None,
        errors: vec![],
    }
}

fn obs(target: i32, s: ClusterSummary) -> Observation {
    Observation {
        node_id: target.to_string(),
        address: format!("127.0.0.1:{}", 9000 + target),
        kafka_id: Some(target),
        target: s.broker(&target.to_string()).cloned(),
        summary: Some(s),
        state: None,
    }
}

#[test]
fn a_serving_broker_is_not_unreachable_whatever_the_alert_says() {
    let v = judge(
        Precondition::BrokerUnreachable,
        &obs(2, summary(&[1, 2, 3])),
    );
    assert!(!v.holds);
    assert!(
        v.reason.starts_with(
            "broker 2 (127.0.0.1:9002) answers the Kafka protocol (ApiVersions in 3 ms)"
        ),
        "{}",
        v.reason
    );
    let v = judge(Precondition::BrokerUnreachable, &obs(2, summary(&[1, 3])));
    assert!(v.holds, "{}", v.reason);
}

#[test]
fn refused_credentials_prove_a_serving_broker() {
    let mut o = obs(2, summary(&[1, 2, 3]));
    o.target = Some(live(
        2,
        true,
        Some("127.0.0.1:9002: SASL authentication failed (SCRAM-SHA-512): bad password"),
    ));
    let v = judge(Precondition::BrokerUnreachable, &o);
    assert!(!v.holds);
    assert!(
        v.reason.contains("refused this service's credentials"),
        "{}",
        v.reason
    );
    assert!(
        v.reason.contains("fix the `security:` section"),
        "{}",
        v.reason
    );
    // Not asked at all (no observation): refused, never assumed down.
    o.target = None;
    assert!(!judge(Precondition::BrokerUnreachable, &o).holds);
}

#[test]
fn restart_safe_counts_every_partition_the_restart_takes_below_min_isr() {
    // Broker 2 died a moment ago: the ISR still lists it, but it does not answer.
    let v = judge(Precondition::RestartSafe, &obs(1, summary(&[1, 3])));
    assert!(!v.holds);
    // demo: 6 partitions keep only [3] < 2; logs (min 1) keeps [3]: fine.
    assert!(
        v.reason
            .starts_with("6 partition(s) would fall below min.insync.replicas without broker 1"),
        "{}",
        v.reason
    );
    assert!(
        v.reason.contains("demo-0 (in sync without it: [3], min 2)"),
        "{}",
        v.reason
    );
    assert!(v.reason.ends_with(" and 1 more"), "{}", v.reason);
    // Everyone answers: any one broker may go.
    for t in 1..=3 {
        let v = judge(Precondition::RestartSafe, &obs(t, summary(&[1, 2, 3])));
        assert!(v.holds, "{t}: {}", v.reason);
    }
}

#[test]
fn restart_safe_lets_a_dead_target_be_restarted() {
    let v = judge(Precondition::RestartSafe, &obs(2, summary(&[1, 3])));
    assert!(v.holds, "{}", v.reason);
    assert!(v.reason.contains("cannot lower availability"));
    // Two dead: each may be restarted (neither lowers availability).
    for t in [2, 3] {
        assert!(judge(Precondition::RestartSafe, &obs(t, summary(&[1]))).holds);
    }
}

#[test]
fn restart_safe_refuses_what_it_cannot_see() {
    let mut s = summary(&[1, 2, 3]);
    s.metadata = None;
    s.errors = vec!["127.0.0.1:9001: no answer to Metadata within 5s".into()];
    let v = judge(Precondition::RestartSafe, &obs(2, s));
    assert!(!v.holds);
    assert!(
        v.reason
            .starts_with("no broker gave the cluster's metadata (127.0.0.1:9001"),
        "{}",
        v.reason
    );

    let mut s = summary(&[1, 2, 3]);
    s.min_isr = None;
    assert!(!judge(Precondition::RestartSafe, &obs(2, s)).holds);

    // A topic the target hosts whose min ISR is unknown: not assumed to be the default.
    let mut s = summary(&[1, 2, 3]);
    if let Some(m) = &mut s.min_isr {
        m.errors
            .insert("topic demo".into(), "TOPIC_AUTHORIZATION_FAILED".into());
        m.errors
            .insert("topic elsewhere".into(), "UNKNOWN_TOPIC".into());
    }
    let v = judge(Precondition::RestartSafe, &obs(2, s));
    assert!(!v.holds);
    assert!(
        v.reason.starts_with("min.insync.replicas of 1 topic(s) the target hosts could not be read (topic demo: TOPIC_AUTHORIZATION_FAILED)"),
        "{}",
        v.reason
    );

    // An id the cluster does not know.
    let mut o = obs(2, summary(&[1, 2, 3]));
    o.kafka_id = None;
    assert!(!judge(Precondition::RestartSafe, &o).holds);
}

fn voter(id: i32, ts: i64) -> QuorumReplica {
    QuorumReplica {
        replica_id: id,
        log_end_offset: 10,
        lag: 0,
        last_caught_up_ms: Some(ts),
    }
}

#[test]
fn restart_safe_keeps_the_quorum_majority_and_counts_a_dead_voter_out() {
    let mut s = summary(&[1, 2, 3]);
    s.quorum = Some(QuorumInfo {
        leader_id: Some(1),
        leader_epoch: 1,
        high_watermark: 10,
        voters: vec![voter(1, 10_000), voter(2, 9_900), voter(3, 9_950)],
        observers: vec![],
    });
    let v = judge(Precondition::RestartSafe, &obs(2, s.clone()));
    assert!(v.holds, "{}", v.reason);
    assert!(
        v.reason
            .contains("the controller quorum keeps 2 of 3 voters (2 needed)"),
        "{}",
        v.reason
    );
    // Voter 3 just died: its last fetch still looks fresh, but it does not answer. Its
    // partitions are in the logs topic only (min 1), so only the quorum refuses.
    s.brokers[2].alive = false;
    if let Some(m) = &mut s.metadata {
        m.topics.retain(|t| t.name == "logs");
    }
    let v = judge(Precondition::RestartSafe, &obs(2, s));
    assert!(!v.holds);
    assert!(
        v.reason.starts_with("the KRaft controller quorum would lose its majority without broker 2: caught-up voters left [1], 2 of 3 needed"),
        "{}",
        v.reason
    );
}

#[test]
fn not_starting_reads_broker_state() {
    let mut o = obs(2, summary(&[1, 3]));
    for (value, name) in [
        (1.0, "STARTING"),
        (2.0, "RECOVERY"),
        (6.0, "PENDING_CONTROLLED_SHUTDOWN"),
        (7.0, "SHUTTING_DOWN"),
    ] {
        o.state = Some(StateRead::State {
            url: "http://127.0.0.1:7072/metrics".into(),
            value,
        });
        let v = judge(Precondition::NotStarting, &o);
        assert!(!v.holds, "{name}");
        assert!(
            v.reason.starts_with(&format!(
                "broker 2 reports BrokerState {name} ({value}) on http://127.0.0.1:7072/metrics"
            )),
            "{}",
            v.reason
        );
    }
    for value in [0.0, 3.0, 2.5] {
        o.state = Some(StateRead::State {
            url: "u".into(),
            value,
        });
        assert!(judge(Precondition::NotStarting, &o).holds, "{value}");
    }
    for s in [
        StateRead::NoExporter,
        StateRead::Missing { url: "u".into() },
        StateRead::Unreadable {
            url: "u".into(),
            error: "connection refused".into(),
        },
    ] {
        o.state = Some(s);
        assert!(judge(Precondition::NotStarting, &o).holds);
    }
    o.state = None;
    assert!(!judge(Precondition::NotStarting, &o).holds, "never assumed");
}

#[test]
fn a_judgement_names_each_refusal() {
    let o = obs(1, summary(&[1, 3]));
    let j = Judgement {
        verdicts: [Precondition::BrokerUnreachable, Precondition::RestartSafe]
            .into_iter()
            .map(|p| judge(p, &o))
            .collect(),
        took: Duration::from_millis(12),
    };
    let r = j.refusal().expect("refused");
    assert!(
        r.starts_with("broker_unreachable: broker 1 (127.0.0.1:9001) answers"),
        "{r}"
    );
    assert!(
        r.contains("; restart_safe: 6 partition(s) would fall below"),
        "{r}"
    );
    assert!(
        j.summary()
            .starts_with("preconditions judged in 12 ms: broker_unreachable refused (")
    );
    let ok = Judgement {
        verdicts: vec![judge(Precondition::RestartSafe, &obs(2, summary(&[1, 3])))],
        took: Duration::ZERO,
    };
    assert_eq!(ok.refusal(), None);
}

#[test]
fn a_broker_target_refuses_the_zookeeper_guard() {
    let v = judge(
        Precondition::ZookeeperQuorumSafe,
        &obs(2, summary(&[1, 2, 3])),
    );
    assert!(!v.holds);
    assert!(
        v.reason.ends_with(
            "is not a ZooKeeper node: zookeeper_quorum_safe is judged of zookeeper_nodes only"
        ),
        "{}",
        v.reason
    );
}
