//! `wait_in_sync` steps, the post-condition of a restart: wait until the target answers the
//! Kafka protocol, is registered in the cluster's metadata, and is back in the ISR of every
//! partition it hosts. The runbook (and so the cluster slot) is held until then, so the
//! next broker's restart never begins while this one's replicas still catch up.
//!
//! A broker that reports it is starting or recovering its logs (BrokerState 1 or 2 on its
//! exporter) is making progress, not failing: the wait then goes on up to its
//! `recovery_timeout` instead of its `timeout`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Broker;
use crate::journal::StepStatus;
use crate::kafka::ClusterMetadata;
use crate::kafka::cluster::kafka_id;
use crate::rules::duration::{duration, opt_duration};
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome};
use crate::runbook::precondition::{Safety, StateRead, state_name};
use crate::runbook::render::{Lowered, RenderedStep, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "wait_in_sync";

/// How long a broker reporting STARTING or RECOVERY may take when the step sets no
/// `recovery_timeout` (log recovery after a crash can take many minutes).
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

/// The target templates the step renders: it always acts on the rule's target broker.
const TARGET: [&str; 3] = ["{{target.node_id}}", "{{target.host}}", "{{target.port}}"];

/// `wait_in_sync` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitInSyncStep {
    /// How long a broker that reports no recovery may take to be back in sync.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// How long a broker that reports STARTING or RECOVERY may take (default 1h; at least
    /// `timeout`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub recovery_timeout: Option<Duration>,
}

impl WaitInSyncStep {
    /// The target's node id, host and port.
    pub(crate) fn templates(&self) -> Vec<&str> {
        TARGET.to_vec()
    }

    fn recovery(&self) -> Duration {
        self.recovery_timeout.unwrap_or(DEFAULT_RECOVERY_TIMEOUT)
    }

    /// A recovery timeout shorter than the timeout.
    pub(crate) fn problems(&self) -> Vec<String> {
        if self.recovery() < self.timeout {
            return vec![format!(
                "wait_in_sync: `recovery_timeout` ({}) must be at least `timeout` ({})",
                humantime::format_duration(self.recovery()),
                humantime::format_duration(self.timeout)
            )];
        }
        Vec::new()
    }

    /// `[NODE_ID, HOST:PORT, timeout=S, recovery_timeout=S]`, within the longer of the two.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        let [node, host, port] = TARGET.map(|t| r.one("target", t));
        let (node, host, port) = (node?, host?, port?);
        if node.is_empty() || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(r.error("wait_in_sync needs the rule's target broker"));
        }
        let recovery = self.recovery().max(self.timeout);
        Ok(Lowered {
            argv: vec![
                node,
                format!("{host}:{port}"),
                format!("timeout={}", self.timeout.as_secs()),
                format!("recovery_timeout={}", recovery.as_secs()),
            ],
            body: None,
            timeout: Some(recovery),
        })
    }
}

/// Waiting only reads.
pub(crate) fn is_disruptive(_argv: &[String]) -> bool {
    false
}

fn invalid(message: impl Into<String>) -> Outcome {
    Outcome::fatal(ExecError::InvalidStep {
        kind: KEY.to_string(),
        message: message.into(),
    })
}

/// One try: wait within `timeout` (which caps both of the step's own limits).
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let secs = |a: &str, key: &str| {
        a.strip_prefix(key)
            .and_then(|v| v.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    let (node, addr, wait, recovery) = match step.argv.as_slice() {
        [node, addr, t, r] => match (secs(t, "timeout"), secs(r, "recovery_timeout")) {
            (Some(t), Some(r)) => (node, addr, t, r),
            _ => {
                return invalid("argv must be [NODE_ID, HOST:PORT, timeout=S, recovery_timeout=S]");
            }
        },
        _ => return invalid("argv must be [NODE_ID, HOST:PORT, timeout=S, recovery_timeout=S]"),
    };
    let Some(safety) = &opts.safety else {
        return invalid("no Kafka client: the `security:` section could not be used");
    };
    // The configured broker (for its exporter), else the address as rendered.
    let target = match safety.brokers().iter().find(|b| &b.node_id == node) {
        Some(b) => b.clone(),
        None => {
            let Some((host, port)) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            else {
                return invalid(format!("`{addr}` is not host:port"));
            };
            Broker {
                node_id: node.clone(),
                host,
                port,
                jmx_port: None,
                metrics_url: None,
            }
        }
    };
    let limits = WaitLimits {
        timeout: wait.min(timeout),
        recovery_timeout: recovery.min(timeout),
        interval: opts.wait_interval,
    };
    match wait_in_sync(safety, &target, limits, cancel).await {
        WaitEnd::InSync(said) => Outcome {
            stdout: said,
            ..Outcome::new(StepStatus::Succeeded)
        },
        WaitEnd::TimedOut(said) => Outcome {
            error: Some(format!("not back in sync in time: {said}")),
            ..Outcome::new(StepStatus::TimedOut)
        },
        WaitEnd::Cancelled => Outcome::fatal(ExecError::Cancelled),
    }
}

/// Partitions named in a message; the count always covers them all.
const NAMED: usize = 5;

/// Where the target stands, from one Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InSync {
    /// The target is among the registered brokers.
    pub registered: bool,
    /// Partitions with a replica on the target.
    pub hosted: usize,
    /// Those whose ISR lacks the target (`topic-partition`).
    pub lagging: Vec<String>,
}

