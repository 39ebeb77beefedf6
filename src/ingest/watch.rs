//! Self-watch: every `monitoring.interval_seconds` (with jitter) scrape each broker's
//! JMX exporter and run the configured probes, keep the samples in the series store,
//! evaluate every rule condition, and hand the alerts they raise to the engine — journaled
//! first, like webhook alerts. kafka-healing thus heals even when Prometheus or
//! Alertmanager is down. With `alertmanager.url`, a firing alert that an active
//! Alertmanager silence matches is handed over with it, and acts on nothing
//! ([`super::silence`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::kafka_watch::{self, ClusterObservation, KafkaWatch};
use super::kube_watch::{self, PodObservation, PodWatch};
use super::probe::{self, ProbeResult};
use super::retention;
use super::scrape::{ScrapeResult, metrics_url, scrape_kept};
use super::silence;
use super::store::{Labels, SeriesStore};
use crate::clock::now_ms;
use crate::config::MonitoringMethod;
use crate::coord::Coordinator;
use crate::engine::why::Silenced;
use crate::engine::{AlertSink, Setup, SetupCell};
use crate::ingest::{Alert, AlertStatus};
use crate::journal::{Journal, NewAlert};
use crate::metrics::{Metrics, ShardLabel, TargetLabels};
use crate::promql::KeepSet;
use crate::rules::condition::ConditionStates;

/// Lower bound of the checks allowed at once: a loopback or LAN scrape takes milliseconds,
/// and 64 in flight keep two cores busy without a queue behind a few slow targets.
pub const MIN_CONCURRENCY: usize = 64;

/// Upper bound of the checks allowed at once: each holds a socket (half of the common
/// 1,024 file-descriptor soft limit, leaving the rest to the journal, the listener and the
/// pool's idle connections) and, for a scrape, its body.
pub const MAX_CONCURRENCY: usize = 512;

/// How many of `checks` scrapes and probes may run at once: enough that a round fits in
/// half its `interval` even if every check waits its whole `timeout` (a fleet of hung
/// exporters), never fewer than [`MIN_CONCURRENCY`] nor more than [`MAX_CONCURRENCY`] or
/// `checks`. With 1,000 brokers, `jmx` and `socket`, a 5 s timeout and a 30 s interval:
/// 2,000 checks, 512 at once (the formula asks 667), at worst 4 waves of 5 s.
pub fn concurrency(checks: usize, timeout: Duration, interval: Duration) -> usize {
    let (t, i) = (timeout.as_millis().max(1), interval.as_millis().max(1));
    let fit = (2 * checks as u128 * t).div_ceil(i);
    let fit = usize::try_from(fit).unwrap_or(usize::MAX);
    fit.clamp(MIN_CONCURRENCY, MAX_CONCURRENCY)
        .min(checks)
        .max(1)
}

/// What one round of [`observe_round`] did.
#[derive(Debug, Clone)]
pub struct Round {
    /// What the checks that finished saw (their samples are in the store).
    pub observations: Vec<Observation>,
    /// The checks whose result did not arrive by the round's deadline (`METHOD/NODE_ID`,
    /// `kafka` for the `kafka` method's cluster look): aborted, nothing stored for them.
    pub missed: Vec<String>,
    /// Checks started or queued this round.
    pub checks: usize,
    /// Checks allowed at once.
    pub concurrency: usize,
    /// From the first check to the last result (or the deadline).
    pub duration: Duration,
}

/// One target's observation in a round.
#[derive(Debug, Clone)]
pub enum Observation {
    /// A scrape of a broker's metrics endpoint.
    Scrape(ScrapeResult),
    /// A probe.
    Probe(ProbeResult),
    /// Cluster-level series of a method (`kafka`: partitions, quorum).
    Cluster(ClusterObservation),
    /// A look at a broker's pod through the Kubernetes API (`kubernetes`).
    Pod(PodObservation),
}

/// Scrapes and probes every target of `setup` once (bounded concurrency) and stores every
/// sample (the kept set does not apply). Used by `kafka-healing scrape`; `kafka` holds the
/// `kafka` method's client between rounds.
pub async fn observe(
    setup: &Setup,
    client: &reqwest::Client,
    kafka: &KafkaWatch,
    store: &Mutex<SeriesStore>,
) -> Vec<Observation> {
    observe_kept(
        setup,
        client,
        kafka,
        store,
        |_| true,
        Arc::new(KeepSet::all()),
    )
    .await
}

