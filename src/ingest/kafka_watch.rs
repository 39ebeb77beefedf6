//! The self-watch's `kafka` monitoring method: each round one shared [`KafkaClient`] asks
//! the brokers this instance watches through Kafka's own protocol
//! ([`crate::kafka::cluster::summarize`]) and the answer becomes series in the store:
//! per broker `kafka_healing_probe_success{method="kafka",node_id}` (it answers
//! ApiVersions), [`names::AUTH_OK`], [`names::UNDER_MIN_ISR_WITHOUT`],
//! [`names::BROKER_UNDER_REPLICATED`] and [`names::BROKER_OFFLINE`]; for the cluster,
//! from the metadata of a broker that answered, [`names::PARTITIONS`] by state and the KRaft
//! quorum ([`names::QUORUM_VOTERS`], [`names::QUORUM_MAX_LAG`]).
//!
//! [`kafka_series`] is the pure part (summary → series); [`KafkaWatch`] keeps the client
//! between rounds and rebuilds it when the `security:` section or the time limit changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::probe::ProbeResult;
use super::store::Labels;
use crate::config::{Broker, Loaded, SecurityConfig};
use crate::kafka::cluster::{ClusterSummary, partitions_below_min_isr_without, summarize};
use crate::kafka::{ClientOptions, KafkaClient, KafkaError};
use crate::metrics::kafka::{BrokerView, KafkaView};

/// The names of the series the `kafka` method writes (besides the probe's own
/// `kafka_healing_probe_success` and `kafka_healing_probe_duration_seconds` with
/// `method="kafka"`).
pub mod names {
    /// The `method` label of the probe series.
    pub const METHOD: &str = "kafka";
    /// Per broker (`node_id`): 1 when it answered without refusing the credentials, 0
    /// when it answered and refused them (alive, but the `security:` section is wrong);
    /// absent when it did not answer.
    pub const AUTH_OK: &str = "kafka_healing_kafka_auth_ok";
    /// Per broker (`node_id`): partitions that would have fewer in-sync replicas than
    /// their `min.insync.replicas` without that broker (what `restart_safe` checks),
    /// counting replicas on brokers that do not answer as out of sync. Written when the
    /// metadata and `min.insync.replicas` could be read.
    pub const UNDER_MIN_ISR_WITHOUT: &str =
        "kafka_healing_kafka_broker_partitions_under_min_isr_without";
    /// Per broker (`node_id`): partitions it leads whose ISR is shorter than their replica
    /// list (Kafka's own per-broker UnderReplicatedPartitions). Written with the metadata.
    pub const BROKER_UNDER_REPLICATED: &str =
        "kafka_healing_kafka_broker_partitions_under_replicated";
    /// Per broker (`node_id`): partitions without a leader that have a replica on it.
    /// Written with the metadata.
    pub const BROKER_OFFLINE: &str = "kafka_healing_kafka_broker_partitions_offline";
    /// Cluster: partitions by `state`: `under_replicated` (ISR smaller than the replica
    /// list), `under_min_isr` (fewer in-sync replicas on answering brokers than
    /// `min.insync.replicas`; written when that could be read), `offline` (no leader).
    pub const PARTITIONS: &str = "kafka_healing_kafka_partitions";
    /// Cluster: KRaft controller quorum voters (written when DescribeQuorum answered).
    pub const QUORUM_VOTERS: &str = "kafka_healing_kafka_quorum_voters";
    /// Cluster: the largest lag of a voter behind the quorum leader, in records.
    pub const QUORUM_MAX_LAG: &str = "kafka_healing_kafka_quorum_max_lag";
    /// The store target of the cluster-level series (per-broker ones are under
    /// `probe/kafka/<node_id>` like every probe).
    pub const CLUSTER_TARGET: &str = "probe/kafka/cluster";
}

/// The cluster-level part of a `kafka` round.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterObservation {
    /// The method (`kafka`).
    pub method: &'static str,
    /// What was seen (which broker gave the metadata, or why none did), for logs and
    /// `scrape` output.
    pub detail: String,
    /// The cluster-level series (empty when no broker gave the metadata).
    pub samples: Vec<(Labels, f64)>,
    /// How long the round's Kafka requests took.
    pub duration: Duration,
}

