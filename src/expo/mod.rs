//! Exposition parser: Prometheus text format 0.0.4 and the OpenMetrics text subset
//! exporters emit. Zero-copy over the response body where no escape forces a copy.
//!
//! - [`parse`] / [`parse_into`]: all samples of a body (HELP/TYPE lines are checked, then
//!   dropped); [`Parser`]: a streaming iterator that also yields HELP and TYPE;
//!   [`Chunked`]: a body parsed chunk by chunk as it arrives (what the scrape uses).
//! - Accepted: `# HELP`, `# TYPE` (Prometheus and OpenMetrics types), other `#` comments,
//!   blank lines, leading and trailing spaces/tabs, CRLF line endings, metric names with
//!   `:`, label values with any character (escapes `\\`, `\"`, `\n`; other escapes are kept
//!   verbatim, as Prometheus does), `{}`, a trailing comma, `NaN`, `Inf`/`+Inf`/`-Inf`/
//!   `Infinity` in any letter case, an optional integer timestamp in ms, `# EOF` (only blank
//!   lines may follow), an OpenMetrics exemplar after the value (skipped).
//! - Rejected, as Prometheus rejects them: a duplicate label name in one series, a signed
//!   `NaN`, a finite value too large for `f64`, hex or `_` in values, a float timestamp (the
//!   OpenMetrics float-seconds form is not supported), an unknown `# TYPE`.
//! - Parsing stops at the first error; its [`ExpoError`] has the 1-based line number.

mod chunked;
mod labels;
mod meta;
mod number;
mod reader;
mod sample;
mod scan;

use std::borrow::Cow;

pub use chunked::Chunked;
pub use meta::MetricType;
pub use reader::{Entry, Parser};

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
    // At most one sample per line: counting lines (SIMD, > 10 GB/s) saves the growth copies.
    // Capped at one per 32 bytes, so a body of blank lines cannot reserve 64 bytes per byte.
    let lines = memchr::memchr_iter(b'\n', input.as_bytes()).count() + 1;
    let mut out = Vec::with_capacity(lines.min(input.len() / 32 + 1));
    parse_into(input, &mut out)?;
    Ok(out)
}

/// Parses a whole exposition body, appending its samples to `out` (whose allocation can be
/// reused between scrapes). On error, `out` holds the samples before the bad line. Never
/// panics.
pub fn parse_into<'a>(input: &'a str, out: &mut Vec<Sample<'a>>) -> Result<(), ExpoError> {
    Parser::new(input).samples_into(out)
}

/// Parses the samples whose metric name `keep_name` accepts; the others are skipped once
/// their name is read (nothing of them is parsed, checked or allocated). Returns the kept
/// samples and how many were skipped.
pub fn parse_kept(
    input: &str,
    keep_name: impl Fn(&str) -> bool,
) -> Result<(Vec<Sample<'_>>, usize), ExpoError> {
    let mut out = Vec::new();
    let skipped = Parser::new(input).samples_kept_into(keep_name, &mut out)?;
    Ok((out, skipped))
}
