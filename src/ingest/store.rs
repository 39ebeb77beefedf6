//! Recent samples kept in memory for rule conditions: a bounded window per series.
//!
//! Series are keyed by their whole label set (`__name__` included). Each keeps its
//! `(ts_ms, value)` samples, oldest first, within `retention_ms` of the newest sample
//! inserted anywhere (or of the `now_ms` given to [`SeriesStore::prune`]). At most
//! `max_series` exporter series exist at once: samples of new series beyond the cap are
//! dropped and counted ([`SeriesStore::dropped_series`], per target in
//! [`SeriesStore::dropped_by_target`]). A target's health series ([`is_health`]: `up`, the
//! synthesized scrape series, the probe and Kafka-protocol series) have their own reserved
//! budget ([`SeriesStore::with_reserved`]) that exporter series can never take.
//!
//! Staleness follows Prometheus: when a series that a target's previous scrape produced is
//! missing from its next scrape ([`SeriesStore::insert_batch`]), a *stale marker* (a NaN
//! with a reserved bit pattern, [`is_stale_marker`]) is appended at the scrape's timestamp.
//! An instant query whose latest sample is a stale marker has no value; range queries skip
//! markers. Independently, the PromQL evaluator looks back at most 5 minutes
//! ([`LOOKBACK_DELTA_MS`]) for an instant value.
//!
//! Memory ([`SeriesStore::bytes`], checked against a counting allocator): about 16 bytes
//! per retained sample (17 with vector slack) plus, per series, about 680 bytes of fixed
//! overhead (a 544-byte B-tree node holds up to 11 labels) and the text of its labels: a
//! typical JMX series with 4 labels and 15 minutes of 15 s samples takes about 1.8 KB.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::label::Matcher;

/// A series' labels, `__name__` included.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Prometheus' default lookback delta: an instant query sees a series' latest sample only
/// when it is at most this old.
pub const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// Bit pattern of Prometheus' stale marker (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The value stored to mark a series stale (a NaN distinct from an exporter's `NaN`).
pub fn stale_marker() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is a stale marker rather than a sample value.
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The self-watch's cap of exporter series (`monitoring.max_series` by default).
pub const MAX_SERIES: usize = 200_000;

/// Series of the reserved budget (`monitoring.max_health_series` by default): about 20
/// health series per broker for 2,500 brokers.
pub const RESERVED_SERIES: usize = 50_000;

/// Whether a series (named `name`) is a target's health: it counts against the reserved
/// budget, never against `max_series`.
pub fn is_health(name: &str) -> bool {
    matches!(
        name,
        "up" | "scrape_duration_seconds" | "scrape_samples_scraped"
    ) || name.starts_with("kafka_healing_probe_")
        || name.starts_with("kafka_healing_kafka_")
        || name.starts_with("kafka_healing_kube_")
}

fn labels_are_health(labels: &Labels) -> bool {
    labels.get("__name__").is_some_and(|n| is_health(n))
}

/// One series' retained samples.
#[derive(Debug, Default)]
struct Series {
    /// Whether it counts against the reserved budget.
    health: bool,
    /// `(ts_ms, value)`, strictly increasing timestamps.
    samples: Vec<(i64, f64)>,
}

impl Series {
    fn last_ts(&self) -> Option<i64> {
        self.samples.last().map(|s| s.0)
    }

    fn last_is_stale(&self) -> bool {
        self.samples.last().is_some_and(|s| is_stale_marker(s.1))
    }

    /// Drops samples older than `min_ts`.
    fn trim(&mut self, min_ts: i64) {
        let k = self.samples.partition_point(|s| s.0 < min_ts);
        if k > 0 {
            self.samples.drain(..k);
        }
    }
}

/// Outcome of one [`SeriesStore::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored (or replaced the sample at the same timestamp).
    Stored,
    /// A new series beyond `max_series`: dropped.
    OverCap,
    /// Older than the series' latest sample, or than the retention window: dropped.
    TooOld,
}

/// Recent samples of many series.
#[derive(Debug)]
pub struct SeriesStore {
    retention_ms: i64,
    max_series: usize,
    max_health: usize,
    health_len: usize,
    /// Per target, the new series refused because a cap was reached.
    dropped_by_target: HashMap<String, u64>,
    series: HashMap<Arc<Labels>, Series>,
    /// Per scrape target, the series its last scrape produced (for staleness).
    targets: HashMap<String, HashSet<Arc<Labels>>>,
    newest_ms: Option<i64>,
    last_sweep_ms: i64,
    dropped_series: u64,
    dropped_samples: u64,
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(15 * 60 * 1000, 100_000)
    }
}