/// What one round of the `kafka` method produced.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSeries {
    /// One probe per configured broker watched (method `kafka`), with the per-broker facts.
    pub brokers: Vec<ProbeResult>,
    /// The cluster-level series.
    pub cluster: ClusterObservation,
}

fn labels(name: &str, extra: &[(&str, &str)]) -> Labels {
    let mut l = BTreeMap::new();
    l.insert("__name__".to_string(), name.to_string());
    for (k, v) in extra {
        l.insert((*k).to_string(), (*v).to_string());
    }
    l
}

/// The series of one round from `summary`: a probe for every configured broker in it
/// (brokers the config does not name, which `summarize` also probes, get none), and the
/// cluster-level series when it holds metadata. `elapsed` is the duration of a probe
/// without an answer.
pub fn kafka_series(summary: &ClusterSummary, elapsed: Duration) -> KafkaSeries {
    let alive = summary.alive_ids();
    let risk_without = |id: i32| -> Option<usize> {
        let (m, min) = (summary.metadata.as_ref()?, summary.min_isr.as_ref()?);
        Some(partitions_below_min_isr_without(id, m, min, &alive).len())
    };
    let brokers = summary
        .brokers
        .iter()
        .filter(|b| b.in_config)
        .map(|b| {
            let mut facts = Vec::new();
            if b.alive {
                facts.push((
                    names::AUTH_OK.to_string(),
                    if b.error.is_none() { 1.0 } else { 0.0 },
                ));
            }
            if let Some(n) = b.kafka_id.and_then(risk_without) {
                facts.push((names::UNDER_MIN_ISR_WITHOUT.to_string(), n as f64));
            }
            if let (Some(id), Some(m)) = (b.kafka_id, &summary.metadata) {
                let parts = m.topics.iter().flat_map(|t| &t.partitions);
                let led_short = parts
                    .clone()
                    .filter(|p| p.leader == Some(id) && p.isr.len() < p.replicas.len());
                let offline = parts.filter(|p| p.leader.is_none() && p.replicas.contains(&id));
                facts.push((
                    names::BROKER_UNDER_REPLICATED.to_string(),
                    led_short.count() as f64,
                ));
                facts.push((names::BROKER_OFFLINE.to_string(), offline.count() as f64));
            }
            let detail = match (&b.error, b.latency) {
                (Some(e), _) => e.clone(),
                (None, Some(d)) => format!("{}:{} answers ApiVersions in {d:.1?}", b.host, b.port),
                (None, None) => format!("{}:{} answers ApiVersions", b.host, b.port),
            };
            ProbeResult {
                method: names::METHOD,
                node_id: b.node_id.clone(),
                success: b.alive,
                duration: b.latency.unwrap_or(elapsed),
                detail,
                facts,
                refused: None,
            }
        })
        .collect();
    let mut samples = Vec::new();
    let detail = match (&summary.metadata, &summary.source) {
        (Some(m), Some(src)) => {
            let all = m.topics.iter().flat_map(|t| &t.partitions);
            let under_replicated = all.clone().filter(|p| p.isr.len() < p.replicas.len());
            let offline = all.filter(|p| p.leader.is_none());
            samples.push((
                labels(names::PARTITIONS, &[("state", "under_replicated")]),
                under_replicated.count() as f64,
            ));
            samples.push((
                labels(names::PARTITIONS, &[("state", "offline")]),
                offline.count() as f64,
            ));
            // No broker is -1: the partitions already below their minimum.
            if let Some(n) = risk_without(-1) {
                samples.push((
                    labels(names::PARTITIONS, &[("state", "under_min_isr")]),
                    n as f64,
                ));
            }
            if let Some(q) = &summary.quorum {
                samples.push((labels(names::QUORUM_VOTERS, &[]), q.voters.len() as f64));
                let lag = q.voters.iter().map(|v| v.lag).max().unwrap_or(0);
                samples.push((labels(names::QUORUM_MAX_LAG, &[]), lag as f64));
            }
            let mut d = format!(
                "metadata from {src}: {} brokers registered, {} topics",
                m.brokers.len(),
                m.topics.len()
            );
            for e in &summary.errors {
                d.push_str("; ");
                d.push_str(e);
            }
            d
        }
        _ if summary.errors.is_empty() => "no broker answered: no metadata".to_string(),
        _ => format!("no metadata: {}", summary.errors.join("; ")),
    };
    KafkaSeries {
        brokers,
        cluster: ClusterObservation {
            method: names::METHOD,
            detail,
            samples,
            duration: elapsed,
        },
    }
}

