//! `kafka-healing serve`: the service.

use std::net::SocketAddr;
use std::path::Path;
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
use crate::server::{AppState, router};
use tokio_util::sync::CancellationToken;

pub(super) fn run(path: &Path, log_override: Option<&str>) -> ExitCode {
    let setup = match super::load_setup(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let logging = &setup.loaded.config.logging;
    super::init_logging(
        log_override.unwrap_or(logging.level.as_str()),
        logging.format == LogFormat::Json,
    );
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
    let addr: SocketAddr = cfg.server.listen.parse()?;
    let body_limit = cfg.server.body_limit_bytes;
    let tls = cfg.server.tls.clone().map(|t| {
        (
            setup.loaded.resolve(&t.cert_file),
            setup.loaded.resolve(&t.key_file),
        )
    });
    let grace = Duration::from_secs(cfg.recovery.shutdown_grace_seconds);
    let config_path = setup.loaded.path.clone();
    let startup = setup.loaded.config.clone();
    let metrics = Arc::new(Metrics::new());
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
        config_path,
        reload_lock: tokio::sync::Mutex::new(()),
        startup,
    });
    let app = router(state.clone(), body_limit);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One line on stdout for supervisors and tests that bind port 0.
    // Certificate problems stop the start before anything says it is listening.
    let rustls = match &tls {
        Some((cert, key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "TLS certificate {} / key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })?,
        ),
        None => None,
    };
    println!("listening on {scheme}://{local}");
    info!(%local, scheme, "listening");

    let handle = axum_server::Handle::new();
    let server = {
        let handle = handle.clone();
        let service = app.into_make_service();
        tokio::spawn(async move {
            match rustls {
                Some(rustls) => {
                    axum_server::from_tcp_rustls(listener, rustls)?
                        .handle(handle)
                        .serve(service)
                        .await?;
                }
                None => {
                    axum_server::from_tcp(listener)?
                        .handle(handle)
                        .serve(service)
                        .await?;
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
    info!("stopped");
    Ok(())
}
