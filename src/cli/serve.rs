//! `kafka-healing serve`: the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::config::LogFormat;
use crate::coord::Coordinator;
use crate::engine::report::interrupted_mail;
use crate::engine::{Engine, Setup};
use crate::ingest::watch::Watcher;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::notify::sender::Sender;
use crate::server::guard::Limits;
use crate::server::listen::{Conns, GuardAcceptor};
use crate::server::{AppState, router};
use axum_server::accept::DefaultAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio_util::sync::CancellationToken;

pub(super) fn run(path: &[PathBuf], log_override: Option<&str>) -> ExitCode {
    let setup = match super::load_setup(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let logging = &setup.loaded.config.logging;
    let file = match &logging.file {
        Some(f) => {
            let path = setup.loaded.resolve(f);
            let max = super::logfile::max_bytes(logging.max_size_mb);
            match super::logfile::open(&path, max, logging.backup_count) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("error: cannot open logging.file {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    super::init_logging(
        log_override.unwrap_or(logging.level.as_str()),
        logging.format == LogFormat::Json,
        file,
    );
    match crate::server::listen::raise_nofile() {
        Ok((before, now)) => info!(before, now, "soft RLIMIT_NOFILE raised to the hard limit"),
        Err(e) => warn!(error = %e, "cannot raise the soft RLIMIT_NOFILE"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(setup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(setup: Setup) -> anyhow::Result<()> {
    let cfg = &setup.loaded.config;
    // Steps left running by a dead instance on this host (after a `kill -9`, their leader
    // died with it but what it started may live on) are stopped before anything runs.
    match tokio::task::spawn_blocking(crate::runbook::exec::lifeline::sweep_orphans).await {
        Ok(killed) if !killed.is_empty() => warn!(
            killed = killed.len(),
            "start-up sweep: killed the processes of steps whose instance is dead"
        ),
        Ok(_) => info!("start-up sweep: no orphaned step process on this host"),
        Err(e) => warn!(error = %e, "start-up sweep failed"),
    }
    if cfg.recovery.dry_run {
        warn!("recovery.dry_run is on: runbooks are recorded and mailed, never run");
    }
    let journal_path = setup.loaded.resolve(&cfg.state.path);
    let (journal, interrupted) = Journal::open(&journal_path)
        .map_err(|e| anyhow::anyhow!("cannot open the journal {}: {e}", journal_path.display()))?;
    for e in &interrupted {
        warn!(
            execution = e.id,
            rule = %e.rule,
            target = e.target.as_deref().unwrap_or("-"),
            "execution was running when the service stopped: marked interrupted, not re-run"
        );
    }
    let audit_cancel = CancellationToken::new();
    let audit_task = cfg.logging.audit.enabled.then(|| {
        let path = match &cfg.logging.audit.file {
            Some(f) => setup.loaded.resolve(f),
            None => journal_path.with_file_name("audit.jsonl"),
        };
        info!(path = %path.display(), "logging.audit: journal events to a JSON-lines file");
        tokio::spawn(super::audit::follow(
            journal.clone(),
            path,
            Duration::from_secs(1),
            audit_cancel.clone(),
        ))
    });
    let addr: SocketAddr = cfg.server.listen.parse()?;
    let body_limit = cfg.server.body_limit_bytes;
    let body_timeout = Duration::from_secs(cfg.server.body_timeout_seconds);
    let net = Net::of(&cfg.server);
    let tls = cfg.server.tls.clone().map(|t| {
        (
            setup.loaded.resolve(&t.cert_file),
            setup.loaded.resolve(&t.key_file),
        )
    });
    let grace = Duration::from_secs(cfg.recovery.shutdown_grace_seconds);
    // A reload reads the files given again (and the overlay, which they may now name).
    let config_paths = setup.loaded.given_files();
    let startup = setup.loaded.config.clone();
    let metrics = Arc::new(Metrics::with_coordination(cfg.coordination.is_some()));
    // Interrupted executions are escalated (a human must check the target).
    let mails: Vec<_> = interrupted
        .iter()
        .filter_map(|e| {
            let alert = journal
                .alerts_by_fingerprint(&e.fingerprint)
                .ok()
                .and_then(|list| {
                    list.into_iter()
                        .rev()
                        .find(|(id, _)| Some(*id) == e.alert_id || e.alert_id.is_none())
                })
                .map(|(_, a)| a);
            interrupted_mail(&setup, e, alert.as_ref(), crate::clock::now_ms())
        })
        .collect();
    if let Err(e) = journal.enqueue_mails(mails).await {
        warn!(error = %e, "cannot queue the messages about interrupted executions");
    }
    // HA mode: the lease and membership in etcd, kept alive until the very end.
    let coord = match &cfg.coordination {
        Some(c) => {
            let ca_pem = match &c.ca_file {
                Some(f) => {
                    let path = setup.loaded.resolve(f);
                    Some(std::fs::read(&path).map_err(|e| {
                        anyhow::anyhow!("coordination.ca_file {}: {e}", path.display())
                    })?)
                }
                None => None,
            };
            let coord = Coordinator::new(c, &cfg.cluster.name, ca_pem, metrics.clone())
                .map_err(|e| anyhow::anyhow!("coordination: {e}"))?;
            info!(instance = coord.instance_id(), endpoints = ?c.endpoints, "HA mode: coordinating through etcd");
            Some(Arc::new(coord))
        }
        None => None,
    };
    let coord_cancel = CancellationToken::new();
    let coord_task = coord
        .clone()
        .map(|c| tokio::spawn(c.run(coord_cancel.clone())));
    let engine = Engine::start_with(
        journal.clone(),
        Arc::new(setup),
        metrics.clone(),
        coord.clone(),
    );
    // Self-watch: scrapes, probes and rule conditions (runs with or without Alertmanager).
    let watch_cancel = CancellationToken::new();
    let watcher = Watcher::new(
        journal.clone(),
        engine.setup.clone(),
        engine.alerts.clone(),
        metrics.clone(),
        Duration::from_millis(
            crate::ingest::retention::retention_ms(&engine.setup.current().rules).max(0) as u64,
        ),
    )
    .with_coordinator(coord);
    let watch_task = tokio::spawn(watcher.run(watch_cancel.clone()));
    let mail_cancel = CancellationToken::new();
    let sender = tokio::spawn(
        Sender::new(
            journal.clone(),
            engine.setup.clone(),
            engine.mail_wake.clone(),
            metrics.clone(),
        )
        .run(mail_cancel.clone()),
    );
    let state = Arc::new(AppState {
        journal,
        engine: engine.clone(),
        metrics,
        accepting: AtomicBool::new(true),
        config_paths,
        reload_lock: tokio::sync::Mutex::new(()),
        startup,
    });
    let conns = Conns::new(net.max_connections, state.metrics.conns.clone());
    let limits = Arc::new(Limits {
        conns: conns.clone(),
        body_limit,
        body_timeout,
    });
    let app = router(state.clone(), limits);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One line on stdout for supervisors and tests that bind port 0.
    // Certificate problems stop the start before anything says it is listening.
    let rustls = match &tls {
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
    let metrics_cancel = CancellationToken::new();
    let metrics_task = metrics_port(&state, local, &metrics_cancel).await?;

    let handle = axum_server::Handle::new();
    let server = {
        let handle = handle.clone();
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
    };

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut server = server;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                let _ = crate::server::reload_setup(&state).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            r = &mut server => {
                return match r {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                };
            }
        }
    }
    info!(
        grace_seconds = grace.as_secs(),
        "shutting down: intake closed, letting running executions finish"
    );
    state.accepting.store(false, Ordering::SeqCst);
    watch_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), watch_task).await;
    // The grace as configured now (it may have been reloaded).
    let grace = Duration::from_secs(
        engine
            .current()
            .loaded
            .config
            .recovery
            .shutdown_grace_seconds,
    );
    engine.shutdown(grace).await;
    audit_cancel.cancel();
    if let Some(t) = audit_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    // Last: revoking the lease hands the locks and the shard to the peers at once.
    coord_cancel.cancel();
    if let Some(t) = coord_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // One last delivery round for the messages the shutdown produced; the rest wait in the
    // outbox for the next start.
    engine.mail_wake.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    mail_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), sender).await;
    handle.graceful_shutdown(Some(Duration::from_secs(5)));
    let _ = server.await;
    metrics_cancel.cancel();
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    info!("stopped");
    Ok(())
}

/// `system.metrics.port`: `/metrics` alone on its own plain port, on the main listener's
/// address; none when no port is given or `enabled: false`.
async fn metrics_port(
    state: &Arc<AppState>,
    main: SocketAddr,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let m = &state.startup.system.metrics;
    let port = match (m.enabled, m.port) {
        (true, Some(p)) => p,
        _ => return Ok(None),
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
    let cancel = cancel.clone();
    Ok(Some(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "metrics port stopped");
        }
    })))
}

/// Descriptors kept for everything but client connections (journal, probes, steps).
const RESERVED_FDS: u64 = 256;

/// The listener's limits and timeouts.
#[derive(Clone, Copy)]
struct Net {
    max_connections: usize,
    header_read: Duration,
    keep_alive_idle: Duration,
    http2: bool,
    http2_streams: u32,
}

impl Net {
    fn of(s: &crate::config::ServerConfig) -> Net {
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