/// The shard name of broker `node_id` (HA mode splits targets by these names).
pub fn broker_target(node_id: &str) -> String {
    format!("kafka/{node_id}")
}

/// The shard name of ZooKeeper node `node_id`.
pub fn zookeeper_target(node_id: &str) -> String {
    format!("zookeeper/{node_id}")
}

/// Like [`observe`], only for the targets `mine` accepts (by shard name), keeping only
/// the exporter samples the current conditions can read ([`KeepSet::of_rules`], so a
/// reload recomputes it).
pub async fn observe_some(
    setup: &Setup,
    client: &reqwest::Client,
    kafka: &KafkaWatch,
    store: &Mutex<SeriesStore>,
    mine: impl Fn(&str) -> bool,
) -> Vec<Observation> {
    let keep = Arc::new(KeepSet::of_rules(&setup.rules));
    observe_kept(setup, client, kafka, store, mine, keep).await
}

/// [`observe_round`] within one monitoring interval, with the default concurrency.
async fn observe_kept(
    setup: &Setup,
    client: &reqwest::Client,
    kafka: &KafkaWatch,
    store: &Mutex<SeriesStore>,
    mine: impl Fn(&str) -> bool,
    keep: Arc<KeepSet>,
) -> Vec<Observation> {
    let interval = Duration::from_secs(setup.loaded.config.monitoring.interval_seconds.max(1));
    let deadline = tokio::time::Instant::now() + interval;
    let pods = PodWatch::new();
    observe_round(
        setup, client, kafka, &pods, store, mine, keep, deadline, None,
    )
    .await
    .observations
}

