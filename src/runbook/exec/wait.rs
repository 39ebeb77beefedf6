//! `wait_for` steps: try a TCP connect or an HTTP GET until it works or time runs out.

use std::time::Duration;

use reqwest::{Method, Url};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::{fetch, parse_url};
use super::output::Captured;
use super::{ExecError, ExecOptions, Outcome};
use crate::journal::StepStatus;

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
pub(super) async fn run_wait(
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
    match fetch(
        &opts.http_client,
        Method::GET,
        url,
        None,
        limit,
        opts.max_output,
    )
    .await
    {
        Ok(a) if a.status.is_success() => Ok(a.body),
        Ok(a) => Err((format!("HTTP {}", a.status), a.body)),
        Err(n) => Err((n.message, Captured::default())),
    }
}
