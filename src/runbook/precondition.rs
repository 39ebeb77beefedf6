//! Preconditions: just before a runbook's first disruptive step, and again before each
//! retry of one, the service asks Kafka itself whether the restart is needed and safe,
//! instead of trusting the alert that asked for it.
//!
//! Observing is I/O at the edge ([`Safety::observe`]: ApiVersions, Metadata,
//! DescribeConfigs, DescribeQuorum, one scrape of the target's exporter); judging is pure
//! ([`judge`]), so every verdict is tested on values.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Broker;
use crate::kafka::cluster::{
    BrokerLiveness, ClusterSummary, kafka_id, partitions_below_min_isr_without, probe,
    quorum_majority_without, summarize,
};
use crate::kafka::{ClientOptions, ClusterMetadata, KafkaClient, MinIsr};
use crate::rules::model::Precondition;

/// The exporter series that carries Kafka's BrokerState (`kafka.server:type=KafkaServer,
/// name=BrokerState`, as the JMX exporter names it).
pub const BROKER_STATE_SERIES: &str = "kafka_server_kafkaserver_brokerstate";

/// How far behind the quorum leader's last catch-up a voter may be and still count as
/// caught up (Kafka's `controller.quorum.fetch.timeout.ms` default, as Strimzi uses it).
pub const QUORUM_MAX_BEHIND_MS: i64 = 2_000;

/// Partitions named in a refusal; the count always covers them all.
const NAMED_PARTITIONS: usize = 5;

/// Kafka's BrokerState values a broker reports while it must be left alone.
pub fn busy_state(value: f64) -> Option<&'static str> {
    [
        (1.0, "STARTING"),
        (2.0, "RECOVERY"),
        (6.0, "PENDING_CONTROLLED_SHUTDOWN"),
        (7.0, "SHUTTING_DOWN"),
    ]
    .into_iter()
    .find(|(v, _)| *v == value)
    .map(|(_, name)| name)
}

/// The name of a BrokerState value (`RUNNING (3)`), for messages.
pub fn state_name(value: f64) -> String {
    let name = [(0.0, "NOT_RUNNING"), (3.0, "RUNNING")]
        .into_iter()
        .find(|(v, _)| *v == value)
        .map(|(_, name)| name)
        .or_else(|| busy_state(value))
        .unwrap_or("UNKNOWN");
    format!("{name} ({value})")
}

/// What the target's exporter said about its BrokerState.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRead {
    /// The exporter answered with this value.
    State {
        /// The exporter's URL.
        url: String,
        /// The BrokerState value.
        value: f64,
    },
    /// The exporter answered, without the series.
    Missing {
        /// The exporter's URL.
        url: String,
    },
    /// The exporter did not answer.
    Unreadable {
        /// The exporter's URL.
        url: String,
        /// Why.
        error: String,
    },
    /// The broker has no exporter in the config.
    NoExporter,
}

/// The cluster as it was seen for one judgement.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The target's config `node_id`.
    pub node_id: String,
    /// The target's `host:port`.
    pub address: String,
    /// The target's Kafka id, when known.
    pub kafka_id: Option<i32>,
    /// Whether the target answered ApiVersions (2 tries within the timeout).
    pub target: Option<BrokerLiveness>,
    /// The whole cluster (only when `restart_safe` is required).
    pub summary: Option<ClusterSummary>,
    /// The target's BrokerState (only when `not_starting` is required).
    pub state: Option<StateRead>,
}

/// One precondition's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The precondition.
    pub precondition: Precondition,
    /// It holds: the runbook may go on.
    pub holds: bool,
    /// Why, in words (the refusal's reason when it does not hold).
    pub reason: String,
}

/// Every required precondition judged, and what the look cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// One verdict per required precondition, in the order required.
    pub verdicts: Vec<Verdict>,
    /// Time spent asking Kafka and the exporter.
    pub took: Duration,
}

