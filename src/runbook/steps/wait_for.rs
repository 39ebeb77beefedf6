//! `wait_for` steps: try a TCP connect or an HTTP GET until it works or time runs out.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
#[serde(deny_unknown_fields)]
pub struct WaitForStep {
    /// `host:port` to connect to (template).
    #[serde(default)]
    pub tcp: Option<String>,
    /// URL that must answer 2xx (template).
    #[serde(default)]
    pub http: Option<String>,
    /// How long to keep trying.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

const ONE_OF: &str = "wait_for needs exactly one of `tcp` and `http`";

impl WaitForStep {
    /// Every template source: the address or the URL.
    pub(crate) fn templates(&self) -> Vec<&str> {
        [self.tcp.as_deref(), self.http.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Not exactly one of `tcp` and `http`.
    pub(crate) fn problems(&self) -> Vec<String> {
        if self.tcp.is_some() == self.http.is_some() {
            return vec![ONE_OF.into()];
        }
        Vec::new()
    }

    /// `[tcp, HOST:PORT]` or `[http, URL]`, within the wait's own `timeout`.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        let argv = match (&self.tcp, &self.http) {
            (Some(t), None) => {
                let addr = r.one("tcp", t)?;
                check_host_port(&addr).map_err(|m| r.error(format!("tcp: {m}")))?;
                vec!["tcp".to_string(), addr]
            }
            (None, Some(u)) => vec!["http".to_string(), super::http::url(r, "http", u)?],
            _ => return Err(r.error(ONE_OF)),
        };
        Ok(Lowered {
            argv,
            body: None,
            timeout: Some(self.timeout),
        })
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
    let host_ok = plain_host(host) || host.parse::<std::net::Ipv6Addr>().is_ok();
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(format!("`{}` is not host:port", s.escape_debug())),
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
