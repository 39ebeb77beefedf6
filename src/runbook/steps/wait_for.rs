//! `wait_for` steps: try a TCP connect or an HTTP GET until it works or time runs out.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::url::{UrlError, UrlTemplate};
use super::http::{fetch, parse_url};
use crate::journal::StepStatus;
use crate::rules::duration::duration;
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome};
use crate::runbook::exec::output::Captured;
use crate::runbook::render::{Lowered, RenderedStep, Renderer, StepError, plain_host};

/// The key the kind is written with.
pub const KEY: &str = "wait_for";

/// `wait_for` step: exactly one of `tcp` and `http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "WaitForSpec")]
pub struct WaitForStep {
    /// `host:port` to connect to (template: literal text, `{{target.host}}` and
    /// `{{target.port}}` only).
    #[serde(default)]
    pub tcp: Option<String>,
    /// URL that must answer 2xx (template, as an `http` step's URL: host and port from
    /// literal text or config only, other values percent-encoded in the path and query).
    #[serde(default)]
    pub http: Option<String>,
    /// How long to keep trying.
    pub timeout: Duration,
    /// The `http` URL as parsed, or why it cannot be.
    parsed_http: Option<Result<UrlTemplate, UrlError>>,
}

/// A `wait_for` step as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitForSpec {
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    http: Option<String>,
    #[serde(deserialize_with = "duration")]
    timeout: Duration,
}

impl From<WaitForSpec> for WaitForStep {
    fn from(s: WaitForSpec) -> WaitForStep {
        WaitForStep {
            parsed_http: s.http.as_deref().map(UrlTemplate::parse),
            tcp: s.tcp,
            http: s.http,
            timeout: s.timeout,
        }
    }
}

const ONE_OF: &str = "wait_for needs exactly one of `tcp` and `http`";

impl WaitForStep {
    /// Every template source: the address or the URL.
    pub(crate) fn templates(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.tcp.as_deref().into_iter().collect();
        // A URL is rendered value by value (see `UrlTemplate::render`).
        if let Some(Ok(t)) = &self.parsed_http {
            out.extend(t.templates());
        }
        out
    }

    /// Not exactly one of `tcp` and `http`, or a host or port that alert data could choose.
    pub(crate) fn problems(&self) -> Vec<String> {
        if self.tcp.is_some() == self.http.is_some() {
            return vec![ONE_OF.into()];
        }
        let mut out = Vec::new();
        if let Some(Err(e)) = &self.parsed_http {
            out.push(format!("wait_for http: {e}"));
        }
        if let Some(Err(e)) = self.tcp.as_deref().map(tcp_template) {
            out.push(format!("wait_for tcp: {e}"));
        }
        out
    }

    /// `[tcp, HOST:PORT]` or `[http, URL]`, within the wait's own `timeout`.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        let argv = match (&self.tcp, &self.http) {
            (Some(t), None) => {
                tcp_template(t).map_err(|e| r.error(format!("tcp: {e}")))?;
                let addr = r.one("tcp", t)?;
                check_host_port(&addr).map_err(|m| r.error(format!("tcp: {m}")))?;
                vec!["tcp".to_string(), addr]
            }
            (None, Some(_)) => {
                let t = match &self.parsed_http {
                    Some(Ok(t)) => t,
                    Some(Err(e)) => return Err(r.error(format!("http: {e}"))),
                    None => return Err(r.error(ONE_OF)),
                };
                vec!["http".to_string(), t.render(r, "http")?.url]
            }
            _ => return Err(r.error(ONE_OF)),
        };
        Ok(Lowered {
            argv,
            body: None,
            timeout: Some(self.timeout),
        })
    }
}

/// Checks that a `tcp` template's host and port come from literal text or config values
/// only, as an `http` URL's do: a label cannot send the wait to another host or port.
fn tcp_template(t: &str) -> Result<(), AddressError> {
    let u = UrlTemplate::parse(&format!("http://{t}"))?;
    if !u.path.is_empty() || u.query.is_some() {
        return Err(AddressError::TemplateNotHostPort(t.to_string()));
    }
    Ok(())
}