/// What `/metrics` shows of a round ([`crate::metrics::kafka`]): `probes` are the round's
/// probes (those of method `kafka` are used), `cluster` its cluster-level observation
/// (`None` when the method did not run: then there is nothing to show).
pub fn metrics_view<'a>(
    cluster_name: &str,
    probes: impl IntoIterator<Item = &'a ProbeResult>,
    cluster: Option<&ClusterObservation>,
) -> Option<KafkaView> {
    let cluster = cluster?;
    let fact = |p: &ProbeResult, name: &str| {
        p.facts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v as i64)
    };
    let brokers = probes
        .into_iter()
        .filter(|p| p.method == names::METHOD)
        .map(|p| {
            let b = BrokerView {
                up: p.success,
                auth_ok: fact(p, names::AUTH_OK).map(|v| v == 1),
                under_min_isr_without: fact(p, names::UNDER_MIN_ISR_WITHOUT),
                under_replicated: fact(p, names::BROKER_UNDER_REPLICATED),
                offline: fact(p, names::BROKER_OFFLINE),
            };
            (p.node_id.clone(), b)
        })
        .collect();
    let mut view = KafkaView {
        cluster: cluster_name.to_string(),
        brokers,
        ..KafkaView::default()
    };
    for (l, v) in &cluster.samples {
        let n = *v as i64;
        match l.get("__name__").map(String::as_str) {
            Some(names::PARTITIONS) => {
                if let Some(state) = l.get("state") {
                    view.partitions.insert(state.clone(), n);
                }
            }
            Some(names::QUORUM_VOTERS) => view.quorum_voters = Some(n),
            Some(names::QUORUM_MAX_LAG) => view.quorum_max_lag = Some(n),
            _ => {}
        }
    }
    Some(view)
}

/// What a client was built from; a change rebuilds it.
type ClientKey = (SecurityConfig, Duration, PathBuf);

/// The `kafka` method's state between rounds: one [`KafkaClient`] (its connections are
/// reused), rebuilt when the `security:` section, the config's directory or the time
/// limit changes (a reload).
#[derive(Debug, Default)]
pub struct KafkaWatch {
    current: Mutex<Option<(ClientKey, Arc<KafkaClient>)>>,
}

/// Each request's share of `monitoring.timeout_seconds`: a round asks ApiVersions (2
/// tries), then Metadata, DescribeConfigs and DescribeQuorum one after the other.
pub fn request_timeout(round: Duration) -> Duration {
    (round / 3).max(Duration::from_millis(500))
}

impl KafkaWatch {
    /// No client yet.
    pub fn new() -> KafkaWatch {
        KafkaWatch::default()
    }

    /// The client for `loaded`'s `security:` section with requests bounded by
    /// [`request_timeout`] of `round`: the one of the last round when nothing changed,
    /// else a new one.
    pub fn client(&self, loaded: &Loaded, round: Duration) -> Result<Arc<KafkaClient>, KafkaError> {
        let key: ClientKey = (
            loaded.config.security.clone(),
            request_timeout(round),
            loaded.base_dir.clone(),
        );
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((k, c)) = cur.as_ref()
            && *k == key
        {
            return Ok(c.clone());
        }
        let opts = ClientOptions::from_config(&key.0, key.1, &key.2)?;
        let client = Arc::new(KafkaClient::new(opts));
        *cur = Some((key, client.clone()));
        Ok(client)
    }

