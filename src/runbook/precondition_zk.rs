//! The ZooKeeper quorum guard: a serving ZooKeeper node is never restarted when the
//! ensemble would lose its quorum; a node that does not serve may always be restarted (it
//! cannot lower the count of serving voters, and bringing it back may restore a lost
//! quorum, as `restart_safe` lets a dead broker through). Observing ([`ZkGuard::observe`]: `srvr` and `mntr` of every configured
//! node, at once) is I/O at the edge; judging ([`judge`]) is pure.

use std::time::{Duration, Instant};

use super::{Judgement, Verdict};
use crate::config::ZookeeperNode;
use crate::ingest::probe;
use crate::rules::model::Precondition;

/// What one node's `srvr` (and the leader's `mntr`) said.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRead {
    /// The node's config `node_id`.
    pub node_id: String,
    /// `leader`, `follower`, `observer` or `standalone` when it serves; `Err` says why not.
    pub mode: Result<String, String>,
    /// The leader's `zk_synced_followers` (voting followers in sync), when it gave `mntr`.
    pub synced_followers: Option<u32>,
}

impl NodeRead {
    /// Whether the node serves as a voter (the leader, a follower, or a standalone server).
    pub fn serving_voter(&self) -> bool {
        matches!(
            self.mode.as_deref(),
            Ok("leader" | "follower" | "standalone")
        )
    }
}

/// The ensemble as it was seen for one judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct ZkObservation {
    /// The target's `node_id`.
    pub target: String,
    /// Every configured node, in config order (the target among them).
    pub nodes: Vec<NodeRead>,
}

/// Voters serving, out of `total`, and whether the target is one of them.
fn count(o: &ZkObservation) -> (usize, usize, bool) {
    let by_srvr = o.nodes.iter().filter(|n| n.serving_voter()).count();
    // A follower answers `srvr` while it still syncs; the leader's count of synced
    // followers, when it gave one, is the stricter truth.
    let by_leader = o
        .nodes
        .iter()
        .find(|n| n.mode.as_deref() == Ok("leader"))
        .and_then(|l| l.synced_followers)
        .map(|f| f as usize + 1);
    let serving = by_leader.map_or(by_srvr, |l| l.min(by_srvr));
    let target_serves = o
        .nodes
        .iter()
        .any(|n| n.node_id == o.target && n.serving_voter());
    (serving, o.nodes.len(), target_serves)
}

/// Judges `p` about a ZooKeeper target. Pure. Only `zookeeper_quorum_safe` applies; the
/// broker preconditions refuse (the runbook was written for a broker).
pub fn judge(p: Precondition, o: &ZkObservation) -> Verdict {
    let who = format!("ZooKeeper node {}", o.target);
    let (holds, reason) = match p {
        Precondition::ZookeeperQuorumSafe => {
            let (serving, total, target_serves) = count(o);
            let majority = total / 2 + 1;
            let after = serving - usize::from(target_serves && serving > 0);
            let down: Vec<String> = o
                .nodes
                .iter()
                .filter(|n| !n.serving_voter())
                .map(|n| match &n.mode {
                    Ok(m) => format!("{} ({m})", n.node_id),
                    Err(e) => format!("{} ({e})", n.node_id),
                })
                .collect();
            let down = if down.is_empty() {
                String::new()
            } else {
                format!("; not serving: {}", down.join(", "))
            };
            let state = if target_serves {
                "serves"
            } else {
                "does not serve"
            };
            let facts = format!(
                "{serving} of {total} voters serve, {who} {state}, a quorum needs {majority}"
            );
            if !target_serves {
                let lost = if serving < majority {
                    " and may bring the quorum back"
                } else {
                    ""
                };
                (
                    true,
                    format!(
                        "{facts}: restarting it cannot lower the count of serving voters{lost}{down}"
                    ),
                )
            } else if after >= majority {
                (
                    true,
                    format!("{facts}: {after} would serve during its restart{down}"),
                )
            } else {
                (
                    false,
                    format!(
                        "{facts}: restarting it would leave {after} serving, and the ensemble \
                         would lose its quorum{down}"
                    ),
                )
            }
        }
        other => (
            false,
            format!("{who} is not a broker: {other} is judged of kafka_brokers only"),
        ),
    };
    Verdict {
        precondition: p,
        holds,
        reason,
    }
}