impl SeriesStore {
    /// A store keeping `retention_ms` of samples for at most `max_series` series.
    pub fn new(retention_ms: i64, max_series: usize) -> SeriesStore {
        SeriesStore {
            retention_ms: retention_ms.max(0),
            max_series,
            max_health: RESERVED_SERIES,
            health_len: 0,
            dropped_by_target: HashMap::new(),
            series: HashMap::new(),
            targets: HashMap::new(),
            newest_ms: None,
            last_sweep_ms: i64::MIN,
            dropped_series: 0,
            dropped_samples: 0,
        }
    }

    /// The same store with `n` series reserved for health series ([`is_health`]).
    pub fn with_reserved(mut self, n: usize) -> SeriesStore {
        self.max_health = n;
        self
    }

    /// Changes the caps (a reload changed `monitoring.max_series` or
    /// `monitoring.max_health_series`). Series already held stay; new ones see the new caps.
    pub fn set_caps(&mut self, max_series: usize, max_health: usize) {
        self.max_series = max_series;
        self.max_health = max_health;
    }

    /// The retention window, in ms.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Changes the retention window (the conditions changed); the next prune applies it.
    pub fn set_retention(&mut self, retention_ms: i64) {
        self.retention_ms = retention_ms.max(0);
    }

    /// Adds one sample (`ts_ms` in milliseconds); older samples than the window drop out.
    pub fn insert(&mut self, labels: Labels, ts_ms: i64, value: f64) {
        self.insert_sample(labels, ts_ms, value);
    }

    /// Adds one sample and says whether it was kept.
    pub fn insert_sample(&mut self, labels: Labels, ts_ms: i64, value: f64) -> Inserted {
        let (outcome, _) = self.insert_inner(labels, ts_ms, value);
        self.advance(ts_ms);
        outcome
    }

    /// Stores one sample; returns the series' shared key when it was kept.
    fn insert_inner(
        &mut self,
        labels: Labels,
        ts_ms: i64,
        value: f64,
    ) -> (Inserted, Option<Arc<Labels>>) {
        let floor = self
            .newest_ms
            .map_or(i64::MIN, |n| n.saturating_sub(self.retention_ms));
        if ts_ms < floor {
            self.dropped_samples += 1;
            return (Inserted::TooOld, None);
        }
        let existing = self
            .series
            .get_key_value(&labels)
            .map(|(k, _)| Arc::clone(k));
        if let Some(key) = existing
            && let Some(series) = self.series.get_mut(&key)
        {
            match series.last_ts() {
                Some(last) if ts_ms < last => {
                    self.dropped_samples += 1;
                    return (Inserted::TooOld, None);
                }
                Some(last) if ts_ms == last => {
                    if let Some(s) = series.samples.last_mut() {
                        s.1 = value;
                    }
                }
                _ => series.samples.push((ts_ms, value)),
            }
            return (Inserted::Stored, Some(key));
        }
        let health = labels_are_health(&labels);
        let full = if health {
            self.health_len >= self.max_health
        } else {
            self.series.len() - self.health_len >= self.max_series
        };
        if full {
            self.dropped_series += 1;
            self.dropped_samples += 1;
            return (Inserted::OverCap, None);
        }
        self.health_len += usize::from(health);
        let key = Arc::new(labels);
        self.series.insert(
            Arc::clone(&key),
            Series {
                health,
                samples: vec![(ts_ms, value)],
            },
        );
        (Inserted::Stored, Some(key))
    }

    /// Adds one scrape of `target` (samples sharing `ts_ms`) and marks stale, at `ts_ms`,
    /// the series that `target`'s previous scrape produced and this one does not. Other
    /// targets' series are untouched.
    pub fn insert_batch<I>(&mut self, target: &str, ts_ms: i64, samples: I)
    where
        I: IntoIterator<Item = (Labels, f64)>,
    {
        let mut seen: HashSet<Arc<Labels>> = HashSet::new();
        for (labels, value) in samples {
            match self.insert_inner(labels, ts_ms, value) {
                (_, Some(key)) => {
                    seen.insert(key);
                }
                (Inserted::OverCap, None) => {
                    *self
                        .dropped_by_target
                        .entry(target.to_string())
                        .or_default() += 1;
                }
                _ => {}
            }
        }
        let previous = self.targets.insert(target.to_string(), seen);
        if let Some(previous) = previous {
            let gone: Vec<Arc<Labels>> = match self.targets.get(target) {
                Some(current) => previous.difference(current).cloned().collect(),
                None => previous.into_iter().collect(),
            };
            for key in gone {
                self.mark_stale(&key, ts_ms);
            }
        }
        self.advance(ts_ms);
    }

