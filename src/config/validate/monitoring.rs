//! The `monitoring` section's ranges.

use crate::config::model::Config;

/// Checks the scrape interval, timeout and series limits, and that a scrape ends before
/// the next one starts.
pub(super) fn monitoring(config: &Config, err: &mut impl FnMut(&str, String)) {
    let m = &config.monitoring;
    if !(5..=3600).contains(&m.interval_seconds) {
        err(
            "monitoring.interval_seconds",
            format!("must be between 5 and 3600, got {}", m.interval_seconds),
        );
    }
    if !(1..=300).contains(&m.timeout_seconds) {
        err(
            "monitoring.timeout_seconds",
            format!("must be between 1 and 300, got {}", m.timeout_seconds),
        );
    }
    if !(1_000..=10_000_000).contains(&m.max_series) {
        err(
            "monitoring.max_series",
            format!("must be between 1000 and 10000000, got {}", m.max_series),
        );
    }
    if !(100..=1_000_000).contains(&m.max_health_series) {
        err(
            "monitoring.max_health_series",
            format!(
                "must be between 100 and 1000000, got {}",
                m.max_health_series
            ),
        );
    }
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
