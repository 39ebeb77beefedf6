//! The cluster as Kafka's protocol shows it: which brokers answer, and from one that does,
//! the metadata, `min.insync.replicas` and the KRaft quorum. Plus the pure computation the
//! `restart_safe` precondition will use: which partitions would fall below their minimum
//! of in-sync replicas without a given broker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{ClusterMetadata, KafkaClient, MinIsr, QuorumInfo};
use crate::config::Broker;

/// One broker's liveness by the protocol: it answered ApiVersions (2 tries within the
/// client's timeout), or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveness {
    /// The config's `node_id`, or Kafka's id for a registered broker the config lacks.
    pub node_id: String,
    /// Host probed.
    pub host: String,
    /// Port probed.
    pub port: u16,
    /// Kafka's numeric id, when known (a numeric `node_id`, or found in the metadata by
    /// host and port).
    pub kafka_id: Option<i32>,
    /// False for a registered broker that is not in the config (probed at its advertised
    /// address).
    pub in_config: bool,
    /// It answers the Kafka protocol. True also when it refused the credentials: it is
    /// serving, the configuration is wrong (`error` says so).
    pub alive: bool,
    /// Time to the answer.
    pub latency: Option<Duration>,
    /// Why it is not alive, or the authentication error of a live broker.
    pub error: Option<String>,
}

/// What one look at the cluster found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSummary {
    /// Every configured broker, then registered brokers missing from the config.
    pub brokers: Vec<BrokerLiveness>,
    /// The `node_id` of the broker that answered Metadata and the rest.
    pub source: Option<String>,
    /// Metadata from `source`; `None` when no broker gave it.
    pub metadata: Option<ClusterMetadata>,
    /// `min.insync.replicas` of every topic and of `source`.
    pub min_isr: Option<MinIsr>,
    /// The KRaft quorum; `None` in ZooKeeper mode or when it could not be read.
    pub quorum: Option<QuorumInfo>,
    /// Why parts are missing (each prefixed with the broker asked).
    pub errors: Vec<String>,
}

impl ClusterSummary {
    /// Kafka ids of the brokers that answer.
    pub fn alive_ids(&self) -> BTreeSet<i32> {
        self.brokers
            .iter()
            .filter(|b| b.alive)
            .filter_map(|b| b.kafka_id)
            .collect()
    }

    /// The liveness of the broker with config `node_id`.
    pub fn broker(&self, node_id: &str) -> Option<&BrokerLiveness> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }
}

/// Kafka's id of a configured broker: its `node_id` when numeric, else the registered
/// broker advertising the same host and port.
pub fn kafka_id(b: &Broker, metadata: Option<&ClusterMetadata>) -> Option<i32> {
    if let Ok(id) = b.node_id.parse::<i32>() {
        return Some(id);
    }
    metadata?
        .brokers
        .iter()
        .find(|m| m.host == b.host && m.port == i32::from(b.port))
        .map(|m| m.node_id)
}

/// Whether the broker at `host:port` answers ApiVersions in 2 tries within the client's
/// timeout (a refusal of the credentials counts as answering); `kafka_id` is left unknown.
pub async fn probe(
    client: &KafkaClient,
    node_id: String,
    host: String,
    port: u16,
    in_config: bool,
) -> BrokerLiveness {
    let r = client.alive(&host, port, client.options().timeout).await;
    let (alive, latency, error) = match r {
        Ok(d) => (true, Some(d), None),
        Err(e) => (e.proves_alive(), None, Some(e.to_string())),
    };
    BrokerLiveness {
        node_id,
        host,
        port,
        kafka_id: None,
        in_config,
        alive,
        latency,
        error,
    }
}

