//! `http` steps: one request; a 2xx answer succeeds, anything else (a 3xx too: redirects
//! are never followed) fails.
//!
//! No alert value can change where a request goes or what its body means: the scheme, host
//! and port come from the URL's literal text and config values ([`url`]), path and query
//! values are percent-encoded, a mapping body is built as JSON structurally ([`body`]),
//! headers are literal or secrets ([`headers`]), and CR, LF or NUL in a rendered value is an
//! error. The argv holds the exact URL sent; the body is sent as journaled.

pub mod body;
pub mod headers;
pub mod url;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::headers::HeaderSpec;
use self::url::{UrlError, UrlTemplate};
use crate::journal::StepStatus;
use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::{ExecError, Outcome, error_chain};
use crate::runbook::exec::output::{Captured, push_capped};
use crate::runbook::render::{Lowered, RenderedStep, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "http";

/// The content type of a body built from a mapping.
const JSON: &str = "application/json";

/// `http` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "HttpSpec")]
pub struct HttpStep {
    /// Method: GET, POST, PUT, PATCH, DELETE or HEAD.
    pub method: String,
    /// URL (template; see [`url`] for what values may go where).
    pub url: String,
    /// Request body: a string (sent as written; config values only) or a mapping (sent as
    /// JSON, each string leaf a template).
    pub body: Option<Value>,
    /// Request headers, literal or from secrets.
    pub headers: BTreeMap<String, HeaderSpec>,
    /// The URL as parsed, or why it cannot be.
    parsed: Result<UrlTemplate, UrlError>,
}

/// An `http` step as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderSpec>,
}

impl From<HttpSpec> for HttpStep {
    fn from(s: HttpSpec) -> HttpStep {
        HttpStep {
            parsed: UrlTemplate::parse(&s.url),
            method: s.method,
            url: s.url,
            body: s.body,
            headers: s.headers,
        }
    }
}

fn get() -> String {
    "GET".into()
}

/// The HTTP methods a step may use.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

impl HttpStep {
    /// Every template source: the URL's values and the body's.
    pub(crate) fn templates(&self) -> Vec<&str> {
        let mut out = match &self.parsed {
            Ok(t) => t.templates(),
            Err(_) => Vec::new(),
        };
        if let Some(b) = &self.body {
            out.extend(body::templates(b));
        }
        out
    }

    /// A method that is not one of [`HTTP_METHODS`] (in any case), a URL whose host or
    /// port is templated from alert data (or that does not parse), a body that could leak,
    /// a header that is templated or reserved.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !HTTP_METHODS.contains(&self.method.to_ascii_uppercase().as_str()) {
            out.push(format!(
                "http method `{}` is not one of {}",
                self.method,
                HTTP_METHODS.join(", ")
            ));
        }
        if let Err(e) = &self.parsed {
            out.push(format!("http url `{}`: {e}", self.url));
        }
        if let Some(b) = &self.body {
            out.extend(body::problems(b));
            if b.is_object() || b.is_array() {
                out.extend(
                    self.headers
                        .keys()
                        .filter(|k| k.eq_ignore_ascii_case("content-type"))
                        .map(|_| {
                            "http: a mapping body is sent as application/json; \
                                  leave out the Content-Type header"
                                .to_string()
                        }),
                );
            }
        }
        for (name, spec) in &self.headers {
            out.extend(headers::problems(name, spec));
        }
        out
    }

    /// `[METHOD, URL, HEADER…]` and the body; each header is a JSON `[name, source]`.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        if let Some(p) = self.problems().into_iter().next() {
            return Err(r.error(p));
        }
        let method = self.method.to_ascii_uppercase();
        let t = self.parsed.as_ref().map_err(|e| r.error(e.to_string()))?;
        let url = t.render(r, "url")?;
        let mut argv = vec![method, url.url];
        let body = match &self.body {
            Some(b) => {
                let (text, json) = body::render(b, r)?;
                if json {
                    argv.push(headers::to_arg(
                        CONTENT_TYPE.as_str(),
                        &HeaderSpec::Literal(JSON.into()),
                    ));
                }
                Some(text)
            }
            None => None,
        };
        argv.extend(self.headers.iter().map(|(n, s)| headers::to_arg(n, s)));
        Ok(Lowered {
            argv,
            body,
            timeout: None,
        })
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
    /// Where a redirect pointed (never followed).
    pub location: Option<String>,
}

