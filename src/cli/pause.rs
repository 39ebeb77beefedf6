//! `kafka-healing pause` and `resume`: set and end pauses through the running service's
//! API (as `reset` does), so planned work on a broker is not "healed".

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::clock::rfc3339_ms;
use crate::config::Config;
use crate::engine::pause::{Pause, PauseRequest, PauseScope};
use crate::journal::{PauseEnd, PauseRecord};

/// What to pause (or resume): one broker or ZooKeeper node, or the cluster.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["target", "cluster"])))]
pub struct Scope {
    /// A broker's node_id, or `zookeeper/ID` for a ZooKeeper node.
    #[arg(long, value_name = "NODE_ID")]
    pub target: Option<String>,
    /// The whole cluster: every broker, and work without a target.
    #[arg(long)]
    pub cluster: bool,
}

impl Scope {
    fn scope(&self) -> PauseScope {
        match &self.target {
            Some(t) => PauseScope::Target(t.clone()),
            None => PauseScope::Cluster,
        }
    }
}

/// How to reach the service.
#[derive(Debug, Args)]
pub struct Service {
    /// The config files: the service's address and credentials come from them.
    #[command(flatten)]
    pub config: super::ConfigFiles,
    /// Service base URL, when it is not the config's server.listen.
    #[arg(long)]
    pub url: Option<String>,
    /// Accept a self-signed TLS certificate.
    #[arg(long)]
    pub insecure: bool,
}

/// `kafka-healing pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The service.
    #[command(flatten)]
    pub service: Service,
    /// What to pause.
    #[command(flatten)]
    pub scope: Scope,
    /// How long: 30m, 2h, 1h30m, 1d (at least 1s, at most 7d). It ends by itself then.
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: String,
    /// Why (one line, at most 500 characters): shown with every decision the pause causes.
    #[arg(long, allow_hyphen_values = true)]
    pub reason: String,
}

/// `kafka-healing resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The service.
    #[command(flatten)]
    pub service: Service,
    /// What to resume.
    #[command(flatten)]
    pub scope: Scope,
}