impl Judgement {
    /// The verdicts that do not hold.
    pub fn refusals(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.holds)
    }

    /// `None` when everything holds, else the refusal's reason: each failed
    /// precondition as `name: why`, joined by `; `.
    pub fn refusal(&self) -> Option<String> {
        let r: Vec<String> = self
            .refusals()
            .map(|v| format!("{}: {}", v.precondition, v.reason))
            .collect();
        (!r.is_empty()).then(|| r.join("; "))
    }

    /// Every verdict as `name: holds|refused (why)`, for the journal.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .verdicts
            .iter()
            .map(|v| {
                let word = if v.holds { "holds" } else { "refused" };
                format!("{} {word} ({})", v.precondition, v.reason)
            })
            .collect();
        format!(
            "preconditions judged in {} ms: {}",
            self.took.as_millis(),
            parts.join("; ")
        )
    }
}

/// Judges `p` on `o`. Pure.
pub fn judge(p: Precondition, o: &Observation) -> Verdict {
    let (holds, reason) = match p {
        Precondition::BrokerUnreachable => unreachable_verdict(o),
        Precondition::RestartSafe => restart_safe_verdict(o),
        Precondition::NotStarting => not_starting_verdict(o),
        // A broker is no ZooKeeper node: the runbook was written for the other kind.
        Precondition::ZookeeperQuorumSafe => (
            false,
            format!(
                "broker {} is not a ZooKeeper node: zookeeper_quorum_safe is judged of \
                 zookeeper_nodes only",
                o.node_id
            ),
        ),
    };
    Verdict {
        precondition: p,
        holds,
        reason,
    }
}

fn unreachable_verdict(o: &Observation) -> (bool, String) {
    let who = format!("broker {} ({})", o.node_id, o.address);
    match &o.target {
        None => (
            false,
            format!("{who} was not asked: no answer can be judged, so nothing runs"),
        ),
        Some(l) if l.alive => match &l.error {
            // Refused credentials prove a serving broker: the config is what is wrong.
            Some(e) => (
                false,
                format!(
                    "{who} answers the Kafka protocol but refused this service's credentials \
                     ({e}): it is serving, so it is not restarted; fix the `security:` section"
                ),
            ),
            None => (
                false,
                format!(
                    "{who} answers the Kafka protocol (ApiVersions in {} ms): it is serving, \
                     so it is not restarted, whatever its exporter or the alert says",
                    l.latency.map_or(0, |d| d.as_millis())
                ),
            ),
        },
        Some(l) => (
            true,
            format!(
                "{who} does not answer: {}",
                l.error.as_deref().unwrap_or("no answer")
            ),
        ),
    }
}

fn restart_safe_verdict(o: &Observation) -> (bool, String) {
    let who = format!("broker {}", o.node_id);
    if o.target.as_ref().is_some_and(|l| !l.alive) {
        return (
            true,
            format!("{who} does not answer: restarting it cannot lower availability"),
        );
    }
    let Some(s) = &o.summary else {
        return (false, "the cluster was not looked at".into());
    };
    let errors = if s.errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.errors.join("; "))
    };
    let Some(meta) = &s.metadata else {
        return (
            false,
            format!("no broker gave the cluster's metadata{errors}: safety cannot be shown"),
        );
    };
    let Some(min_isr) = &s.min_isr else {
        return (
            false,
            format!("min.insync.replicas could not be read{errors}: safety cannot be shown"),
        );
    };
    let Some(id) = o.kafka_id else {
        return (
            false,
            format!(
                "{who} is not found among the registered brokers by id or address: safety \
                 cannot be shown"
            ),
        );
    };
    if let Some(why) = unreadable_min_isr(id, meta, min_isr) {
        return (false, why);
    }
    let alive = s.alive_ids();
    if let Some(why) = isr_risks(id, meta, min_isr, &alive, &who) {
        return (false, why);
    }
    match quorum_kept(id, s, &who) {
        Ok(quorum_text) => (
            true,
            format!(
                "no partition falls below min.insync.replicas without {who} \
                 (brokers answering: {alive:?}){quorum_text}"
            ),
        ),
        Err(why) => (false, why),
    }
}

