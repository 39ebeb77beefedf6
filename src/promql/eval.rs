//! The evaluator: walks a checked expression at one instant.

use promql_parser::label::Matcher;
use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};

use super::functions::{RangeSeries, range_ms};
use super::labels::{NAME, drop_name};
use super::{PromqlError, Value, aggregate, binary, functions};
use crate::ingest::store::{LOOKBACK_DELTA_MS, Labels, SeriesStore, is_stale_marker};

/// Evaluates expressions at `at_ms` over `store`.
pub(super) struct Evaluator<'a> {
    store: &'a SeriesStore,
    /// Evaluation time, milliseconds.
    pub(super) at_ms: i64,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(store: &'a SeriesStore, at_ms: i64) -> Self {
        Evaluator { store, at_ms }
    }

    pub(super) fn eval(&self, expr: &Expr) -> Result<Value, PromqlError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => Ok(match self.eval(&u.expr)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => {
                    Value::Vector(v.into_iter().map(|(l, x)| (drop_name(l), -x)).collect())
                }
            }),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::Binary(b) => binary::eval(b, self.eval(&b.lhs)?, self.eval(&b.rhs)?),
            Expr::Aggregate(a) => aggregate::eval(a, self.eval_vector(&a.expr)?),
            Expr::Call(c) => {
                let name = c.func.name;
                let arg = c
                    .args
                    .args
                    .first()
                    .ok_or_else(|| PromqlError::Eval(format!("`{name}` needs an argument")))?;
                if functions::is_instant(name) {
                    return Ok(functions::instant(name, arg, self.eval_vector(arg)?));
                }
                let Expr::MatrixSelector(ms) = &**arg else {
                    return Err(PromqlError::Unsupported(format!(
                        "unsupported: `{name}` of `{arg}` (only a range selector like `metric[5m]`)"
                    )));
                };
                functions::range(name, ms, self.at_ms, self.range(ms))
            }
            other => Err(PromqlError::Unsupported(format!(
                "unsupported expression `{other}`"
            ))),
        }
    }

    /// Evaluates `expr`, which must yield an instant vector.
    pub(super) fn eval_vector(&self, expr: &Expr) -> Result<Vec<(Labels, f64)>, PromqlError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(_) => Err(PromqlError::Eval(format!(
                "expected an instant vector, got a scalar from `{expr}`"
            ))),
        }
    }

    /// The latest sample of each matching series within the lookback window
    /// `(at - 5m, at]`, unless that sample is a stale marker.
    pub(super) fn instant(&self, vs: &VectorSelector) -> Vec<(Labels, f64)> {
        let start = self.at_ms.saturating_sub(LOOKBACK_DELTA_MS) + 1;
        self.store
            .select_where(|l| selects(vs, l), start, self.at_ms)
            .into_iter()
            .filter_map(|(labels, samples)| {
                let &(_, v) = samples.last()?;
                (!is_stale_marker(v)).then(|| (labels.clone(), v))
            })
            .collect()
    }

    /// The samples of each matching series in `(at - range, at]`, stale markers removed;
    /// series with no sample left are omitted.
    pub(super) fn range(&self, ms: &MatrixSelector) -> Vec<RangeSeries<'a>> {
        let start = self.at_ms.saturating_sub(range_ms(ms)) + 1;
        self.store
            .select_where(|l| selects(&ms.vs, l), start, self.at_ms)
            .into_iter()
            .filter_map(|(labels, samples)| {
                let floats: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|s| !is_stale_marker(s.1))
                    .collect();
                (!floats.is_empty()).then_some((labels, floats))
            })
            .collect()
    }
}

/// Whether the selector's name and matchers all accept `labels`.
fn selects(vs: &VectorSelector, labels: &Labels) -> bool {
    let value = |m: &Matcher| labels.get(&m.name).map_or("", String::as_str);
    vs.name.as_ref().is_none_or(|n| labels.get(NAME) == Some(n))
        && vs.matchers.matchers.iter().all(|m| m.is_match(value(m)))
}
