//! `kafka-healing eval`: evaluates a PromQL condition against an exposition text file, to
//! author `condition.expr` without a running cluster.

use crate::clock::now_ms;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::ingest::store::{Labels, SeriesStore};
use crate::promql::{KeepSet, Query, Value, format_labels};

/// Runs `eval`: loads `metrics` into a store (samples without a timestamp at `at_ms`),
/// evaluates `expr` at `at_ms` and prints the result.
pub(super) fn run(metrics: &Path, at_ms: Option<i64>, expr: &str, json_out: bool) -> ExitCode {
    let query = match Query::parse(expr) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let text = match read(metrics) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", metrics.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // `serve`'s kept set for this expression: what it cannot read is dropped before its
    // labels are built, as the self-watch does (parsed whole, for the default instant).
    let keep = KeepSet::of_exprs([expr]);
    let samples = match crate::expo::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", metrics.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    // Default instant: the newest explicit timestamp in the file, else now.
    let at = at_ms
        .or_else(|| samples.iter().filter_map(|s| s.timestamp_ms).max())
        .unwrap_or_else(now_ms);
    let mut rows: Vec<(i64, Labels, f64)> = samples
        .into_iter()
        .filter(|s| {
            keep.keeps(s.name, |k| {
                s.labels
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.as_ref())
            })
        })
        .map(|s| {
            let mut labels: Labels = s
                .labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_owned()))
                .collect();
            labels.insert("__name__".to_string(), s.name.to_string());
            (s.timestamp_ms.unwrap_or(at), labels, s.value)
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let mut store = SeriesStore::new(i64::MAX, usize::MAX);
    for (ts, labels, v) in rows {
        store.insert(labels, ts, v);
    }
    match query.eval(&store, at) {
        Ok(v) => {
            print!("{}", render(&v, json_out));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn read(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

/// A value as Prometheus prints it: `NaN`, `+Inf`, `-Inf`, else the shortest decimal.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Text: one `labels value` line per series, or `scalar: v`. JSON: Prometheus' API shape
/// (`resultType`, `result`, values as strings).
fn render(v: &Value, json_out: bool) -> String {
    match (v, json_out) {
        (Value::Scalar(x), false) => format!("scalar: {}\n", number(*x)),
        (Value::Vector(series), false) => series
            .iter()
            .map(|(l, x)| format!("{} {}\n", format_labels(l), number(*x)))
            .collect(),
        (Value::Scalar(x), true) => {
            format!(
                "{}\n",
                json!({"resultType": "scalar", "result": number(*x)})
            )
        }
        (Value::Vector(series), true) => {
            let result: Vec<_> = series
                .iter()
                .map(|(l, x)| json!({"metric": l, "value": number(*x)}))
                .collect();
            format!("{}\n", json!({"resultType": "vector", "result": result}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_json() {
        let mut l = Labels::new();
        l.insert("__name__".into(), "up".into());
        l.insert("job".into(), "kafka".into());
        let v = Value::Vector(vec![(l, 0.0)]);
        assert_eq!(render(&v, false), "up{job=\"kafka\"} 0\n");
        assert_eq!(
            render(&v, true),
            "{\"result\":[{\"metric\":{\"__name__\":\"up\",\"job\":\"kafka\"},\"value\":\"0\"}],\"resultType\":\"vector\"}\n"
        );
        assert_eq!(
            render(&Value::Scalar(f64::INFINITY), false),
            "scalar: +Inf\n"
        );
    }
}