impl InSync {
    /// Registered and in the ISR of everything it hosts.
    pub fn done(&self) -> bool {
        self.registered && self.lagging.is_empty()
    }
}

/// Where broker `id` stands in `meta`. Pure.
pub fn in_sync(id: i32, meta: &ClusterMetadata) -> InSync {
    let mut hosted = 0;
    let mut lagging = Vec::new();
    for t in &meta.topics {
        for p in t.partitions.iter().filter(|p| p.replicas.contains(&id)) {
            hosted += 1;
            if !p.isr.contains(&id) {
                lagging.push(format!("{}-{}", t.name, p.partition));
            }
        }
    }
    InSync {
        registered: meta.brokers.iter().any(|b| b.node_id == id),
        hosted,
        lagging,
    }
}

/// One look at the target.
#[derive(Debug, Clone, PartialEq)]
struct Look {
    answers: Result<Duration, String>,
    place: Result<InSync, String>,
    state: Option<StateRead>,
}

impl Look {
    fn done(&self) -> bool {
        self.answers.is_ok() && self.place.as_ref().is_ok_and(InSync::done)
    }

    /// The broker says it is starting or recovering: progress, not failure.
    fn recovering(&self) -> bool {
        matches!(self.state, Some(StateRead::State { value, .. }) if value == 1.0 || value == 2.0)
    }

