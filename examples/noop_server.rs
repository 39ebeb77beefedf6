//! No-op ceiling for the webhook benchmark (see BENCHMARKS.md, "Side by side").
//!
//! An axum server that answers `POST /api/v1/alerts` with 200 `{"status":"success"}` as soon
//! as it has read the body, and nothing else: no parsing, no auth check, no journal, no
//! decision. It is served the way `kafka-healing serve` serves (same axum and axum-server
//! versions, `axum_server::from_tcp` on a std listener, the 1 MiB body limit of
//! `server.body_limit_bytes`, tokio's default multi-thread runtime), so its ACK latency on this
//! machine, in the same run, is the floor that the real server's latency is compared with.
//!
//! **`--durable`: the durable floor.** The same server, but a request is answered only once
//! its raw body is committed to SQLite (`floor.db` in the working directory: WAL,
//! `synchronous=FULL`, one writer thread with group commit that takes small bodies first, as
//! the journal's writer does) — 503 if the commit fails. No parsing, no row per alert, no
//! decision: the least any server that journals a request before acknowledging it must do.
//! Phase d's ACK probe against it (`loadgen --target floor`) is how far the storm itself,
//! on this machine's CPUs and disk, holds up a one-alert request that must be durable before
//! its 200.
//!
//! It listens on `127.0.0.1:0` (or the address given as the first argument) and prints
//! `listening on http://ADDR` as its first stdout line, as `kafka-healing serve` does; the
//! load generator (`examples/loadgen.rs --target noop`) starts it and reads that line. It
//! stops on SIGTERM or SIGINT (the default action: it has nothing to flush).
//!
//! ```sh
//! cargo build --release --locked --example noop_server
//! target/release/examples/noop_server            # listening on http://127.0.0.1:PORT
//! target/release/examples/noop_server 127.0.0.1:0 --durable
//! ```

use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::oneshot;

/// `server.body_limit_bytes`' default in kafka-healing.
const BODY_LIMIT: usize = 1024 * 1024;

/// Most requests committed in one transaction (as the journal's writer).
const MAX_BATCH: usize = 1024;

/// A body of at most this many bytes is small: it goes ahead of big ones.
const SMALL_BODY: usize = 64 * 1024;

/// A body to commit and who waits for the commit (`true`: committed).
type Commit = (Bytes, oneshot::Sender<bool>);

/// Where bodies go to be committed (`--durable`), or nowhere.
type Floor = Option<mpsc::Sender<Commit>>;

/// Reads the whole body (up to [`BODY_LIMIT`]), then answers: at once, or with
/// `--durable` once the body is committed.
async fn alerts(State(floor): State<Floor>, body: Bytes) -> impl IntoResponse {
    let committed = match floor {
        // The body is read (that is part of the ceiling), then dropped.
        None => true,
        Some(tx) => {
            let (done, wait) = oneshot::channel();
            tx.send((body, done)).is_ok() && wait.await.unwrap_or(false)
        }
    };
    let (status, text) = if committed {
        (StatusCode::OK, r#"{"status":"success"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"error"}"#)
    };
    (status, [(header::CONTENT_TYPE, "application/json")], text)
}

/// Opens `floor.db` and starts the thread that commits bodies in batches.
fn start_floor() -> Result<mpsc::Sender<Commit>, String> {
    let conn = rusqlite::Connection::open("floor.db").map_err(|e| format!("floor.db: {e}"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .map_err(|e| format!("floor.db: {e}"))?;
    let (tx, rx) = mpsc::channel::<Commit>();
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || {
            let mut waiting: VecDeque<Commit> = VecDeque::new();
            loop {
                if waiting.is_empty() {
                    match rx.recv() {
                        Ok(c) => waiting.push_back(c),
                        Err(_) => break,
                    }
                }
                while waiting.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(c) => waiting.push_back(c),
                        Err(_) => break,
                    }
                }
                let batch = next_batch(&mut waiting);
                let ok = commit(&conn, &batch).is_ok();
                for (_, done) in batch {
                    let _ = done.send(ok);
                }
            }
        })
        .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    Ok(tx)
}

/// Small bodies (one-alert requests) first, all of them in one commit; else the oldest big
/// body alone, so that a small request waits for one big commit at most (as the journal's
/// writer takes small requests first).
fn next_batch(waiting: &mut VecDeque<Commit>) -> Vec<Commit> {
    let (small, big): (Vec<Commit>, Vec<Commit>) =
        waiting.drain(..).partition(|(b, _)| b.len() <= SMALL_BODY);
    waiting.extend(big);
    if small.is_empty() {
        waiting.pop_front().into_iter().collect()
    } else {
        small
    }
}

/// Inserts every body of `batch` in one transaction.
fn commit(conn: &rusqlite::Connection, batch: &[Commit]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO requests (body) VALUES (?1)")?;
        for (body, _) in batch {
            insert.execute([&body[..]])?;
        }
    }
    tx.commit()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let durable = args.iter().any(|a| a == "--durable");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let floor = if durable {
        match start_floor() {
            Ok(tx) => Some(tx),
            Err(e) => {
                eprintln!("noop_server: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
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
    match runtime.block_on(serve(&addr, floor)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noop_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str, floor: Floor) -> Result<(), String> {
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
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(floor);
    axum_server::from_tcp(listener)
        .map_err(|e| format!("from_tcp: {e}"))?
        .serve(app.into_make_service())
        .await
        .map_err(|e| format!("serve: {e}"))
}
