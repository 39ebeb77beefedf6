//! Lowering steps to what they run: an argv rendered element by element, or an HTTP request.
//!
//! A template renders to exactly one argv element, whatever the alert's labels contain: no
//! shell ever sees the result, so `$(…)`, `;`, backticks and newlines are inert bytes. Values
//! that reach a *remote* shell (ssh) or select hosts (ansible `--limit`) must also match
//! a strict allow pattern, checked here before anything can run.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use super::template::Templates;
use crate::rules::model::{HTTP_METHODS, OnFailure, SYSTEMCTL_ACTIONS, Step, StepKind};

/// A step as it would run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedStep {
    /// Step name.
    pub name: String,
    /// Step kind (`exec`, `systemctl`, …).
    pub kind: &'static str,
    /// The exact argv; for `http` `[METHOD, URL]`, for `wait_for` `[tcp|http, ADDRESS]`.
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

impl RenderedStep {
    /// Whether the step can change the cluster, so that (in HA mode) it only runs while
    /// this instance provably holds the lock. Read-only: `wait_for`, `http` GET and HEAD,
    /// `systemctl is-active` and `status`. Everything else (`exec`, `ansible`, other
    /// `systemctl` actions and HTTP methods) is disruptive: an `exec` may do anything.
    pub fn is_disruptive(&self) -> bool {
        match self.kind {
            "wait_for" => false,
            "http" => !matches!(self.argv.first().map(String::as_str), Some("GET" | "HEAD")),
            "systemctl" => {
                let action = self
                    .argv
                    .iter()
                    .position(|a| a == "systemctl")
                    .and_then(|i| self.argv.get(i + 1));
                !matches!(action.map(String::as_str), Some("is-active" | "status"))
            }
            _ => true,
        }
    }
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

static UNIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.@:-]+$").expect("static regex"));
static HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$").expect("static regex"));

/// The rule's own knobs a rendered step needs.
fn step_error(step: &Step, message: impl Into<String>) -> StepError {
    StepError {
        step: step.name.clone(),
        message: message.into(),
    }
}

struct Renderer<'a> {
    templates: &'a Templates,
    ctx: &'a Value,
    step: &'a Step,
}

impl Renderer<'_> {
    fn one(&self, field: &str, src: &str) -> Result<String, StepError> {
        let out = self
            .templates
            .render(src, self.ctx)
            .map_err(|e| step_error(self.step, format!("{field}: {e}")))?;
        if out.contains('\0') {
            return Err(step_error(
                self.step,
                format!("{field}: rendered value contains a NUL byte"),
            ));
        }
        Ok(out)
    }

    fn host(&self, field: &str, src: &str) -> Result<String, StepError> {
        let h = self.one(field, src)?;
        if !HOST.is_match(&h) {
            return Err(step_error(
                self.step,
                format!(
                    "{field}: `{}` is not a plain host name (letters, digits, `.`, `-`, `_`)",
                    h.escape_debug()
                ),
            ));
        }
        Ok(h)
    }
}

/// Renders every step of a runbook; the first step that fails stops it all.
pub fn render_steps(
    steps: &[Step],
    templates: &Templates,
    ctx: &Value,
) -> Result<Vec<RenderedStep>, StepError> {
    steps
        .iter()
        .map(|s| render_step(s, templates, ctx))
        .collect()
}

