//! `http` steps: one request; a 2xx answer succeeds.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::journal::StepStatus;
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome, error_chain};
use crate::runbook::exec::output::{Captured, push_capped};
use crate::runbook::render::{Lowered, RenderedStep, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "http";

/// `http` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Method: GET, POST, PUT, PATCH, DELETE or HEAD.
    #[serde(default = "get")]
    pub method: String,
    /// URL (template); http or https.
    pub url: String,
    /// Request body (template).
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// The HTTP methods a step may use.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

impl HttpStep {
    /// Every template source: the URL and the body.
    pub(crate) fn templates(&self) -> Vec<&str> {
        [Some(self.url.as_str()), self.body.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// A method that is not one of [`HTTP_METHODS`] (in any case).
    pub(crate) fn problems(&self) -> Vec<String> {
        if HTTP_METHODS.contains(&self.method.to_ascii_uppercase().as_str()) {
            return Vec::new();
        }
        vec![format!(
            "http method `{}` is not one of {}",
            self.method,
            HTTP_METHODS.join(", ")
        )]
    }

    /// `[METHOD, URL]` and the body.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        let method = self.method.to_ascii_uppercase();
        if !HTTP_METHODS.contains(&method.as_str()) {
            return Err(r.error(format!("http method `{}` is not allowed", self.method)));
        }
        let url = url(r, "url", &self.url)?;
        let body = self.body.as_ref().map(|b| r.one("body", b)).transpose()?;
        Ok(Lowered {
            argv: vec![method, url],
            body,
            timeout: None,
        })
    }
}

/// Renders `src` (the step's `field`) to an http or https URL.
pub(crate) fn url(r: &Renderer<'_>, field: &str, src: &str) -> Result<String, StepError> {
    let u = r.one(field, src)?;
    match Url::parse(&u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(u),
        Ok(url) => Err(r.error(format!(
            "{field}: scheme `{}` is not http or https",
            url.scheme()
        ))),
        Err(e) => Err(r.error(format!("{field}: `{}` is not a URL: {e}", u.escape_debug()))),
    }
}

/// Only GET and HEAD read.
pub(crate) fn is_disruptive(argv: &[String]) -> bool {
    !matches!(argv.first().map(String::as_str), Some("GET" | "HEAD"))
}

/// One try: the request (see the module doc).
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    run_http(&step.argv, step.body.as_deref(), timeout, opts, cancel).await
}

/// An answer, with its body capped.
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The first bytes of the body.
    pub body: Captured,
}

/// A request that got no answer in time, or none at all.
pub(crate) struct NoAnswer {
    /// The time limit was reached.
    pub timed_out: bool,
    /// What happened.
    pub message: String,
}

/// Runs `[METHOD, URL]` with an optional body.
async fn run_http(
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
pub(crate) fn parse_url(url: &str) -> Result<Url, ExecError> {
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
pub(crate) async fn fetch(
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
