//! What a step lowers to, and the machinery every step kind lowers with.
//!
//! A template renders to exactly one argv element, whatever the alert's labels contain: no
//! shell ever sees the result, so `$(…)`, `;`, backticks and newlines are inert bytes. Values
//! that reach a *remote* shell (ssh) or select hosts (ansible `--limit`) must also match
//! a strict allow pattern, checked before anything can run. Each kind's own lowering is in
//! its module under [`crate::runbook::steps`].

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::Templates;

/// What happens when a step fails after its retries.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the runbook; the execution fails.
    #[default]
    Abort,
    /// Go on with the next step.
    Continue,
    /// Stop and escalate to the escalation recipients.
    Escalate,
}

/// A step as it would run. Whether it is disruptive is decided by its kind
/// (`RenderedStep::is_disruptive`, in [`crate::runbook::steps`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedStep {
    /// Step name.
    pub name: String,
    /// Step kind (`exec`, `systemctl`, …).
    pub kind: &'static str,
    /// The exact argv; for `http` `[METHOD, URL]`, for `wait_for` `[tcp|http, ADDRESS]`,
    /// for `kube` `[ACTION, namespace=NS, name=NAME]` plus `replicas=N` (`scale`) or
    /// `grace_period_seconds=N` (`delete_pod`, when given).
    pub argv: Vec<String>,
    /// HTTP request body, for `http` steps that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Time limit, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Extra tries after a failure.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// What a failure leads to.
    pub on_failure: OnFailure,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A step that cannot be rendered safely; nothing of the runbook runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step `{step}`: {message}")]
pub struct StepError {
    /// The step's name.
    pub step: String,
    /// What went wrong.
    pub message: String,
}

static HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$").expect("static regex"));

/// Whether `s` is a plain host name (letters, digits, `.`, `-`, `_`, not starting with `-`
/// or `.`): safe on a remote shell's command line.
pub(crate) fn plain_host(s: &str) -> bool {
    HOST.is_match(s)
}

/// What a kind's lowering gives: the argv, the body, and the kind's own time limit (the
/// step runs for the shorter of it and the step's `timeout`).
#[derive(Debug, Default)]
pub(crate) struct Lowered {
    /// The exact argv.
    pub argv: Vec<String>,
    /// HTTP request body.
    pub body: Option<String>,
    /// The kind's own time limit.
    pub timeout: Option<Duration>,
}

impl Lowered {
    /// Just an argv.
    pub fn argv(argv: Vec<String>) -> Lowered {
        Lowered {
            argv,
            ..Lowered::default()
        }
    }
}

/// Renders one step's templates against one context, and words its errors.
pub(crate) struct Renderer<'a> {
    /// The compiled templates.
    pub templates: &'a Templates,
    /// What the templates see (`alert`, `params`, …).
    pub ctx: &'a Value,
    /// The step's name, for errors.
    pub step: &'a str,
    /// The configured brokers: the only hosts an ansible `--limit` may name.
    pub brokers: &'a [crate::config::Broker],
}

impl Renderer<'_> {
    /// A [`StepError`] of this step.
    pub fn error(&self, message: impl Into<String>) -> StepError {
        StepError {
            step: self.step.to_string(),
            message: message.into(),
        }
    }

    /// Renders `src` (the step's `field`) to one value with no NUL byte.
    pub fn one(&self, field: &str, src: &str) -> Result<String, StepError> {
        let out = self
            .templates
            .render(src, self.ctx)
            .map_err(|e| self.error(format!("{field}: {e}")))?;
        if out.contains('\0') {
            return Err(self.error(format!("{field}: rendered value contains a NUL byte")));
        }
        Ok(out)
    }

    /// Renders `src` to a plain host name (see [`plain_host`]).
    pub fn host(&self, field: &str, src: &str) -> Result<String, StepError> {
        let h = self.one(field, src)?;
        if !plain_host(&h) {
            return Err(self.error(format!(
                "{field}: `{}` is not a plain host name (letters, digits, `.`, `-`, `_`)",
                h.escape_debug()
            )));
        }
        Ok(h)
    }
}

/// Quotes an argv element for display only (nothing is ever run through a shell).
pub fn display_arg(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        a.to_string()
    } else if a.chars().any(char::is_control) {
        format!("\"{}\"", a.escape_debug())
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}
