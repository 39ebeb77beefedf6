//! The HTTP server's connections on `/metrics`: how many are open, and how many a full
//! table (`server.max_connections`) refused or displaced. A flood shows here, not only in
//! the log (which says it at powers of two).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Metrics of the server's connection table (cheap to clone: shared handles).
#[derive(Debug, Clone, Default)]
pub struct ConnMetrics {
    /// Connections open now (each holds a slot).
    pub open: Gauge,
    /// New connections closed at once because every slot was held by one that had sent
    /// an authenticated request.
    pub refused: Counter,
    /// Connections closed to make room because they had sent no authenticated request.
    pub displaced: Counter,
}

impl ConnMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            self.open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "New HTTP connections closed at once: server.max_connections held by authenticated ones",
            self.refused.clone(),
        );
        registry.register(
            "http_connections_displaced",
            "HTTP connections closed to make room: they had sent no authenticated request",
            self.displaced.clone(),
        );
    }
}
