//! The request guard, in front of every route: what can be decided from the head is
//! decided before any body byte is read. Ambiguous framing gets 400, missing credentials
//! 401, an announced body over the limit 413, each with the connection closed; then the
//! body is read within `server.body_timeout_seconds` (408 after) and the limit.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_server::ConnectionShutdown;

use super::listen::Conns;
use super::{AppState, error};

/// Routes anyone may call: health, readiness and metrics.
const PUBLIC: [&str; 3] = ["/-/healthy", "/-/ready", "/metrics"];

const WEBHOOK: &str = "/api/v1/alerts";

/// What the guard needs besides the app state.
pub struct Limits {
    /// The open connections.
    pub conns: Arc<Conns>,
    /// Largest request body.
    pub body_limit: usize,
    /// Time for a whole body.
    pub body_timeout: Duration,
}

/// The guard's state.
pub type GuardState = (Arc<AppState>, Arc<Limits>);

/// Answers `status` and closes the connection after the answer.
fn closing(req: &Request, mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(c) = req.extensions().get::<ConnectionShutdown>() {
        c.graceful_shutdown();
    }
    r
}

/// Whether the percent-decoded path is UTF-8 (what the `Path` extractors need).
fn path_is_utf8(path: &str) -> bool {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Failed to buffer the request body: length limit exceeded (server.body_limit_bytes = {limit})"
        ),
    )
}

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    Failed(axum::Error),
}

/// Reads a whole body of at most `limit` bytes.
async fn read_body(mut body: Body, limit: usize, announced: usize) -> Result<Bytes, Unread> {
    let mut out = Vec::with_capacity(announced.min(limit));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(Unread::Failed)?.into_data() else {
            continue;
        };
        if out.len() + data.len() > limit {
            return Err(Unread::TooLarge);
        }
        out.extend_from_slice(&data);
    }
    Ok(out.into())
}

/// The middleware.
pub async fn guard(State((st, lim)): State<GuardState>, req: Request, next: Next) -> Response {
    let conn = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .and_then(|ConnectInfo(peer)| lim.conns.get(peer));
    let both = req.headers().contains_key(header::CONTENT_LENGTH)
        && req.headers().contains_key(header::TRANSFER_ENCODING);
    if both || conn.as_ref().and_then(|c| c.next_verdict()) == Some(true) {
        let r = error(
            StatusCode::BAD_REQUEST,
            "a request must not carry both Content-Length and Transfer-Encoding",
        );
        return closing(&req, r);
    }
    let webhook = req.uri().path() == WEBHOOK;
    if !PUBLIC.contains(&req.uri().path()) {
        if let Some(r) = super::api::check_auth(&st, req.headers()) {
            if webhook {
                st.metrics.rejected("unauthorized");
            }
            return closing(&req, r);
        }
        if let Some(c) = &conn {
            c.prove();
        }
    }
    if !path_is_utf8(req.uri().path()) {
        let r = error(
            StatusCode::BAD_REQUEST,
            "the path is not UTF-8 once percent-decoded",
        );
        return closing(&req, r);
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > lim.body_limit as u64) {
        if webhook {
            st.metrics.rejected("too_large");
        }
        return closing(&req, too_large(lim.body_limit));
    }
    let (parts, body) = req.into_parts();
    let read = read_body(body, lim.body_limit, announced.unwrap_or(0) as usize);
    let req = Request::from_parts(parts, Body::empty());
    let bytes = match tokio::time::timeout(lim.body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(Unread::TooLarge)) => {
            if webhook {
                st.metrics.rejected("too_large");
            }
            return closing(&req, too_large(lim.body_limit));
        }
        Ok(Err(Unread::Failed(e))) => {
            let r = error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
            return closing(&req, r);
        }
        Err(_) => {
            let secs = lim.body_timeout.as_secs();
            let r = error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {secs} s (server.body_timeout_seconds)"),
            );
            return closing(&req, r);
        }
    };
    let (parts, _) = req.into_parts();
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::path_is_utf8;

    #[test]
    fn paths_decode_to_utf8_or_not() {
        assert!(path_is_utf8("/api/v1/executions/12"));
        assert!(path_is_utf8("/api/v1/targets/k%C3%A9/reset"));
        assert!(path_is_utf8("/a/%zz/%"));
        assert!(!path_is_utf8("/api/v1/targets/%FF/reset"));
        assert!(!path_is_utf8("/api/v1/executions/%C3"));
    }
}
