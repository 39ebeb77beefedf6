//! The HTTP server: Alertmanager's webhook, the executions API, pauses, health and metrics.

mod api;
mod pauses;

pub use api::{ReloadError, reload_setup};
pub mod auth;
pub mod guard;
pub mod listen;
mod sniff;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::engine::EngineHandle;
use crate::journal::Journal;
use crate::metrics::Metrics;

/// Shared state of every handler.
pub struct AppState {
    /// The journal.
    pub journal: Journal,
    /// The engine.
    pub engine: EngineHandle,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// False once shutdown began: the webhook answers 503 so Alertmanager retries elsewhere
    /// or later.
    pub accepting: AtomicBool,
    /// The config files (`-c`, in order), for reloads: a reload reads every layer again.
    pub config_paths: Vec<PathBuf>,
    /// Serializes reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The configuration the process started with (listen address, body limit, TLS,
    /// journal and logging cannot change without a restart).
    pub startup: crate::config::Config,
}

impl AppState {
    /// Whether intake is open.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }
}

/// A JSON error response.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "status": "error", "error": message.into() })),
    )
        .into_response()
}

/// `/metrics` alone, for `system.metrics.port`: plain and read-only, without auth like
/// `/metrics` on the main port.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// The router, every route behind the [`guard`](guard::guard) (which bounds bodies: 413
/// beyond `limits.body_limit`).
pub fn router(state: Arc<AppState>, limits: Arc<guard::Limits>) -> Router {
    let body_limit = limits.body_limit;
    Router::new()
        .route("/api/v1/alerts", post(webhook::receive))
        .route("/api/v1/executions", get(api::list))
        .route("/api/v1/executions/{id}", get(api::show))
        .route("/api/v1/targets/{target}/reset", post(api::reset))
        .route("/api/v1/rules/{rule}/reset", post(api::reset_rule))
        .route("/api/v1/pauses", get(pauses::list).post(pauses::create))
        .route("/api/v1/pauses/cluster", delete(pauses::resume_cluster))
        .route(
            "/api/v1/pauses/targets/{target}",
            delete(pauses::resume_target),
        )
        .route("/-/reload", post(api::reload))
        .route("/-/healthy", get(|| async { "ok\n" }))
        .route("/-/ready", get(api::ready))
        .route("/metrics", get(api::metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), limits),
            guard::guard,
        ))
        .with_state(state)
}