/// One round over the targets `mine` accepts, storing the exporter samples `keep` accepts:
/// every check has its own timeout and they run concurrently ([`concurrency`], or
/// `limit`), so a hung or slow exporter delays nobody else. Checks without a result at
/// `deadline` are aborted and reported as missed; nothing is stored for them (their health
/// is unknown, not bad: a healer must not restart a broker because its own round was too
/// short), so their last samples stand. `pods` holds the `kubernetes` method's API
/// connection.
#[allow(clippy::too_many_arguments)]
pub async fn observe_round(
    setup: &Setup,
    client: &reqwest::Client,
    kafka: &KafkaWatch,
    pods: &PodWatch,
    store: &Mutex<SeriesStore>,
    mine: impl Fn(&str) -> bool,
    keep: Arc<KeepSet>,
    deadline: tokio::time::Instant,
    limit: Option<usize>,
) -> Round {
    let t0 = tokio::time::Instant::now();
    let cfg = &setup.loaded.config;
    let m = &cfg.monitoring;
    let timeout = Duration::from_secs(m.timeout_seconds);
    let interval = Duration::from_secs(m.interval_seconds.max(1));
    let per_broker = m
        .methods
        .iter()
        .filter(|x| {
            matches!(
                x,
                MonitoringMethod::Jmx
                    | MonitoringMethod::Socket
                    | MonitoringMethod::Http
                    | MonitoringMethod::Kubernetes
            )
        })
        .count();
    let zk = usize::from(m.methods.contains(&MonitoringMethod::Zookeeper));
    let planned =
        cfg.cluster.kafka_brokers.len() * per_broker + cfg.cluster.zookeeper_nodes.len() * zk;
    let allowed = limit
        .unwrap_or_else(|| concurrency(planned, timeout, interval))
        .max(1);
    let sem = Arc::new(tokio::sync::Semaphore::new(allowed));
    let mut set = JoinSet::new();
    let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
    for b in &cfg.cluster.kafka_brokers {
        if !mine(&broker_target(&b.node_id)) {
            continue;
        }
        let url = metrics_url(b);
        for method in &m.methods {
            let (b, c, sem, url) = (b.clone(), client.clone(), sem.clone(), url.clone());
            let keep = keep.clone();
            match method {
                MonitoringMethod::Jmx => {
                    let Some(url) = url else { continue };
                    let name = format!("jmx/{}", b.node_id);
                    let h = set.spawn(async move {
                        let _permit = sem.acquire().await;
                        Observation::Scrape(scrape_kept(&c, &b.node_id, &url, timeout, &keep).await)
                    });
                    names.insert(h.id(), name);
                }
                MonitoringMethod::Socket => {
                    let name = format!("socket/{}", b.node_id);
                    let h = set.spawn(async move {
                        let _permit = sem.acquire().await;
                        Observation::Probe(
                            probe::socket(&b.node_id, &b.host, b.port, timeout).await,
                        )
                    });
                    names.insert(h.id(), name);
                }
                MonitoringMethod::Http => {
                    let Some(url) = url else { continue };
                    let name = format!("http/{}", b.node_id);
                    let h = set.spawn(async move {
                        let _permit = sem.acquire().await;
                        Observation::Probe(probe::http(&b.node_id, &c, &url, timeout).await)
                    });
                    names.insert(h.id(), name);
                }
                MonitoringMethod::Kubernetes => {
                    let name = format!("{}/{}", kube_watch::METHOD, b.node_id);
                    let look = pods.look(&setup.loaded, &b, timeout);
                    let h = set.spawn(async move {
                        let _permit = sem.acquire().await;
                        Observation::Pod(look.await)
                    });
                    names.insert(h.id(), name);
                }
                MonitoringMethod::Zookeeper | MonitoringMethod::Kafka => {}
            }
        }
    }
    if m.methods.contains(&MonitoringMethod::Zookeeper) {
        for z in &cfg.cluster.zookeeper_nodes {
            if !mine(&zookeeper_target(&z.node_id)) {
                continue;
            }
            let (z, sem) = (z.clone(), sem.clone());
            let name = format!("zookeeper/{}", z.node_id);
            let h = set.spawn(async move {
                let _permit = sem.acquire().await;
                Observation::Probe(
                    probe::zookeeper(&z.node_id, &z.host, z.port, timeout, true).await,
                )
            });
            names.insert(h.id(), name);
        }
    }
    // The `kafka` method: one look at the cluster over the brokers watched here.
    let kafka_brokers: Vec<_> = cfg
        .cluster
        .kafka_brokers
        .iter()
        .filter(|b| mine(&broker_target(&b.node_id)))
        .cloned()
        .collect();
    let kafka_round = async {
        if !m.methods.contains(&MonitoringMethod::Kafka) || kafka_brokers.is_empty() {
            return None;
        }
        let look = kafka.observe(&setup.loaded, &kafka_brokers, timeout);
        Some(tokio::time::timeout_at(deadline, look).await.ok())
    };
    let checks = set.len();
    let others = async {
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                Ok(Some(Ok((id, o)))) => {
                    names.remove(&id);
                    out.push(o);
                }
                Ok(Some(Err(e))) => {
                    // A panicked check: counted as missed under its name.
                    debug!(error = %e, "a self-watch check failed to finish");
                }
                Ok(None) => break,
                Err(_) => {
                    set.abort_all();
                    break;
                }
            }
        }
        let mut missed: Vec<String> = names.into_values().collect();
        missed.sort();
        (out, missed)
    };
    let ((mut out, mut missed), k) = tokio::join!(others, kafka_round);
    let duration = t0.elapsed();
    let kafka_ran = k.is_some();
    match k {
        Some(Some(k)) => {
            out.extend(k.brokers.into_iter().map(Observation::Probe));
            out.push(Observation::Cluster(k.cluster));
        }
        Some(None) => missed.push("kafka".to_string()),
        None => {}
    }
    let now = now_ms();
    let mut store = match store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    for o in &out {
        match o {
            Observation::Scrape(s) => {
                store.insert_batch(&format!("scrape/{}", s.node_id), now, s.samples.clone());
            }
            Observation::Probe(p) => {
                store.insert_batch(
                    &format!("probe/{}/{}", p.method, p.node_id),
                    now,
                    p.series(),
                );
            }
            Observation::Cluster(c) => {
                store.insert_batch(kafka_watch::names::CLUSTER_TARGET, now, c.samples.clone());
            }
            Observation::Pod(p) => {
                let target = format!("probe/{}/{}", kube_watch::METHOD, p.node_id);
                store.insert_batch(&target, now, p.series());
            }
        }
    }
    if !kafka_ran {
        // The method was removed, or none of the brokers is watched here any more.
        store.forget_target(kafka_watch::names::CLUSTER_TARGET, now);
    }
    store.prune(now);
    Round {
        observations: out,
        missed,
        checks: checks + usize::from(kafka_ran),
        concurrency: allowed,
        duration,
    }
}

