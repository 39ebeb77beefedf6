//! PromQL for rule conditions: a checked subset evaluated at one instant over the
//! in-memory [`SeriesStore`].
//!
//! [`check`] parses an expression (with `promql-parser`) and rejects, by name, every
//! construct outside the subset; [`eval`] evaluates it at `at_ms`. To evaluate one
//! condition repeatedly, parse it once with [`Query::parse`].
//!
//! The subset (selectors, operators, aggregations, functions) and its Prometheus 3
//! semantics (lookback, left-open windows, staleness, `__name__`) are documented once, for
//! rule authors, in `docs/rules.md` ("Supported PromQL").

mod aggregate;
pub mod ast;
mod binary;
mod check;
mod eval;
mod functions;
mod labels;
pub mod selectors;

use std::fmt;

use promql_parser::parser::Expr;

use crate::ingest::store::{Labels, SeriesStore};

pub use check::check;
pub use selectors::KeepSet;

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An instant vector: one value per series, sorted by labels.
    Vector(Vec<(Labels, f64)>),
    /// A scalar.
    Scalar(f64),
}

impl Value {
    /// The result as series, as Prometheus' rule evaluation sees it: a scalar becomes one
    /// series without labels.
    pub fn into_series(self) -> Vec<(Labels, f64)> {
        match self {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![(Labels::new(), v)],
        }
    }

    /// Whether a condition with this result holds (Prometheus alerting semantics): a
    /// non-empty vector, or any scalar.
    pub fn fires(&self) -> bool {
        match self {
            Value::Vector(v) => !v.is_empty(),
            Value::Scalar(_) => true,
        }
    }
}

/// Why an expression cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromqlError {
    /// Not valid PromQL.
    #[error("invalid PromQL: {0}")]
    Parse(String),
    /// Valid PromQL outside the supported subset; the message names the construct.
    #[error("{0}")]
    Unsupported(String),
    /// The data makes the expression fail (e.g. ambiguous vector matching).
    #[error("evaluation failed: {0}")]
    Eval(String),
}

/// A parsed and checked expression, ready to evaluate many times.
#[derive(Debug, Clone)]
pub struct Query {
    expr: Expr,
}

impl Query {
    /// Parses `expr` and checks it is inside the supported subset.
    pub fn parse(expr: &str) -> Result<Query, PromqlError> {
        let parsed = promql_parser::parser::parse(expr).map_err(PromqlError::Parse)?;
        check::check_expr(&parsed)?;
        Ok(Query { expr: parsed })
    }

    /// Evaluates the query at `at_ms` (milliseconds since the epoch) over `store`.
    pub fn eval(&self, store: &SeriesStore, at_ms: i64) -> Result<Value, PromqlError> {
        let mut v = eval::Evaluator::new(store, at_ms).eval(&self.expr)?;
        if let Value::Vector(samples) = &mut v {
            samples.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(v)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

/// Parses, checks and evaluates `expr` at `at_ms` over `store`.
pub fn eval(expr: &str, store: &SeriesStore, at_ms: i64) -> Result<Value, PromqlError> {
    Query::parse(expr)?.eval(store, at_ms)
}

/// Formats labels as PromQL does: `name{a="x", b="y"}`, `{}` when there are none.
pub fn format_labels(labels: &Labels) -> String {
    let name = labels.get("__name__").map_or("", String::as_str);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", rest.join(", "))
    }
}
