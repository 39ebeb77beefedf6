//! `serve`'s listeners: the main HTTP(S) port with its limits, and the metrics port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::DefaultAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Task;
use crate::server::AppState;
use crate::server::listen::{Conns, GuardAcceptor};

/// The main port, bound and announced, not yet serving.
pub(super) struct Listening {
    /// The bound socket (non-blocking, as `axum_server` needs it).
    pub listener: std::net::TcpListener,
    /// Its address (the real port when port 0 was asked for).
    pub local: SocketAddr,
    /// The certificate and key when TLS is configured.
    pub rustls: Option<RustlsConfig>,
}

/// Binds `addr`, loads the TLS certificate and key (`tls`), then says where it listens.
pub(super) async fn listen(
    addr: SocketAddr,
    tls: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<Listening> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One line on stdout for supervisors and tests that bind port 0.
    // Certificate problems stop the start before anything says it is listening.
    let rustls = match tls {
        Some((cert, key)) => Some(RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
            anyhow::anyhow!(
                "TLS certificate {} / key {}: {e}",
                cert.display(),
                key.display()
            )
        })?),
        None => None,
    };
    println!("listening on {scheme}://{local}");
    info!(%local, scheme, "listening");
    Ok(Listening {
        listener,
        local,
        rustls,
    })
}

/// Serves `app` on the bound port, under `net`'s limits and `conns`' cap; `handle` stops it.
pub(super) fn spawn_http(
    bound: Listening,
    net: Net,
    conns: Arc<Conns>,
    app: axum::Router,
    handle: axum_server::Handle<SocketAddr>,
) -> JoinHandle<anyhow::Result<()>> {
    let Listening {
        listener, rustls, ..
    } = bound;
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        match rustls {
            Some(rustls) => {
                let tls = tls_alpn(&rustls, net.http2);
                let acceptor = RustlsAcceptor::new(tls).handshake_timeout(net.header_read);
                let server = axum_server::from_tcp(listener)?
                    .acceptor(GuardAcceptor::new(acceptor, conns))
                    .handle(handle);
                net.tune(server).serve(service).await?;
            }
            None => {
                let server = axum_server::from_tcp(listener)?
                    .acceptor(GuardAcceptor::new(DefaultAcceptor, conns))
                    .handle(handle);
                net.tune(server).serve(service).await?;
            }
        }
        anyhow::Ok(())
    })
}

/// `system.metrics.port`: `/metrics` alone on its own plain port, on the main listener's
/// address; none when no port is given or `enabled: false`.
pub(super) async fn metrics_port(state: &Arc<AppState>, main: SocketAddr) -> anyhow::Result<Task> {
    let m = &state.startup.system.metrics;
    let port = match (m.enabled, m.port) {
        (true, Some(p)) => p,
        _ => return Ok(Task::idle()),
    };
    if !m.format.eq_ignore_ascii_case("prometheus") {
        warn!(format = %m.format, "system.metrics.format: only `prometheus` is served");
    }
    let addr = SocketAddr::new(main.ip(), port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (system.metrics.port): {e}"))?;
    let local = listener.local_addr()?;
    println!("metrics on http://{local}/metrics");
    info!(%local, "metrics port listening");
    let app = crate::server::metrics_router(state.clone());
    Ok(Task::start(|cancel: CancellationToken| async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "metrics port stopped");
        }
    }))
}

/// Descriptors kept for everything but client connections (journal, probes, steps).
const RESERVED_FDS: u64 = 256;

/// The listener's limits and timeouts.
#[derive(Clone, Copy)]
pub(super) struct Net {
    /// Client connections at once (lowered to what the descriptor limit holds).
    pub max_connections: usize,
    header_read: Duration,
    keep_alive_idle: Duration,
    http2: bool,
    http2_streams: u32,
}

impl Net {
    /// The limits `server` configures, logged.
    pub(super) fn of(s: &crate::config::ServerConfig) -> Net {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let room = nofile.saturating_sub(RESERVED_FDS).max(16) as usize;
        let max_connections = if s.max_connections > room {
            warn!(
                configured = s.max_connections,
                used = room,
                nofile,
                "server.max_connections lowered: the descriptor limit cannot hold it"
            );
            room
        } else {
            s.max_connections
        };
        info!(
            max_connections,
            header_read_timeout_seconds = s.header_read_timeout_seconds,
            body_timeout_seconds = s.body_timeout_seconds,
            keep_alive_idle_seconds = s.keep_alive_idle_seconds,
            http2 = s.http2,
            "connection limits"
        );
        Net {
            max_connections,
            header_read: Duration::from_secs(s.header_read_timeout_seconds),
            keep_alive_idle: Duration::from_secs(s.keep_alive_idle_seconds),
            http2: s.http2,
            http2_streams: s.http2_max_concurrent_streams,
        }
    }

    /// HTTP/1.1 only unless HTTP/2 is configured (TLS only, validated); hyper's header
    /// timer runs from the moment a connection waits for a head, so on a kept-alive
    /// connection it is the idle timeout.
    fn tune<A>(
        &self,
        server: axum_server::Server<SocketAddr, A>,
    ) -> axum_server::Server<SocketAddr, A> {
        let mut server = server.first_request_timeout(self.header_read);
        if !self.http2 {
            server = server.http1_only();
        }
        let b = server.http_builder();
        b.http1()
            .header_read_timeout(self.keep_alive_idle)
            .max_buf_size(64 * 1024)
            .max_headers(64);
        b.http2()
            .max_concurrent_streams(self.http2_streams)
            .max_pending_accept_reset_streams(Some(32))
            .max_local_error_reset_streams(Some(64))
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(self.keep_alive_idle))
            .keep_alive_timeout(Duration::from_secs(20));
        server
    }
}

/// The TLS config with ALPN offering `h2` only when HTTP/2 is on.
fn tls_alpn(tls: &RustlsConfig, http2: bool) -> RustlsConfig {
    let mut config = (*tls.get_inner()).clone();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    RustlsConfig::from_config(Arc::new(config))
}