/// What a condition returned: its series with their values, or why it could not be
/// evaluated.
pub type ConditionResult = Result<Vec<(Labels, f64)>, String>;

/// Evaluates every condition rule at `now`; returns (rule name, result).
pub fn evaluate(
    setup: &Setup,
    store: &Mutex<SeriesStore>,
    now: i64,
) -> Vec<(String, ConditionResult)> {
    let store = match store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    setup
        .rules
        .rules
        .iter()
        .filter_map(|r| {
            let c = r.condition.as_ref()?;
            let v = crate::promql::eval(&c.expr, &store, now)
                .map(crate::promql::Value::into_series)
                .map_err(|e| e.to_string());
            Some((r.name.clone(), v))
        })
        .collect()
}

/// The self-watch loop.
pub struct Watcher {
    journal: Journal,
    metrics: Arc<Metrics>,
    setup: SetupCell,
    alerts: AlertSink,
    /// The samples (shared with whoever wants to look).
    pub store: Arc<Mutex<SeriesStore>>,
    states: ConditionStates,
    client: reqwest::Client,
    /// Alerts the journal could not take last round; raised again first.
    unsent: Vec<Alert>,
    /// HA mode: the coordinator whose member list splits the targets.
    coord: Option<Arc<Coordinator>>,
    /// Whether the last read of Alertmanager's silences failed (its failure is logged
    /// once per outage, at warn).
    silences_failing: bool,
    /// The `kafka` method's client, kept between rounds.
    kafka: KafkaWatch,
    /// The `kubernetes` method's API connection, kept between rounds.
    pods: PodWatch,
    /// Series dropped so far, by target (one escalation per outage).
    drops: super::drops::DropWatch,
    /// Checks allowed at once, instead of [`concurrency`] (tests).
    concurrency_limit: Option<usize>,
    /// What the conditions of a setup need, derived once per setup (a reload derives it
    /// again): the setup it was derived from and its kept set.
    derived: Option<(Arc<Setup>, Arc<KeepSet>)>,
}

