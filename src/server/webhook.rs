//! `POST /api/v1/alerts`: Alertmanager's webhook.
//!
//! The alerts are committed to the journal before the reply. Alertmanager retries 5xx and
//! drops 4xx, so: bad input → 4xx (retrying cannot help), journal unavailable or shutting
//! down → 503 (retrying will), committed → 200, and remediation runs in the background.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{debug, warn};

use super::auth::{authorized, challenge};
use super::{AppState, error};
use crate::clock::now_ms;
use crate::engine::admission::{MAX_HELD, Refusal};
use crate::ingest::{WebhookPayload, parse_webhook};
use crate::journal::NewAlert;
use crate::metrics::Metrics;

fn journal_rows(p: &WebhookPayload, now: i64) -> Vec<NewAlert> {
    p.alerts
        .iter()
        .map(|a| NewAlert::of(a, now, "webhook", &p.receiver, &p.group_key))
        .collect()
}

/// Handles one webhook request.
pub async fn receive(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let setup = st.engine.current();
    let auth = setup.loaded.config.server.auth.as_ref();
    if !authorized(auth, &headers) {
        st.metrics.rejected("unauthorized");
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge(auth)),
        );
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(rej) => {
            let status = rej.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            };
            st.metrics.rejected(reason);
            let limit = st.startup.server.body_limit_bytes;
            return error(
                status,
                format!("{} (server.body_limit_bytes = {limit})", rej.body_text()),
            );
        }
    };
    if !st.is_accepting() {
        st.metrics.rejected("shutting_down");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: retry later",
        );
    }
    // Back-pressure before journaling: a refused request is not journaled, and
    // Alertmanager sends it again; nothing acknowledged is ever dropped.
    let limit = setup.loaded.config.server.max_pending_alerts;
    let pending = st.engine.pending();
    if pending >= limit {
        st.metrics.rejected("backlog");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "decision backlog: {pending} alerts are waiting for a decision \
                 (server.max_pending_alerts = {limit}); retry later"
            ),
        );
    }
    let payload = match parse_webhook(&body) {
        Ok(p) => p,
        Err(e) => {
            st.metrics.rejected("bad_request");
            debug!(error = %e, "webhook body rejected");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    // A request of diagnostics alerts only, while their queue is full: waiting (then 503,
    // Alertmanager retries) rather than journaling them to be skipped; it also leaves the
    // CPU to the runs that free the queue. Anything else (a disruptive rule's alert, a
    // resolved alert) is taken at once.
    let diagnostics = payload
        .alerts
        .iter()
        .filter(|a| setup.only_diagnostics(a))
        .count();
    let others_need_nothing = || {
        payload.alerts.iter().all(|a| {
            setup.only_diagnostics(a) || setup.rules.rules.iter().all(|r| !r.matches(&a.labels))
        })
    };
    let wait = setup.loaded.config.server.admission_wait_ms;
    let mut _claim = None;
    if wait > 0 && diagnostics > 0 && others_need_nothing() {
        match st
            .engine
            .admission
            .claim(diagnostics, std::time::Duration::from_millis(wait))
            .await
        {
            Ok(claim) => _claim = Some(claim),
            Err(refusal) => {
                st.metrics.rejected("queue_full");
                let max = setup.loaded.config.recovery.max_queued;
                let why = match refusal {
                    Refusal::StayedFull => {
                        format!("none started within {wait} ms (server.admission_wait_ms)")
                    }
                    Refusal::TooManyHeld => {
                        format!("{MAX_HELD} requests are held back already")
                    }
                };
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "diagnostics queue full: {max} executions wait (recovery.max_queued = {max}) \
                         and {why}; retry later"
                    ),
                );
            }
        }
    }
    if !payload.forged_fingerprints.is_empty() {
        st.metrics
            .forged_fingerprints
            .inc_by(payload.forged_fingerprints.len() as u64);
        // Debug-formatted, so escaped: the values are the sender's, and may hold newlines.
        let sent: Vec<&String> = payload.forged_fingerprints.iter().take(5).collect();
        warn!(
            count = payload.forged_fingerprints.len(),
            fingerprints = ?sent,
            "alerts sent with a fingerprint that is not their labels' own: replaced by it"
        );
    }
    // One budget for all requests: the places are reserved before journaling.
    let Some(reservation) = st.engine.alerts.reserve(payload.alerts.len(), limit) else {
        st.metrics.rejected("backlog");
        let pending = st.engine.pending();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "decision backlog: {pending} alerts are waiting for a decision \
                 (server.max_pending_alerts = {limit}); retry later"
            ),
        );
    };
    // Remediation has its own budget, which diagnostics never take; when even that is full
    // the request is refused before journaling (Alertmanager retries), never taken and
    // then skipped.
    let wanted: usize = payload
        .alerts
        .iter()
        .map(|a| setup.remediation_plans(a))
        .sum();
    if let Err(full) = st.engine.remediation.check(wanted) {
        st.metrics.rejected("remediation_full");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "remediation queue full: {} executions wait \
                 (recovery.max_queued_remediation = {}); retry later",
                full.queued, full.limit
            ),
        );
    }
    let rows = journal_rows(&payload, now_ms());
    let n = rows.len();
    let t0 = Instant::now();
    let recorded = st.journal.record_alerts_in_parts(rows).await;
    st.metrics.journal_write.observe(t0.elapsed().as_secs_f64());
    let failed = recorded.error;
    let journaled: Vec<_> = recorded
        .ids
        .into_iter()
        .zip(payload.alerts)
        .filter_map(|(id, a)| id.map(|id| (id, a)))
        .collect();
    for (_, a) in &journaled {
        Metrics::count(&st.metrics.alerts_received, a.status.as_str());
    }
    // What is journaled is decided, even when a part of the request failed: Alertmanager
    // sends the whole request again, and the copies meet the policy as any repeated alert
    // does (dedup, cooldown).
    let taken = journaled.len();
    if taken > 0 {
        st.engine.alerts.submit_reserved(reservation, journaled);
    }
    if let Some(e) = failed {
        st.metrics.rejected("journal");
        warn!(error = %e, journaled = taken, of = n, "journal cannot take the alerts: answering 503 so Alertmanager retries");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("journal unavailable: {e}"),
        );
    }
    (
        StatusCode::OK,
        Json(json!({ "status": "success", "alerts": n })),
    )
        .into_response()
}
