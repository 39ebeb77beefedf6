//! Aggregations: `sum`, `min`, `max`, `avg`, `count` with `by` / `without`.

use std::collections::BTreeMap;

use promql_parser::parser::AggregateExpr;
use promql_parser::parser::token::{T_AVG, T_COUNT, T_MAX, T_MIN, T_SUM};

use super::labels::grouping;
use super::{PromqlError, Value};
use crate::ingest::store::Labels;

/// Running state of one group.
struct Group {
    sum: f64,
    min: f64,
    max: f64,
    count: usize,
}

/// Aggregates `input`, the evaluated operand of `a`.
pub(super) fn eval(a: &AggregateExpr, input: Vec<(Labels, f64)>) -> Result<Value, PromqlError> {
    let op = a.op.id();
    if !matches!(op, T_SUM | T_MIN | T_MAX | T_AVG | T_COUNT) {
        return Err(PromqlError::Unsupported(format!(
            "unsupported aggregation `{}`",
            a.op
        )));
    }
    let mut groups: BTreeMap<Labels, Group> = BTreeMap::new();
    for (labels, v) in input {
        let key = grouping(&labels, a.modifier.as_ref());
        let g = groups.entry(key).or_insert(Group {
            sum: 0.0,
            min: v,
            max: v,
            count: 0,
        });
        g.sum += v;
        g.count += 1;
        // As Prometheus: NaN loses against any number, but stays when all are NaN.
        if g.min > v || g.min.is_nan() {
            g.min = v;
        }
        if g.max < v || g.max.is_nan() {
            g.max = v;
        }
    }
    let out = groups
        .into_iter()
        .map(|(labels, g)| {
            let v = match op {
                T_SUM => g.sum,
                T_MIN => g.min,
                T_MAX => g.max,
                T_AVG => g.sum / g.count as f64,
                T_COUNT => g.count as f64,
                _ => f64::NAN,
            };
            (labels, v)
        })
        .collect();
    Ok(Value::Vector(out))
}
