//! Exposition parser: Prometheus text format 0.0.4 and the OpenMetrics text subset
//! exporters emit. Zero-copy over the response body where no escape forces a copy.
//! (Implementation in progress: the signatures below are the agreed interface.)

use std::borrow::Cow;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name (may contain `:`).
    pub name: &'a str,
    /// Labels in the order written; values unescaped (`\\`, `\"`, `\n`).
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Value (`NaN`, `+Inf`, `-Inf` included).
    pub value: f64,
    /// Optional timestamp, milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// A parse error with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExpoError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a whole exposition body. Never panics.
pub fn parse(input: &str) -> Result<Vec<Sample<'_>>, ExpoError> {
    let _ = input;
    Err(ExpoError {
        line: 0,
        message: "not implemented yet".into(),
    })
}