/// Calls the service: `method` on the path of `segments` (each percent-encoded) with an
/// optional JSON body, with the config's credentials. Returns (endpoint, status, JSON
/// answer), or an exit code and why there was no answer.
fn call(
    cfg: &Config,
    svc: &Service,
    method: reqwest::Method,
    segments: &[&str],
    body: Option<Value>,
) -> Result<(String, reqwest::StatusCode, Value), (u8, String)> {
    let base = match &svc.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => super::reset::base_url(cfg).map_err(|e| (EXIT_USAGE, e.to_string()))?,
    };
    // URL parsers drop or resolve these (even encoded), so one would reach another route.
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err((
            EXIT_USAGE,
            format!("`{bad}` cannot be a name in the service's path"),
        ));
    }
    let mut url =
        url::Url::parse(&base).map_err(|e| (EXIT_USAGE, format!("service URL `{base}`: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| {
            (
                EXIT_USAGE,
                format!("service URL `{base}` cannot take a path"),
            )
        })?
        .pop_if_empty()
        .extend(segments);
    let endpoint = url.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (EXIT_INVALID, e.to_string()))?;
    let result = rt.block_on(async {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(svc.insecure)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let mut req = client.request(method, &endpoint);
        if let Some(auth) = &cfg.server.auth {
            if let Some(t) = &auth.bearer_token {
                req = req.bearer_auth(t.expose());
            } else if let Some(b) = &auth.basic {
                req = req.basic_auth(&b.username, b.password.as_ref().map(|p| p.expose()));
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) => Ok((endpoint, status, body)),
        Err(e) => Err((
            EXIT_INVALID,
            format!("cannot reach the service at {endpoint}: {e}"),
        )),
    }
}

fn load(paths: &[PathBuf]) -> Result<Config, ExitCode> {
    super::load_config(paths).map(|l| l.config)
}

/// Prints the outcome of a call; `ok` words a 2xx answer.
fn finish(
    r: Result<(String, reqwest::StatusCode, Value), (u8, String)>,
    ok: impl FnOnce(&Value) -> String,
) -> ExitCode {
    match r {
        Ok((_, status, body)) if status.is_success() => {
            println!("{}", ok(&body));
            ExitCode::SUCCESS
        }
        Ok((endpoint, status, body)) => {
            let msg = body["error"].as_str().unwrap_or("");
            eprintln!("error: {endpoint}: HTTP {status}: {msg}");
            ExitCode::from(EXIT_INVALID)
        }
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// `kafka-2` / `the cluster`, from a pause's JSON.
fn who(p: &Value) -> String {
    match p["target"].as_str() {
        Some(t) => t.to_string(),
        None => "the cluster".into(),
    }
}

/// `kafka-healing pause`: the duration and reason are checked here first (exit 2 when
/// wrong), the target by the service (which knows its brokers).
pub(super) fn run_pause(a: PauseArgs) -> ExitCode {
    let req = match PauseRequest::new(a.scope.scope(), &a.duration, &a.reason) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cfg = match load(a.service.config.paths()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut body = json!({ "for": a.duration.trim(), "reason": req.reason });
    match &req.scope {
        PauseScope::Cluster => body["cluster"] = json!(true),
        PauseScope::Target(t) => body["target"] = json!(t),
    }
    let r = call(
        &cfg,
        &a.service,
        reqwest::Method::POST,
        &["api", "v1", "pauses"],
        Some(body),
    );
    finish(r, |b| {
        let p = &b["pause"];
        format!(
            "{}: paused until {} ({}); end it early with {}",
            who(p),
            p["until"].as_str().unwrap_or("?"),
            p["reason"],
            p["resume"].as_str().unwrap_or("kafka-healing resume")
        )
    })
}

/// `kafka-healing resume`.
pub(super) fn run_resume(a: ResumeArgs) -> ExitCode {
    let cfg = match load(a.service.config.paths()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let scope = a.scope.scope();
    let path = match &scope {
        PauseScope::Cluster => vec!["api", "v1", "pauses", "cluster"],
        PauseScope::Target(t) => vec!["api", "v1", "pauses", "targets", t],
    };
    let r = call(&cfg, &a.service, reqwest::Method::DELETE, &path, None);
    finish(r, |b| match b["resumed"].as_object() {
        Some(_) => {
            let p = &b["resumed"];
            format!(
                "{}: resumed (the pause until {}, {}, ended early)",
                who(p),
                p["until"].as_str().unwrap_or("?"),
                p["reason"]
            )
        }
        None => format!("{scope}: not paused (nothing to resume)"),
    })
}

/// One line of `history` about a pause: (when, `paused` or `resumed`, what, words).
pub(super) type PauseLine = (i64, &'static str, String, String);

/// The `paused` and `resumed` events of `records` (newest first, at most `limit`), as
/// `history` shows them; an expiry the service did not see (it was down) is shown at the
/// pause's end.
pub(super) fn pause_lines(records: &[PauseRecord], now: i64, limit: usize) -> Vec<PauseLine> {
    let mut out = Vec::new();
    for r in records {
        let who = r.target.clone().unwrap_or_else(|| "cluster".into());
        let length = Pause {
            scope: PauseScope::Cluster,
            from_ms: r.from_ms,
            until_ms: r.until_ms,
            reason: String::new(),
        }
        .length();
        out.push((
            r.from_ms,
            "paused",
            who.clone(),
            format!(
                "until {} ({length}): {:?}",
                rfc3339_ms(r.until_ms),
                r.reason
            ),
        ));
        let end = match (r.ended_ms, r.ended_by) {
            (Some(at), Some(PauseEnd::Resumed)) => Some((at, "ended early by resume")),
            (Some(at), Some(PauseEnd::Replaced)) => Some((at, "replaced by a new pause")),
            (Some(at), _) => Some((at, "expired")),
            (None, _) if r.until_ms <= now => Some((r.until_ms, "expired")),
            (None, _) => None,
        };
        if let Some((at, how)) = end {
            out.push((at, "resumed", who, how.to_string()));
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.0));
    out.truncate(limit);
    out
}

/// A pause record as `history --json` shows it, with its `state` at `now`.
pub(super) fn pause_json(r: &PauseRecord, now: i64) -> Value {
    let state = match r.ended_by {
        Some(e) => e.as_str(),
        None if r.until_ms <= now => "expired",
        None => "in_force",
    };
    json!({
        "id": r.id,
        "scope": if r.target.is_some() { "target" } else { "cluster" },
        "target": r.target,
        "from_ms": r.from_ms,
        "until_ms": r.until_ms,
        "reason": r.reason,
        "ended_ms": r.ended_ms,
        "state": state,
    })
}