/// Why safety cannot be shown when the min.insync.replicas of a topic the target hosts
/// could not be read.
fn unreadable_min_isr(id: i32, meta: &ClusterMetadata, min_isr: &MinIsr) -> Option<String> {
    let hosted: BTreeSet<&str> = meta
        .topics
        .iter()
        .filter(|t| t.partitions.iter().any(|p| p.replicas.contains(&id)))
        .map(|t| t.name.as_str())
        .collect();
    let unknown: Vec<String> = min_isr
        .errors
        .iter()
        .filter(|(res, _)| {
            res.strip_prefix("topic ")
                .is_some_and(|t| hosted.contains(t))
        })
        .map(|(res, e)| format!("{res}: {e}"))
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "min.insync.replicas of {} topic(s) the target hosts could not be read ({}): \
             safety cannot be shown",
            unknown.len(),
            unknown.join("; ")
        )
    })
}

/// The partitions in sync on the target that would fall below min.insync.replicas
/// without it, named (the first [`NAMED_PARTITIONS`]), when there are any.
fn isr_risks(
    id: i32,
    meta: &ClusterMetadata,
    min_isr: &MinIsr,
    alive: &BTreeSet<i32>,
    who: &str,
) -> Option<String> {
    let risks: Vec<_> = partitions_below_min_isr_without(id, meta, min_isr, alive)
        .into_iter()
        .filter(|r| r.target_in_sync)
        .collect();
    if risks.is_empty() {
        return None;
    }
    let named: Vec<String> = risks
        .iter()
        .take(NAMED_PARTITIONS)
        .map(|r| {
            format!(
                "{}-{} (in sync without it: {:?}, min {})",
                r.topic, r.partition, r.in_sync, r.min_isr
            )
        })
        .collect();
    let more = risks.len().saturating_sub(NAMED_PARTITIONS);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "{} partition(s) would fall below min.insync.replicas without {who} \
         (brokers answering: {:?}): {}{more}",
        risks.len(),
        alive,
        named.join(", ")
    ))
}

/// Whether the KRaft controller quorum keeps its majority without the target (when it is
/// a voter): `Ok` with the verdict's tail, `Err` with why not.
fn quorum_kept(id: i32, s: &ClusterSummary, who: &str) -> Result<String, String> {
    let Some(q) = s
        .quorum
        .as_ref()
        .filter(|q| q.voters.iter().any(|v| v.replica_id == id))
    else {
        return Ok(String::new());
    };
    // A voter that is a broker of this cluster and does not answer is not caught up,
    // whatever its last fetch says (it may have died a moment ago).
    let dead: BTreeSet<i32> = s
        .brokers
        .iter()
        .filter(|b| !b.alive)
        .filter_map(|b| b.kafka_id)
        .collect();
    let mut c = quorum_majority_without(id, q, QUORUM_MAX_BEHIND_MS);
    c.caught_up.retain(|v| !dead.contains(v));
    if c.caught_up.len() < c.needed {
        return Err(format!(
            "the KRaft controller quorum would lose its majority without {who}: \
             caught-up voters left {:?}, {} of {} needed",
            c.caught_up, c.needed, c.voters
        ));
    }
    Ok(format!(
        "; the controller quorum keeps {} of {} voters ({} needed)",
        c.caught_up.len(),
        c.voters,
        c.needed
    ))
}

fn not_starting_verdict(o: &Observation) -> (bool, String) {
    let who = format!("broker {}", o.node_id);
    match &o.state {
        Some(StateRead::State { url, value }) => match busy_state(*value) {
            Some(_) => (
                false,
                format!(
                    "{who} reports BrokerState {} on {url}: a broker starting, recovering its \
                     logs or shutting down is left alone and watched (a restart would begin \
                     its recovery again)",
                    state_name(*value)
                ),
            ),
            None => (
                true,
                format!("{who} reports BrokerState {} on {url}", state_name(*value)),
            ),
        },
        Some(StateRead::Missing { url }) => (
            true,
            format!("{url} serves no {BROKER_STATE_SERIES}: no state reported"),
        ),
        Some(StateRead::Unreadable { url, error }) => (
            true,
            format!(
                "its exporter {url} does not answer ({error}): no JVM reports a start or \
                 a recovery"
            ),
        ),
        Some(StateRead::NoExporter) => (
            true,
            format!("{who} has no exporter in the config: no state reported"),
        ),
        None => (false, "the broker's state was not read".into()),
    }
}

