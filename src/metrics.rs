//! The service's own metrics, exposed on `/metrics` in Prometheus text format.

pub mod conns;
pub mod kafka;
pub mod series;
pub mod watch;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: one word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The word (`firing`, `resolved`, `ok`, `error`, …).
    pub status: String,
}

/// Labels of an execution outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Rule name.
    pub rule: String,
    /// Final status (`succeeded`, `failed`, `skipped`, …).
    pub outcome: String,
}

/// Label: step kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `exec`, `systemctl`, …
    pub kind: String,
}

/// Label: the precondition that refused a runbook.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// `broker_unreachable`, `restart_safe` or `not_starting`.
    pub precondition: String,
}

/// Labels of a watched target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Broker or ZooKeeper node.
    pub node_id: String,
    /// `jmx`, `socket`, `zookeeper`, `http`.
    pub method: String,
}

/// Label: why a request was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `unauthorized`, `too_large`, `bad_request`, `journal`, `shutting_down`.
    pub reason: String,
}

/// Label: a self-watch target (`kafka/ID`, `zookeeper/ID`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The target.
    pub target: String,
}

/// Label: why work was skipped ([`Skip::key`](crate::engine::why::Skip::key)).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// `paused`, `silenced`, `cooldown`, `circuit`, …
    pub cause: String,
}

/// Labels of a pause.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PauseLabels {
    /// `target` or `cluster`.
    pub scope: String,
    /// The broker (empty for the cluster's pause).
    pub target: String,
}

/// Every metric the service keeps.
pub struct Metrics {
    /// The registry they are all in.
    pub registry: Registry,
    /// Alerts journaled, by alert status.
    pub alerts_received: Family<StatusLabel, Counter>,
    /// Webhook requests refused, by reason.
    pub webhook_rejected: Family<ReasonLabel, Counter>,
    /// Executions that reached a terminal state, by rule and outcome.
    pub executions: Family<OutcomeLabels, Counter>,
    /// Alerts collapsed into an execution already in flight.
    pub duplicates: Counter,
    /// Webhook alerts whose `fingerprint` was not their labels' own (replaced by it).
    pub forged_fingerprints: Counter,
    /// Step durations, by kind.
    pub step_duration: Family<KindLabel, Histogram>,
    /// Time to judge a runbook's preconditions (Kafka requests and the exporter scrape).
    pub precondition_seconds: Histogram,
    /// Runbooks refused by a precondition, by the first that did not hold.
    pub refusals: Family<RefusalLabel, Counter>,
    /// Executions queued or running.
    pub in_flight: Gauge,
    /// Alerts journaled and handed to the engine, not yet decided.
    pub decision_backlog: Gauge,
    /// Time to commit a webhook's alerts to the journal.
    pub journal_write: Histogram,
    /// Open circuits.
    pub circuits_open: Gauge,
    /// Config reloads, by result.
    pub reloads: Family<StatusLabel, Counter>,
    /// Emails delivered (a message folded from several counts once).
    pub mails_sent: Counter,
    /// Failed delivery attempts.
    pub mail_failures: Counter,
    /// Messages waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Age of the oldest message waiting, in seconds.
    pub outbox_oldest_age: Gauge,
    /// Last self-watch result per target: 1 up, 0 down.
    pub target_up: Family<TargetLabels, Gauge>,
    /// Last self-watch duration per target, in milliseconds.
    pub target_duration_ms: Family<TargetLabels, Gauge>,
    /// Series kept in memory for conditions.
    pub series_in_memory: Gauge,
    /// New series refused because the store was full (since start).
    pub series_dropped: Gauge,
    /// High availability: 1 while etcd answers and the lease is held, else 0.
    pub coordination_up: Gauge,
    /// Times the instance's etcd lease was lost.
    pub coordination_lease_lost: Counter,
    /// Live instances registered in etcd.
    pub coordination_members: Gauge,
    /// Disruptive steps refused because the lock was no longer this instance's.
    pub coordination_fenced: Counter,
    /// Self-watch targets and whether this instance watches them (1) or a peer does (0).
    pub watch_assigned: Family<ShardLabel, Gauge>,
    /// Skipped executions journaled, by cause.
    pub skips: Family<CauseLabel, Counter>,
    /// Pauses in force.
    pub pauses_active: Gauge,
    /// When each pause in force ends (Unix seconds).
    pub pause_end: Family<PauseLabels, Gauge>,
    /// Active Alertmanager silences at the last fetch (self-watch).
    pub silences_active: Gauge,
    /// 1 when the last fetch of Alertmanager's silences worked, 0 when it failed.
    pub alertmanager_up: Gauge,
    /// The self-watch's `kafka` method: brokers, partitions, quorum.
    pub kafka: kafka::KafkaMetrics,
    /// The series store's fill (drops per target, the reserved budget).
    pub store: series::SeriesMetrics,
    /// The self-watch's rounds and store.
    pub watch: watch::WatchMetrics,
    /// The HTTP server's connection table.
    pub conns: conns::ConnMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `kafka_healing_` prefix.
    pub fn new() -> Metrics {
        Metrics::with_coordination(true)
    }

