//! Pauses over the API: `POST /api/v1/pauses` sets one, `GET /api/v1/pauses` lists those in
//! force, `DELETE /api/v1/pauses/targets/{node_id}` and `DELETE /api/v1/pauses/cluster`
//! end one early. A pause is journaled before the answer; bad input gets a 400 that says
//! what is wrong, and nothing changes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::api::check_auth;
use super::{AppState, error};
use crate::clock::rfc3339_ms;
use crate::engine::pause::{PauseError, PauseRequest, PauseScope};

/// The body of `POST /api/v1/pauses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// A broker's node_id.
    #[serde(default)]
    target: Option<String>,
    /// `true` for the whole cluster.
    #[serde(default)]
    cluster: Option<bool>,
    /// How long (`30m`, `2h`, `1h30m`, `1d`).
    #[serde(default, rename = "for")]
    duration: Option<String>,
    /// Why.
    #[serde(default)]
    reason: Option<String>,
}

/// A pause body that names no single scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ScopeError {
    /// Both `target` and `"cluster": true`.
    #[error("give either `target` or `\"cluster\": true`, not both")]
    Both,
    /// Neither.
    #[error("give `target` (a broker's node_id) or `\"cluster\": true` for every broker")]
    Neither,
}

/// The scope a body names, or why it names none.
fn scope_of(b: &PauseBody) -> Result<PauseScope, ScopeError> {
    match (&b.target, b.cluster.unwrap_or(false)) {
        (Some(_), true) => Err(ScopeError::Both),
        (Some(t), false) => Ok(PauseScope::Target(t.clone())),
        (None, true) => Ok(PauseScope::Cluster),
        (None, false) => Err(ScopeError::Neither),
    }
}

fn failure(e: PauseError) -> Response {
    let status = match e {
        PauseError::UnknownTarget(_) => StatusCode::BAD_REQUEST,
        PauseError::Journal(_) | PauseError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// `POST /api/v1/pauses`: `{"target": "kafka-2", "for": "30m", "reason": "upgrade"}` or
/// `{"cluster": true, …}`. A pause of the same scope is replaced.
pub async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(rej) => {
            let limit = st.startup.server.body_limit_bytes;
            return error(
                rej.status(),
                format!("{} (server.body_limit_bytes = {limit})", rej.body_text()),
            );
        }
    };
    let malformed = |e: String| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed pause request: {e}"),
        )
    };
    // An object, not any JSON serde would take for the struct (an array, for one).
    let b: PauseBody = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => match serde_json::from_value(v) {
            Ok(b) => b,
            Err(e) => return malformed(e.to_string()),
        },
        Ok(_) => return malformed("the body must be a JSON object".into()),
        Err(e) => return malformed(e.to_string()),
    };
    let scope = match scope_of(&b) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let req = match PauseRequest::new(
        scope,
        b.duration.as_deref().unwrap_or_default(),
        b.reason.as_deref().unwrap_or_default(),
    ) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match st.engine.pause(req).await {
        Ok(p) => {
            info!(scope = %p.scope, until = %rfc3339_ms(p.until_ms), reason = ?p.reason, "paused over the API");
            Json(json!({ "status": "success", "pause": p.json() })).into_response()
        }
        Err(e) => failure(e),
    }
}

/// `GET /api/v1/pauses`: the pauses in force.
pub async fn list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    let pauses: Vec<_> = st.engine.pauses().await.iter().map(|p| p.json()).collect();
    Json(json!({ "status": "success", "pauses": pauses })).into_response()
}

/// Ends the pause of `scope` early; `resumed` is the pause that ended, or `null` when
/// none was in force (not an error: it may just have expired).
async fn resume(st: &AppState, scope: PauseScope) -> Response {
    match st.engine.resume(scope.clone()).await {
        Ok(Some(p)) => {
            info!(scope = %p.scope, "resumed over the API");
            Json(json!({ "status": "success", "resumed": p.json() })).into_response()
        }
        Ok(None) => Json(json!({
            "status": "success",
            "resumed": null,
            "target": scope.target(),
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

/// `DELETE /api/v1/pauses/targets/{node_id}`.
pub async fn resume_target(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    // A broker the config no longer has may still hold a pause from before a reload.
    let paused = st
        .engine
        .pauses()
        .await
        .iter()
        .any(|p| p.scope.target() == Some(target.as_str()));
    if !paused && !st.engine.current().is_target(&target) {
        let e = PauseError::UnknownTarget(target);
        return error(StatusCode::NOT_FOUND, e.to_string());
    }
    resume(&st, PauseScope::Target(target)).await
}

/// `DELETE /api/v1/pauses/cluster`.
pub async fn resume_cluster(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = check_auth(&st, &headers) {
        return r;
    }
    resume(&st, PauseScope::Cluster).await
}
