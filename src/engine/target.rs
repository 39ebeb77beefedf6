//! Mapping an alert to the broker, or the ZooKeeper node, it is about.

use crate::config::{Broker, ClusterConfig, ZookeeperNode};
use crate::ingest::webhook::LabelSet;

/// What an alert is about: a configured broker or ZooKeeper node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One of `cluster.kafka_brokers`.
    Broker(&'a Broker),
    /// One of `cluster.zookeeper_nodes`.
    Zookeeper(&'a ZookeeperNode),
}

impl Target<'_> {
    /// The target's name in plans, work keys, the journal and mail: a broker's node_id,
    /// or `zookeeper/ID` (the self-watch's name for it), which no broker's id collides with.
    pub fn name(&self) -> String {
        match self {
            Target::Broker(b) => b.node_id.clone(),
            Target::Zookeeper(z) => zookeeper_name(&z.node_id),
        }
    }

    /// `broker` or `zookeeper`, as templates see it in `target.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Broker(_) => "broker",
            Target::Zookeeper(_) => "zookeeper",
        }
    }
}

/// The plan target naming ZooKeeper node `node_id`.
pub fn zookeeper_name(node_id: &str) -> String {
    format!("zookeeper/{node_id}")
}

/// The ZooKeeper node_id a plan target names, when it names one.
pub fn zookeeper_id(target: &str) -> Option<&str> {
    target.strip_prefix("zookeeper/")
}

/// Why an alert maps to no single target. `label` is the label looked at and `value` its
/// value in the alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `node_id` or `instance` label, and the rule has no `target_label`; `what` is
    /// `broker` or `ZooKeeper node`.
    #[error("the alert has no `node_id` or `instance` label to find its {what} by")]
    NoLabel {
        /// What was being looked for.
        what: &'static str,
    },
    /// The alert lacks the rule's `target_label`; carries that label's name.
    #[error("the alert has no `{0}` label (the rule's target_label)")]
    NoTargetLabel(String),
    /// The value names no configured broker.
    #[error("{label}=\"{}\" is not a configured broker", value.escape_debug())]
    NoBroker {
        /// The label looked at.
        label: String,
        /// Its value.
        value: String,
    },
    /// The value names no configured ZooKeeper node.
    #[error("{label}=\"{}\" is not a configured ZooKeeper node", value.escape_debug())]
    NoZookeeper {
        /// The label looked at.
        label: String,
        /// Its value.
        value: String,
    },
    /// The value names several brokers (a shared host without a port).
    #[error(
        "{label}=\"{}\" matches {} brokers ({}); add the port or use node_id",
        value.escape_debug(),
        node_ids.len(),
        node_ids.join(", ")
    )]
    ManyBrokers {
        /// The label looked at.
        label: String,
        /// Its value.
        value: String,
        /// The node_ids of the brokers it names.
        node_ids: Vec<String>,
    },
    /// The value names several ZooKeeper nodes.
    #[error(
        "{label}=\"{}\" matches {count} ZooKeeper nodes; add the port or use node_id",
        value.escape_debug()
    )]
    ManyZookeepers {
        /// The label looked at.
        label: String,
        /// Its value.
        value: String,
        /// How many nodes it names.
        count: usize,
    },
    /// The value names a broker and a ZooKeeper node (by their target names).
    #[error(
        "the alert names both broker {broker} and {zookeeper}; set the rule's target_label, \
         or require a precondition of one kind"
    )]
    BothKinds {
        /// The broker's target name.
        broker: String,
        /// The ZooKeeper node's target name (`zookeeper/ID`).
        zookeeper: String,
    },
    /// Neither a broker nor a ZooKeeper node: why not each.
    #[error("{broker}; {zookeeper}")]
    Neither {
        /// Why no broker.
        broker: Box<TargetError>,
        /// Why no ZooKeeper node.
        zookeeper: Box<TargetError>,
    },
}

/// Which kinds of target a rule's alerts may be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    /// Brokers only (the runbook requires a broker precondition).
    Brokers,
    /// ZooKeeper nodes only (the runbook requires `zookeeper_quorum_safe`).
    Zookeeper,
    /// Either; a value naming both a broker and a ZooKeeper node is an error.
    Any,
}

/// Finds the broker or ZooKeeper node an alert is about, by the same labels as
/// [`find_target`]; `kinds` narrows where to look.
pub fn find_node<'a>(
    cluster: &'a ClusterConfig,
    labels: &LabelSet,
    target_label: Option<&str>,
    kinds: Kinds,
) -> Result<Target<'a>, TargetError> {
    let broker = || find_target(&cluster.kafka_brokers, labels, target_label).map(Target::Broker);
    let zk = || find_zookeeper(&cluster.zookeeper_nodes, labels, target_label);
    match kinds {
        Kinds::Brokers => broker(),
        Kinds::Zookeeper => zk(),
        Kinds::Any if cluster.zookeeper_nodes.is_empty() => broker(),
        Kinds::Any => match (broker(), zk()) {
            (Ok(b), Ok(z)) => Err(TargetError::BothKinds {
                broker: b.name(),
                zookeeper: z.name(),
            }),
            (Ok(t), Err(_)) | (Err(_), Ok(t)) => Ok(t),
            (Err(b), Err(z)) => Err(TargetError::Neither {
                broker: Box::new(b),
                zookeeper: Box::new(z),
            }),
        },
    }
}