async fn probe_all(
    client: &Arc<KafkaClient>,
    targets: Vec<(String, String, u16, bool)>,
) -> Vec<BrokerLiveness> {
    let mut set = JoinSet::new();
    for (i, (node_id, host, port, in_config)) in targets.into_iter().enumerate() {
        let client = client.clone();
        set.spawn(async move { (i, probe(&client, node_id, host, port, in_config).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, b)| b).collect()
}

/// Probes every configured broker (ApiVersions, 2 tries within the client's timeout, in
/// parallel); from the first that answers, reads Metadata, `min.insync.replicas` of every
/// topic and of that broker, and the KRaft quorum; then probes registered brokers that the
/// config does not name, at their advertised address.
pub async fn summarize(client: &Arc<KafkaClient>, brokers: &[Broker]) -> ClusterSummary {
    let targets = brokers
        .iter()
        .map(|b| (b.node_id.clone(), b.host.clone(), b.port, true))
        .collect();
    let mut live = probe_all(client, targets).await;
    let mut summary = ClusterSummary {
        brokers: Vec::new(),
        source: None,
        metadata: None,
        min_isr: None,
        quorum: None,
        errors: Vec::new(),
    };
    // Metadata from the first live broker that gives it (an authentication error proves
    // the broker alive but gives nothing).
    for b in live.iter().filter(|b| b.alive && b.error.is_none()) {
        match client.metadata(&b.host, b.port).await {
            Ok(m) => {
                summary.metadata = Some(m);
                summary.source = Some(b.node_id.clone());
                break;
            }
            Err(e) => summary.errors.push(e.to_string()),
        }
    }
    for (l, b) in live.iter_mut().zip(brokers) {
        l.kafka_id = kafka_id(b, summary.metadata.as_ref());
    }
    if let (Some(m), Some(src)) = (&summary.metadata, &summary.source) {
        let known: BTreeSet<i32> = live.iter().filter_map(|b| b.kafka_id).collect();
        let extra: Vec<_> = m
            .brokers
            .iter()
            .filter(|b| !known.contains(&b.node_id))
            .filter_map(|b| {
                let port = u16::try_from(b.port).ok()?;
                Some((b.node_id.to_string(), b.host.clone(), port, false))
            })
            .collect();
        let mut more = probe_all(client, extra).await;
        for l in &mut more {
            l.kafka_id = l.node_id.parse().ok();
        }
        live.extend(more);

        let Some(s) = live.iter().find(|b| &b.node_id == src) else {
            summary.brokers = live;
            return summary;
        };
        let (host, port, id) = (s.host.clone(), s.port, s.kafka_id);
        let topics: Vec<String> = m
            .topics
            .iter()
            .filter(|t| !t.name.is_empty())
            .map(|t| t.name.clone())
            .collect();
        match client.min_insync_replicas(&host, port, &topics, id).await {
            Ok(v) => summary.min_isr = Some(v),
            Err(e) => summary.errors.push(e.to_string()),
        }
        match client.describe_quorum(&host, port).await {
            Ok(q) => summary.quorum = q,
            Err(e) => summary.errors.push(e.to_string()),
        }
    }
    summary.brokers = live;
    summary
}

/// A partition that would have fewer in-sync replicas than its `min.insync.replicas`
/// without the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAtRisk {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replicas still counted in sync: in the ISR, answering, not offline, not the
    /// target.
    pub in_sync: Vec<i32>,
    /// The topic's `min.insync.replicas`.
    pub min_isr: u32,
    /// The target is one of its counted in-sync replicas: the restart itself makes it
    /// worse (otherwise it is already below, with or without the target).
    pub target_in_sync: bool,
}

/// Partitions that would have fewer than `min.insync.replicas` in-sync replicas without
/// `target`. A replica counts as in sync only when it is in the ISR, is not offline, and
/// its broker is in `alive` (answers the protocol), whatever the ISR list still says.
pub fn partitions_below_min_isr_without(
    target: i32,
    metadata: &ClusterMetadata,
    min_isr: &MinIsr,
    alive: &BTreeSet<i32>,
) -> Vec<PartitionAtRisk> {
    let mut out = Vec::new();
    for t in &metadata.topics {
        let min = min_isr.of(&t.name);
        for p in &t.partitions {
            let healthy = |r: &&i32| alive.contains(r) && !p.offline.contains(r);
            let target_in_sync = p.isr.iter().filter(healthy).any(|r| *r == target);
            let in_sync: Vec<i32> = p
                .isr
                .iter()
                .filter(healthy)
                .filter(|r| **r != target)
                .copied()
                .collect();
            if (in_sync.len() as u64) < u64::from(min) {
                out.push(PartitionAtRisk {
                    topic: t.name.clone(),
                    partition: p.partition,
                    in_sync,
                    min_isr: min,
                    target_in_sync,
                });
            }
        }
    }
    out
}

/// Whether KRaft's controller quorum keeps a majority without one voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumCheck {
    /// Number of voters.
    pub voters: usize,
    /// Voters needed for a majority.
    pub needed: usize,
    /// The voters other than the target that are caught up with the leader.
    pub caught_up: Vec<i32>,
    /// `caught_up` reaches `needed`.
    pub ok: bool,
}