/// A `wait_for tcp` address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The template's host or port could come from alert data, or it does not parse.
    #[error(transparent)]
    Template(#[from] UrlError),
    /// The template has a path or query: not `host:port`. Carries the template.
    #[error("`{0}` is not host:port")]
    TemplateNotHostPort(String),
    /// The rendered address is not `host:port` with a port from 1 to 65535. Carries it.
    #[error("`{}` is not host:port", .0.escape_debug())]
    NotHostPort(String),
}

/// Checks `host:port` (or `[v6]:port`).
pub fn check_host_port(s: &str) -> Result<(), AddressError> {
    let not = || AddressError::NotHostPort(s.to_string());
    let (host, port) = s.rsplit_once(':').ok_or_else(not)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = plain_host(host) || host.parse::<std::net::Ipv6Addr>().is_ok();
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(not()),
    }
}

/// Waiting only reads.
pub(crate) fn is_disruptive(_argv: &[String]) -> bool {
    false
}

/// One try: probe until ready or `timeout` has passed.
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    run_wait(&step.argv, timeout, opts, cancel).await
}

/// Longest single TCP connect try.
const TCP_TRY_LIMIT: Duration = Duration::from_secs(2);
/// Longest single HTTP try.
const HTTP_TRY_LIMIT: Duration = Duration::from_secs(5);

enum Probe {
    Tcp(String),
    Http(Url),
}

/// Runs `[tcp, HOST:PORT]` or `[http, URL]` until ready or `timeout` has passed, with
/// [`ExecOptions::wait_interval`] between tries.
async fn run_wait(
    argv: &[String],
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let probe = match argv {
        [mode, addr] if mode == "tcp" => Probe::Tcp(addr.clone()),
        [mode, url] if mode == "http" => match parse_url(url) {
            Ok(u) => Probe::Http(u),
            Err(e) => return Outcome::fatal(e),
        },
        _ => {
            return Outcome::fatal(ExecError::InvalidStep {
                kind: "wait_for".to_string(),
                message: "argv must be [tcp, HOST:PORT] or [http, URL]".to_string(),
            });
        }
    };
    let start = Instant::now();
    let mut tries: u32 = 0;
    let mut last = String::new();
    let mut last_body = Captured::default();
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        if tries > 0 && remaining.is_zero() {
            break;
        }
        tries = tries.saturating_add(1);
        let attempt = async {
            match &probe {
                Probe::Tcp(addr) => try_tcp(addr, remaining.min(TCP_TRY_LIMIT)).await,
                Probe::Http(url) => {
                    try_http(opts, url.clone(), remaining.min(HTTP_TRY_LIMIT)).await
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = cancel.cancelled() => return Outcome::fatal(ExecError::Cancelled),
        };
        match result {
            Ok(body) => {
                return Outcome {
                    stdout: body.text(),
                    stdout_truncated: body.truncated,
                    ..Outcome::new(StepStatus::Succeeded)
                };
            }
            Err((message, body)) => {
                last = message;
                last_body = body;
            }
        }
        let remaining = timeout.saturating_sub(start.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(opts.wait_interval.min(remaining)) => {}
            _ = cancel.cancelled() => return Outcome::fatal(ExecError::Cancelled),
        }
    }
    Outcome {
        error: Some(format!(
            "not ready within {} ({tries} tries); last: {last}",
            humantime::format_duration(timeout)
        )),
        stdout: last_body.text(),
        stdout_truncated: last_body.truncated,
        ..Outcome::new(StepStatus::TimedOut)
    }
}

async fn try_tcp(addr: &str, limit: Duration) -> Result<Captured, (String, Captured)> {
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(Captured::default()),
        Ok(Err(e)) => Err((e.to_string(), Captured::default())),
        Err(_) => Err((
            format!("no connection within {}", humantime::format_duration(limit)),
            Captured::default(),
        )),
    }
}

async fn try_http(
    opts: &ExecOptions,
    url: Url,
    limit: Duration,
) -> Result<Captured, (String, Captured)> {
    match fetch(&opts.http_client, url, limit, opts.max_output).await {
        Ok(a) if a.status.is_success() => Ok(a.body),
        Ok(a) => Err((format!("HTTP {}", a.status), a.body)),
        Err(n) => Err((n.message, Captured::default())),
    }
}