/// Whether `value` names ZooKeeper node `z`: its node_id, its host, or host:port.
fn names_zookeeper(z: &ZookeeperNode, value: &str, by_node_id: bool) -> bool {
    if by_node_id && z.node_id == value {
        return true;
    }
    let (host, port) = split_host_port(value);
    host.eq_ignore_ascii_case(&z.host) && port.is_none_or(|p| p == z.port)
}

fn find_zookeeper<'a>(
    nodes: &'a [ZookeeperNode],
    labels: &LabelSet,
    target_label: Option<&str>,
) -> Result<Target<'a>, TargetError> {
    let (label, value, by_node_id) = pick_label(labels, target_label, "ZooKeeper node")?;
    let found: Vec<&ZookeeperNode> = nodes
        .iter()
        .filter(|z| {
            if label == "node_id" {
                z.node_id == *value
            } else {
                names_zookeeper(z, value, by_node_id)
            }
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(Target::Zookeeper(one)),
        [] => Err(TargetError::NoZookeeper {
            label: label.to_string(),
            value: value.clone(),
        }),
        many => Err(TargetError::ManyZookeepers {
            label: label.to_string(),
            value: value.clone(),
            count: many.len(),
        }),
    }
}

/// The label to look at (and its value), and whether it may hold a node_id.
fn pick_label<'l>(
    labels: &'l LabelSet,
    target_label: Option<&'l str>,
    what: &'static str,
) -> Result<(&'l str, &'l String, bool), TargetError> {
    let (label, by_node_id) = match target_label {
        Some(l) => (l, true),
        None if labels.contains_key("node_id") => ("node_id", true),
        None if labels.contains_key("instance") => ("instance", false),
        None => return Err(TargetError::NoLabel { what }),
    };
    match labels.get(label) {
        Some(v) => Ok((label, v, by_node_id)),
        None => Err(TargetError::NoTargetLabel(label.to_string())),
    }
}

/// `host:port` split, brackets off an IPv6 host; a value without a numeric port is a host.
fn split_host_port(value: &str) -> (&str, Option<u16>) {
    match value.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => match p.parse::<u16>() {
            Ok(p) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            Err(_) => (value, None),
        },
        _ => (value, None),
    }
}

/// Whether `value` names `b`: its node_id, its host, or host:port with the broker's port,
/// JMX port or metrics URL port. Host names compare case-insensitively (DNS does).
fn names_broker(b: &Broker, value: &str, by_node_id: bool) -> bool {
    if by_node_id && b.node_id == value {
        return true;
    }
    let (host, port) = split_host_port(value);
    if !host.eq_ignore_ascii_case(&b.host) {
        return false;
    }
    let metrics_port = b
        .metrics_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.port_or_known_default());
    match port {
        None => true,
        Some(p) => p == b.port || Some(p) == b.jmx_port || Some(p) == metrics_port,
    }
}

