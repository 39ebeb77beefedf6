//! Comment lines: `# HELP`, `# TYPE`, `# EOF`, and other comments (ignored).

use super::scan::{Cursor, snippet};

/// A metric family's type from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped` (Prometheus 0.0.4).
    Untyped,
    /// `unknown` (OpenMetrics).
    Unknown,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
}

impl MetricType {
    /// The type named `s` exactly as written on a `# TYPE` line.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" => Self::Untyped,
            "unknown" => Self::Unknown,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "gaugehistogram" => Self::GaugeHistogram,
            _ => return None,
        })
    }
}

/// What a line starting with `#` is.
#[derive(Debug, PartialEq)]
pub(super) enum Meta<'a> {
    /// `# HELP name text`; the text still escaped.
    Help {
        /// The metric family.
        name: &'a str,
        /// The text as written.
        raw: &'a str,
    },
    /// `# TYPE name type`.
    Type {
        /// The metric family.
        name: &'a str,
        /// Its type.
        kind: MetricType,
    },
    /// `# EOF`: the end of an OpenMetrics exposition.
    Eof,
    /// Any other comment.
    Comment,
}

/// Parses a comment line; the cursor is on the `#`.
///
/// `#` must be followed by whitespace for `HELP`, `TYPE` or `EOF` to count (as in Prometheus);
/// `#HELP` or `# HELPER` is a plain comment.
pub(super) fn parse_meta<'a>(cur: &mut Cursor<'a>) -> Result<Meta<'a>, String> {
    cur.pos += 1;
    if !cur.skip_ws() {
        return Ok(Meta::Comment);
    }
    let word = cur.token();
    let is_help = match word {
        "HELP" => true,
        "TYPE" => false,
        "EOF" => {
            cur.skip_ws();
            return Ok(if cur.peek().is_none() {
                Meta::Eof
            } else {
                Meta::Comment
            });
        }
        _ => return Ok(Meta::Comment),
    };
    cur.skip_ws();
    let start = cur.pos;
    let name = cur.metric_name();
    let after_name = cur.peek();
    if name.is_empty() || !matches!(after_name, None | Some(b' ' | b'\t')) {
        return Err(format!(
            "invalid metric name after `# {word}`: `{}`",
            snippet(cur.slice(start, cur.s.len()))
        ));
    }
    cur.skip_ws();
    if is_help {
        return Ok(Meta::Help {
            name,
            raw: cur.rest(),
        });
    }
    let kind_word = cur.token();
    let kind = MetricType::from_name(kind_word)
        .ok_or_else(|| format!("invalid metric type `{}`", snippet(kind_word)))?;
    cur.skip_ws();
    if cur.peek().is_some() {
        return Err(format!(
            "unexpected `{}` after the metric type",
            cur.snippet_here()
        ));
    }
    Ok(Meta::Type { name, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(s: &str) -> Result<Meta<'_>, String> {
        parse_meta(&mut Cursor::new(s))
    }

    #[test]
    fn kinds_of_comment() {
        assert_eq!(
            meta("# HELP a:b Some text\\n more "),
            Ok(Meta::Help {
                name: "a:b",
                raw: "Some text\\n more "
            })
        );
        assert_eq!(meta("# HELP a"), Ok(Meta::Help { name: "a", raw: "" }));
        assert_eq!(
            meta("#\tTYPE x histogram "),
            Ok(Meta::Type {
                name: "x",
                kind: MetricType::Histogram
            })
        );
        assert_eq!(meta("# EOF"), Ok(Meta::Eof));
        assert_eq!(meta("# EOF  "), Ok(Meta::Eof));
        assert_eq!(meta("# EOF x"), Ok(Meta::Comment));
        assert_eq!(meta("#HELP x y"), Ok(Meta::Comment));
        assert_eq!(meta("# HELPER x y"), Ok(Meta::Comment));
        assert_eq!(meta("#"), Ok(Meta::Comment));
        assert_eq!(meta("# anything {} \" \\"), Ok(Meta::Comment));
    }

    #[test]
    fn errors() {
        assert_eq!(
            meta("# TYPE x countr"),
            Err("invalid metric type `countr`".into())
        );
        assert_eq!(meta("# TYPE x"), Err("invalid metric type ``".into()));
        assert_eq!(
            meta("# TYPE x gauge extra"),
            Err("unexpected `extra` after the metric type".into())
        );
        assert_eq!(
            meta("# HELP 1x text"),
            Err("invalid metric name after `# HELP`: `1x text`".into())
        );
        assert_eq!(
            meta("# HELP x-y text"),
            Err("invalid metric name after `# HELP`: `x-y text`".into())
        );
    }
}
