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
        let mut m = Metrics {
            registry: Registry::with_prefix("kafka_healing"),
            alerts_received: Default::default(),
            webhook_rejected: Default::default(),
            executions: Default::default(),
            duplicates: Default::default(),
            forged_fingerprints: Default::default(),
            step_duration: Family::<KindLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 4.0, 10))
            }),
            precondition_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            refusals: Default::default(),
            in_flight: Default::default(),
            decision_backlog: Default::default(),
            journal_write: Histogram::new(exponential_buckets(0.0002, 2.0, 14)),
            circuits_open: Default::default(),
            reloads: Default::default(),
            mails_sent: Default::default(),
            mail_failures: Default::default(),
            outbox_depth: Default::default(),
            outbox_oldest_age: Default::default(),
            target_up: Default::default(),
            target_duration_ms: Default::default(),
            series_in_memory: Default::default(),
            series_dropped: Default::default(),
            coordination_up: Default::default(),
            coordination_lease_lost: Default::default(),
            coordination_members: Default::default(),
            coordination_fenced: Default::default(),
            watch_assigned: Default::default(),
            skips: Default::default(),
            pauses_active: Default::default(),
            pause_end: Default::default(),
            silences_active: Default::default(),
            alertmanager_up: Default::default(),
            kafka: kafka::KafkaMetrics::default(),
            store: series::SeriesMetrics::default(),
            watch: watch::WatchMetrics::default(),
            conns: conns::ConnMetrics::default(),
        };
        // Registration order is exposition order: kept as it was.
        m.kafka.register(&mut m.registry);
        m.store.register(&mut m.registry);
        m.watch.register(&mut m.registry);
        m.conns.register(&mut m.registry);
        m.register_holds();
        if ha {
            m.register_coordination();
        }
        m.register_self_watch();
        m.register_intake();
        m.register_engine();
        m.register_mail();
        m
    }

    /// What holds work back: skips, pauses and Alertmanager silences.
    fn register_holds(&mut self) {
        let r = &mut self.registry;
        r.register(
            "skips",
            "Skipped executions journaled, by cause",
            self.skips.clone(),
        );
        r.register(
            "pauses_active",
            "Pauses in force (kafka-healing pause)",
            self.pauses_active.clone(),
        );
        r.register(
            "pause_end_timestamp_seconds",
            "When each pause in force ends, Unix seconds",
            self.pause_end.clone(),
        );
        r.register(
            "alertmanager_silences_active",
            "Active Alertmanager silences at the self-watch's last fetch",
            self.silences_active.clone(),
        );
        r.register(
            "alertmanager_up",
            "1 when the self-watch's last fetch of Alertmanager's silences worked, else 0",
            self.alertmanager_up.clone(),
        );
    }

    /// High availability: the etcd lease, the members, fencing and the watch shards.
    fn register_coordination(&mut self) {
        let r = &mut self.registry;
        r.register(
            "coordination_up",
            "1 while etcd answers and this instance holds its lease (HA mode)",
            self.coordination_up.clone(),
        );
        r.register(
            "coordination_lease_lost",
            "Times this instance's etcd lease was lost",
            self.coordination_lease_lost.clone(),
        );
        r.register(
            "coordination_members",
            "Live kafka-healing instances registered in etcd",
            self.coordination_members.clone(),
        );
        r.register(
            "coordination_fenced",
            "Disruptive steps refused because the lock was no longer held",
            self.coordination_fenced.clone(),
        );
        r.register(
            "watch_assigned",
            "Self-watch targets: 1 watched by this instance, 0 by a peer",
            self.watch_assigned.clone(),
        );
    }

    /// The self-watch: targets up and the series store.
    fn register_self_watch(&mut self) {
        let r = &mut self.registry;
        r.register(
            "series_dropped",
            "New series refused because the in-memory store was full",
            self.series_dropped.clone(),
        );
        r.register(
            "target_up",
            "Last self-watch result per target (1 up, 0 down)",
            self.target_up.clone(),
        );
        r.register(
            "target_check_duration_milliseconds",
            "Last self-watch duration per target",
            self.target_duration_ms.clone(),
        );
        r.register(
            "series_in_memory",
            "Series kept in memory for conditions",
            self.series_in_memory.clone(),
        );
    }

    /// The webhook and what became of its alerts.
    fn register_intake(&mut self) {
        let r = &mut self.registry;
        r.register(
            "alerts_received",
            "Alerts journaled, by alert status",
            self.alerts_received.clone(),
        );
        r.register(
            "webhook_rejected",
            "Webhook requests refused, by reason",
            self.webhook_rejected.clone(),
        );
        r.register(
            "executions",
            "Executions finished, by rule and outcome",
            self.executions.clone(),
        );
        r.register(
            "duplicate_alerts",
            "Alerts collapsed into an execution in flight",
            self.duplicates.clone(),
        );
        r.register(
            "forged_fingerprints",
            "Webhook alerts whose fingerprint was not their labels' own (replaced by it)",
            self.forged_fingerprints.clone(),
        );
    }

    /// Steps, preconditions, the engine's queue, the journal, circuits and reloads.
    fn register_engine(&mut self) {
        let r = &mut self.registry;
        r.register(
            "step_duration_seconds",
            "Step durations, by kind",
            self.step_duration.clone(),
        );
        r.register(
            "precondition_seconds",
            "Time to judge a runbook's preconditions",
            self.precondition_seconds.clone(),
        );
        r.register(
            "precondition_refusals",
            "Runbooks refused by a precondition, by the first that did not hold",
            self.refusals.clone(),
        );
        r.register(
            "decision_backlog",
            "Alerts journaled and handed to the engine, not yet decided",
            self.decision_backlog.clone(),
        );
        r.register(
            "executions_in_flight",
            "Executions queued or running",
            self.in_flight.clone(),
        );
        r.register(
            "journal_write_seconds",
            "Time to commit a webhook's alerts",
            self.journal_write.clone(),
        );
        r.register(
            "circuits_open",
            "Targets whose circuit is open",
            self.circuits_open.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, by result",
            self.reloads.clone(),
        );
    }

    /// Email delivery and the outbox.
    fn register_mail(&mut self) {
        let r = &mut self.registry;
        r.register("mails_sent", "Emails delivered", self.mails_sent.clone());
        r.register(
            "mail_failures",
            "Failed email delivery attempts",
            self.mail_failures.clone(),
        );
        r.register(
            "outbox_depth",
            "Messages waiting in the outbox",
            self.outbox_depth.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox",
            self.outbox_oldest_age.clone(),
        );
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
