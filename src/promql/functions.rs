//! Functions: `rate`, `increase`, `delta`, the `*_over_time` family, `abs`, `absent`.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, MatrixSelector};

use super::labels::{NAME, drop_name};
use super::{PromqlError, Value};
use crate::ingest::store::Labels;

/// A range function over one series' samples in its window.
type RangeFn = fn(&[(i64, f64)], &Window) -> Option<f64>;

/// One series' float samples in a range, stale markers removed.
pub(super) type RangeSeries<'a> = (&'a Labels, Vec<(i64, f64)>);

/// A range selector's duration in milliseconds.
pub(super) fn range_ms(ms: &MatrixSelector) -> i64 {
    i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `name` is a function of an instant vector (the others take a range selector).
pub(super) fn is_instant(name: &str) -> bool {
    matches!(name, "abs" | "absent")
}

/// An instant-vector function: `name` applied to `input`, the evaluated `arg`.
pub(super) fn instant(name: &str, arg: &Expr, input: Vec<(Labels, f64)>) -> Value {
    match name {
        "absent" => Value::Vector(if input.is_empty() {
            vec![(absent_labels(arg), 1.0)]
        } else {
            Vec::new()
        }),
        _ => Value::Vector(
            input
                .into_iter()
                .map(|(l, v)| (drop_name(l), v.abs()))
                .collect(),
        ),
    }
}

/// A range function: `name` over `series`, the samples `ms` selects at `at_ms`.
pub(super) fn range(
    name: &str,
    ms: &MatrixSelector,
    at_ms: i64,
    series: Vec<RangeSeries<'_>>,
) -> Result<Value, PromqlError> {
    let f: RangeFn = match name {
        "rate" => |s, w| extrapolated_rate(s, w, true, true),
        "increase" => |s, w| extrapolated_rate(s, w, true, false),
        "delta" => |s, w| extrapolated_rate(s, w, false, false),
        "avg_over_time" => |s, _| Some(s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64),
        "sum_over_time" => |s, _| Some(s.iter().map(|x| x.1).sum()),
        "count_over_time" => |s, _| Some(s.len() as f64),
        "last_over_time" => |s, _| s.last().map(|x| x.1),
        "min_over_time" => |s, _| {
            // As Prometheus: NaN only when every sample is NaN.
            s.iter()
                .map(|x| x.1)
                .reduce(|m, v| if v < m || m.is_nan() { v } else { m })
        },
        "max_over_time" => |s, _| {
            s.iter()
                .map(|x| x.1)
                .reduce(|m, v| if v > m || m.is_nan() { v } else { m })
        },
        other => {
            return Err(PromqlError::Unsupported(format!(
                "unsupported function `{other}`"
            )));
        }
    };
    let range = range_ms(ms);
    let window = Window {
        start_ms: at_ms.saturating_sub(range),
        end_ms: at_ms,
        range_s: range as f64 / 1000.0,
    };
    // last_over_time acts like a selector and keeps the name; the others change meaning.
    let keep_name = name == "last_over_time";
    let out = series
        .into_iter()
        .filter_map(|(labels, samples)| {
            let v = f(&samples, &window)?;
            let labels = if keep_name {
                labels.clone()
            } else {
                drop_name(labels.clone())
            };
            Some((labels, v))
        })
        .collect();
    Ok(Value::Vector(out))
}

/// A range selector's window at the evaluation time.
pub(super) struct Window {
    /// `at - range`, milliseconds (exclusive).
    pub(super) start_ms: i64,
    /// `at`, milliseconds (inclusive).
    pub(super) end_ms: i64,
    /// The range, seconds.
    pub(super) range_s: f64,
}

/// Prometheus' `extrapolatedRate` (promql/functions.go) for float samples: the change
/// between the first and last sample (for counters, adding the value before each reset),
/// extrapolated towards the window's edges when the samples reach close enough to them
/// (within 1.1 average sample intervals; otherwise by half an interval), never to below
/// zero for counters; per second when `is_rate`. `None` with fewer than two samples.
pub(super) fn extrapolated_rate(
    samples: &[(i64, f64)],
    w: &Window,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        for pair in samples.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    let mut duration_to_start = (first_t - w.start_ms) as f64 / 1000.0;
    let mut duration_to_end = (w.end_ms - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_between * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // Counters cannot be negative: do not extrapolate to before the zero point.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= w.range_s;
    }
    Some(result * factor)
}

/// `absent`'s labels, as Prometheus: from the selector's equality matchers (not
/// `__name__`); a label named twice, or also by another matcher type, is left out.
fn absent_labels(arg: &Expr) -> Labels {
    let Expr::VectorSelector(vs) = arg else {
        return Labels::new();
    };
    let mut out = Labels::new();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && seen.insert(m.name.clone()) {
            out.insert(m.name.clone(), m.value.clone());
        } else {
            out.remove(&m.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start_ms: i64, end_ms: i64) -> Window {
        Window {
            start_ms,
            end_ms,
            range_s: (end_ms - start_ms) as f64 / 1000.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn rate_of_counter_from_zero() {
        // 0,10,20,30 at 0,15,30,45 s; window (−15 s, 45 s]. Start gap 15 s < 1.1·15 = 16.5
        // s, but the zero point is 45·(0/30) = 0 s before the first sample: no start
        // extrapolation; end gap 0. increase = 30·45/45 = 30, rate = 30/60 = 0.5.
        let s = [(0, 0.0), (15_000, 10.0), (30_000, 20.0), (45_000, 30.0)];
        let win = w(-15_000, 45_000);
        assert_eq!(extrapolated_rate(&s, &win, true, false), Some(30.0));
        assert_eq!(extrapolated_rate(&s, &win, true, true), Some(0.5));
        // delta does not know about zero: extrapolated over the full 60 s: 30·60/45 = 40.
        assert!(close(
            extrapolated_rate(&s, &win, false, false).unwrap_or(0.0),
            40.0
        ));
    }

    #[test]
    fn one_sample_is_no_rate() {
        assert_eq!(
            extrapolated_rate(&[(0, 1.0)], &w(-60_000, 0), true, true),
            None
        );
    }
}
