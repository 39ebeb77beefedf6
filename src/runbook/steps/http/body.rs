//! `http` step bodies. A mapping (or list) is sent as JSON built structurally: keys are
//! literal, every string leaf is a template whose rendered value becomes one JSON string,
//! so no value can add a key or end the document. A string body is sent as written and may
//! only use config values: no encoding is known for an arbitrary content type, so alert
//! data in it could change what it means.

use serde_json::Value;

use super::url::checked_value;
use crate::runbook::render::{Renderer, StepError};
use crate::runbook::template::Templates;

/// The values a string body may use: config values, never alert data or params.
const CONFIG_ROOTS: &[&str] = &["target", "cluster", "rule"];

/// Every template of a body: the string itself, or each string leaf of a structure.
pub(crate) fn templates(body: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    leaves(body, &mut out);
    out
}

fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// What is wrong with a body as written, for `check`.
pub(crate) fn problems(body: &Value) -> Vec<String> {
    match body {
        Value::String(s) => string_problems(s),
        Value::Object(_) | Value::Array(_) => {
            let mut out = Vec::new();
            key_problems(body, &mut out);
            out
        }
        _ => vec!["http body must be a string or a mapping (sent as JSON)".into()],
    }
}

fn key_problems(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k.contains("{{") {
                    out.push(format!(
                        "http body key `{k}`: keys are literal; only values are templates"
                    ));
                }
                key_problems(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| key_problems(x, out)),
        _ => {}
    }
}

fn string_problems(s: &str) -> Vec<String> {
    // Syntax errors are reported by the loader with every other template.
    let Ok(refs) = Templates::default().add(s) else {
        return Vec::new();
    };
    refs.iter()
        .filter(|r| {
            !r.first()
                .is_some_and(|f| CONFIG_ROOTS.contains(&f.as_str()))
        })
        .map(|r| {
            format!(
                "http body: a string body cannot use `{}`: it is sent as written, so alert \
                 data or params could change what it means; write the body as a mapping \
                 (sent as JSON, each value encoded)",
                r.join(".")
            )
        })
        .collect()
}

/// The rendered body and whether it is JSON built from a structure.
pub(crate) fn render(body: &Value, r: &Renderer<'_>) -> Result<(String, bool), StepError> {
    match body {
        Value::String(s) => Ok((r.one("body", s)?, false)),
        Value::Object(_) | Value::Array(_) => {
            let v = fill(body, r)?;
            let s = serde_json::to_string(&v)
                .map_err(|e| r.error(format!("body: cannot encode as JSON: {e}")))?;
            Ok((s, true))
        }
        _ => Err(r.error("http body must be a string or a mapping")),
    }
}

fn fill(v: &Value, r: &Renderer<'_>) -> Result<Value, StepError> {
    Ok(match v {
        Value::String(s) => Value::String(checked_value(r, "body", s)?),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, r)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), fill(x, r)?)))
                .collect::<Result<_, StepError>>()?,
        ),
        other => other.clone(),
    })
}
