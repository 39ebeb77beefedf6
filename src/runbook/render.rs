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
use crate::rules::model::{HTTP_METHODS, KubeStep, OnFailure, SYSTEMCTL_ACTIONS, Step, StepKind};

/// A step as it would run.
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

impl RenderedStep {
    /// Whether the step can change the cluster, so that (in HA mode) it only runs while
    /// this instance provably holds the lock. Read-only: `wait_for`, `http` GET and HEAD,
    /// `systemctl is-active` and `status`, `kube` `wait_pod_ready`. Everything else (`exec`, `ansible`, other
    /// `systemctl` actions and HTTP methods) is disruptive: an `exec` may do anything.
    pub fn is_disruptive(&self) -> bool {
        match self.kind {
            "wait_for" => false,
            // Only waiting for a pod reads; every other kube action changes the cluster.
            "kube" => self.argv.first().map(String::as_str) != Some("wait_pod_ready"),
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
        StepKind::Kube(k) => {
            if let Some(w) = k.timeout {
                timeout = Some(timeout.map_or(w, |t| t.min(w)));
            }
            kube_argv(&r, k)?
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

/// Lowers a `kube` step: the action checked, namespace and name rendered and checked as
/// DNS-1123 names (alert labels are untrusted: nothing else may reach an API path).
fn kube_argv(r: &Renderer<'_>, k: &KubeStep) -> Result<Vec<String>, StepError> {
    if let Some(p) = k.problems().into_iter().next() {
        return Err(step_error(r.step, p));
    }
    let namespace = r.one("namespace", &k.namespace)?;
    if let Err(m) = dns1123_label(&namespace) {
        return Err(step_error(r.step, format!("namespace: {m}")));
    }
    let name = r.one("name", &k.name)?;
    if let Err(m) = dns1123_subdomain(&name) {
        return Err(step_error(r.step, format!("name: {m}")));
    }
    let mut argv = vec![
        k.action.clone(),
        format!("namespace={namespace}"),
        format!("name={name}"),
    ];
    if let Some(n) = k.replicas {
        argv.push(format!("replicas={n}"));
    }
    if let Some(g) = k.grace_period_seconds {
        argv.push(format!("grace_period_seconds={g}"));
    }
    Ok(argv)
}

/// Checks a DNS-1123 label (namespaces): 1 to 63 of `a-z`, `0-9`, `-`, starting and ending
/// with a letter or digit.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a DNS-1123 label (at most 63 of a-z, 0-9 and `-`, \
             starting and ending with a letter or digit)",
            s.escape_debug()
        ))
    }
}

/// Checks a DNS-1123 subdomain (pod and StatefulSet names): at most 253 characters,
/// DNS-1123 labels joined by `.`.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| dns1123_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a DNS-1123 name (at most 253 of a-z, 0-9, `-` and `.`, \
             each part starting and ending with a letter or digit)",
            s.escape_debug()
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::KubeStep;

    #[test]
    fn dns1123_names() {
        for ok in ["kafka", "kafka-0", "a", "0abc", &"a".repeat(63)] {
            assert_eq!(dns1123_label(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "", "Kafka", "-a", "a-", "a.b", "a_b", "a/b", "a b", "ä", &long,
        ] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(dns1123_subdomain("kafka-0.kafka-headless"), Ok(()));
        for bad in ["a..b", ".a", "a.", "../x", "a\nb", &"a.".repeat(127)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    fn kube(action: &str, name: &str) -> Step {
        Step {
            name: "k".into(),
            kind: StepKind::Kube(KubeStep {
                action: action.into(),
                namespace: "kafka".into(),
                name: name.into(),
                replicas: (action == "scale").then_some(3),
                timeout: (action == "wait_pod_ready").then_some(Duration::from_secs(60)),
                grace_period_seconds: None,
            }),
            timeout: Some(Duration::from_secs(30)),
            retries: 0,
            on_failure: OnFailure::Abort,
        }
    }

    #[test]
    fn kube_steps_render_to_action_and_checked_names() {
        let mut t = Templates::default();
        let src = "kafka-{{alert.labels.id}}";
        t.add(src).expect("template");
        let ctx = |id: &str| serde_json::json!({"alert": {"labels": {"id": id}}});
        let r = render_steps(&[kube("evict_pod", src)], &t, &ctx("2")).expect("renders");
        assert_eq!(
            r[0].argv,
            ["evict_pod", "namespace=kafka", "name=kafka-2"].map(String::from)
        );
        assert_eq!(r[0].kind, "kube");
        let r = render_steps(&[kube("scale", "kafka")], &t, &ctx("2")).expect("renders");
        assert_eq!(
            r[0].argv,
            ["scale", "namespace=kafka", "name=kafka", "replicas=3"].map(String::from)
        );
        // The shorter of the step's timeout and the wait's own.
        let r = render_steps(&[kube("wait_pod_ready", "p")], &t, &ctx("2")).expect("renders");
        assert_eq!(r[0].timeout_seconds, Some(30.0));
        for hostile in ["2/../../secrets", "2;rm -rf", "X", "2\n", "2 ", ""] {
            let e = render_steps(&[kube("evict_pod", src)], &t, &ctx(hostile)).expect_err(hostile);
            assert!(e.message.starts_with("name: `"), "{e}");
            assert!(e.message.contains("is not a DNS-1123 name"), "{e}");
        }
        let e = render_steps(&[kube("drain", "p")], &t, &ctx("2")).expect_err("action");
        assert!(
            e.message.contains("kube action `drain` is not one of"),
            "{e}"
        );
    }

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
        assert!(step("kube", &["evict_pod", "namespace=k", "name=p"]).is_disruptive());
        assert!(step("kube", &["scale", "namespace=k", "name=s", "replicas=1"]).is_disruptive());
        assert!(!step("kube", &["wait_pod_ready", "namespace=k", "name=p"]).is_disruptive());
    }
}
