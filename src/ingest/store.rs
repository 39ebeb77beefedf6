//! Recent samples kept in memory for rule conditions: a bounded window per series.
//! (Implementation in progress: the signatures below are the agreed interface.)

use std::collections::BTreeMap;

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// Recent samples of many series.
#[derive(Debug, Default)]
pub struct SeriesStore {
    _private: (),
}

impl SeriesStore {
    /// A store keeping `retention_ms` of samples for at most `max_series` series.
    pub fn new(retention_ms: i64, max_series: usize) -> SeriesStore {
        let _ = (retention_ms, max_series);
        SeriesStore::default()
    }

    /// Adds one sample (`ts_ms` in milliseconds); older samples than the window drop out.
    pub fn insert(&mut self, labels: Labels, ts_ms: i64, value: f64) {
        let _ = (labels, ts_ms, value);
    }
}
