//! PromQL conditions: every supported function and operator against hand-computed values,
//! staleness and lookback, the series cap, rejected constructs, and `kafka-healing eval`.

use kafka_healing::ingest::store::{Labels, SeriesStore};
use kafka_healing::promql::{PromqlError, Value, check, eval, format_labels};

use crate::common::{run, stderr, stdout};

const S: i64 = 1000;

/// Labels from `name` and pairs.
fn l(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut out: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !name.is_empty() {
        out.insert("__name__".into(), name.into());
    }
    out
}

/// A store with one series per `(labels, [(t_s, v)])`.
fn store(series: &[(Labels, &[(i64, f64)])]) -> SeriesStore {
    let mut s = SeriesStore::new(3_600 * S, 1000);
    for (labels, samples) in series {
        for &(t, v) in *samples {
            s.insert(labels.clone(), t * S, v);
        }
    }
    s
}

/// The vector result as `(formatted labels, value)`, sorted.
fn vector(expr: &str, st: &SeriesStore, at_s: i64) -> Vec<(String, f64)> {
    match eval(expr, st, at_s * S) {
        Ok(Value::Vector(v)) => v.iter().map(|(l, x)| (format_labels(l), *x)).collect(),
        other => panic!("{expr}: expected a vector, got {other:?}"),
    }
}

