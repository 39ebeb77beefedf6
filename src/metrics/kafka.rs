//! The `kafka` monitoring method on `/metrics`: per broker whether it answers Kafka's
//! protocol and what restarting it would do, and the cluster's partition counts and
//! controller quorum, each labelled with the configured `cluster` name.
//!
//! Label values come from the config (`cluster.name`, the brokers' `node_id`) and from a
//! fixed list (`state`), never from alerts. Each round replaces the whole view: a broker
//! that left the config, or the share of this instance, loses its series, and all of them
//! go when the method stops. The bound is 5 series per broker watched plus 5.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a per-broker series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct BrokerLabels {
    /// `cluster.name`.
    pub cluster: String,
    /// The broker's `node_id` in the config.
    pub node_id: String,
}

/// Labels of a cluster-level series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ClusterLabels {
    /// `cluster.name`.
    pub cluster: String,
}

/// Labels of the partition counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PartitionLabels {
    /// `cluster.name`.
    pub cluster: String,
    /// `under_replicated`, `under_min_isr` or `offline`.
    pub state: String,
}

/// One broker in a round of the `kafka` method.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerView {
    /// It answered ApiVersions.
    pub up: bool,
    /// It accepted the credentials (unknown when it did not answer).
    pub auth_ok: Option<bool>,
    /// Partitions below `min.insync.replicas` without it (unknown without the metadata).
    pub under_min_isr_without: Option<i64>,
    /// Partitions it leads that are under-replicated (unknown without the metadata).
    pub under_replicated: Option<i64>,
    /// Partitions without a leader that have a replica on it (unknown without the metadata).
    pub offline: Option<i64>,
}

/// What one round of the `kafka` method saw, as `/metrics` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaView {
    /// `cluster.name`.
    pub cluster: String,
    /// Per configured broker watched here, by `node_id`.
    pub brokers: BTreeMap<String, BrokerView>,
    /// Partition counts by state (only the states that could be computed).
    pub partitions: BTreeMap<String, i64>,
    /// KRaft controller quorum voters, when DescribeQuorum answered.
    pub quorum_voters: Option<i64>,
    /// The largest lag of a voter behind the quorum leader, in records.
    pub quorum_max_lag: Option<i64>,
}

/// Every label set a view shows, per family.
#[derive(Default)]
struct Shown {
    broker_up: BTreeSet<BrokerLabels>,
    auth_ok: BTreeSet<BrokerLabels>,
    without: BTreeSet<BrokerLabels>,
    urp: BTreeSet<BrokerLabels>,
    offline: BTreeSet<BrokerLabels>,
    partitions: BTreeSet<PartitionLabels>,
    voters: BTreeSet<ClusterLabels>,
    lag: BTreeSet<ClusterLabels>,
}

/// The `kafka` method's gauges and the label sets the last round set.
#[derive(Default)]
pub struct KafkaMetrics {
    broker_up: Family<BrokerLabels, Gauge>,
    auth_ok: Family<BrokerLabels, Gauge>,
    without: Family<BrokerLabels, Gauge>,
    urp: Family<BrokerLabels, Gauge>,
    offline: Family<BrokerLabels, Gauge>,
    partitions: Family<PartitionLabels, Gauge>,
    voters: Family<ClusterLabels, Gauge>,
    lag: Family<ClusterLabels, Gauge>,
    shown: Mutex<Shown>,
}

/// Sets `values` in `family` and removes what `before` had that they do not, so that a
/// scrape meanwhile never sees a live series missing.
fn replace<L>(family: &Family<L, Gauge>, before: &mut BTreeSet<L>, values: Vec<(L, i64)>)
where
    L: Clone + Ord + std::hash::Hash + EncodeLabelSet + std::fmt::Debug,
{
    let now: BTreeSet<L> = values.iter().map(|(l, _)| l.clone()).collect();
    for (l, v) in values {
        family.get_or_create(&l).set(v);
    }
    for gone in before.difference(&now) {
        family.remove(gone);
    }
    *before = now;
}