/// The client of the scrapes: no idle connections kept between rounds. A kept connection
/// holds hyper's read buffer (it grows to ~400 KB on a JMX body), so 300 idle exporters
/// held ~120 MB between rounds; a new loopback or LAN connection per scrape per interval
/// costs next to nothing.
fn scrape_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl Watcher {
    /// A watcher reading the current `setup`, handing the alerts its conditions raise to
    /// `alerts`, keeping `retention` of samples until its first round replaces it with
    /// what the conditions need ([`retention::retention_ms`]).
    pub fn new(
        journal: Journal,
        setup: SetupCell,
        alerts: AlertSink,
        metrics: Arc<Metrics>,
        retention: Duration,
    ) -> Watcher {
        Watcher {
            journal,
            metrics,
            setup,
            alerts,
            store: Arc::new(Mutex::new(SeriesStore::new(
                retention.as_millis() as i64,
                super::store::MAX_SERIES,
            ))),
            states: ConditionStates::default(),
            client: scrape_client(),
            unsent: Vec::new(),
            coord: None,
            silences_failing: false,
            kafka: KafkaWatch::new(),
            pods: PodWatch::new(),
            drops: Default::default(),
            concurrency_limit: None,
            derived: None,
        }
    }

    /// Allows at most `limit` checks at once instead of [`concurrency`]'s choice.
    pub fn with_concurrency_limit(mut self, limit: Option<usize>) -> Watcher {
        self.concurrency_limit = limit;
        self
    }

    /// HA mode: watch only this instance's share of the targets.
    pub fn with_coordinator(mut self, coord: Option<Arc<Coordinator>>) -> Watcher {
        self.coord = coord;
        self
    }

    /// The shard names this instance watches this round (every one without HA); the
    /// others are dropped from the metrics and the store, so their stale samples raise
    /// nothing here.
    fn assign(&self, setup: &Setup) -> std::collections::HashSet<String> {
        let cfg = &setup.loaded.config;
        let brokers = cfg
            .cluster
            .kafka_brokers
            .iter()
            .map(|b| (broker_target(&b.node_id), &b.node_id, "broker"));
        let zks = cfg
            .cluster
            .zookeeper_nodes
            .iter()
            .map(|z| (zookeeper_target(&z.node_id), &z.node_id, "zookeeper"));
        let members = self.coord.as_ref().and_then(|c| c.members());
        let mut mine = std::collections::HashSet::new();
        for (target, node_id, what) in brokers.chain(zks) {
            let owned = self
                .coord
                .as_ref()
                .is_none_or(|c| c.owns(members.as_deref(), &target));
            if self.coord.is_some() {
                self.metrics
                    .watch_assigned
                    .get_or_create(&ShardLabel {
                        target: target.clone(),
                    })
                    .set(i64::from(owned));
            }
            if owned {
                mine.insert(target);
                continue;
            }
            let methods: &[&str] = match what {
                "broker" => &["jmx", "socket", "http", "kafka", kube_watch::METHOD],
                _ => &["zookeeper"],
            };
            for m in methods {
                let l = TargetLabels {
                    node_id: node_id.clone(),
                    method: m.to_string(),
                };
                self.metrics.target_up.remove(&l);
                self.metrics.target_duration_ms.remove(&l);
            }
            let mut store = match self.store.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let now = now_ms();
            store.forget_target(&format!("scrape/{node_id}"), now);
            for m in methods {
                store.forget_target(&format!("probe/{m}/{node_id}"), now);
            }
        }
        mine
    }

    /// Runs rounds until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        // HA mode: give the first lease a moment, so the first round already knows the
        // shard (until then every target is watched).
        if let Some(c) = &self.coord {
            let until = tokio::time::Instant::now() + c.ttl();
            while !c.is_up() && tokio::time::Instant::now() < until {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
        loop {
            let setup = self.setup.current();
            let interval = setup.loaded.config.monitoring.interval_seconds.max(1) * 1000;
            // Up to 10% jitter so many instances do not scrape in lockstep.
            let jitter = (now_ms().rem_euclid(997) as u64 * interval) / 9970;
            let start = tokio::time::Instant::now();
            self.round_until(start + Duration::from_millis(interval))
                .await;
            // Rounds start on a fixed period, not a fixed pause after the last one. One
            // that overran starts the next at once rather than skipping it: a skip would
            // leave every target unobserved for a whole further interval, and a round
            // cannot run away (its checks end at its deadline).
            let due = start + Duration::from_millis(interval + jitter);
            if tokio::time::Instant::now() >= due {
                self.metrics.watch.overruns.inc();
                warn!(
                    interval_ms = interval,
                    took_ms = start.elapsed().as_millis() as u64,
                    "a self-watch round took longer than the interval; the next starts at once"
                );
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
        }
    }

    /// One round, its checks given one interval: observe, evaluate, raise alerts.
    pub async fn round(&mut self) {
        let setup = self.setup.current();
        let interval = Duration::from_secs(setup.loaded.config.monitoring.interval_seconds.max(1));
        self.round_until(tokio::time::Instant::now() + interval)
            .await;
    }

    /// One round whose checks must report by `deadline`.
    pub async fn round_until(&mut self, deadline: tokio::time::Instant) {
        let setup = self.setup.current();
        let mine = self.assign(&setup);
        let keep = self.derive(&setup);
        let r = observe_round(
            &setup,
            &self.client,
            &self.kafka,
            &self.pods,
            &self.store,
            |t| mine.contains(t),
            keep,
            deadline,
            self.concurrency_limit,
        )
        .await;
        self.show_round(&r);
        let obs = r.observations;
        for o in &obs {
            let (node_id, method, up, d) = match o {
                Observation::Scrape(s) => (&s.node_id, "jmx", s.up, s.duration),
                Observation::Probe(p) => (&p.node_id, p.method, p.success, p.duration),
                Observation::Pod(p) => (&p.node_id, kube_watch::METHOD, p.answered(), p.duration),
                Observation::Cluster(_) => continue,
            };
            let l = TargetLabels {
                node_id: node_id.clone(),
                method: method.to_string(),
            };
            self.metrics.target_up.get_or_create(&l).set(i64::from(up));
            self.metrics
                .target_duration_ms
                .get_or_create(&l)
                .set(d.as_millis() as i64);
        }
        let probes = obs.iter().filter_map(|o| match o {
            Observation::Probe(p) => Some(p),
            _ => None,
        });
        let cluster = obs.iter().find_map(|o| match o {
            Observation::Cluster(c) => Some(c),
            _ => None,
        });
        let cluster_name = &setup.loaded.config.cluster.name;
        let view = kafka_watch::metrics_view(cluster_name, probes, cluster);
        self.metrics.kafka.show(view.as_ref());
        if let Ok(store) = self.store.lock() {
            self.metrics.series_in_memory.set(store.len() as i64);
            self.metrics.watch.store_bytes.set(store.bytes() as i64);
            // Logged once per outage, by `drops::follow`, not every round.
            self.metrics
                .series_dropped
                .set(store.dropped_series() as i64);
        }
        super::drops::follow(
            &mut self.drops,
            &self.store,
            &self.metrics,
            &self.journal,
            &setup,
            now_ms(),
        )
        .await;
        for o in &obs {
            match o {
                Observation::Scrape(s) if !s.up => {
                    debug!(node_id = %s.node_id, error = s.error.as_deref().unwrap_or(""), "scrape failed")
                }
                Observation::Probe(p) if !p.success => {
                    debug!(node_id = %p.node_id, method = p.method, detail = %p.detail, "probe failed")
                }
                Observation::Pod(p) if !p.answered() => {
                    debug!(node_id = %p.node_id, method = kube_watch::METHOD, detail = %p.detail(), "the Kubernetes API did not answer: the pod's state is unknown")
                }
                _ => {}
            }
        }
        let now = now_ms();
        let names: Vec<&str> = setup.rules.rules.iter().map(|r| r.name.as_str()).collect();
        self.states.retain_rules(&names);
        let mut raised: Vec<Alert> = std::mem::take(&mut self.unsent);
        for (name, result) in evaluate(&setup, &self.store, now) {
            let Some(rule) = setup.rules.rule(&name) else {
                continue;
            };
            match result {
                Ok(series) => raised.extend(self.states.step(rule, &series, now)),
                Err(e) => warn!(rule = %name, error = %e, "condition cannot be evaluated"),
            }
        }
        if raised.is_empty() {
            return;
        }
        let silences = self.silences(&setup, &raised).await;
        let rows: Vec<NewAlert> = raised
            .iter()
            .map(|a| NewAlert::of(a, now, "self", "kafka-healing", ""))
            .collect();
        let recorded = self.journal.record_alerts_in_parts(rows).await;
        let mut list = Vec::with_capacity(raised.len());
        for ((id, a), s) in recorded.ids.into_iter().zip(raised).zip(silences) {
            match id {
                Some(id) => {
                    Metrics::count(&self.metrics.alerts_received, a.status.as_str());
                    let silence = s.as_ref().map(|s| s.id.as_str()).unwrap_or("");
                    info!(alertname = %a.labels.get("alertname").map(String::as_str).unwrap_or(""), status = a.status.as_str(), fingerprint = %a.fingerprint, silence, "condition alert");
                    list.push((id, a, s));
                }
                // Raised again next round.
                None => self.unsent.push(a),
            }
        }
        if let Some(e) = recorded.error {
            warn!(error = %e, unsent = self.unsent.len(), "cannot journal condition alerts; they are raised again next round");
        }
        if !list.is_empty() {
            self.alerts.submit_watched(list);
        }
    }

    /// Sets the store's retention from the conditions of `setup` (they change on reload).
    /// The kept set of `setup`, and its retention applied to the store; derived again only
    /// when the setup changed.
    fn derive(&mut self, setup: &Arc<Setup>) -> Arc<KeepSet> {
        if let Some((s, keep)) = &self.derived
            && Arc::ptr_eq(s, setup)
        {
            return keep.clone();
        }
        let keep = Arc::new(KeepSet::of_rules(&setup.rules));
        let retention = retention::retention_ms(&setup.rules);
        self.apply_retention(retention);
        let m = &setup.loaded.config.monitoring;
        match self.store.lock() {
            Ok(mut s) => s.set_caps(m.max_series, m.max_health_series),
            Err(p) => p.into_inner().set_caps(m.max_series, m.max_health_series),
        }
        self.derived = Some((setup.clone(), keep.clone()));
        keep
    }

    fn apply_retention(&self, want: i64) {
        let mut store = match self.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if store.retention_ms() != want {
            info!(
                retention_s = want / 1000,
                "series retention from the conditions' ranges and `for`, plus the lookback"
            );
            store.set_retention(want);
        }
        self.metrics.watch.retention_seconds.set(want / 1000);
    }

    /// The round on `/metrics`, and a warning naming the checks that missed it.
    fn show_round(&self, r: &Round) {
        let w = &self.metrics.watch;
        w.round_seconds.observe(r.duration.as_secs_f64());
        w.round_last_ms.set(r.duration.as_millis() as i64);
        w.round_missed.set(r.missed.len() as i64);
        w.missed_total.inc_by(r.missed.len() as u64);
        w.concurrency.set(r.concurrency as i64);
        w.round_targets.set(r.checks as i64);
        if !r.missed.is_empty() {
            let first: Vec<&str> = r.missed.iter().take(10).map(String::as_str).collect();
            warn!(
                missed = r.missed.len(),
                checks = r.checks,
                concurrency = r.concurrency,
                first = ?first,
                "self-watch checks did not report within their round; their last samples stand"
            );
        }
    }

    /// The Alertmanager silence matching each of `raised` (firing ones only), read from
    /// `alertmanager.url` when it is configured and a firing alert is raised. When it
    /// cannot be read, none (fail-open, logged once per outage at warn).
    async fn silences(&mut self, setup: &Setup, raised: &[Alert]) -> Vec<Option<Silenced>> {
        let none = vec![None; raised.len()];
        let Some(am) = &setup.loaded.config.alertmanager else {
            return none;
        };
        if !raised.iter().any(|a| a.status == AlertStatus::Firing) {
            return none;
        }
        match silence::fetch(&self.client, am).await {
            Ok(active) => {
                if self.silences_failing {
                    info!(url = %am.silences_url(), "Alertmanager's silences can be read again");
                }
                self.silences_failing = false;
                self.metrics.alertmanager_up.set(1);
                self.metrics.silences_active.set(active.len() as i64);
                raised
                    .iter()
                    .map(|a| match a.status {
                        AlertStatus::Firing => {
                            silence::find(&active, &a.labels).map(|s| s.silenced.clone())
                        }
                        AlertStatus::Resolved => None,
                    })
                    .collect()
            }
            Err(e) => {
                self.metrics.alertmanager_up.set(0);
                if self.silences_failing {
                    debug!(error = %e, "cannot read Alertmanager's silences");
                } else {
                    warn!(error = %e, "cannot read Alertmanager's silences: the self-watch's alerts act as if none were silenced until it answers (pause a broker with kafka-healing pause)");
                }
                self.silences_failing = true;
                none
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_grows_with_the_checks_within_its_bounds() {
        let s = Duration::from_secs;
        // A few targets: all at once.
        assert_eq!(concurrency(3, s(5), s(10)), 3);
        assert_eq!(concurrency(0, s(5), s(10)), 1);
        // The floor: 100 checks fit in half of 30 s in 2 waves of 5 s, yet 64 go at once.
        assert_eq!(concurrency(100, s(5), s(30)), 64);
        // 300 brokers, jmx + socket, 5 s / 10 s: 600 checks ask 600, capped at 512.
        assert_eq!(concurrency(600, s(5), s(10)), 512);
        // 300 brokers at 2 s / 10 s: 240 (3 waves of 2 s even if all hang).
        assert_eq!(concurrency(600, s(2), s(10)), 240);
        // 1,000 brokers, 5 s / 30 s: 2,000 checks ask 667, capped at 512.
        assert_eq!(concurrency(2000, s(5), s(30)), 512);
    }
}