fn render_step(step: &Step, templates: &Templates, ctx: &Value) -> Result<RenderedStep, StepError> {
    let r = Renderer {
        templates,
        ctx,
        step,
    };
    let mut body = None;
    let mut timeout = step.timeout;
    let argv = match &step.kind {
        StepKind::Exec(args) => args
            .iter()
            .enumerate()
            .map(|(i, a)| r.one(&format!("exec[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?,
        StepKind::Systemctl(s) => {
            if !SYSTEMCTL_ACTIONS.contains(&s.action.as_str()) {
                return Err(step_error(
                    step,
                    format!("systemctl action `{}` is not allowed", s.action),
                ));
            }
            let unit = r.one("unit", &s.unit)?;
            if !UNIT.is_match(&unit) || unit.starts_with('-') {
                return Err(step_error(
                    step,
                    format!("unit: `{}` is not a systemd unit name", unit.escape_debug()),
                ));
            }
            let mut argv = Vec::new();
            if let Some(h) = &s.host {
                // ssh hands the remote command to a shell: only vetted words may go there.
                let host = r.host("host", h)?;
                argv.extend(["ssh", "-o", "BatchMode=yes", "--", &host].map(String::from));
            }
            if s.sudo {
                argv.extend(["sudo", "-n"].map(String::from));
            }
            argv.extend([
                "systemctl".to_string(),
                s.action.clone(),
                "--".to_string(),
                unit,
            ]);
            argv
        }
        StepKind::Ansible(a) => {
            let mut argv = vec!["ansible-playbook".to_string()];
            if let Some(inv) = &a.inventory {
                argv.extend(["-i".to_string(), r.one("inventory", inv)?]);
            }
            if let Some(l) = &a.limit {
                let limit = r.host("limit", l)?;
                if limit == "all" {
                    return Err(step_error(step, "limit: `all` would select every host"));
                }
                argv.extend(["--limit".to_string(), limit]);
            }
            if !a.extra_vars.is_empty() {
                // Ansible templates variable values again when a task uses them, so a
                // label like `{{ lookup('pipe', …) }}` would run on the controller. Values
                // are marked unsafe (Ansible's JSON form of `!unsafe`): used verbatim.
                let mut vars = serde_json::Map::new();
                for (k, v) in &a.extra_vars {
                    let value = r.one(&format!("extra_vars.{k}"), v)?;
                    vars.insert(k.clone(), serde_json::json!({ "__ansible_unsafe": value }));
                }
                argv.extend(["--extra-vars".to_string(), Value::Object(vars).to_string()]);
            }
            let playbook = r.one("playbook", &a.playbook)?;
            if playbook.starts_with('-') {
                return Err(step_error(step, "playbook: a path may not start with `-`"));
            }
            argv.push(playbook);
            argv
        }
        StepKind::Http(h) => {
            let method = h.method.to_ascii_uppercase();
            if !HTTP_METHODS.contains(&method.as_str()) {
                return Err(step_error(
                    step,
                    format!("http method `{}` is not allowed", h.method),
                ));
            }
            let url = http_url(&r, "url", &h.url)?;
            body = h.body.as_ref().map(|b| r.one("body", b)).transpose()?;
            vec![method, url]
        }
        StepKind::WaitFor(w) => {
            timeout = Some(timeout.map_or(w.timeout, |t| t.min(w.timeout)));
            match (&w.tcp, &w.http) {
                (Some(t), None) => {
                    let addr = r.one("tcp", t)?;
                    check_host_port(&addr).map_err(|m| step_error(step, format!("tcp: {m}")))?;
                    vec!["tcp".to_string(), addr]
                }
                (None, Some(u)) => vec!["http".to_string(), http_url(&r, "http", u)?],
                _ => {
                    return Err(step_error(
                        step,
                        "wait_for needs exactly one of `tcp` and `http`",
                    ));
                }
            }
        }
    };
    Ok(RenderedStep {
        name: step.name.clone(),
        kind: step.kind.name(),
        argv,
        body,
        timeout_seconds: timeout.map(|d: Duration| d.as_secs_f64()),
        retries: step.retries,
        on_failure: step.on_failure,
    })
}

fn http_url(r: &Renderer<'_>, field: &str, src: &str) -> Result<String, StepError> {
    let u = r.one(field, src)?;
    match url::Url::parse(&u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(u),
        Ok(url) => Err(step_error(
            r.step,
            format!("{field}: scheme `{}` is not http or https", url.scheme()),
        )),
        Err(e) => Err(step_error(
            r.step,
            format!("{field}: `{}` is not a URL: {e}", u.escape_debug()),
        )),
    }
}

/// Checks `host:port` (or `[v6]:port`).
pub fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{}` is not host:port", s.escape_debug()))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = HOST.is_match(host) || host.parse::<std::net::Ipv6Addr>().is_ok();
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(format!("`{}` is not host:port", s.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: &'static str, argv: &[&str]) -> RenderedStep {
        RenderedStep {
            name: "s".into(),
            kind,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            body: None,
            timeout_seconds: None,
            retries: 0,
            on_failure: OnFailure::Abort,
        }
    }

    #[test]
    fn only_read_only_steps_are_not_disruptive() {
        assert!(!step("wait_for", &["tcp", "k1:9092"]).is_disruptive());
        assert!(!step("http", &["GET", "http://x/"]).is_disruptive());
        assert!(!step("http", &["HEAD", "http://x/"]).is_disruptive());
        assert!(step("http", &["POST", "http://x/"]).is_disruptive());
        let ro = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "--",
            "k1",
            "systemctl",
            "is-active",
            "--",
            "kafka",
        ];
        assert!(!step("systemctl", &ro).is_disruptive());
        assert!(!step("systemctl", &["systemctl", "status", "--", "kafka"]).is_disruptive());
        assert!(
            step(
                "systemctl",
                &["sudo", "-n", "systemctl", "restart", "--", "status"]
            )
            .is_disruptive()
        );
        assert!(step("exec", &["/bin/true"]).is_disruptive());
        assert!(step("ansible", &["ansible-playbook", "p.yml"]).is_disruptive());
    }
}