/// A request that got no answer in time, or none at all.
pub(crate) struct NoAnswer {
    /// The time limit was reached.
    pub timed_out: bool,
    /// What happened.
    pub message: String,
}

/// Runs `[METHOD, URL, HEADER…]` with an optional body.
async fn run_http(
    argv: &[String],
    body: Option<&str>,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let [method, url, header_args @ ..] = argv else {
        return Outcome::fatal(invalid("argv must be [METHOD, URL] and then headers"));
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Outcome::fatal(invalid(format!(
            "`{}` is not an HTTP method",
            method.escape_debug()
        )));
    };
    let url = match parse_url(url) {
        // What is journaled is what is sent: a URL the parser would change is refused.
        Ok(u) if u.as_str() != url => {
            return Outcome::fatal(invalid(format!(
                "`{}` would be sent as `{}`",
                url.escape_debug(),
                u.as_str()
            )));
        }
        Ok(u) => u,
        Err(e) => return Outcome::fatal(e),
    };
    let mut headers = Vec::with_capacity(header_args.len());
    for h in header_args {
        match headers::resolve(h) {
            Ok(pair) => headers.push(pair),
            Err(e) => return Outcome::fatal(invalid(e.to_string())),
        }
    }
    let req = Request {
        method,
        url,
        body,
        headers,
    };
    let answer = tokio::select! {
        a = send(&opts.http_client, req, timeout, opts.max_output) => a,
        _ = cancel.cancelled() => return Outcome::fatal(ExecError::Cancelled),
    };
    match answer {
        Ok(a) => {
            let mut o = Outcome::new(if a.status.is_success() {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            });
            if a.status.is_redirection() {
                o.error = Some(format!(
                    "HTTP {} to `{}`: redirects are not followed",
                    a.status,
                    a.location.as_deref().unwrap_or("").escape_debug()
                ));
            } else if !a.status.is_success() {
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

/// One request as it is sent.
pub(crate) struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The exact URL.
    pub url: Url,
    /// The exact body.
    pub body: Option<&'a str>,
    /// Headers, secrets read.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A GET of `url` (for `wait_for`); see [`send`].
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: Url,
    limit: Duration,
    max: usize,
) -> Result<Answer, NoAnswer> {
    let req = Request {
        method: Method::GET,
        url,
        body: None,
        headers: Vec::new(),
    };
    send(client, req, limit, max).await
}

/// Sends one request and reads at most `max` bytes of the answer's body, all within `limit`.
/// A body without a Content-Type header is sent as `application/json` if it parses as JSON
/// (only config values can be in it, see [`body`]), else as `text/plain`.
pub(crate) async fn send(
    client: &reqwest::Client,
    r: Request<'_>,
    limit: Duration,
    max: usize,
) -> Result<Answer, NoAnswer> {
    let mut req = client.request(r.method, r.url).timeout(limit);
    let has_type = r.headers.iter().any(|(n, _)| n == CONTENT_TYPE);
    for (n, v) in r.headers {
        req = req.header(n, v);
    }
    if let Some(b) = r.body {
        if !has_type {
            let ct = if serde_json::from_str::<serde::de::IgnoredAny>(b).is_ok() {
                JSON
            } else {
                "text/plain; charset=utf-8"
            };
            req = req.header(CONTENT_TYPE, ct);
        }
        req = req.body(b.to_string());
    }
    let exchange = async {
        let mut resp = req.send().await.map_err(no_answer)?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
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
        Ok(Answer {
            status,
            body,
            location,
        })
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
