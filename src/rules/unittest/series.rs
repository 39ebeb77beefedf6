//! `input_series`: series selectors and promtool's expanding value notation.

use std::collections::BTreeMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use crate::ingest::store::Labels;

/// Most values one series may expand to (a guard against `1x1000000000`).
pub const MAX_VALUES: usize = 1_000_000;

/// One slot of an input series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesValue {
    /// A sample with this value.
    Value(f64),
    /// No sample (`_`): a missed scrape.
    Missing,
    /// A stale marker (`stale`): the series disappeared from its target.
    Stale,
}

/// Why a `values` string or a `series` selector is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// A token of `values` is neither a number, `_`, `stale`, nor an expansion.
    #[error(
        "`{0}` is not a value: use a number, `_` (missing), `stale`, `a+bxN`, `a-bxN`, `axN` or `_xN`"
    )]
    Token(String),
    /// The expansion would make too many values.
    #[error("`{0}` expands to more than {MAX_VALUES} values")]
    TooMany(String),
    /// `values` is empty.
    #[error("`values` is empty; give at least one value")]
    Empty,
    /// The selector does not parse, or is not `name{label="value", ...}`.
    #[error("`{selector}` is not a series like `name{{label=\"value\"}}`: {why}")]
    Selector {
        /// The selector as written.
        selector: String,
        /// What is wrong.
        why: String,
    },
}

