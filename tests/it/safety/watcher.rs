//! The suite's own eyes on the cluster, independent of the service: every ~200 ms it asks
//! each broker ApiVersions with the crate's `KafkaClient` (its own client, its own
//! connections) and reads Metadata from one that answers. The samples decide, after the
//! fact, whether a restart the wrapper script logged was unsafe.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_healing::kafka::{ClientOptions, ClusterMetadata, KafkaClient};

/// Pause between samples.
const PERIOD: Duration = Duration::from_millis(200);
/// Limit of one ApiVersions or Metadata request (a hung broker costs this per sample).
const REQUEST_LIMIT: Duration = Duration::from_millis(800);
/// A watcher never outlives this, whatever the test does.
const MAX_LIFE: Duration = Duration::from_secs(40 * 60);

/// One broker the watcher asks: Kafka's id and its listener.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The config's `node_id` (the supervisord program name).
    pub(crate) name: String,
    /// Kafka's `node.id` / `broker.id`.
    pub(crate) id: i32,
    /// Listener port on 127.0.0.1.
    pub(crate) port: u16,
}

/// What one sample saw.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When the sample began (ms since the epoch).
    pub(crate) at_ms: i64,
    /// Kafka ids that answered ApiVersions.
    pub(crate) answering: BTreeSet<i32>,
    /// Kafka ids registered in Metadata and in the ISR of every partition they host.
    /// Empty when no broker gave Metadata.
    pub(crate) in_sync: BTreeSet<i32>,
    /// Partitions with fewer in-sync replicas on answering brokers than 2 (the stack's
    /// `min.insync.replicas`); `None` without Metadata.
    pub(crate) under_min_isr: Option<usize>,
}

impl Sample {
    /// Whether broker `id` is fully back: answering and in every ISR.
    pub(crate) fn back(&self, id: i32) -> bool {
        self.answering.contains(&id) && self.in_sync.contains(&id)
    }
}

/// Brokers of `md` that are registered and in the ISR of every partition they host.
pub(crate) fn in_sync_everywhere(md: &ClusterMetadata) -> BTreeSet<i32> {
    let mut out: BTreeSet<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    for t in &md.topics {
        for p in &t.partitions {
            for r in &p.replicas {
                if !p.isr.contains(r) {
                    out.remove(r);
                }
            }
        }
    }
    out
}

fn under_min_isr(md: &ClusterMetadata, answering: &BTreeSet<i32>) -> usize {
    md.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.isr.iter().filter(|r| answering.contains(r)).count() < 2)
        .count()
}

/// A background sampler; stops when dropped.
pub(crate) struct Watcher {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One sample of `nodes` with `client`.
pub(crate) async fn sample(client: &Arc<KafkaClient>, nodes: &[Node]) -> Sample {
    let at_ms = kafka_healing::clock::now_ms();
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let (c, n) = (client.clone(), n.clone());
        set.spawn(async move {
            let ok = c
                .api_versions_within("127.0.0.1", n.port, REQUEST_LIMIT)
                .await
                .is_ok();
            (n, ok)
        });
    }
    let mut answering = BTreeSet::new();
    let mut ports = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((n, true)) = r {
            answering.insert(n.id);
            ports.push(n.port);
        }
    }
    let mut md = None;
    for port in ports {
        let r = tokio::time::timeout(REQUEST_LIMIT, client.metadata("127.0.0.1", port)).await;
        if let Ok(Ok(m)) = r {
            md = Some(m);
            break;
        }
    }
    Sample {
        at_ms,
        in_sync: md.as_ref().map(in_sync_everywhere).unwrap_or_default(),
        under_min_isr: md.as_ref().map(|m| under_min_isr(m, &answering)),
        answering,
    }
}

impl Watcher {
    /// Starts sampling `nodes` on 127.0.0.1.
    pub(crate) fn start(nodes: Vec<Node>) -> Watcher {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = Arc::new(KafkaClient::new(ClientOptions::plaintext(REQUEST_LIMIT)));
            let t0 = Instant::now();
            while !st.load(Ordering::Relaxed) && t0.elapsed() < MAX_LIFE {
                let x = sample(&client, &nodes).await;
                s.lock().unwrap_or_else(|p| p.into_inner()).push(x);
                tokio::time::sleep(PERIOD).await;
            }
        });
        Watcher {
            samples,
            stop,
            task: Some(task),
        }
    }

    /// Every sample so far.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The samples since `from_ms`.
    pub(crate) fn since(&self, from_ms: i64) -> Vec<Sample> {
        let mut v = self.samples();
        v.retain(|s| s.at_ms >= from_ms);
        v
    }

    /// Waits until a sample taken after now satisfies `pred`; returns it. `None` after
    /// `limit` (the caller says what that means).
    pub(crate) async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&Sample) -> bool,
    ) -> Option<Sample> {
        let from = kafka_healing::clock::now_ms();
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.since(from).into_iter().find(|s| pred(s)) {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

/// The last sample that began at or before `t_ms`.
pub(crate) fn at(samples: &[Sample], t_ms: i64) -> Option<&Sample> {
    samples.iter().rev().find(|s| s.at_ms <= t_ms)
}
