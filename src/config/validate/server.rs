//! The `server` section: the webhook listener's address, limits and authentication.

use std::net::SocketAddr;
use std::str::FromStr;

use super::between;
use crate::config::model::Config;

/// Checks the listen address, connection and body limits, timeouts and HTTP/2.
pub(super) fn server(config: &Config, err: &mut impl FnMut(&str, String)) {
    let s = &config.server;
    if SocketAddr::from_str(&s.listen).is_err() {
        err(
            "server.listen",
            format!(
                "`{}` is not an address:port (e.g. 127.0.0.1:5599)",
                s.listen
            ),
        );
    }
    between(
        err,
        "server.max_pending_alerts",
        s.max_pending_alerts,
        100,
        10_000_000,
    );
    if s.admission_wait_ms > 30_000 {
        err(
            "server.admission_wait_ms",
            format!(
                "must be at most 30000 (Alertmanager's own timeout must not end the wait), got {}",
                s.admission_wait_ms
            ),
        );
    }
    for (key, v, range) in [
        (
            "server.max_connections",
            s.max_connections as u64,
            16..=1_000_000,
        ),
        (
            "server.header_read_timeout_seconds",
            s.header_read_timeout_seconds,
            1..=300,
        ),
        (
            "server.body_timeout_seconds",
            s.body_timeout_seconds,
            1..=3600,
        ),
        (
            "server.keep_alive_idle_seconds",
            s.keep_alive_idle_seconds,
            1..=3600,
        ),
        (
            "server.http2_max_concurrent_streams",
            u64::from(s.http2_max_concurrent_streams),
            1..=1000,
        ),
    ] {
        between(err, key, v, *range.start(), *range.end());
    }
    if s.http2 && s.tls.is_none() {
        err(
            "server.http2",
            "HTTP/2 is served over TLS only (set server.tls); plaintext h2c is never offered"
                .into(),
        );
    }
    if s.body_limit_bytes > 64 << 20 {
        err(
            "server.body_limit_bytes",
            format!(
                "must be at most 67108864 (64 MiB), got {}",
                s.body_limit_bytes
            ),
        );
    }
    if s.body_limit_bytes < 1024 {
        err(
            "server.body_limit_bytes",
            format!("must be at least 1024, got {}", s.body_limit_bytes),
        );
    }
}

/// Checks `server.auth`: exactly one of bearer token and basic auth, neither empty.
pub(super) fn server_auth(config: &Config, err: &mut impl FnMut(&str, String)) {
    if let Some(a) = &config.server.auth {
        let bearer = a.bearer_token.is_some();
        match (bearer, &a.basic) {
            (false, None) => err(
                "server.auth",
                "set bearer_token (or bearer_token_file) or basic".into(),
            ),
            (true, Some(_)) => err(
                "server.auth",
                "set either bearer_token or basic, not both".into(),
            ),
            (true, None)
                if a.bearer_token
                    .as_ref()
                    .is_some_and(|t| t.expose().is_empty()) =>
            {
                err("server.auth.bearer_token", "must not be empty".into())
            }
            (_, Some(b)) if b.password.as_ref().is_none_or(|p| p.expose().is_empty()) => err(
                "server.auth.basic",
                "basic auth needs a non-empty password (or password_file)".into(),
            ),
            _ => {}
        }
    }
}
