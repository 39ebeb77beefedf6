//! One sample line: `name{labels} value [timestamp] [# exemplar]`.

use std::borrow::Cow;

use super::Sample;
use super::labels::parse_labels;
use super::number::{parse_timestamp, parse_value};
use super::scan::Cursor;

/// Parses a sample line; the cursor is on the first byte of the metric name.
///
/// The labels are parsed into `scratch` (kept by the caller between lines), then moved into
/// a vector of exactly their number: one right-sized allocation per sample, none without
/// labels.
///
/// An OpenMetrics exemplar (` # {...} value [timestamp]` after the value or timestamp) is
/// accepted and skipped.
#[inline]
pub(super) fn parse_sample<'a>(
    cur: &mut Cursor<'a>,
    scratch: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<Sample<'a>, String> {
    let name = cur.metric_name();
    if name.is_empty() {
        return Err(match cur.peek() {
            Some(b'{') => "missing metric name before `{`".into(),
            _ => format!("invalid metric name at `{}`", cur.snippet_here()),
        });
    }
    let mut labels = Vec::new();
    let spaced = cur.skip_ws();
    if cur.peek() == Some(b'{') {
        scratch.clear();
        parse_labels(cur, scratch)?;
        labels = Vec::with_capacity(scratch.len());
        labels.append(scratch);
        cur.skip_ws();
    } else if !spaced && cur.peek().is_some() {
        return Err(format!(
            "invalid character in metric name `{name}` at `{}`",
            cur.snippet_here()
        ));
    }
    let value = cur.token();
    if value.is_empty() {
        return Err(format!("missing value for `{name}`"));
    }
    let value = parse_value(value)?;
    let mut timestamp_ms = None;
    cur.skip_ws();
    match cur.peek() {
        None | Some(b'#') => {}
        Some(_) => {
            timestamp_ms = Some(parse_timestamp(cur.token())?);
            cur.skip_ws();
            match cur.peek() {
                None | Some(b'#') => {}
                Some(_) => {
                    return Err(format!(
                        "unexpected `{}` after the timestamp",
                        cur.snippet_here()
                    ));
                }
            }
        }
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}