    /// Marks every series of `target`'s last scrape stale at `ts_ms` and forgets the target
    /// (it was removed from the configuration).
    pub fn forget_target(&mut self, target: &str, ts_ms: i64) {
        if let Some(previous) = self.targets.remove(target) {
            for key in previous {
                self.mark_stale(&key, ts_ms);
            }
        }
        self.advance(ts_ms);
    }

    fn mark_stale(&mut self, key: &Labels, ts_ms: i64) {
        if let Some(series) = self.series.get_mut(key)
            && !series.last_is_stale()
            && series.last_ts().is_none_or(|last| last < ts_ms)
        {
            series.samples.push((ts_ms, stale_marker()));
        }
    }

    /// Moves the newest timestamp forward and sweeps expired samples now and then.
    fn advance(&mut self, ts_ms: i64) {
        if self.newest_ms.is_none_or(|n| ts_ms > n) {
            self.newest_ms = Some(ts_ms);
        }
        let Some(newest) = self.newest_ms else {
            return;
        };
        let every = (self.retention_ms / 10).max(1000);
        if newest.saturating_sub(self.last_sweep_ms) >= every {
            self.prune(newest);
        }
    }

    /// Drops samples older than `now_ms - retention_ms`, and series left without samples.
    pub fn prune(&mut self, now_ms: i64) {
        let min_ts = now_ms.saturating_sub(self.retention_ms);
        let mut health_len = 0;
        self.series.retain(|_, s| {
            s.trim(min_ts);
            let keep = !s.samples.is_empty();
            health_len += usize::from(keep && s.health);
            keep
        });
        self.health_len = health_len;
        for keys in self.targets.values_mut() {
            keys.retain(|k| self.series.contains_key(k));
        }
        self.last_sweep_ms = now_ms;
    }