/// Whether the voters other than `target` that are caught up still form a majority (as
/// Strimzi's quorum check: a follower is caught up when its last catch-up is within
/// `max_behind_ms` of the leader's own, which avoids comparing clocks of two machines;
/// without timestamps (DescribeQuorum v0), when its lag is 0). The leader is caught up.
pub fn quorum_majority_without(target: i32, q: &QuorumInfo, max_behind_ms: i64) -> QuorumCheck {
    let leader_ts = q
        .voters
        .iter()
        .find(|v| Some(v.replica_id) == q.leader_id)
        .and_then(|v| v.last_caught_up_ms);
    let caught_up: Vec<i32> = q
        .voters
        .iter()
        .filter(|v| v.replica_id != target)
        .filter(|v| {
            Some(v.replica_id) == q.leader_id
                || match (leader_ts, v.last_caught_up_ms) {
                    (Some(l), Some(t)) => l.saturating_sub(t) <= max_behind_ms,
                    _ => v.lag == 0,
                }
        })
        .map(|v| v.replica_id)
        .collect();
    let needed = q.voters.len() / 2 + 1;
    QuorumCheck {
        voters: q.voters.len(),
        needed,
        ok: caught_up.len() >= needed,
        caught_up,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kafka::{BrokerInfo, PartitionInfo, TopicInfo};

    fn part(partition: i32, replicas: &[i32], isr: &[i32], offline: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition,
            leader: isr.first().copied(),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline: offline.to_vec(),
            error_code: 0,
        }
    }

    fn meta(topics: Vec<(&str, Vec<PartitionInfo>)>) -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: Some("c".into()),
            controller_id: Some(1),
            brokers: (1..=3)
                .map(|i| BrokerInfo {
                    node_id: i,
                    host: format!("k{i}"),
                    port: 9092,
                    rack: None,
                })
                .collect(),
            topics: topics
                .into_iter()
                .map(|(n, partitions)| TopicInfo {
                    name: n.into(),
                    internal: n.starts_with("__"),
                    error_code: 0,
                    partitions,
                })
                .collect(),
        }
    }

    fn min(default: u32, topics: &[(&str, u32)]) -> MinIsr {
        MinIsr {
            broker_default: Some(default),
            topics: topics.iter().map(|(t, v)| (t.to_string(), *v)).collect(),
            errors: BTreeMap::new(),
        }
    }

    fn ids(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    fn risks(r: &[PartitionAtRisk]) -> Vec<(String, i32, Vec<i32>, bool)> {
        r.iter()
            .map(|p| {
                (
                    p.topic.clone(),
                    p.partition,
                    p.in_sync.clone(),
                    p.target_in_sync,
                )
            })
            .collect()
    }

    #[test]
    fn healthy_rf3_min2_survives_any_one_broker() {
        let m = meta(vec![(
            "orders",
            vec![
                part(0, &[1, 2, 3], &[1, 2, 3], &[]),
                part(1, &[2, 3, 1], &[2, 3, 1], &[]),
            ],
        )]);
        let mi = min(1, &[("orders", 2)]);
        for target in 1..=3 {
            assert_eq!(
                partitions_below_min_isr_without(target, &m, &mi, &ids(&[1, 2, 3])),
                vec![],
                "target {target}"
            );
        }
    }

    #[test]
    fn a_dead_broker_still_in_the_isr_counts_out_of_sync() {
        // Broker 3 does not answer, but the controller has not shrunk the ISR yet.
        let m = meta(vec![
            (
                "orders",
                vec![
                    part(0, &[1, 2, 3], &[1, 2, 3], &[]),
                    part(1, &[2, 3, 1], &[2, 3], &[]),
                ],
            ),
            ("logs", vec![part(0, &[1, 3], &[1, 3], &[])]),
        ]);
        let mi = min(1, &[("orders", 2)]);
        let alive = ids(&[1, 2]);
        // Restarting 1: orders-0 keeps only 2 (< 2), orders-1 keeps 2 (< 2) and 1 was not
        // in its ISR, logs-0 (min 1 by default) keeps nothing.
        assert_eq!(
            risks(&partitions_below_min_isr_without(1, &m, &mi, &alive)),
            vec![
                ("orders".into(), 0, vec![2], true),
                ("orders".into(), 1, vec![2], false),
                ("logs".into(), 0, vec![], true),
            ]
        );
        // Restarting 3, which is down: orders-1 is already below (1 of 2), the restart
        // cannot make anything worse.
        let r = partitions_below_min_isr_without(3, &m, &mi, &alive);
        assert_eq!(
            risks(&r),
            vec![("orders".into(), 1, vec![2], false)],
            "{r:?}"
        );
        assert!(r.iter().all(|p| !p.target_in_sync));
        assert_eq!(r[0].min_isr, 2);
    }

    #[test]
    fn offline_replicas_and_topic_overrides() {
        let m = meta(vec![
            ("a", vec![part(0, &[1, 2, 3], &[1, 2, 3], &[2])]),
            ("b", vec![part(0, &[1, 2, 3], &[1, 2, 3], &[])]),
        ]);
        // a: default 2; 2's log dir is offline, so without 1 only 3 counts. b: min 3, so
        // any restart takes it below.
        let mi = min(2, &[("b", 3)]);
        let all = ids(&[1, 2, 3]);
        assert_eq!(
            risks(&partitions_below_min_isr_without(1, &m, &mi, &all)),
            vec![
                ("a".into(), 0, vec![3], true),
                ("b".into(), 0, vec![2, 3], true)
            ]
        );
        assert_eq!(
            risks(&partitions_below_min_isr_without(2, &m, &mi, &all)),
            vec![("b".into(), 0, vec![1, 3], true)],
            "2 is offline in a: restarting it lowers nothing there"
        );
        // An unknown topic value falls back to the broker default, then to Kafka's 1.
        assert_eq!(mi.of("zzz"), 2);
        assert_eq!(MinIsr::default().of("zzz"), 1);
    }

    #[test]
    fn kafka_ids_from_config() {
        let m = meta(vec![]);
        let b = |id: &str, host: &str| Broker {
            node_id: id.into(),
            host: host.into(),
            port: 9092,
            jmx_port: None,
            metrics_url: None,
        };
        assert_eq!(kafka_id(&b("7", "x"), None), Some(7));
        assert_eq!(kafka_id(&b("kafka-2", "k2"), Some(&m)), Some(2));
        assert_eq!(kafka_id(&b("kafka-9", "k9"), Some(&m)), None);
        assert_eq!(kafka_id(&b("kafka-2", "k2"), None), None);
    }

    fn voter(id: i32, lag: i64, ts: Option<i64>) -> crate::kafka::QuorumReplica {
        crate::kafka::QuorumReplica {
            replica_id: id,
            log_end_offset: 100 - lag,
            lag,
            last_caught_up_ms: ts,
        }
    }

    #[test]
    fn quorum_majority() {
        let q = QuorumInfo {
            leader_id: Some(1),
            leader_epoch: 3,
            high_watermark: 100,
            voters: vec![
                voter(1, 0, Some(10_000)),
                voter(2, 0, Some(9_900)),
                voter(3, 40, Some(1_000)),
            ],
            observers: vec![],
        };
        // 3 is 9 s behind the leader: without 2, only the leader is caught up.
        let c = quorum_majority_without(2, &q, 2_000);
        assert_eq!(
            (c.voters, c.needed, c.caught_up.clone(), c.ok),
            (3, 2, vec![1], false)
        );
        // Without 3 (the lagging one), 1 and 2 remain.
        let c = quorum_majority_without(3, &q, 2_000);
        assert_eq!((c.caught_up.clone(), c.ok), (vec![1, 2], true));
        // Without the leader: 2 alone is not a majority.
        assert!(!quorum_majority_without(1, &q, 2_000).ok);
        // No timestamps (v0): lag decides.
        let mut q0 = q.clone();
        for v in &mut q0.voters {
            v.last_caught_up_ms = None;
        }
        assert_eq!(quorum_majority_without(3, &q0, 2_000).caught_up, vec![1, 2]);
        assert_eq!(quorum_majority_without(2, &q0, 2_000).caught_up, vec![1]);
    }
}