fn number(s: &str) -> Option<f64> {
    // Rust also accepts `infinity` and `nan` spelled any way; Prometheus writes `Inf`, `NaN`.
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        || t.eq_ignore_ascii_case("inf")
        || t.eq_ignore_ascii_case("nan");
    if t.is_empty() || !ok {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Splits `a+b` / `a-b` (the part before `x` of an expansion) into start and signed step.
/// The operator is the last `+` or `-` that is neither the first character nor part of an
/// exponent (`1e-3`).
fn start_and_step(s: &str) -> Option<(f64, f64)> {
    let bytes = s.as_bytes();
    let mut cut = None;
    for i in (1..bytes.len()).rev() {
        if matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
            cut = Some(i);
            break;
        }
    }
    match cut {
        // `axN` is `a+0xN`.
        None => Some((number(s)?, 0.0)),
        Some(i) => {
            let start = number(&s[..i])?;
            let step = number(&s[i + 1..])?;
            if step.is_sign_negative() || s[i + 1..].starts_with(['+', '-']) {
                return None;
            }
            Some((start, if bytes[i] == b'-' { -step } else { step }))
        }
    }
}

/// Expands promtool's notation into one slot per interval:
///
/// - `1 2 3` — plain numbers (also `Inf`, `-Inf`, `NaN`);
/// - `a+bxN` — `a`, `a+b`, …, `a+N*b` (N+1 values); `a-bxN` counts down; `axN` is `a+0xN`;
/// - `_` — no sample; `_xN` — N slots without samples;
/// - `stale` — a stale marker.
pub fn parse_values(text: &str) -> Result<Vec<SeriesValue>, SeriesError> {
    let mut out = Vec::new();
    for tok in text.split_whitespace() {
        if tok == "_" {
            out.push(SeriesValue::Missing);
        } else if tok == "stale" {
            out.push(SeriesValue::Stale);
        } else if let Some(v) = number(tok) {
            out.push(SeriesValue::Value(v));
        } else if let Some((head, count)) = tok.rsplit_once('x') {
            let n: usize = count
                .parse()
                .map_err(|_| SeriesError::Token(tok.to_string()))?;
            if n > MAX_VALUES || out.len() + n + 1 > MAX_VALUES {
                return Err(SeriesError::TooMany(tok.to_string()));
            }
            if head == "_" {
                out.extend(std::iter::repeat_n(SeriesValue::Missing, n));
                continue;
            }
            let (start, step) =
                start_and_step(head).ok_or_else(|| SeriesError::Token(tok.to_string()))?;
            out.extend((0..=n).map(|i| SeriesValue::Value(start + step * i as f64)));
        } else {
            return Err(SeriesError::Token(tok.to_string()));
        }
        if out.len() > MAX_VALUES {
            return Err(SeriesError::TooMany(tok.to_string()));
        }
    }
    if out.is_empty() {
        return Err(SeriesError::Empty);
    }
    Ok(out)
}

/// Parses `name{label="value", ...}` (or `{__name__="name", ...}`) into a label set.
/// Only `=` matchers are allowed: they are the series' labels.
pub fn parse_series(selector: &str) -> Result<Labels, SeriesError> {
    let bad = |why: String| SeriesError::Selector {
        selector: selector.to_string(),
        why,
    };
    let expr = promql_parser::parser::parse(selector).map_err(bad)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(bad("it must be a plain series selector".into()));
    };
    if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return Err(bad("`offset`, `@` and `or` have no place here".into()));
    }
    let mut labels: Labels = BTreeMap::new();
    if let Some(name) = &vs.name {
        labels.insert("__name__".into(), name.clone());
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, MatchOp::Equal) {
            return Err(bad(format!(
                "label `{}` must be set with `=`, not matched",
                m.name
            )));
        }
        if let Some(old) = labels.get(&m.name)
            && old != &m.value
        {
            return Err(bad(format!("label `{}` is given twice", m.name)));
        }
        labels.insert(m.name.clone(), m.value.clone());
    }
    if !labels.contains_key("__name__") {
        return Err(bad("the series needs a metric name".into()));
    }
    labels.retain(|_, v| !v.is_empty());
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::SeriesValue::{Missing, Stale, Value};
    use super::*;

    fn vals(s: &str) -> Vec<SeriesValue> {
        parse_values(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn nums(v: &[f64]) -> Vec<SeriesValue> {
        v.iter().map(|x| Value(*x)).collect()
    }

    #[test]
    fn expanding_notation() {
        assert_eq!(vals("1+2x3"), nums(&[1.0, 3.0, 5.0, 7.0]));
        assert_eq!(vals("0x4"), nums(&[0.0; 5]));
        assert_eq!(vals("-1-1x2"), nums(&[-1.0, -2.0, -3.0]));
        assert_eq!(vals("10-2x2"), nums(&[10.0, 8.0, 6.0]));
        assert_eq!(vals("-2+4x1"), nums(&[-2.0, 2.0]));
        assert_eq!(vals("1.5+0.5x1"), nums(&[1.5, 2.0]));
        assert_eq!(vals("1e3+1e-1x1"), nums(&[1000.0, 1000.1]));
        assert_eq!(vals("1 1 0x4").len(), 7);
        assert_eq!(vals("5x0"), nums(&[5.0]));
    }

    #[test]
    fn missing_and_stale() {
        assert_eq!(vals("_"), vec![Missing]);
        assert_eq!(
            vals("1 _ stale 2"),
            vec![Value(1.0), Missing, Stale, Value(2.0)]
        );
        assert_eq!(vals("_x3"), vec![Missing, Missing, Missing]);
        assert_eq!(vals("  7\t_x2\n"), vec![Value(7.0), Missing, Missing]);
    }

    #[test]
    fn specials() {
        assert_eq!(vals("Inf -Inf"), nums(&[f64::INFINITY, f64::NEG_INFINITY]));
        assert!(matches!(vals("NaN")[..], [Value(v)] if v.is_nan()));
        assert_eq!(vals("+3 -0.25"), nums(&[3.0, -0.25]));
    }

    #[test]
    fn errors() {
        for bad in [
            "", "   ", "abc", "1+x3", "1+2x", "1+2xa", "1x-3", "1++2x3", "1+-2x3", "x3", "stalex2",
            "1,2", "1+2x3x4", "infinity", "1+Infx2x",
        ] {
            assert!(parse_values(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_values(""), Err(SeriesError::Empty));
        assert!(matches!(
            parse_values("1x2000000"),
            Err(SeriesError::TooMany(_))
        ));
        let msg = parse_values("1 two").unwrap_err().to_string();
        assert!(msg.contains("`two` is not a value"), "{msg}");
    }

    #[test]
    fn selectors() {
        let l = parse_series(r#"up{job="kafka",instance="k:9404"}"#).unwrap();
        assert_eq!(l["__name__"], "up");
        assert_eq!(l["job"], "kafka");
        assert_eq!(l["instance"], "k:9404");
        let l = parse_series(r#"{__name__="kafka_urp", node_id="kafka-1"}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(parse_series("up").unwrap().len(), 1);
        for bad in [
            r#"up{job=~"k.*"}"#,
            r#"{job="kafka"}"#,
            "up offset 5m",
            "rate(up[5m])",
            "up{",
            r#"up{job="a",job="b"}"#,
        ] {
            assert!(parse_series(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