    /// The series every `matcher` accepts (a missing label is the empty string), each with
    /// its samples in `[start_ms, end_ms]` (stale markers included, see
    /// [`is_stale_marker`]); sorted by labels. Series without samples in range are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(&Labels, &[(i64, f64)])> {
        self.select_where(|l| matches_all(matchers, l), start_ms, end_ms)
    }

    /// Like [`SeriesStore::select`] with any predicate over the labels.
    pub fn select_where<F>(
        &self,
        pred: F,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(&Labels, &[(i64, f64)])>
    where
        F: Fn(&Labels) -> bool,
    {
        let mut out: Vec<(&Labels, &[(i64, f64)])> = self
            .series
            .iter()
            .filter(|(l, _)| pred(l))
            .filter_map(|(l, s)| {
                let lo = s.samples.partition_point(|x| x.0 < start_ms);
                let hi = s.samples.partition_point(|x| x.0 <= end_ms);
                (lo < hi).then(|| (l.as_ref(), &s.samples[lo..hi]))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of health series held (the reserved budget's use).
    pub fn health_len(&self) -> usize {
        self.health_len
    }

    /// The caps: (exporter series, reserved health series).
    pub fn caps(&self) -> (usize, usize) {
        (self.max_series, self.max_health)
    }

    /// Per scrape target (`scrape/NODE`, `probe/METHOD/NODE`, …), the new series refused
    /// since the store was made because a cap was reached.
    pub fn dropped_by_target(&self) -> &HashMap<String, u64> {
        &self.dropped_by_target
    }

    /// Number of samples held (stale markers included).
    pub fn samples(&self) -> usize {
        self.series.values().map(|s| s.samples.len()).sum()
    }

    /// New series refused because `max_series` was reached.
    pub fn dropped_series(&self) -> u64 {
        self.dropped_series
    }

    /// Samples refused: over the series cap, out of order, or older than the window.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// The newest sample timestamp inserted, if any.
    pub fn newest_ms(&self) -> Option<i64> {
        self.newest_ms
    }

    /// Approximate heap and inline bytes used (see the module documentation for the
    /// per-series and per-sample figures).
    pub fn bytes(&self) -> usize {
        let per_series_fixed = SERIES_OVERHEAD;
        let series: usize = self
            .series
            .iter()
            .map(|(l, s)| {
                per_series_fixed
                    + s.samples.capacity() * std::mem::size_of::<(i64, f64)>()
                    + labels_bytes(l)
            })
            .sum();
        let targets: usize = self
            .targets
            .iter()
            .map(|(t, keys)| 64 + t.capacity() + keys.capacity() * 10)
            .sum();
        std::mem::size_of::<SeriesStore>() + series + targets
    }
}

/// Fixed cost of one series besides its labels and samples: its hash-map slot (an `Arc`
/// key pointer, the sample vector's header, a control byte, load-factor slack) and the
/// `Arc` allocation (two counters and the `BTreeMap` header). Measured with a counting
/// allocator: 10 000 series of 4 labels (104 bytes of text) with one sample each take
/// 784 bytes per series; each further sample about 17 bytes (16 plus vector slack).
const SERIES_OVERHEAD: usize = 120;

/// Size of a `BTreeMap<String, String>` leaf node (11 slots of two 24-byte `String`
/// headers, a parent pointer and two `u16`s): a label set of up to 11 labels is one node.
const BTREE_LEAF: usize = 544;

/// Approximate bytes of a label set: its B-tree nodes and the text of names and values.
pub fn labels_bytes(labels: &Labels) -> usize {
    let n = labels.len();
    let nodes = if n <= 11 { 1 } else { n.div_ceil(8) + 1 };
    let text: usize = labels
        .iter()
        .map(|(k, v)| k.capacity() + v.capacity())
        .sum();
    nodes * BTREE_LEAF + text
}

/// Whether every matcher accepts `labels` (a missing label is the empty string).
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value)
    }

    #[test]
    fn retention_trims_to_newest_sample() {
        let mut s = SeriesStore::new(60_000, 10);
        let a = l(&[("__name__", "a")]);
        for t in 0..10 {
            s.insert(a.clone(), t * 15_000, t as f64);
        }
        // Newest is 135 s; samples at >= 75 s remain after the sweep at 135 s.
        s.prune(135_000);
        let got = s.select(&[eq("__name__", "a")], i64::MIN, i64::MAX);
        let ts: Vec<i64> = got[0].1.iter().map(|x| x.0).collect();
        assert_eq!(ts, vec![75_000, 90_000, 105_000, 120_000, 135_000]);
        // Too old for the window: refused.
        assert_eq!(s.insert_sample(a.clone(), 10_000, 1.0), Inserted::TooOld);
        // Out of order within the window: refused; same timestamp: replaced.
        assert_eq!(s.insert_sample(a.clone(), 130_000, 1.0), Inserted::TooOld);
        assert_eq!(s.insert_sample(a, 135_000, 42.0), Inserted::Stored);
        let got = s.select(&[eq("__name__", "a")], 135_000, 135_000);
        assert_eq!(got[0].1, &[(135_000, 42.0)]);
        assert_eq!(s.dropped_samples(), 2);
    }

    #[test]
    fn series_cap_drops_and_counts() {
        let mut s = SeriesStore::new(60_000, 2);
        for i in 0..5 {
            s.insert(l(&[("__name__", "m"), ("i", &i.to_string())]), 0, 1.0);
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.dropped_series(), 3);
        // Existing series still take samples.
        s.insert(l(&[("__name__", "m"), ("i", "0")]), 1000, 2.0);
        assert_eq!(s.samples(), 3);
    }

    #[test]
    fn expired_series_free_their_slot() {
        let mut s = SeriesStore::new(10_000, 1);
        s.insert(l(&[("__name__", "old")]), 0, 1.0);
        s.insert(l(&[("__name__", "second")]), 5_000, 1.0);
        assert_eq!(s.dropped_series(), 1);
        s.insert(l(&[("__name__", "old")]), 1_000, 1.0);
        s.prune(30_000);
        assert!(s.is_empty());
        s.insert(l(&[("__name__", "new")]), 30_000, 1.0);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn batch_marks_only_own_target_stale() {
        let mut s = SeriesStore::new(600_000, 100);
        let a1 = l(&[("__name__", "m"), ("broker", "a"), ("p", "1")]);
        let a2 = l(&[("__name__", "m"), ("broker", "a"), ("p", "2")]);
        let b1 = l(&[("__name__", "m"), ("broker", "b"), ("p", "1")]);
        s.insert_batch("a", 0, vec![(a1.clone(), 1.0), (a2.clone(), 2.0)]);
        s.insert_batch("b", 0, vec![(b1.clone(), 3.0)]);
        s.insert_batch("a", 15_000, vec![(a1.clone(), 1.0)]);
        let got = s.select(&[eq("__name__", "m")], 15_000, 15_000);
        // a1 fresh, a2 stale-marked; b1 has nothing at 15 s and is not marked.
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, &a1);
        assert_eq!(got[1].0, &a2);
        assert!(is_stale_marker(got[1].1[0].1));
        // Marking is idempotent: a later scrape without a2 adds no second marker.
        s.insert_batch("a", 30_000, vec![(a1, 1.0)]);
        let a2_samples = s.select(&[eq("p", "2")], 0, i64::MAX);
        assert_eq!(a2_samples[0].1.len(), 2);
        s.forget_target("b", 30_000);
        let b = s.select(&[eq("broker", "b")], 30_000, 30_000);
        assert!(is_stale_marker(b[0].1[0].1));
    }

    #[test]
    fn missing_label_matches_empty() {
        let mut s = SeriesStore::new(60_000, 10);
        s.insert(l(&[("__name__", "m")]), 0, 1.0);
        s.insert(l(&[("__name__", "m"), ("job", "kafka")]), 0, 1.0);
        assert_eq!(s.select(&[eq("job", "")], 0, 0).len(), 1);
        assert_eq!(s.select(&[eq("__name__", "m")], 0, 0).len(), 2);
    }

    #[test]
    fn stale_marker_is_not_an_exporter_nan() {
        assert!(is_stale_marker(stale_marker()));
        assert!(!is_stale_marker(f64::NAN));
        assert!(stale_marker().is_nan());
    }

    #[test]
    fn bytes_grow_with_samples() {
        let mut s = SeriesStore::new(3_600_000, 10);
        let empty = s.bytes();
        s.insert(l(&[("__name__", "m"), ("topic", "orders")]), 0, 1.0);
        let one = s.bytes();
        for t in 1..100 {
            s.insert(l(&[("__name__", "m"), ("topic", "orders")]), t * 1000, 1.0);
        }
        assert!(one > empty);
        assert!(s.bytes() >= one + 99 * 16);
    }

    #[test]
    fn health_series_have_a_budget_exporters_cannot_take() {
        let mut s = SeriesStore::new(60_000, 2).with_reserved(3);
        let batch = |node: &str| {
            let mut v: Vec<(Labels, f64)> = (0..5)
                .map(|i| {
                    (
                        l(&[
                            ("__name__", "jmx_x"),
                            ("node_id", node),
                            ("i", &i.to_string()),
                        ]),
                        1.0,
                    )
                })
                .collect();
            v.push((l(&[("__name__", "up"), ("node_id", node)]), 1.0));
            v
        };
        s.insert_batch("scrape/a", 0, batch("a"));
        s.insert_batch("scrape/b", 0, batch("b"));
        let probe = vec![(
            l(&[
                ("__name__", "kafka_healing_probe_success"),
                ("node_id", "a"),
            ]),
            1.0,
        )];
        s.insert_batch("probe/socket/a", 0, probe);
        // Two exporter series (the cap), and every health series in the reserved budget.
        assert_eq!((s.len(), s.health_len()), (5, 3));
        assert_eq!(s.select(&[eq("__name__", "up")], 0, 0).len(), 2);
        assert_eq!(s.dropped_by_target().get("scrape/a"), Some(&3));
        assert_eq!(s.dropped_by_target().get("scrape/b"), Some(&5));
        // The reserved budget has a cap too, counted by target.
        s.insert_batch(
            "scrape/c",
            0,
            vec![(l(&[("__name__", "up"), ("node_id", "c")]), 1.0)],
        );
        assert_eq!(s.dropped_by_target().get("scrape/c"), Some(&1));
        assert_eq!(s.dropped_series(), 9);
        // Expired health series free their reserved slots.
        s.prune(120_000);
        assert_eq!((s.len(), s.health_len()), (0, 0));
    }
}
