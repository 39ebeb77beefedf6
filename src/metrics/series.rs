//! The series store's fill: drops per target (a counter), the reserved budget's use, and
//! the targets whose series the last round dropped (for `/-/ready`).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: a store target (`scrape/NODE`, `probe/METHOD/NODE`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct StoreTargetLabel {
    /// The target whose series were dropped.
    pub target: String,
}

/// The series store's metrics.
#[derive(Debug, Default)]
pub struct SeriesMetrics {
    /// New series refused because a cap was reached, by target.
    pub dropped_by_target: Family<StoreTargetLabel, Counter>,
    /// Health series held in the reserved budget.
    pub health_in_memory: Gauge,
    /// Targets whose series the last round dropped (empty when nothing was).
    full: Mutex<Vec<String>>,
}

impl SeriesMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "series_dropped_by_target",
            "New series the in-memory store refused because a cap was reached, by target",
            self.dropped_by_target.clone(),
        );
        registry.register(
            "series_reserved_in_memory",
            "Health series (up, scrape, probe and Kafka-protocol series) held in the store's reserved budget",
            self.health_in_memory.clone(),
        );
    }

    /// Records the targets whose series the last round dropped.
    pub fn set_dropping(&self, targets: Vec<String>) {
        let mut g = self.full.lock().unwrap_or_else(|p| p.into_inner());
        *g = targets;
    }

    /// The targets whose series the last round dropped.
    pub fn dropping(&self) -> Vec<String> {
        self.full.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