/// One node's `srvr` and `mntr`, each bounded by `timeout`.
async fn read(z: &ZookeeperNode, timeout: Duration) -> NodeRead {
    let r = probe::zookeeper(&z.node_id, &z.host, z.port, timeout, true).await;
    let fact = |name: &str| r.facts.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let mode = if r.success {
        ["leader", "follower", "observer", "standalone"]
            .into_iter()
            .find(|m| fact(&format!("kafka_healing_zookeeper_mode_{m}")) == Some(1.0))
            .map(str::to_string)
            .ok_or_else(|| r.detail.clone())
    } else {
        Err(r.detail.clone())
    };
    NodeRead {
        node_id: z.node_id.clone(),
        mode,
        synced_followers: fact("kafka_healing_zookeeper_synced_followers")
            .filter(|v| *v >= 0.0)
            .map(|v| v as u32),
    }
}

/// Reads the ZooKeeper ensemble for the quorum guard.
#[derive(Debug, Clone)]
pub struct ZkGuard {
    /// Every configured node.
    pub ensemble: Vec<ZookeeperNode>,
    /// Each four-letter word's time limit.
    pub timeout: Duration,
}

impl ZkGuard {
    /// Asks every node `srvr` (and `mntr`) at once; a node that does not answer within the
    /// timeout counts as not serving.
    pub async fn observe(&self, target: &str) -> ZkObservation {
        let mut set = tokio::task::JoinSet::new();
        for (i, z) in self.ensemble.iter().cloned().enumerate() {
            let timeout = self.timeout;
            set.spawn(async move { (i, read(&z, timeout).await) });
        }
        let mut nodes: Vec<Option<NodeRead>> = vec![None; self.ensemble.len()];
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                nodes[i] = Some(r);
            }
        }
        // A read whose task died counts as a node that did not answer.
        let nodes = nodes
            .into_iter()
            .zip(&self.ensemble)
            .map(|(r, z)| {
                r.unwrap_or_else(|| NodeRead {
                    node_id: z.node_id.clone(),
                    mode: Err("not read".into()),
                    synced_followers: None,
                })
            })
            .collect();
        ZkObservation {
            target: target.to_string(),
            nodes,
        }
    }

    /// Observes the ensemble and judges every precondition of `required` about `target`.
    pub async fn judge(&self, required: &[Precondition], target: &str) -> Judgement {
        let t0 = Instant::now();
        let o = self.observe(target).await;
        Judgement {
            verdicts: required.iter().map(|p| judge(*p, &o)).collect(),
            took: t0.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, mode: Result<&str, &str>, synced: Option<u32>) -> NodeRead {
        NodeRead {
            node_id: id.into(),
            mode: mode.map(str::to_string).map_err(str::to_string),
            synced_followers: synced,
        }
    }

    fn verdict(target: &str, nodes: Vec<NodeRead>) -> Verdict {
        judge(
            Precondition::ZookeeperQuorumSafe,
            &ZkObservation {
                target: target.into(),
                nodes,
            },
        )
    }

    #[test]
    fn three_serving_allow_one_restart() {
        let v = verdict(
            "zk-2",
            vec![
                node("zk-1", Ok("follower"), None),
                node("zk-2", Ok("leader"), Some(2)),
                node("zk-3", Ok("follower"), None),
            ],
        );
        assert!(v.holds, "{}", v.reason);
        assert_eq!(
            v.reason,
            "3 of 3 voters serve, ZooKeeper node zk-2 serves, a quorum needs 2: 2 would serve \
             during its restart"
        );
    }

    #[test]
    fn one_down_refuses_a_second() {
        let v = verdict(
            "zk-1",
            vec![
                node("zk-1", Ok("follower"), None),
                node("zk-2", Ok("leader"), Some(1)),
                node("zk-3", Err("127.0.0.1:2183: connection refused"), None),
            ],
        );
        assert!(!v.holds);
        assert_eq!(
            v.reason,
            "2 of 3 voters serve, ZooKeeper node zk-1 serves, a quorum needs 2: restarting it \
             would leave 1 serving, and the ensemble would lose its quorum; not serving: zk-3 \
             (127.0.0.1:2183: connection refused)"
        );
        // The down node itself may be restarted: that cannot lower the serving count.
        let v = verdict(
            "zk-3",
            vec![
                node("zk-1", Ok("follower"), None),
                node("zk-2", Ok("leader"), Some(1)),
                node("zk-3", Err("refused"), None),
            ],
        );
        assert!(v.holds, "{}", v.reason);
        assert_eq!(
            v.reason,
            "2 of 3 voters serve, ZooKeeper node zk-3 does not serve, a quorum needs 2: \
             restarting it cannot lower the count of serving voters; not serving: zk-3 (refused)"
        );
    }

    #[test]
    fn with_quorum_lost_a_dead_node_may_be_restarted_a_serving_one_not() {
        let lost = || {
            vec![
                node("zk-1", Ok("standalone"), None),
                node("zk-2", Err("refused"), None),
                node("zk-3", Err("refused"), None),
            ]
        };
        // Restarting a dead node is what may bring the quorum back.
        let v = verdict("zk-2", lost());
        assert!(v.holds, "{}", v.reason);
        assert_eq!(
            v.reason,
            "1 of 3 voters serve, ZooKeeper node zk-2 does not serve, a quorum needs 2: \
             restarting it cannot lower the count of serving voters and may bring the quorum \
             back; not serving: zk-2 (refused), zk-3 (refused)"
        );
        // The one still serving is not touched.
        let v = verdict("zk-1", lost());
        assert!(!v.holds);
        assert!(
            v.reason.contains(
                "restarting it would leave 0 serving, and the ensemble would lose its quorum"
            ),
            "{}",
            v.reason
        );
    }

    #[test]
    fn the_leaders_synced_count_is_stricter_than_srvr() {
        // zk-3 answers srvr as a follower but the leader has not synced it yet.
        let v = verdict(
            "zk-1",
            vec![
                node("zk-1", Ok("follower"), None),
                node("zk-2", Ok("leader"), Some(1)),
                node("zk-3", Ok("follower"), None),
            ],
        );
        assert!(!v.holds);
        assert!(v.reason.starts_with("2 of 3 voters serve"), "{}", v.reason);
    }

    #[test]
    fn observers_and_lost_quorum_and_standalone() {
        let v = verdict(
            "zk-1",
            vec![
                node("zk-1", Err("not currently serving requests"), None),
                node("zk-2", Err("not currently serving requests"), None),
                node("zk-3", Ok("observer"), None),
            ],
        );
        // zk-1 does not serve (no quorum): restarting it cannot make that worse.
        assert!(v.holds, "{}", v.reason);
        assert!(v.reason.starts_with("0 of 3 voters serve"), "{}", v.reason);
        assert!(
            v.reason.contains("may bring the quorum back"),
            "{}",
            v.reason
        );
        let v = verdict("zk-1", vec![node("zk-1", Ok("standalone"), None)]);
        assert!(!v.holds, "the only node: {}", v.reason);
    }

    #[test]
    fn broker_preconditions_refuse_a_zookeeper_target() {
        let v = judge(
            Precondition::RestartSafe,
            &ZkObservation {
                target: "zk-1".into(),
                nodes: vec![],
            },
        );
        assert!(!v.holds);
        assert_eq!(
            v.reason,
            "ZooKeeper node zk-1 is not a broker: restart_safe is judged of kafka_brokers only"
        );
    }
}
