//! `http` steps: one request; a 2xx answer succeeds.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use tokio_util::sync::CancellationToken;

use super::output::{Captured, push_capped};
use super::{ExecError, ExecOptions, Outcome, error_chain};
use crate::journal::StepStatus;

/// An answer, with its body capped.
pub(super) struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The first bytes of the body.
    pub body: Captured,
}

/// A request that got no answer in time, or none at all.
pub(super) struct NoAnswer {
    /// The time limit was reached.
    pub timed_out: bool,
    /// What happened.
    pub message: String,
}

/// Runs `[METHOD, URL]` with an optional body (see the module doc).
pub(super) async fn run_http(
    argv: &[String],
    body: Option<&str>,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let [method, url] = argv else {
        return Outcome::fatal(invalid("argv must be [METHOD, URL]"));
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Outcome::fatal(invalid(format!(
            "`{}` is not an HTTP method",
            method.escape_debug()
        )));
    };
    let url = match parse_url(url) {
        Ok(u) => u,
        Err(e) => return Outcome::fatal(e),
    };
    let answer = tokio::select! {
        a = fetch(&opts.http_client, method, url, body, timeout, opts.max_output) => a,
        _ = cancel.cancelled() => return Outcome::fatal(ExecError::Cancelled),
    };
    match answer {
        Ok(a) => {
            let mut o = Outcome::new(if a.status.is_success() {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            });
            if !a.status.is_success() {
                o.error = Some(format!("HTTP {}", a.status));
            }
            if let Some(e) = &a.body.error {
                o.error = Some(match o.error {
                    Some(s) => format!("{s}; reading the body failed: {e}"),
                    None => format!("reading the body failed: {e}"),
                });
            }
            o.stdout = a.body.text();
            o.stdout_truncated = a.body.truncated;
            o
        }
        Err(n) if n.timed_out => Outcome {
            error: Some(n.message),
            ..Outcome::new(StepStatus::TimedOut)
        },
        Err(n) => Outcome::failed(n.message),
    }
}

/// Parses an http(s) URL.
pub(super) fn parse_url(url: &str) -> Result<Url, ExecError> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        Ok(u) => Err(invalid(format!("scheme `{}` is not http(s)", u.scheme()))),
        Err(e) => Err(invalid(format!(
            "`{}` is not a URL: {e}",
            url.escape_debug()
        ))),
    }
}

fn invalid(message: impl Into<String>) -> ExecError {
    ExecError::InvalidStep {
        kind: "http".to_string(),
        message: message.into(),
    }
}

/// Sends one request and reads at most `max` bytes of the answer's body, all within `limit`.
/// A body that parses as JSON is sent as `application/json`, any other as `text/plain`.
pub(super) async fn fetch(
    client: &reqwest::Client,
    method: Method,
    url: Url,
    body: Option<&str>,
    limit: Duration,
    max: usize,
) -> Result<Answer, NoAnswer> {
    let mut req = client.request(method, url).timeout(limit);
    if let Some(b) = body {
        let ct = if serde_json::from_str::<serde::de::IgnoredAny>(b).is_ok() {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        req = req.header(CONTENT_TYPE, ct).body(b.to_string());
    }
    let exchange = async {
        let mut resp = req.send().await.map_err(no_answer)?;
        let status = resp.status();
        let mut body = Captured::default();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    push_capped(&mut body, &c, max);
                    if body.truncated {
                        break; // the rest is not needed; dropping the response closes it
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(no_answer(e)),
                Err(e) => {
                    body.error = Some(error_chain(&e));
                    break;
                }
            }
        }
        Ok(Answer { status, body })
    };
    // reqwest's own timeout covers the exchange; this one is the backstop.
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(limit)),
    }
}

fn no_answer(e: reqwest::Error) -> NoAnswer {
    NoAnswer {
        timed_out: e.is_timeout(),
        message: error_chain(&e),
    }
}

fn timed_out(limit: Duration) -> NoAnswer {
    NoAnswer {
        timed_out: true,
        message: format!("no answer within {}", humantime::format_duration(limit)),
    }
}
