//! The self-watch's rounds on `/metrics`: how long they take, how many targets missed
//! theirs, how many checks ran at once, and how much history the store keeps and costs.
//! No labels: a fixed number of series whatever the fleet's size.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Metrics of the self-watch's rounds.
#[derive(Debug)]
pub struct WatchMetrics {
    /// Duration of each round's observation (scrapes and probes), seconds.
    pub round_seconds: Histogram,
    /// Duration of the last round's observation, milliseconds.
    pub round_last_ms: Gauge,
    /// Targets (checks) whose result did not arrive within the last round.
    pub round_missed: Gauge,
    /// Targets (checks) that missed their round, since start.
    pub missed_total: Counter,
    /// Rounds that ended after the next one was due (it then started at once).
    pub overruns: Counter,
    /// Scrapes and probes allowed at once in the last round.
    pub concurrency: Gauge,
    /// Checks (scrapes and probes) in the last round.
    pub round_targets: Gauge,
    /// The store's retention, derived from the conditions, seconds.
    pub retention_seconds: Gauge,
    /// The store's estimated size, bytes.
    pub store_bytes: Gauge,
}

impl Default for WatchMetrics {
    fn default() -> Self {
        WatchMetrics {
            // 10 ms .. about 160 s.
            round_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            round_last_ms: Gauge::default(),
            round_missed: Gauge::default(),
            missed_total: Counter::default(),
            overruns: Counter::default(),
            concurrency: Gauge::default(),
            round_targets: Gauge::default(),
            retention_seconds: Gauge::default(),
            store_bytes: Gauge::default(),
        }
    }
}

impl WatchMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watch_round_duration_seconds",
            "Duration of the self-watch rounds' scrapes and probes",
            self.round_seconds.clone(),
        );
        registry.register(
            "watch_round_last_duration_milliseconds",
            "Duration of the last self-watch round's scrapes and probes",
            self.round_last_ms.clone(),
        );
        registry.register(
            "watch_round_missed_targets",
            "Checks whose result did not arrive within the last self-watch round",
            self.round_missed.clone(),
        );
        registry.register(
            "watch_missed_targets",
            "Checks that missed their self-watch round",
            self.missed_total.clone(),
        );
        registry.register(
            "watch_round_overruns",
            "Self-watch rounds that ended after the next was due",
            self.overruns.clone(),
        );
        registry.register(
            "watch_concurrency",
            "Scrapes and probes allowed at once in the last self-watch round",
            self.concurrency.clone(),
        );
        registry.register(
            "watch_round_targets",
            "Checks (scrapes and probes) in the last self-watch round",
            self.round_targets.clone(),
        );
        registry.register(
            "series_retention_seconds",
            "History kept for conditions, derived from their ranges and for",
            self.retention_seconds.clone(),
        );
        registry.register(
            "series_store_bytes",
            "Estimated size of the in-memory series store",
            self.store_bytes.clone(),
        );
    }
}