fn one(expr: &str, st: &SeriesStore, at_s: i64) -> f64 {
    let v = vector(expr, st, at_s);
    assert_eq!(v.len(), 1, "{expr}: {v:?}");
    v[0].1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn owned(v: &[(&str, f64)]) -> Vec<(String, f64)> {
    v.iter().map(|(s, x)| (s.to_string(), *x)).collect()
}

/// Counter 0, 10, 20, 30 at 0, 15, 30, 45 s.
fn counter() -> SeriesStore {
    store(&[(
        l("c_total", &[("job", "kafka")]),
        &[(0, 0.0), (15, 10.0), (30, 20.0), (45, 30.0)],
    )])
}

#[test]
fn rate_and_increase_of_a_counter_from_zero() {
    let st = counter();
    // At 45 s the window (−15 s, 45 s] holds all four samples: increase 30 over a sampled
    // 45 s. Start gap 15 s < 1.1·15 s, so it would extrapolate 15 s, but the zero point is
    // 45·(0/30) = 0 s before the first sample: no start extrapolation; end gap 0 s.
    // increase = 30·45/45 = 30; rate = 30/60 = 0.5 per second.
    assert_eq!(one("increase(c_total[1m])", &st, 45), 30.0);
    assert_eq!(one("rate(c_total[1m])", &st, 45), 0.5);
    // The name is dropped, other labels kept.
    assert_eq!(vector("rate(c_total[1m])", &st, 45)[0].0, "{job=\"kafka\"}");
}

#[test]
fn rate_extrapolates_to_both_edges() {
    let st = counter();
    // At 60 s the window (0 s, 60 s] excludes t=0 (left-open): samples 10, 20, 30 at 15,
    // 30, 45 s; raw increase 20 over 30 s, average spacing 15 s, threshold 16.5 s. Start
    // gap 15 s (zero point 30·10/20 = 15 s, not shorter), end gap 15 s: both extrapolated.
    // increase = 20·(30+15+15)/30 = 40; rate = 40/60.
    assert!(close(one("increase(c_total[1m])", &st, 60), 40.0));
    assert!(close(one("rate(c_total[1m])", &st, 60), 40.0 / 60.0));
    // delta: same arithmetic without the counter logic: 40.
    assert!(close(one("delta(c_total[1m])", &st, 60), 40.0));
}

#[test]
fn counter_reset_is_added_back() {
    // 0, 10, 20, 5: a reset between 20 and 5. increase = (5 − 0) + 20 = 25 over the
    // sampled 45 s; zero point at 0 s, end gap 0 s: 25·45/45 = 25; rate = 25/60.
    let st = store(&[(
        l("c_total", &[]),
        &[(0, 0.0), (15, 10.0), (30, 20.0), (45, 5.0)],
    )]);
    assert!(close(one("increase(c_total[1m])", &st, 45), 25.0));
    assert!(close(one("rate(c_total[1m])", &st, 45), 25.0 / 60.0));
    // delta ignores resets: 5 − 0 = 5, start gap 15 s < 16.5 s so extrapolated fully
    // (no zero-point logic): 5·60/45.
    assert!(close(one("delta(c_total[1m])", &st, 45), 5.0 * 60.0 / 45.0));
}

#[test]
fn extrapolation_stops_half_an_interval_from_far_edges() {
    // Two samples at 30 s and 45 s in a 100 s window (0, 100]: spacing 15 s, threshold
    // 16.5 s. Start gap 30 s and end gap 55 s are too far: extrapolate 7.5 s each way.
    let st = store(&[
        (l("g", &[]), &[(30, 8.0), (45, 5.0)]),
        (l("c_total", &[]), &[(30, 2.0), (45, 10.0)]),
    ]);
    // delta = (5 − 8)·(15 + 7.5 + 7.5)/15 = −6.
    assert!(close(one("delta(g[100s])", &st, 100), -6.0));
    // Counter 2 → 10: the zero point 15·(2/8) = 3.75 s is nearer than 7.5 s:
    // increase = 8·(15 + 3.75 + 7.5)/15 = 14; rate = 14/100.
    assert!(close(one("increase(c_total[100s])", &st, 100), 14.0));
    assert!(close(one("rate(c_total[100s])", &st, 100), 0.14));
    // One sample in range: no rate at all.
    assert!(vector("rate(c_total[10s])", &st, 45).is_empty());
}

#[test]
fn over_time_functions() {
    // 3, 1, 4, 1, 5 at 0..60 s; at 60 s the window (0, 60] holds 1, 4, 1, 5.
    let st = store(&[(
        l("g", &[("b", "1")]),
        &[(0, 3.0), (15, 1.0), (30, 4.0), (45, 1.0), (60, 5.0)],
    )]);
    assert_eq!(one("avg_over_time(g[1m])", &st, 60), 11.0 / 4.0);
    assert_eq!(one("min_over_time(g[1m])", &st, 60), 1.0);
    assert_eq!(one("max_over_time(g[1m])", &st, 60), 5.0);
    assert_eq!(one("sum_over_time(g[1m])", &st, 60), 11.0);
    assert_eq!(one("count_over_time(g[1m])", &st, 60), 4.0);
    assert_eq!(one("last_over_time(g[1m])", &st, 60), 5.0);
    // last_over_time keeps the name; the others drop it.
    assert_eq!(vector("last_over_time(g[1m])", &st, 60)[0].0, "g{b=\"1\"}");
    assert_eq!(vector("max_over_time(g[1m])", &st, 60)[0].0, "{b=\"1\"}");
    // A 61 s window also holds t=0: 3+1+4+1+5 = 14 over 5.
    assert_eq!(one("avg_over_time(g[61s])", &st, 60), 14.0 / 5.0);
    // Nothing in range: no result.
    assert!(vector("sum_over_time(g[1m])", &st, 200).is_empty());
}

fn partitions() -> SeriesStore {
    store(&[
        (l("m", &[("broker", "1"), ("topic", "a")]), &[(0, 1.0)]),
        (l("m", &[("broker", "1"), ("topic", "b")]), &[(0, 2.0)]),
        (l("m", &[("broker", "2"), ("topic", "a")]), &[(0, 4.0)]),
    ])
}

#[test]
fn aggregations_by_and_without() {
    let st = partitions();
    let by_broker = owned(&[("{broker=\"1\"}", 3.0), ("{broker=\"2\"}", 4.0)]);
    assert_eq!(vector("sum by (broker) (m)", &st, 0), by_broker);
    assert_eq!(vector("sum without (topic) (m)", &st, 0), by_broker);
    assert_eq!(vector("sum(m) by (broker)", &st, 0), by_broker);
    // avg by topic: a = (1+4)/2 = 2.5, b = 2.
    assert_eq!(
        vector("avg by (topic) (m)", &st, 0),
        owned(&[("{topic=\"a\"}", 2.5), ("{topic=\"b\"}", 2.0)])
    );
    assert_eq!(vector("sum(m)", &st, 0), owned(&[("{}", 7.0)]));
    assert_eq!(vector("min(m)", &st, 0), owned(&[("{}", 1.0)]));
    assert_eq!(vector("max(m)", &st, 0), owned(&[("{}", 4.0)]));
    assert_eq!(vector("count(m)", &st, 0), owned(&[("{}", 3.0)]));
    assert_eq!(
        vector("count by (broker) (m)", &st, 0),
        owned(&[("{broker=\"1\"}", 2.0), ("{broker=\"2\"}", 1.0)])
    );
    // `without` drops the name even when the other labels all stay.
    assert_eq!(vector("max without () (m)", &st, 0).len(), 3);
    assert_eq!(
        vector("max without () (m)", &st, 0)[0].0,
        "{broker=\"1\", topic=\"a\"}"
    );
    // Aggregating nothing yields nothing.
    assert!(vector("sum(nothing)", &st, 0).is_empty());
}

fn sets() -> SeriesStore {
    store(&[
        (l("a", &[("x", "1"), ("y", "p")]), &[(0, 1.0)]),
        (l("a", &[("x", "2"), ("y", "p")]), &[(0, 2.0)]),
        (l("b", &[("x", "2"), ("y", "p")]), &[(0, 20.0)]),
        (l("b", &[("x", "3"), ("y", "q")]), &[(0, 30.0)]),
    ])
}

#[test]
fn and_or_unless_match_on_labels_without_name() {
    let st = sets();
    assert_eq!(
        vector("a and b", &st, 0),
        owned(&[("a{x=\"2\", y=\"p\"}", 2.0)])
    );
    assert_eq!(
        vector("a unless b", &st, 0),
        owned(&[("a{x=\"1\", y=\"p\"}", 1.0)])
    );
    assert_eq!(
        vector("a or b", &st, 0),
        owned(&[
            ("a{x=\"1\", y=\"p\"}", 1.0),
            ("a{x=\"2\", y=\"p\"}", 2.0),
            ("b{x=\"3\", y=\"q\"}", 30.0),
        ])
    );
    // on(y): both a series share y="p" with b{x="2"}.
    assert_eq!(vector("a and on (y) b", &st, 0).len(), 2);
    // ignoring(x): the same.
    assert_eq!(vector("a unless ignoring (x) b", &st, 0).len(), 0);
    // A condition gated on another: only brokers that are up.
    assert!(vector("a and on (x) (b > 100)", &st, 0).is_empty());
}

#[test]
fn comparisons_filter_or_return_bool() {
    let st = partitions();
    // Filtering keeps the name and the value.
    assert_eq!(
        vector("m > 1", &st, 0),
        owned(&[
            ("m{broker=\"1\", topic=\"b\"}", 2.0),
            ("m{broker=\"2\", topic=\"a\"}", 4.0)
        ])
    );
    // Scalar on the left: the vector's value is kept.
    assert_eq!(
        vector("3 < m", &st, 0),
        owned(&[("m{broker=\"2\", topic=\"a\"}", 4.0)])
    );
    // bool: every series, 0 or 1, without the name.
    assert_eq!(
        vector("m >= bool 2", &st, 0),
        owned(&[
            ("{broker=\"1\", topic=\"a\"}", 0.0),
            ("{broker=\"1\", topic=\"b\"}", 1.0),
            ("{broker=\"2\", topic=\"a\"}", 1.0)
        ])
    );
    for (expr, n) in [("m == 2", 1), ("m != 2", 2), ("m < 2", 1), ("m <= 2", 2)] {
        assert_eq!(vector(expr, &st, 0).len(), n, "{expr}");
    }
    // Between scalars, bool is required and gives a scalar.
    assert_eq!(eval("1 < bool 2", &st, 0), Ok(Value::Scalar(1.0)));
    assert_eq!(eval("2 == bool 3", &st, 0), Ok(Value::Scalar(0.0)));
    // Vector to vector: one-to-one on labels without the name; lhs value, lhs name.
    let st = sets();
    assert_eq!(
        vector("b > a", &st, 0),
        owned(&[("b{x=\"2\", y=\"p\"}", 20.0)])
    );
    assert_eq!(
        vector("b < bool a", &st, 0),
        owned(&[("{x=\"2\", y=\"p\"}", 0.0)])
    );
}

#[test]
fn arithmetic() {
    let st = sets();
    // Vector and scalar: every series, name dropped. 2·3+1 = 7 (precedence).
    assert_eq!(
        vector("a * 3 + 1", &st, 0)[1],
        ("{x=\"2\", y=\"p\"}".into(), 7.0)
    );
    assert_eq!(vector("10 - a", &st, 0)[0].1, 9.0);
    assert_eq!(vector("a / 0", &st, 0)[0].1, f64::INFINITY);
    assert_eq!(vector("a % 2", &st, 0)[0].1, 1.0);
    assert_eq!(vector("-7 % a", &st, 0)[1].1, -1.0); // Go's math.Mod: sign of the dividend
    assert_eq!(vector("a ^ 3", &st, 0)[1].1, 8.0);
    assert_eq!(vector("-a", &st, 0)[1], ("{x=\"2\", y=\"p\"}".into(), -2.0));
    // Vector and vector: only identical label sets (name aside) match: 20/2 = 10.
    assert_eq!(
        vector("b / a", &st, 0),
        owned(&[("{x=\"2\", y=\"p\"}", 10.0)])
    );
    assert_eq!(
        vector("a + b", &st, 0),
        owned(&[("{x=\"2\", y=\"p\"}", 22.0)])
    );
    // on(y) keeps only the matched labels; a has two series with y="p": ambiguous.
    assert_eq!(
        vector("b - on (x) a", &st, 0),
        owned(&[("{x=\"2\"}", 18.0)])
    );
    let err = eval("a - on (y) b", &st, 0);
    assert!(
        matches!(&err, Err(PromqlError::Eval(m)) if m.contains("many-to-one matching must be explicit")),
        "{err:?}"
    );
    let err = eval("b - on (y) a", &st, 0);
    assert!(
        matches!(&err, Err(PromqlError::Eval(m)) if m.contains("duplicate series for the match group {y=\"p\"}")),
        "{err:?}"
    );
    // Scalars only.
    assert_eq!(eval("2 ^ 10 - 24", &st, 0), Ok(Value::Scalar(1000.0)));
    assert_eq!(eval("(1 + 2) * 3", &st, 0), Ok(Value::Scalar(9.0)));
}

#[test]
fn selectors_with_all_matcher_types() {
    let st = store(&[
        (
            l("up", &[("job", "kafka"), ("instance", "b1")]),
            &[(0, 1.0)],
        ),
        (
            l("up", &[("job", "kafka"), ("instance", "b2")]),
            &[(0, 0.0)],
        ),
        (
            l("up", &[("job", "zookeeper"), ("instance", "z1")]),
            &[(0, 1.0)],
        ),
        (l("up", &[("instance", "nojob")]), &[(0, 1.0)]),
        (l("kafka_log_size", &[("topic", "t")]), &[(0, 9.0)]),
    ]);
    assert_eq!(vector("up{job=\"kafka\"}", &st, 0).len(), 2);
    assert_eq!(vector("up{job!=\"kafka\"}", &st, 0).len(), 2);
    assert_eq!(vector("up{job=~\"kaf.*\"}", &st, 0).len(), 2);
    // Anchored: "kaf" does not match "kafka".
    assert_eq!(vector("up{job=~\"kaf\"}", &st, 0).len(), 0);
    assert_eq!(vector("up{job!~\"kafka|zookeeper\"}", &st, 0).len(), 1);
    // A missing label is "".
    assert_eq!(
        vector("up{job=\"\"}", &st, 0),
        owned(&[("up{instance=\"nojob\"}", 1.0)])
    );
    assert_eq!(vector("{__name__=~\"kafka_.*\"}", &st, 0).len(), 1);
    assert_eq!(
        vector("{__name__=\"up\", instance=\"b2\"}", &st, 0)[0].1,
        0.0
    );
    assert_eq!(vector("abs(-3 * up{instance=\"b1\"})", &st, 0)[0].1, 3.0);
}

#[test]
fn absent_on_missing_and_present_series() {
    let st = store(&[(l("up", &[("job", "kafka")]), &[(0, 1.0)])]);
    assert!(vector("absent(up{job=\"kafka\"})", &st, 0).is_empty());
    // Labels from the equality matchers only (not __name__, not regex).
    assert_eq!(
        vector(
            "absent(kafka_controller_x{job=\"kafka\", instance=~\"b.*\"})",
            &st,
            0
        ),
        owned(&[("{job=\"kafka\"}", 1.0)])
    );
    // A label named twice is left out, as Prometheus does.
    assert_eq!(
        vector("absent(nope{job=\"a\", job=\"b\", env=\"prod\"})", &st, 0),
        owned(&[("{env=\"prod\"}", 1.0)])
    );
    // Not a selector: no labels.
    assert_eq!(vector("absent(sum(nope))", &st, 0), owned(&[("{}", 1.0)]));
    // Present but too old (beyond the lookback): absent.
    assert_eq!(vector("absent(up)", &st, 400), owned(&[("{}", 1.0)]));
}

#[test]
fn series_missing_from_the_last_scrape_vanish() {
    let mut st = SeriesStore::new(3_600 * S, 1000);
    let p0 = l("kafka_log_size", &[("partition", "0")]);
    let p1 = l("kafka_log_size", &[("partition", "1")]);
    let other = l("kafka_log_size", &[("partition", "9"), ("broker", "2")]);
    st.insert_batch("broker-1", 0, vec![(p0.clone(), 10.0), (p1.clone(), 11.0)]);
    st.insert_batch("broker-2", 0, vec![(other.clone(), 99.0)]);
    st.insert_batch("broker-1", 15 * S, vec![(p0.clone(), 12.0)]);
    // At 15 s partition 1 is stale; broker-2's series, not re-scraped yet, is still seen.
    assert_eq!(
        vector("kafka_log_size", &st, 15),
        owned(&[
            ("kafka_log_size{broker=\"2\", partition=\"9\"}", 99.0),
            ("kafka_log_size{partition=\"0\"}", 12.0),
        ])
    );
    // Before the marker it was there.
    assert_eq!(vector("kafka_log_size", &st, 14).len(), 3);
    // Range functions ignore the marker: partition 1's last value is still 11.
    assert_eq!(
        vector(
            "last_over_time(kafka_log_size{partition=\"1\"}[1m])",
            &st,
            15
        ),
        owned(&[("kafka_log_size{partition=\"1\"}", 11.0)])
    );
    // It comes back when scraped again.
    st.insert_batch("broker-1", 30 * S, vec![(p0, 13.0), (p1, 14.0)]);
    assert_eq!(vector("kafka_log_size{broker=\"\"}", &st, 30).len(), 2);
    // A failed scrape (only `up`) makes all of the target's series vanish.
    st.insert_batch(
        "broker-1",
        45 * S,
        vec![(l("up", &[("instance", "b1")]), 0.0)],
    );
    assert!(vector("kafka_log_size{broker=\"\"}", &st, 45).is_empty());
}

#[test]
fn instant_selectors_look_back_five_minutes() {
    let st = store(&[(l("g", &[]), &[(0, 1.0), (10, 2.0)])]);
    // Before the first sample: nothing.
    assert!(vector("g", &st, -1).is_empty());
    assert_eq!(one("g", &st, 5), 1.0);
    assert_eq!(one("g", &st, 10), 2.0);
    // The latest sample is seen until it is 5 minutes old: (t − 5m, t] is left-open.
    assert_eq!(one("g", &st, 309), 2.0);
    assert!(vector("g", &st, 310).is_empty());
    // Functions over selectors see the same.
    assert!(vector("abs(g)", &st, 310).is_empty());
}

#[test]
fn series_cap_drops_new_series() {
    let mut st = SeriesStore::new(3_600 * S, 3);
    for i in 0..5 {
        st.insert(l("m", &[("i", &i.to_string())]), 0, 1.0);
    }
    assert_eq!(st.len(), 3);
    assert_eq!(st.dropped_series(), 2);
    assert_eq!(one("count(m)", &st, 0), 3.0);
    assert!(st.bytes() > 3 * 16);
}

#[test]
fn unsupported_constructs_are_named() {
    let cases = [
        (
            "histogram_quantile(0.9, rate(x_bucket[5m]))",
            "unsupported function `histogram_quantile`",
        ),
        ("irate(x[5m])", "unsupported function `irate`"),
        (
            "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
            "unsupported function `label_replace`",
        ),
        ("time()", "unsupported function `time`"),
        (
            "max_over_time(rate(x[1m])[5m:1m])",
            "unsupported: subqueries",
        ),
        ("rate(x[5m:])", "unsupported: subqueries"),
        ("x offset 5m", "unsupported: `offset`"),
        ("rate(x[5m] offset 1m)", "unsupported: `offset`"),
        ("x @ 1700000000", "unsupported: `@` modifier"),
        (
            "a * on (job) group_left (team) b",
            "unsupported: vector matching with `group_left`",
        ),
        (
            "a * on (job) group_right b",
            "unsupported: vector matching with `group_right`",
        ),
        ("topk(3, x)", "unsupported aggregation `topk`"),
        ("quantile(0.9, x)", "unsupported aggregation `quantile`"),
        (
            "count_values(\"v\", x)",
            "unsupported aggregation `count_values`",
        ),
        ("stddev(x)", "unsupported aggregation `stddev`"),
        ("group(x)", "unsupported aggregation `group`"),
        ("x[5m]", "unsupported: range selector outside a function"),
        ("a atan2 b", "unsupported operator `atan2`"),
        ("\"text\"", "unsupported: string literals"),
        ("rate(sum(x))", "invalid PromQL"),
    ];
    for (expr, want) in cases {
        let err = check(expr).expect_err(expr).to_string();
        assert!(err.starts_with(want), "{expr}: got {err:?}, want {want:?}");
        let err = eval(expr, &SeriesStore::new(1, 1), 0)
            .expect_err(expr)
            .to_string();
        assert!(err.starts_with(want), "{expr}: eval got {err:?}");
    }
    assert!(matches!(check("sum("), Err(PromqlError::Parse(_))));
    for ok in [
        "up",
        "sum by (job) (rate(x_total[5m])) > 0",
        "a + ignoring (x) b",
        "a and on (x) b",
        "-x",
        "absent(up{job=\"kafka\"})",
    ] {
        assert_eq!(check(ok), Ok(()), "{ok}");
    }
}

/// A three-broker cluster at t = 100 s, the byte counter scraped every 15 s before that.
fn cluster() -> SeriesStore {
    let mut st = SeriesStore::new(3_600 * S, 1000);
    for (b, up, urp, ctl) in [
        ("1", 1.0, 0.0, 1.0),
        ("2", 0.0, 0.0, 0.0),
        ("3", 1.0, 4.0, 1.0),
    ] {
        let i = format!("broker-{b}:7071");
        let i = i.as_str();
        st.insert(l("up", &[("job", "kafka"), ("instance", i)]), 100 * S, up);
        let urp_l = l(
            "kafka_server_replicamanager_underreplicatedpartitions",
            &[("instance", i)],
        );
        st.insert(urp_l, 100 * S, urp);
        let ctl_l = l(
            "kafka_controller_kafkacontroller_activecontrollercount",
            &[("instance", i)],
        );
        st.insert(ctl_l, 100 * S, ctl);
    }
    // broker-1 takes 2 MB/s (30 MB per 15 s), broker-3 0.1 MB/s.
    for k in 0..5 {
        let t = (40 + 15 * k) * S;
        for (i, per_scrape) in [("broker-1:7071", 30e6), ("broker-3:7071", 1.5e6)] {
            let c = l(
                "kafka_server_brokertopicmetrics_bytesinpersec_total",
                &[("instance", i)],
            );
            st.insert(c, t, 1e9 + per_scrape * k as f64);
        }
    }
    st
}

#[test]
fn kafka_conditions() {
    let st = cluster();
    assert_eq!(
        vector(
            "kafka_server_replicamanager_underreplicatedpartitions > 0",
            &st,
            100
        ),
        owned(&[(
            "kafka_server_replicamanager_underreplicatedpartitions{instance=\"broker-3:7071\"}",
            4.0
        )])
    );
    // 1 + 0 + 1 = 2 controllers: split brain.
    assert_eq!(
        vector(
            "sum(kafka_controller_kafkacontroller_activecontrollercount) != 1",
            &st,
            100
        ),
        owned(&[("{}", 2.0)])
    );
    assert_eq!(
        vector("up{job=\"kafka\"} == 0", &st, 100),
        owned(&[("up{instance=\"broker-2:7071\", job=\"kafka\"}", 0.0)])
    );
    // Samples at 55, 70, 85, 100 s in (40, 100]; broker-1 rises 90 MB over 45 s. Start
    // gap 15 s < 16.5 s (the zero point is far away): extrapolated over 60 s:
    // 90e6·60/45 = 120e6 per minute → rate 2e6/s > 1e6. broker-3: 0.1e6/s.
    let fast = vector(
        "rate(kafka_server_brokertopicmetrics_bytesinpersec_total[1m]) > 1e6",
        &st,
        100,
    );
    assert_eq!(fast.len(), 1, "{fast:?}");
    assert_eq!(fast[0].0, "{instance=\"broker-1:7071\"}");
    assert!(close(fast[0].1, 2e6), "{fast:?}");
    assert!(eval("up{job=\"kafka\"} == 0", &st, 100 * S).is_ok_and(|v| v.fires()));
    assert!(eval("up{job=\"kafka\"} > 1", &st, 100 * S).is_ok_and(|v| !v.fires()));
}

#[test]
fn cli_eval_prints_series_and_json() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/promql/");
    let kafka = format!("{data}kafka.prom");
    let o = run(&[
        "eval",
        "--metrics",
        &kafka,
        "--at-ms",
        "1700000000000",
        "up{job=\"kafka\"} == 0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "up{instance=\"broker-2:7071\", job=\"kafka\"} 0\n"
    );

    let o = run(&[
        "eval",
        "--metrics",
        &kafka,
        "sum(kafka_controller_kafkacontroller_activecontrollercount) != 1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["resultType"], "vector");
    assert_eq!(v["result"][0]["value"], "2");

    let o = run(&["eval", "--metrics", &kafka, "count(up) * 2 > bool 7"]);
    assert_eq!(stdout(&o), "{} 1\n");
    let o = run(&["eval", "--metrics", &kafka, "2 > bool 1"]);
    assert_eq!(stdout(&o), "scalar: 1\n");

    // Timestamps in the file: evaluated at the newest; 90 MB over 45 s from zero (the zero
    // point stops start extrapolation): increase 90e6, rate 90e6/60 = 1.5e6.
    let bytes = format!("{data}bytes_in.prom");
    let o = run(&[
        "eval",
        "--metrics",
        &bytes,
        "rate(kafka_server_brokertopicmetrics_bytesinpersec_total[1m]) > 1e6",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{instance=\"broker-1:7071\"} 1500000\n");

    let o = run(&["eval", "--metrics", &kafka, "histogram_quantile(0.9, x)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unsupported function `histogram_quantile`"),
        "{}",
        stderr(&o)
    );
    let o = run(&["eval", "--metrics", &kafka, "sum("]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid PromQL"), "{}", stderr(&o));
    let o = run(&["eval", "--metrics", "/nonexistent/x.prom", "up"]);
    assert_eq!(o.status.code(), Some(2));
}
