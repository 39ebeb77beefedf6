//! The `monitoring` section's ranges.

use super::between;
use crate::config::model::Config;

/// Checks the scrape interval, timeout and series limits, and that a scrape ends before
/// the next one starts.
pub(super) fn monitoring(config: &Config, err: &mut impl FnMut(&str, String)) {
    let m = &config.monitoring;
    between(
        err,
        "monitoring.interval_seconds",
        m.interval_seconds,
        5,
        3600,
    );
    between(err, "monitoring.timeout_seconds", m.timeout_seconds, 1, 300);
    between(
        err,
        "monitoring.max_series",
        m.max_series,
        1_000,
        10_000_000,
    );
    between(
        err,
        "monitoring.max_health_series",
        m.max_health_series,
        100,
        1_000_000,
    );
    if m.timeout_seconds >= m.interval_seconds {
        err(
            "monitoring.timeout_seconds",
            format!(
                "monitoring timeout ({}s) must be less than the interval ({}s)",
                m.timeout_seconds, m.interval_seconds
            ),
        );
    }
}