    fn describe(&self, node_id: &str) -> String {
        let answers = match &self.answers {
            Ok(d) => format!("answers (ApiVersions in {} ms)", d.as_millis()),
            Err(e) => format!("does not answer ({e})"),
        };
        let place = match &self.place {
            Err(e) => format!("its place in the cluster is unknown ({e})"),
            Ok(p) if !p.registered => "is not registered".to_string(),
            Ok(p) if p.lagging.is_empty() => {
                format!("is in the ISR of all {} partition(s) it hosts", p.hosted)
            }
            Ok(p) => {
                let named: Vec<&str> = p.lagging.iter().take(NAMED).map(String::as_str).collect();
                let more = p.lagging.len().saturating_sub(NAMED);
                format!(
                    "is out of the ISR of {} of {} partition(s) it hosts ({}{})",
                    p.lagging.len(),
                    p.hosted,
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        };
        let state = match &self.state {
            Some(StateRead::State { value, .. }) => format!("; BrokerState {}", state_name(*value)),
            _ => String::new(),
        };
        format!("broker {node_id} {answers}, {place}{state}")
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// In sync; what the last look found.
    InSync(String),
    /// Not in sync by the deadline; what the last look found.
    TimedOut(String),
    /// Cancelled (shutdown).
    Cancelled,
}

/// The limits of one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// How long a broker that does not report a recovery may take.
    pub timeout: Duration,
    /// How long a broker that reports STARTING or RECOVERY may take (at least `timeout`).
    pub recovery_timeout: Duration,
    /// Pause between looks.
    pub interval: Duration,
}

async fn look(safety: &Safety, target: &Broker) -> Look {
    let client = safety.client();
    let answers = client
        .alive(&target.host, target.port, safety.timeout())
        .await
        .map_err(|e| e.to_string());
    // The metadata from the target itself when it answers, else from any broker that does.
    let mut sources: Vec<&Broker> = vec![target];
    sources.extend(
        safety
            .brokers()
            .iter()
            .filter(|b| b.node_id != target.node_id),
    );
    let mut errors = Vec::new();
    let mut place = Err(String::new());
    for b in sources {
        match client.metadata(&b.host, b.port).await {
            Ok(meta) => {
                place = match kafka_id(target, Some(&meta)) {
                    Some(id) => Ok(in_sync(id, &meta)),
                    None => Err(format!(
                        "no registered broker has id or address of {}",
                        target.node_id
                    )),
                };
                break;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Err(e) = &mut place
        && e.is_empty()
    {
        *e = format!("no broker gave metadata: {}", errors.join("; "));
    }
    let state = Some(safety.state(target).await);
    Look {
        answers,
        place,
        state,
    }
}

/// Waits until `target` answers, is registered and is in the ISR of every partition it
/// hosts, looking every `limits.interval`.
pub async fn wait_in_sync(
    safety: &Safety,
    target: &Broker,
    limits: WaitLimits,
    cancel: &CancellationToken,
) -> WaitEnd {
    let t0 = Instant::now();
    loop {
        let l = tokio::select! {
            l = look(safety, target) => l,
            _ = cancel.cancelled() => return WaitEnd::Cancelled,
        };
        let said = format!(
            "{} after {:.1} s",
            l.describe(&target.node_id),
            t0.elapsed().as_secs_f64()
        );
        if l.done() {
            return WaitEnd::InSync(said);
        }
        let limit = if l.recovering() {
            limits.recovery_timeout.max(limits.timeout)
        } else {
            limits.timeout
        };
        if t0.elapsed() >= limit {
            return WaitEnd::TimedOut(said);
        }
        tokio::select! {
            _ = tokio::time::sleep(limits.interval) => {}
            _ = cancel.cancelled() => return WaitEnd::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{BrokerInfo, PartitionInfo, TopicInfo};

    fn meta(brokers: &[i32], parts: &[(&[i32], &[i32])]) -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: None,
            controller_id: None,
            brokers: brokers
                .iter()
                .map(|i| BrokerInfo {
                    node_id: *i,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                })
                .collect(),
            topics: vec![TopicInfo {
                name: "demo".into(),
                internal: false,
                error_code: 0,
                partitions: parts
                    .iter()
                    .enumerate()
                    .map(|(i, (replicas, isr))| PartitionInfo {
                        partition: i as i32,
                        leader: isr.first().copied(),
                        replicas: replicas.to_vec(),
                        isr: isr.to_vec(),
                        offline: vec![],
                        error_code: 0,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn in_sync_needs_registration_and_every_hosted_isr() {
        let m = meta(
            &[1, 2, 3],
            &[
                (&[1, 2, 3], &[1, 2, 3]),
                (&[2, 3], &[3]),
                (&[1, 3], &[1, 3]),
            ],
        );
        let two = in_sync(2, &m);
        assert_eq!(two.hosted, 2);
        assert_eq!(two.lagging, vec!["demo-1".to_string()]);
        assert!(!two.done());
        let one = in_sync(1, &m);
        assert_eq!((one.hosted, one.done()), (2, true));
        // Not registered (still starting): not done, though it hosts nothing lagging.
        let m = meta(&[1, 3], &[(&[1, 3], &[1, 3])]);
        let four = in_sync(4, &m);
        assert_eq!(
            (four.registered, four.hosted, four.done()),
            (false, 0, false)
        );
    }

    #[test]
    fn a_look_says_what_it_saw() {
        let l = Look {
            answers: Ok(Duration::from_millis(4)),
            place: Ok(InSync {
                registered: true,
                hosted: 8,
                lagging: (0..7).map(|i| format!("demo-{i}")).collect(),
            }),
            state: Some(StateRead::State {
                url: "u".into(),
                value: 3.0,
            }),
        };
        assert_eq!(
            l.describe("2"),
            "broker 2 answers (ApiVersions in 4 ms), is out of the ISR of 7 of 8 partition(s) it \
             hosts (demo-0, demo-1, demo-2, demo-3, demo-4 and 2 more); BrokerState RUNNING (3)"
        );
        assert!(!l.done() && !l.recovering());
        let r = Look {
            answers: Err("connection refused".into()),
            place: Ok(InSync {
                registered: false,
                hosted: 0,
                lagging: vec![],
            }),
            state: Some(StateRead::State {
                url: "u".into(),
                value: 2.0,
            }),
        };
        assert!(r.recovering());
        assert_eq!(
            r.describe("2"),
            "broker 2 does not answer (connection refused), is not registered; BrokerState RECOVERY (2)"
        );
    }
}