/// Finds the broker an alert is about: by the rule's `target_label` when it has one, else
/// by label `node_id`, else by `instance`. The error says which labels were looked at.
pub fn find_target<'a>(
    brokers: &'a [Broker],
    labels: &LabelSet,
    target_label: Option<&str>,
) -> Result<&'a Broker, TargetError> {
    let (label, value, by_node_id) = pick_label(labels, target_label, "broker")?;
    let by_id = label == "node_id";
    let found: Vec<&Broker> = brokers
        .iter()
        .filter(|b| {
            if by_id {
                b.node_id == *value
            } else {
                names_broker(b, value, by_node_id)
            }
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(TargetError::NoBroker {
            label: label.to_string(),
            value: value.clone(),
        }),
        many => Err(TargetError::ManyBrokers {
            label: label.to_string(),
            value: value.clone(),
            node_ids: many.iter().map(|b| b.node_id.clone()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: &str, host: &str, port: u16, jmx: Option<u16>) -> Broker {
        Broker {
            node_id: id.into(),
            host: host.into(),
            port,
            jmx_port: jmx,
            metrics_url: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_by_node_id_instance_and_target_label() {
        let bs = vec![
            broker("kafka-1", "k1.example.com", 9092, Some(9404)),
            broker("kafka-2", "k2.example.com", 9092, Some(9404)),
            broker("3", "shared.example.com", 9093, Some(9405)),
            broker("4", "shared.example.com", 9094, Some(9406)),
        ];
        let t = |l: &[(&str, &str)], tl: Option<&str>| {
            find_target(&bs, &labels(l), tl).map(|b| b.node_id.clone())
        };
        assert_eq!(t(&[("node_id", "kafka-2")], None).unwrap(), "kafka-2");
        assert_eq!(
            t(
                &[("node_id", "kafka-2"), ("instance", "k1.example.com:9404")],
                None
            )
            .unwrap(),
            "kafka-2"
        );
        assert_eq!(
            t(&[("instance", "k1.example.com:9404")], None).unwrap(),
            "kafka-1"
        );
        assert_eq!(
            t(&[("instance", "K1.Example.COM:9092")], None).unwrap(),
            "kafka-1"
        );
        assert_eq!(
            t(&[("instance", "k2.example.com")], None).unwrap(),
            "kafka-2"
        );
        let e = t(&[("instance", "k2.example.com:1234")], None).unwrap_err();
        assert!(matches!(&e, TargetError::NoBroker { label, .. } if label == "instance"));
        assert!(e.to_string().contains("not a configured broker"), "{e}");
        assert_eq!(
            t(&[("instance", "shared.example.com:9406")], None).unwrap(),
            "4"
        );
        let e = t(&[("instance", "shared.example.com")], None).unwrap_err();
        assert!(matches!(&e, TargetError::ManyBrokers { node_ids, .. } if node_ids == &["3", "4"]));
        assert_eq!(
            e.to_string(),
            "instance=\"shared.example.com\" matches 2 brokers (3, 4); add the port or use node_id"
        );
        assert_eq!(t(&[("pod", "kafka-1")], Some("pod")).unwrap(), "kafka-1");
        assert_eq!(
            t(&[("host", "k2.example.com:9092")], Some("host")).unwrap(),
            "kafka-2"
        );
        let e = t(&[("x", "y")], Some("pod")).unwrap_err();
        assert_eq!(e, TargetError::NoTargetLabel("pod".into()));
        assert!(e.to_string().contains("no `pod` label"), "{e}");
        let e = t(&[("alertname", "A")], None).unwrap_err();
        assert_eq!(e, TargetError::NoLabel { what: "broker" });
        assert!(e.to_string().contains("no `node_id` or `instance`"), "{e}");
        assert!(t(&[("node_id", "kafka-9")], None).is_err());
    }

    #[test]
    fn maps_zookeeper_nodes_by_node_id_instance_and_target_label() {
        let cluster = ClusterConfig {
            name: "c".into(),
            kafka_brokers: vec![
                broker("kafka-1", "k1.example.com", 9092, Some(9404)),
                broker("zk-3", "k3.example.com", 9092, None),
            ],
            zookeeper_nodes: vec![
                ZookeeperNode {
                    node_id: "zk-1".into(),
                    host: "z1.example.com".into(),
                    port: 2181,
                },
                ZookeeperNode {
                    node_id: "zk-2".into(),
                    host: "k1.example.com".into(),
                    port: 2181,
                },
                ZookeeperNode {
                    node_id: "zk-3".into(),
                    host: "z3.example.com".into(),
                    port: 2181,
                },
            ],
        };
        let t = |l: &[(&str, &str)], tl: Option<&str>, k: Kinds| {
            find_node(&cluster, &labels(l), tl, k).map(|t| (t.kind(), t.name()))
        };
        let zk = |id: &str| Ok(("zookeeper", format!("zookeeper/{id}")));
        assert_eq!(t(&[("node_id", "zk-1")], None, Kinds::Any), zk("zk-1"));
        assert_eq!(
            t(
                &[("instance", "Z1.example.com:2181")],
                None,
                Kinds::Zookeeper
            ),
            zk("zk-1")
        );
        assert_eq!(
            t(&[("pod", "z3.example.com")], Some("pod"), Kinds::Zookeeper),
            zk("zk-3")
        );
        // A host shared by a broker and a ZooKeeper node: the port decides.
        assert_eq!(
            t(&[("instance", "k1.example.com:2181")], None, Kinds::Any),
            zk("zk-2")
        );
        assert_eq!(
            t(&[("instance", "k1.example.com:9092")], None, Kinds::Any),
            Ok(("broker", "kafka-1".to_string()))
        );
        // Without a port both match: an error, never a guess.
        let e = t(&[("instance", "k1.example.com")], None, Kinds::Any).unwrap_err();
        assert!(matches!(e, TargetError::BothKinds { .. }));
        assert!(
            e.to_string()
                .contains("names both broker kafka-1 and zookeeper/zk-2"),
            "{e}"
        );
        // The runbook's kind settles an id both kinds use.
        assert_eq!(
            t(&[("node_id", "zk-3")], None, Kinds::Zookeeper),
            zk("zk-3")
        );
        assert_eq!(
            t(&[("node_id", "zk-3")], None, Kinds::Brokers),
            Ok(("broker", "zk-3".to_string()))
        );
        assert_eq!(
            t(&[("node_id", "kafka-1")], None, Kinds::Zookeeper)
                .unwrap_err()
                .to_string(),
            "node_id=\"kafka-1\" is not a configured ZooKeeper node"
        );
        assert_eq!(zookeeper_id("zookeeper/zk-1"), Some("zk-1"));
        assert_eq!(zookeeper_id("kafka-1"), None);
    }
}