/// What observing needs: the cluster's brokers and a Kafka client, built from the
/// config's `security:` section.
#[derive(Debug, Clone)]
pub struct Safety {
    client: Arc<KafkaClient>,
    brokers: Vec<Broker>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Safety {
    /// A view of `brokers` through a client with `opts`; each request (and the exporter
    /// scrape) is bounded by `opts.timeout`.
    pub fn new(opts: ClientOptions, brokers: Vec<Broker>) -> Safety {
        let timeout = opts.timeout;
        Safety {
            client: Arc::new(KafkaClient::new(opts)),
            brokers,
            http: reqwest::Client::new(),
            timeout,
        }
    }

    /// The client (shared by `wait_in_sync` steps).
    pub fn client(&self) -> &Arc<KafkaClient> {
        &self.client
    }

    /// The configured brokers.
    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }

    /// Each request's time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Looks at what `required` needs about `target`: the whole cluster for
    /// `restart_safe` (which also says whether the target answers), else the target alone;
    /// its exporter for `not_starting`.
    pub async fn observe(&self, required: &[Precondition], target: &Broker) -> Observation {
        let mut o = Observation {
            node_id: target.node_id.clone(),
            address: format!("{}:{}", target.host, target.port),
            kafka_id: kafka_id(target, None),
            target: None,
            summary: None,
            state: None,
        };
        // The exporter is read while Kafka is asked: a hung JVM costs one timeout, not two.
        let state = async {
            if required.contains(&Precondition::NotStarting) {
                Some(self.state(target).await)
            } else {
                None
            }
        };
        let kafka = async {
            let needs_target = required.contains(&Precondition::BrokerUnreachable)
                || required.contains(&Precondition::RestartSafe);
            if !needs_target {
                return (None, None);
            }
            let target_liveness = self.liveness(target).await;
            // A target that does not answer passes restart_safe without a look at the
            // cluster, which can be slow exactly then (with a majority of the KRaft
            // controllers down, DescribeQuorum waits out its timeout).
            if !required.contains(&Precondition::RestartSafe) || !target_liveness.alive {
                return (Some(target_liveness), None);
            }
            let mut brokers = self.brokers.clone();
            if !brokers.iter().any(|b| b.node_id == target.node_id) {
                brokers.push(target.clone());
            }
            let s = summarize(&self.client, &brokers).await;
            (s.broker(&target.node_id).cloned(), Some(s))
        };
        let (state, (liveness, summary)) = tokio::join!(state, kafka);
        o.kafka_id = liveness.as_ref().and_then(|l| l.kafka_id).or(o.kafka_id);
        o.target = liveness;
        o.summary = summary;
        o.state = state;
        o
    }

    /// Observes and judges every precondition of `required` about `target`.
    pub async fn judge(&self, required: &[Precondition], target: &Broker) -> Judgement {
        let t0 = Instant::now();
        let o = self.observe(required, target).await;
        Judgement {
            verdicts: required.iter().map(|p| judge(*p, &o)).collect(),
            took: t0.elapsed(),
        }
    }

    async fn liveness(&self, b: &Broker) -> BrokerLiveness {
        let mut l = probe(
            &self.client,
            b.node_id.clone(),
            b.host.clone(),
            b.port,
            true,
        )
        .await;
        l.kafka_id = kafka_id(b, None);
        l
    }

    /// What `b`'s exporter says of its BrokerState.
    pub async fn state(&self, b: &Broker) -> StateRead {
        let Some(url) = crate::ingest::scrape::metrics_url(b) else {
            return StateRead::NoExporter;
        };
        let r = crate::ingest::scrape::scrape(&self.http, &b.node_id, &url, self.timeout).await;
        if let Some(error) = r.error {
            return StateRead::Unreadable { url, error };
        }
        let value = r
            .samples
            .iter()
            .find(|(l, _)| l.get("__name__").is_some_and(|n| n == BROKER_STATE_SERIES))
            .map(|(_, v)| *v);
        match value {
            Some(value) => StateRead::State { url, value },
            None => StateRead::Missing { url },
        }
    }
}

#[cfg(test)]
#[path = "precondition_tests.rs"]
mod tests;

#[path = "precondition_zk.rs"]
pub mod zk;
