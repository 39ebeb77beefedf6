//! The executions API, circuit reset, reload, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::auth::{authorized, challenge};
use super::{AppState, error};
use crate::config::LoadError;
use crate::engine::Setup;
use crate::engine::policy::Scope;
use crate::journal::{ExecStatus, ExecutionFilter};
use crate::metrics::Metrics;

pub(super) fn check_auth(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    let setup = st.engine.current();
    let auth = setup.loaded.config.server.auth.as_ref();
    if authorized(auth, headers) {
        return None;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge(auth)),
    );
    Some(r)
}

/// Query string of `GET /api/v1/executions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    rule: Option<String>,
    target: Option<String>,
    since_ms: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/executions`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let status = match q.status.as_deref().map(|s| (s, ExecStatus::parse(s))) {
        Some((s, None)) => {
            return error(StatusCode::BAD_REQUEST, format!("unknown status `{s}`"));
        }
        Some((_, st)) => st,
        None => None,
    };
    let filter = ExecutionFilter {
        status,
        rule: q.rule,
        target: q.target,
        since_ms: q.since_ms,
        limit: q.limit,
    };
    let journal = st.journal.clone();
    match tokio::task::spawn_blocking(move || journal.list_executions(&filter)).await {
        Ok(Ok(list)) => Json(json!({ "status": "success", "executions": list })).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("journal: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/executions/{id}`.
pub async fn show(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an execution id"),
        );
    };
    let journal = st.journal.clone();
    match tokio::task::spawn_blocking(move || journal.get_execution(id)).await {
        Ok(Ok(Some((execution, steps, events)))) => Json(json!({
            "status": "success",
            "execution": execution,
            "steps": steps,
            "events": events,
        }))
        .into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no execution {id}")),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("journal: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/targets/{target}/reset`: closes the target's open circuits.
pub async fn reset(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let known = st.engine.current().is_target(&target);
    if !known {
        let hint = if target == "-" {
            ": a runbook without a target has a rule-level circuit; close it with \
             POST /api/v1/rules/RULE/reset"
        } else {
            ""
        };
        return error(
            StatusCode::NOT_FOUND,
            format!("`{target}` is not a configured broker{hint}"),
        );
    }
    let closed = st.engine.reset(&target).await;
    info!(target = %target, closed = ?closed, "reset requested over the API");
    Json(json!({ "status": "success", "target": target, "closed": closed })).into_response()
}

/// Query string of `POST /api/v1/rules/{rule}/reset`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleResetQuery {
    /// Only this target's circuit (`-`: the rule-level circuit of a runbook without one).
    target: Option<String>,
}

/// `POST /api/v1/rules/{rule}/reset[?target=T]`: closes the rule's open circuits (on every
/// target, or on one; `-` is the circuit of a runbook without a target) and forgets their
/// attempts.
pub async fn reset_rule(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(rule): Path<String>,
    query: Result<Query<RuleResetQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let setup = st.engine.current();
    if setup.rules.rule(&rule).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rule named {rule:?} is loaded"),
        );
    }
    let target = match q.target.as_deref() {
        None => None,
        Some("-") => Some(None),
        Some(t) if setup.is_target(t) => Some(Some(t.to_string())),
        Some(t) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("{t:?} is not a configured broker (`-` names a rule without a target)"),
            );
        }
    };
    let scope = Scope {
        rule: Some(rule.clone()),
        target,
    };
    let closed: Vec<String> = st
        .engine
        .reset_scope(scope)
        .await
        .into_iter()
        .map(|(_, t)| t.unwrap_or_else(|| "-".into()))
        .collect();
    info!(rule = ?rule, closed = ?closed, "rule reset requested over the API");
    Json(json!({ "status": "success", "rule": rule, "closed": closed })).into_response()
}

/// Why a reload was refused; the running setup is kept.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config or rules are invalid: the diagnostics, one per line.
    #[error("{0}")]
    Invalid(crate::diag::Diagnostics),
    /// The config file cannot be read.
    #[error(transparent)]
    Load(LoadError),
    /// The loading task failed (it panicked).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Reloads config and rules; an invalid new setup keeps the old one.
pub async fn reload_setup(st: &AppState) -> Result<(), ReloadError> {
    let _guard = st.reload_lock.lock().await;
    let paths = st.config_paths.clone();
    let loaded = tokio::task::spawn_blocking(move || Setup::load_files(&paths)).await;
    match loaded {
        Ok(Ok(setup)) => {
            let (o, n) = (&st.startup, &setup.loaded.config);
            let mut later = Vec::new();
            if o.server.listen != n.server.listen {
                later.push("server.listen");
            }
            if o.server.body_limit_bytes != n.server.body_limit_bytes {
                later.push("server.body_limit_bytes");
            }
            if format!("{:?}", o.server.tls) != format!("{:?}", n.server.tls) {
                later.push("server.tls");
            }
            let net = |s: &crate::config::ServerConfig| {
                (
                    s.max_connections,
                    s.header_read_timeout_seconds,
                    s.body_timeout_seconds,
                    s.keep_alive_idle_seconds,
                    s.http2,
                    s.http2_max_concurrent_streams,
                )
            };
            if net(&o.server) != net(&n.server) {
                later.push("server connection limits and timeouts");
            }
            if o.state.path != n.state.path {
                later.push("state.path");
            }
            if format!("{:?}", o.logging) != format!("{:?}", n.logging) {
                later.push("logging");
            }
            if !later.is_empty() {
                warn!(
                    keys = %later.join(", "),
                    "these settings differ from the running ones and take effect at the next restart"
                );
            }
            st.engine.reload(Arc::new(setup));
            Metrics::count(&st.metrics.reloads, "success");
            let files: Vec<String> = st
                .config_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            info!(config = %files.join(" + "), "configuration and rules reloaded");
            Ok(())
        }
        Ok(Err(e)) => {
            Metrics::count(&st.metrics.reloads, "failure");
            let e = match e {
                LoadError::Invalid(d) => ReloadError::Invalid(d),
                other => ReloadError::Load(other),
            };
            warn!("reload rejected, keeping the running configuration:\n{e}");
            Err(e)
        }
        Err(e) => {
            Metrics::count(&st.metrics.reloads, "failure");
            Err(ReloadError::Task(e))
        }
    }
}

/// `POST /-/reload`.
pub async fn reload(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    match reload_setup(&st).await {
        Ok(()) => Json(json!({ "status": "success" })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /-/ready`: journal open, rules loaded, intake open; names the targets whose series
/// the series store dropped last round.
pub async fn ready(State(st): State<Arc<AppState>>) -> Response {
    if !st.journal.is_healthy() {
        return (StatusCode::SERVICE_UNAVAILABLE, "journal unavailable\n").into_response();
    }
    if !st.is_accepting() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let rules = st.engine.current().rules.rules.len();
    // Still 200: intake and healing work, but the self-watch does not see every target
    // whole, and says which.
    let dropping = st.metrics.store.dropping();
    if !dropping.is_empty() {
        let shown: Vec<&str> = dropping.iter().take(10).map(String::as_str).collect();
        let more = dropping.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return (
            StatusCode::OK,
            format!(
                "ready: {rules} rules; series store full: the last round dropped series of {} target(s): {}{more}\n",
                dropping.len(),
                shown.join(", ")
            ),
        )
            .into_response();
    }
    (StatusCode::OK, format!("ready: {rules} rules\n")).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}