impl KafkaMetrics {
    /// Registers the gauges in `registry` (whose prefix is `kafka_healing`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_broker_up",
            "kafka method: 1 when the broker answered ApiVersions in the last round, else 0",
            self.broker_up.clone(),
        );
        registry.register(
            "kafka_auth_ok",
            "kafka method: 1 when the broker accepted the credentials, 0 when it refused them",
            self.auth_ok.clone(),
        );
        registry.register(
            "kafka_broker_partitions_under_min_isr_without",
            "kafka method: partitions that would fall below min.insync.replicas without this broker",
            self.without.clone(),
        );
        registry.register(
            "kafka_broker_partitions_under_replicated",
            "kafka method: partitions this broker leads whose ISR is shorter than their replicas",
            self.urp.clone(),
        );
        registry.register(
            "kafka_broker_partitions_offline",
            "kafka method: partitions without a leader that have a replica on this broker",
            self.offline.clone(),
        );
        registry.register(
            "kafka_partitions",
            "kafka method: partitions under-replicated, under min ISR or offline",
            self.partitions.clone(),
        );
        registry.register(
            "kafka_quorum_voters",
            "kafka method: KRaft controller quorum voters",
            self.voters.clone(),
        );
        registry.register(
            "kafka_quorum_max_lag",
            "kafka method: largest lag of a quorum voter behind the leader, in records",
            self.lag.clone(),
        );
    }

    /// Shows `view` in place of the last one; `None` (the method did not run) removes
    /// every series.
    pub fn show(&self, view: Option<&KafkaView>) {
        let empty = KafkaView::default();
        let v = view.unwrap_or(&empty);
        let broker = |node_id: &str| BrokerLabels {
            cluster: v.cluster.clone(),
            node_id: node_id.to_string(),
        };
        let per_broker = |f: &dyn Fn(&BrokerView) -> Option<i64>| -> Vec<(BrokerLabels, i64)> {
            v.brokers
                .iter()
                .filter_map(|(id, b)| Some((broker(id), f(b)?)))
                .collect()
        };
        let cluster = || ClusterLabels {
            cluster: v.cluster.clone(),
        };
        let mut shown = match self.shown.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let s = &mut *shown;
        replace(
            &self.broker_up,
            &mut s.broker_up,
            per_broker(&|b| Some(i64::from(b.up))),
        );
        replace(
            &self.auth_ok,
            &mut s.auth_ok,
            per_broker(&|b| b.auth_ok.map(i64::from)),
        );
        replace(
            &self.without,
            &mut s.without,
            per_broker(&|b| b.under_min_isr_without),
        );
        replace(&self.urp, &mut s.urp, per_broker(&|b| b.under_replicated));
        replace(&self.offline, &mut s.offline, per_broker(&|b| b.offline));
        let parts = v
            .partitions
            .iter()
            .map(|(state, n)| {
                let l = PartitionLabels {
                    cluster: v.cluster.clone(),
                    state: state.clone(),
                };
                (l, *n)
            })
            .collect();
        replace(&self.partitions, &mut s.partitions, parts);
        let voters = v
            .quorum_voters
            .map(|n| (cluster(), n))
            .into_iter()
            .collect();
        replace(&self.voters, &mut s.voters, voters);
        let lag = v
            .quorum_max_lag
            .map(|n| (cluster(), n))
            .into_iter()
            .collect();
        replace(&self.lag, &mut s.lag, lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &KafkaMetrics) -> Vec<String> {
        let mut r = Registry::with_prefix("kafka_healing");
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        let mut l: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        l.sort();
        l
    }

    fn view(cluster: &str, ids: &[(&str, bool)]) -> KafkaView {
        KafkaView {
            cluster: cluster.into(),
            brokers: ids
                .iter()
                .map(|(id, up)| {
                    let b = BrokerView {
                        up: *up,
                        auth_ok: up.then_some(true),
                        under_min_isr_without: up.then_some(2),
                        under_replicated: up.then_some(0),
                        offline: Some(1),
                    };
                    (id.to_string(), b)
                })
                .collect(),
            partitions: [
                ("offline".to_string(), 1),
                ("under_replicated".to_string(), 4),
            ]
            .into_iter()
            .collect(),
            quorum_voters: Some(3),
            quorum_max_lag: None,
        }
    }

    #[test]
    fn a_round_replaces_the_last() {
        let m = KafkaMetrics::default();
        m.show(Some(&view("east", &[("1", true), ("2", false)])));
        assert_eq!(
            lines(&m),
            [
                r#"kafka_healing_kafka_auth_ok{cluster="east",node_id="1"} 1"#,
                r#"kafka_healing_kafka_broker_partitions_offline{cluster="east",node_id="1"} 1"#,
                r#"kafka_healing_kafka_broker_partitions_offline{cluster="east",node_id="2"} 1"#,
                r#"kafka_healing_kafka_broker_partitions_under_min_isr_without{cluster="east",node_id="1"} 2"#,
                r#"kafka_healing_kafka_broker_partitions_under_replicated{cluster="east",node_id="1"} 0"#,
                r#"kafka_healing_kafka_broker_up{cluster="east",node_id="1"} 1"#,
                r#"kafka_healing_kafka_broker_up{cluster="east",node_id="2"} 0"#,
                r#"kafka_healing_kafka_partitions{cluster="east",state="offline"} 1"#,
                r#"kafka_healing_kafka_partitions{cluster="east",state="under_replicated"} 4"#,
                r#"kafka_healing_kafka_quorum_voters{cluster="east"} 3"#,
            ]
        );
        // Broker 1 left the config, the cluster was renamed, the quorum went unread.
        let mut v = view("west", &[("2", true)]);
        v.quorum_voters = None;
        v.partitions.remove("offline");
        m.show(Some(&v));
        assert_eq!(
            lines(&m),
            [
                r#"kafka_healing_kafka_auth_ok{cluster="west",node_id="2"} 1"#,
                r#"kafka_healing_kafka_broker_partitions_offline{cluster="west",node_id="2"} 1"#,
                r#"kafka_healing_kafka_broker_partitions_under_min_isr_without{cluster="west",node_id="2"} 2"#,
                r#"kafka_healing_kafka_broker_partitions_under_replicated{cluster="west",node_id="2"} 0"#,
                r#"kafka_healing_kafka_broker_up{cluster="west",node_id="2"} 1"#,
                r#"kafka_healing_kafka_partitions{cluster="west",state="under_replicated"} 4"#,
            ]
        );
        m.show(None);
        assert_eq!(lines(&m), Vec::<String>::new(), "the method stopped");
    }

    #[test]
    fn bounded_by_the_brokers_watched() {
        let m = KafkaMetrics::default();
        let ids: Vec<String> = (0..1000).map(|i| format!("b{i}")).collect();
        let all: Vec<(&str, bool)> = ids.iter().map(|i| (i.as_str(), true)).collect();
        for _ in 0..3 {
            m.show(Some(&view("east", &all)));
        }
        let mut v = view("east", &all);
        v.quorum_max_lag = Some(0);
        v.partitions.insert("under_min_isr".into(), 0);
        m.show(Some(&v));
        assert_eq!(lines(&m).len(), 5 * 1000 + 5);
    }
}