    /// One round over `brokers` (the configured brokers this instance watches) within
    /// `round`. Registered brokers outside `brokers` (another instance's share, or not in
    /// the config) are asked too, for the in-sync replica counts, but get no probe series. When the round does not finish in time, every broker counts as not
    /// answering. When no client can be built (unreadable TLS files), no broker gets a
    /// probe and the cluster observation says why.
    pub async fn observe(
        &self,
        loaded: &Loaded,
        brokers: &[Broker],
        round: Duration,
    ) -> KafkaSeries {
        let t0 = Instant::now();
        let client = match self.client(loaded, round) {
            Ok(c) => c,
            Err(e) => {
                return KafkaSeries {
                    brokers: Vec::new(),
                    cluster: ClusterObservation {
                        method: names::METHOD,
                        detail: format!("no Kafka client: {e}"),
                        samples: Vec::new(),
                        duration: t0.elapsed(),
                    },
                };
            }
        };
        match tokio::time::timeout(round, summarize(&client, brokers)).await {
            Ok(summary) => kafka_series(&summary, t0.elapsed()),
            Err(_) => {
                let summary = ClusterSummary {
                    brokers: brokers
                        .iter()
                        .map(|b| crate::kafka::cluster::BrokerLiveness {
                            node_id: b.node_id.clone(),
                            host: b.host.clone(),
                            port: b.port,
                            kafka_id: None,
                            in_config: true,
                            alive: false,
                            latency: None,
                            error: Some(format!("the Kafka round did not finish within {round:?}")),
                        })
                        .collect(),
                    source: None,
                    metadata: None,
                    min_isr: None,
                    quorum: None,
                    errors: vec![format!("the Kafka round did not finish within {round:?}")],
                };
                kafka_series(&summary, t0.elapsed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kafka::cluster::BrokerLiveness;
    use crate::kafka::{
        BrokerInfo, ClusterMetadata, MinIsr, PartitionInfo, QuorumInfo, QuorumReplica, TopicInfo,
    };

    fn part(partition: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline: Vec::new(),
            error_code: 0,
        }
    }

    fn broker(id: i32, alive: bool, error: Option<&str>, in_config: bool) -> BrokerLiveness {
        BrokerLiveness {
            node_id: id.to_string(),
            host: "127.0.0.1".into(),
            port: 9090 + id as u16,
            kafka_id: Some(id),
            in_config,
            alive,
            latency: (alive && error.is_none()).then_some(Duration::from_millis(3)),
            error: error.map(str::to_string),
        }
    }

    /// Three brokers: 1 answers, 2 refuses the credentials (alive), 3 does not answer;
    /// broker 4 is registered but not in the config.
    fn summary() -> ClusterSummary {
        let topics = vec![TopicInfo {
            name: "orders".into(),
            internal: false,
            error_code: 0,
            partitions: vec![
                // Fully in sync on 1, 2, 3 (3 does not answer: counts out of sync).
                part(0, Some(1), &[1, 2, 3], &[1, 2, 3]),
                // Under-replicated: ISR 1 only.
                part(1, Some(1), &[1, 2], &[1]),
                // Offline: no leader, empty ISR.
                part(2, None, &[3], &[]),
            ],
        }];
        ClusterSummary {
            brokers: vec![
                broker(1, true, None, true),
                broker(2, true, Some("SASL authentication failed"), true),
                broker(3, false, Some("no answer within 1s"), true),
                broker(4, true, None, false),
            ],
            source: Some("1".into()),
            metadata: Some(ClusterMetadata {
                cluster_id: Some("c".into()),
                controller_id: Some(1),
                brokers: (1..=4)
                    .map(|i| BrokerInfo {
                        node_id: i,
                        host: "127.0.0.1".into(),
                        port: 9090 + i,
                        rack: None,
                    })
                    .collect(),
                topics,
            }),
            min_isr: Some(MinIsr {
                broker_default: Some(2),
                topics: BTreeMap::new(),
                errors: BTreeMap::new(),
            }),
            quorum: Some(QuorumInfo {
                leader_id: Some(1),
                leader_epoch: 4,
                high_watermark: 100,
                voters: [(1, 0), (2, 7), (3, 42)]
                    .into_iter()
                    .map(|(id, lag)| QuorumReplica {
                        replica_id: id,
                        log_end_offset: 100 - lag,
                        lag,
                        last_caught_up_ms: None,
                    })
                    .collect(),
                observers: Vec::new(),
            }),
            errors: Vec::new(),
        }
    }

    fn value(samples: &[(Labels, f64)], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        samples
            .iter()
            .find(|(l, _)| {
                l.get("__name__").map(String::as_str) == Some(name)
                    && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
            })
            .map(|(_, v)| *v)
    }

    #[test]
    fn per_broker_probe_series() {
        let s = kafka_series(&summary(), Duration::from_secs(2));
        let ids: Vec<&str> = s.brokers.iter().map(|p| p.node_id.as_str()).collect();
        assert_eq!(
            ids,
            ["1", "2", "3"],
            "the broker outside the config gets no probe"
        );
        let success = |i: usize| {
            value(
                &s.brokers[i].series(),
                "kafka_healing_probe_success",
                Some(("method", "kafka")),
            )
        };
        assert_eq!(success(0), Some(1.0));
        assert_eq!(success(1), Some(1.0), "refused credentials: answering");
        assert_eq!(success(2), Some(0.0));
        let fact = |i: usize, n: &str| value(&s.brokers[i].series(), n, None);
        assert_eq!(fact(0, names::AUTH_OK), Some(1.0));
        assert_eq!(fact(1, names::AUTH_OK), Some(0.0));
        assert_eq!(
            fact(2, names::AUTH_OK),
            None,
            "unknown when it does not answer"
        );
        // In sync and answering: 1 and 2 (3 does not answer); min ISR 2.
        // Without 1: p0 {2}, p1 {} and p2 {} are below; without 2: p0 {1}, p1, p2;
        // without 3: p0 {1,2} is fine, p1 and p2 are already below.
        assert_eq!(fact(0, names::UNDER_MIN_ISR_WITHOUT), Some(3.0));
        assert_eq!(fact(1, names::UNDER_MIN_ISR_WITHOUT), Some(3.0));
        assert_eq!(fact(2, names::UNDER_MIN_ISR_WITHOUT), Some(2.0));
        // p1 is led by 1 with ISR {1} of [1, 2]; p2 (no leader) has its replica on 3.
        let per_broker = |n| (0..3).map(|i| fact(i, n)).collect::<Vec<_>>();
        assert_eq!(
            per_broker(names::BROKER_UNDER_REPLICATED),
            [Some(1.0), Some(0.0), Some(0.0)]
        );
        assert_eq!(
            per_broker(names::BROKER_OFFLINE),
            [Some(0.0), Some(0.0), Some(1.0)]
        );
        let labels = &s.brokers[0].series()[2].0;
        assert_eq!(labels.get("node_id").map(String::as_str), Some("1"));
        assert_eq!(labels.get("method"), None, "facts carry node_id only");
        assert_eq!(s.brokers[0].duration, Duration::from_millis(3));
        assert_eq!(s.brokers[2].duration, Duration::from_secs(2));
        assert_eq!(s.brokers[2].detail, "no answer within 1s");
    }

    #[test]
    fn cluster_series() {
        let s = kafka_series(&summary(), Duration::from_secs(2)).cluster;
        let p = |state| value(&s.samples, names::PARTITIONS, Some(("state", state)));
        assert_eq!(p("under_replicated"), Some(2.0));
        assert_eq!(p("offline"), Some(1.0));
        assert_eq!(p("under_min_isr"), Some(2.0));
        assert_eq!(value(&s.samples, names::QUORUM_VOTERS, None), Some(3.0));
        assert_eq!(value(&s.samples, names::QUORUM_MAX_LAG, None), Some(42.0));
        assert_eq!(s.samples.len(), 5);
        assert_eq!(s.method, "kafka");
        assert!(
            s.detail
                .starts_with("metadata from 1: 4 brokers registered, 1 topics")
        );
    }

    #[test]
    fn without_min_isr_or_quorum_or_metadata() {
        let mut sum = summary();
        sum.min_isr = None;
        sum.quorum = None;
        let s = kafka_series(&sum, Duration::from_secs(1));
        let names_of = |v: &[(Labels, f64)]| -> Vec<String> {
            v.iter()
                .map(|(l, _)| {
                    format!(
                        "{}{}",
                        l["__name__"],
                        l.get("state").map(|s| format!("/{s}")).unwrap_or_default()
                    )
                })
                .collect()
        };
        assert_eq!(
            names_of(&s.cluster.samples),
            [
                "kafka_healing_kafka_partitions/under_replicated",
                "kafka_healing_kafka_partitions/offline"
            ]
        );
        assert_eq!(
            value(&s.brokers[0].series(), names::UNDER_MIN_ISR_WITHOUT, None),
            None
        );

        sum.metadata = None;
        sum.source = None;
        let s = kafka_series(&sum, Duration::from_secs(1));
        assert_eq!(
            value(&s.brokers[0].series(), names::BROKER_OFFLINE, None),
            None,
            "no per-broker counts without metadata"
        );
        sum.errors = vec!["127.0.0.1:9091: no answer to Metadata within 1s".into()];
        let s = kafka_series(&sum, Duration::from_secs(1));
        assert!(s.cluster.samples.is_empty());
        assert_eq!(
            s.cluster.detail,
            "no metadata: 127.0.0.1:9091: no answer to Metadata within 1s"
        );
        assert_eq!(s.brokers.len(), 3, "liveness is still written");
    }

    #[test]
    fn what_metrics_shows() {
        let s = kafka_series(&summary(), Duration::from_secs(2));
        let mut probes = s.brokers.clone();
        probes.push(ProbeResult {
            method: "socket",
            node_id: "9".into(),
            success: true,
            duration: Duration::ZERO,
            detail: String::new(),
            facts: Vec::new(),
            refused: Some(false),
        });
        let v = metrics_view("east", &probes, Some(&s.cluster)).expect("the method ran");
        assert_eq!(v.cluster, "east");
        let b = |up, auth: Option<bool>, w, urp, off| BrokerView {
            up,
            auth_ok: auth,
            under_min_isr_without: Some(w),
            under_replicated: Some(urp),
            offline: Some(off),
        };
        let want: BTreeMap<String, BrokerView> = [
            ("1".to_string(), b(true, Some(true), 3, 1, 0)),
            ("2".to_string(), b(true, Some(false), 3, 0, 0)),
            ("3".to_string(), b(false, None, 2, 0, 1)),
        ]
        .into_iter()
        .collect();
        assert_eq!(v.brokers, want, "kafka probes only");
        let parts: Vec<(&str, i64)> = v.partitions.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            parts,
            [
                ("offline", 1),
                ("under_min_isr", 2),
                ("under_replicated", 2)
            ]
        );
        assert_eq!((v.quorum_voters, v.quorum_max_lag), (Some(3), Some(42)));
        assert_eq!(metrics_view("east", &probes, None), None);
    }

    #[test]
    fn client_kept_between_rounds_and_rebuilt_on_change() {
        let load = |security: &str| {
            let text = format!(
                "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: 1, host: 127.0.0.1, port: 9092 }}\nmonitoring: {{ methods: [kafka] }}\n{security}"
            );
            crate::config::load_text(
                &text,
                std::path::Path::new("/nonexistent/config.yaml"),
                Default::default(),
            )
            .expect("valid config")
        };
        let plain = load("");
        let w = KafkaWatch::new();
        let round = Duration::from_secs(15);
        let a = w.client(&plain, round).unwrap();
        let b = w.client(&plain, round).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same config: same client");
        assert_eq!(a.options().timeout, Duration::from_secs(5));
        assert!(a.options().sasl.is_none());
        let c = w.client(&plain, Duration::from_secs(3)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "new time limit: new client");
        assert_eq!(c.options().timeout, Duration::from_secs(1));
        let sasl = load(
            "security:\n  sasl: { enabled: true, mechanism: PLAIN, username: u, password: p }\n",
        );
        let d = w.client(&sasl, Duration::from_secs(3)).unwrap();
        assert!(!Arc::ptr_eq(&c, &d), "new security section: new client");
        let creds = d.options().sasl.as_ref().expect("SASL from security:");
        assert_eq!(creds.username, "u");
        let e = w.client(&sasl, Duration::from_secs(3)).unwrap();
        assert!(Arc::ptr_eq(&d, &e));
    }

    #[test]
    fn request_share_of_the_round() {
        assert_eq!(
            request_timeout(Duration::from_secs(15)),
            Duration::from_secs(5)
        );
        assert_eq!(
            request_timeout(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
