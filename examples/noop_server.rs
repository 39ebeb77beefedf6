//! No-op ceiling for the webhook benchmark (see BENCHMARKS.md, "Side by side").
//!
//! An axum server that answers `POST /api/v1/alerts` with 200 `{"status":"success"}` as soon
//! as it has read the body, and nothing else: no parsing, no auth check, no journal, no
//! decision. It is served the way `kafka-healing serve` serves (same axum and axum-server
//! versions, `axum_server::from_tcp` on a std listener, the 1 MiB body limit of
//! `server.body_limit_bytes`, tokio's default multi-thread runtime), so its ACK latency on this
//! machine, in the same run, is the floor that the real server's latency is compared with.
//!
//! It listens on `127.0.0.1:0` (or the address given as the only argument) and prints
//! `listening on http://ADDR` as its first stdout line, as `kafka-healing serve` does; the
//! load generator (`examples/loadgen.rs --target noop`) starts it and reads that line. It
//! stops on SIGTERM or SIGINT (the default action: it has nothing to flush).
//!
//! ```sh
//! cargo build --release --locked --example noop_server
//! target/release/examples/noop_server            # listening on http://127.0.0.1:PORT
//! ```

use std::io::Write;
use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

/// `server.body_limit_bytes`' default in kafka-healing.
const BODY_LIMIT: usize = 1024 * 1024;

/// Reads the whole body (up to [`BODY_LIMIT`]), then answers at once.
async fn alerts(body: Bytes) -> impl IntoResponse {
    // The body is read (that is part of the ceiling), then dropped.
    drop(body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"success"}"#,
    )
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("noop_server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(&addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noop_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> Result<(), String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{local}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the address to stdout: {e}"))?;
    drop(out);
    let app = Router::new()
        .route("/api/v1/alerts", post(alerts))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    axum_server::from_tcp(listener)
        .map_err(|e| format!("from_tcp: {e}"))?
        .serve(app.into_make_service())
        .await
        .map_err(|e| format!("serve: {e}"))
}
