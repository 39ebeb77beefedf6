//! Fake endpoints on 127.0.0.1 for the exporter scenarios: a stand-in JMX exporter that
//! serves a chosen BrokerState, and a port that accepts TCP and speaks no HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long a fake endpoint keeps one connection (bounded; the scraper gives up sooner).
const HOLD: Duration = Duration::from_secs(30);

/// A stand-in exporter: `/metrics` (any path) with `kafka_server_kafkaserver_brokerstate`
/// set by [`StandIn::set`]. Stops when dropped.
pub(crate) struct StandIn {
    /// Its metrics URL.
    pub(crate) url: String,
    state: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    /// Starts serving `state`.
    pub(crate) async fn start(state: u8) -> StandIn {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let st = Arc::new(AtomicU8::new(state));
        let s = st.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::time::timeout(HOLD, sock.read(&mut buf)).await;
                    let body = format!(
                        "# HELP kafka_server_kafkaserver_brokerstate state\n\
                         # TYPE kafka_server_kafkaserver_brokerstate gauge\n\
                         kafka_server_kafkaserver_brokerstate {}.0\n",
                        s.load(Ordering::Relaxed)
                    );
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        StandIn {
            url: format!("http://127.0.0.1:{port}/metrics"),
            state: st,
            task,
        }
    }

    /// Serves `state` from now on.
    pub(crate) fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
    }
}

/// A port that accepts TCP, answers any request with a line that is not HTTP, and holds
/// the connection. Stops when dropped.
pub(crate) struct Mute {
    /// Its address as a metrics URL.
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mute {
    /// Starts listening.
    pub(crate) async fn start() -> Mute {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::time::timeout(HOLD, sock.read(&mut buf)).await;
                    let _ = sock.write_all(b"SSH-2.0-NotAnExporter\r\n").await;
                    let _ = tokio::time::timeout(HOLD, sock.read(&mut buf)).await;
                });
            }
        });
        Mute {
            url: format!("http://127.0.0.1:{port}/metrics"),
            task,
        }
    }
}