    /// Like [`Metrics::new`]; the `coordination_*` series only when `ha` (a `coordination:`
    /// section): without HA there is no lease, and a `coordination_up 0` would page whoever
    /// alerts on it as the manual advises.
    pub fn with_coordination(ha: bool) -> Metrics {
        let mut registry = Registry::with_prefix("kafka_healing");
        let alerts_received = Family::<StatusLabel, Counter>::default();
        let webhook_rejected = Family::<ReasonLabel, Counter>::default();
        let executions = Family::<OutcomeLabels, Counter>::default();
        let duplicates = Counter::default();
        let forged_fingerprints = Counter::default();
        let step_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 10))
        });
        let precondition_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let refusals = Family::<RefusalLabel, Counter>::default();
        let in_flight = Gauge::default();
        let decision_backlog = Gauge::default();
        let journal_write = Histogram::new(exponential_buckets(0.0002, 2.0, 14));
        let circuits_open = Gauge::default();
        let reloads = Family::<StatusLabel, Counter>::default();
        let mails_sent = Counter::default();
        let mail_failures = Counter::default();
        let outbox_depth = Gauge::default();
        let outbox_oldest_age = Gauge::default();
        let target_up = Family::<TargetLabels, Gauge>::default();
        let target_duration_ms = Family::<TargetLabels, Gauge>::default();
        let series_in_memory = Gauge::default();
        let series_dropped = Gauge::default();
        let coordination_up = Gauge::default();
        let coordination_lease_lost = Counter::default();
        let coordination_members = Gauge::default();
        let coordination_fenced = Counter::default();
        let watch_assigned = Family::<ShardLabel, Gauge>::default();
        let skips = Family::<CauseLabel, Counter>::default();
        let pauses_active = Gauge::default();
        let pause_end = Family::<PauseLabels, Gauge>::default();
        let silences_active = Gauge::default();
        let alertmanager_up = Gauge::default();
        let kafka = kafka::KafkaMetrics::default();
        kafka.register(&mut registry);
        let store = series::SeriesMetrics::default();
        store.register(&mut registry);
        let watch = watch::WatchMetrics::default();
        watch.register(&mut registry);
        let conns = conns::ConnMetrics::default();
        conns.register(&mut registry);
        registry.register(
            "skips",
            "Skipped executions journaled, by cause",
            skips.clone(),
        );
        registry.register(
            "pauses_active",
            "Pauses in force (kafka-healing pause)",
            pauses_active.clone(),
        );
        registry.register(
            "pause_end_timestamp_seconds",
            "When each pause in force ends, Unix seconds",
            pause_end.clone(),
        );
        registry.register(
            "alertmanager_silences_active",
            "Active Alertmanager silences at the self-watch's last fetch",
            silences_active.clone(),
        );
        registry.register(
            "alertmanager_up",
            "1 when the self-watch's last fetch of Alertmanager's silences worked, else 0",
            alertmanager_up.clone(),
        );
        if ha {
            registry.register(
                "coordination_up",
                "1 while etcd answers and this instance holds its lease (HA mode)",
                coordination_up.clone(),
            );
            registry.register(
                "coordination_lease_lost",
                "Times this instance's etcd lease was lost",
                coordination_lease_lost.clone(),
            );
            registry.register(
                "coordination_members",
                "Live kafka-healing instances registered in etcd",
                coordination_members.clone(),
            );
            registry.register(
                "coordination_fenced",
                "Disruptive steps refused because the lock was no longer held",
                coordination_fenced.clone(),
            );
        }
        registry.register(
            "watch_assigned",
            "Self-watch targets: 1 watched by this instance, 0 by a peer",
            watch_assigned.clone(),
        );
        registry.register(
            "series_dropped",
            "New series refused because the in-memory store was full",
            series_dropped.clone(),
        );
        registry.register(
            "target_up",
            "Last self-watch result per target (1 up, 0 down)",
            target_up.clone(),
        );
        registry.register(
            "target_check_duration_milliseconds",
            "Last self-watch duration per target",
            target_duration_ms.clone(),
        );
        registry.register(
            "series_in_memory",
            "Series kept in memory for conditions",
            series_in_memory.clone(),
        );
        registry.register(
            "alerts_received",
            "Alerts journaled, by alert status",
            alerts_received.clone(),
        );
        registry.register(
            "webhook_rejected",
            "Webhook requests refused, by reason",
            webhook_rejected.clone(),
        );
        registry.register(
            "executions",
            "Executions finished, by rule and outcome",
            executions.clone(),
        );
        registry.register(
            "duplicate_alerts",
            "Alerts collapsed into an execution in flight",
            duplicates.clone(),
        );
        registry.register(
            "forged_fingerprints",
            "Webhook alerts whose fingerprint was not their labels' own (replaced by it)",
            forged_fingerprints.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Step durations, by kind",
            step_duration.clone(),
        );
        registry.register(
            "precondition_seconds",
            "Time to judge a runbook's preconditions",
            precondition_seconds.clone(),
        );
        registry.register(
            "precondition_refusals",
            "Runbooks refused by a precondition, by the first that did not hold",
            refusals.clone(),
        );
        registry.register(
            "decision_backlog",
            "Alerts journaled and handed to the engine, not yet decided",
            decision_backlog.clone(),
        );
        registry.register(
            "executions_in_flight",
            "Executions queued or running",
            in_flight.clone(),
        );
        registry.register(
            "journal_write_seconds",
            "Time to commit a webhook's alerts",
            journal_write.clone(),
        );
        registry.register(
            "circuits_open",
            "Targets whose circuit is open",
            circuits_open.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        registry.register("mails_sent", "Emails delivered", mails_sent.clone());
        registry.register(
            "mail_failures",
            "Failed email delivery attempts",
            mail_failures.clone(),
        );
        registry.register(
            "outbox_depth",
            "Messages waiting in the outbox",
            outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox",
            outbox_oldest_age.clone(),
        );
        Metrics {
            registry,
            mails_sent,
            mail_failures,
            outbox_depth,
            outbox_oldest_age,
            target_up,
            target_duration_ms,
            series_in_memory,
            series_dropped,
            coordination_up,
            coordination_lease_lost,
            coordination_members,
            coordination_fenced,
            watch_assigned,
            skips,
            pauses_active,
            pause_end,
            silences_active,
            alertmanager_up,
            kafka,
            store,
            watch,
            conns,
            alerts_received,
            webhook_rejected,
            executions,
            duplicates,
            forged_fingerprints,
            step_duration,
            precondition_seconds,
            refusals,
            in_flight,
            decision_backlog,
            journal_write,
            circuits_open,
            reloads,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one occurrence in a family keyed by a single word.
    pub fn count(family: &Family<StatusLabel, Counter>, status: &str) {
        family
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
    }

    /// Counts a skipped execution of `cause`.
    pub fn skipped(&self, cause: &str) {
        self.skips
            .get_or_create(&CauseLabel {
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Shows the pauses in force.
    pub fn set_pauses(&self, pauses: &[crate::engine::pause::Pause]) {
        self.pauses_active.set(pauses.len() as i64);
        self.pause_end.clear();
        for p in pauses {
            let l = PauseLabels {
                scope: p.scope.kind().to_string(),
                target: p.scope.target().unwrap_or_default().to_string(),
            };
            self.pause_end.get_or_create(&l).set(p.until_ms / 1000);
        }
    }

    /// Counts a refused webhook request.
    pub fn rejected(&self, reason: &str) {
        self.webhook_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}
