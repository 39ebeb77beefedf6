//! `kafka-healing serve`: the service.

mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::LogFormat;
use crate::coord::Coordinator;
use crate::engine::report::interrupted_mail;
use crate::engine::{Engine, EngineHandle, Setup};
use crate::ingest::watch::Watcher;
use crate::journal::{Execution, Journal};
use crate::metrics::Metrics;
use crate::notify::sender::Sender;
use crate::server::guard::Limits;
use crate::server::listen::Conns;
use crate::server::{AppState, router};
use http::{Net, listen, metrics_port, spawn_http};

pub(super) fn run(path: &[PathBuf], log_override: Option<&str>) -> ExitCode {
    let setup = match super::load_setup(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(code) = start_logging(&setup, log_override) {
        return code;
    }
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

/// `logging:` (level, unless `--log-level` overrides it; format; file), for the process.
fn start_logging(setup: &Setup, log_override: Option<&str>) -> Result<(), ExitCode> {
    let logging = &setup.loaded.config.logging;
    let file = match &logging.file {
        Some(f) => {
            let path = setup.loaded.resolve(f);
            let max = super::logfile::max_bytes(logging.max_size_mb);
            match super::logfile::open(&path, max, logging.backup_count) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("error: cannot open logging.file {}: {e}", path.display());
                    return Err(ExitCode::FAILURE);
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
    Ok(())
}

async fn serve(setup: Setup) -> anyhow::Result<()> {
    let cfg = &setup.loaded.config;
    sweep_orphans().await;
    if cfg.recovery.dry_run {
        warn!("recovery.dry_run is on: runbooks are recorded and mailed, never run");
    }
    let journal_path = setup.loaded.resolve(&cfg.state.path);
    let (journal, interrupted) = open_journal(&journal_path)?;
    let audit = spawn_audit(&setup, &journal, &journal_path);
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
    // A reload reads the files given again (and the overlay, which they may now name).
    let config_paths = setup.loaded.given_files();
    let startup = setup.loaded.config.clone();
    let metrics = Arc::new(Metrics::with_coordination(cfg.coordination.is_some()));
    escalate_interrupted(&setup, &journal, &interrupted).await;
    let coord = coordinator(&setup, &metrics)?;
    let coord_task = match &coord {
        Some(c) => {
            let c = c.clone();
            Task::start(|cancel| c.run(cancel))
        }
        None => Task::idle(),
    };
    let engine = Engine::start_with(
        journal.clone(),
        Arc::new(setup),
        metrics.clone(),
        coord.clone(),
    );
    let watch = spawn_watch(&engine, &journal, &metrics, coord);
    let mail = spawn_sender(&engine, &journal, &metrics);
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
    let bound = listen(addr, tls.as_ref()).await?;
    let metrics_task = metrics_port(&state, bound.local).await?;
    let handle = axum_server::Handle::new();
    let mut server = spawn_http(bound, net, conns, app, handle.clone());
    run_until_signal(&state, &mut server).await?;
    let background = Background {
        watch,
        audit,
        coord: coord_task,
        mail,
        metrics: metrics_task,
    };
    shutdown(&state, &engine, background, handle, server).await;
    Ok(())
}

/// Stops the processes of steps that a dead instance on this host left running (after a
/// `kill -9` their leader died with it, but what it started may live on), before anything
/// runs.
async fn sweep_orphans() {
    match tokio::task::spawn_blocking(crate::runbook::exec::lifeline::sweep_orphans).await {
        Ok(killed) if !killed.is_empty() => warn!(
            killed = killed.len(),
            "start-up sweep: killed the processes of steps whose instance is dead"
        ),
        Ok(_) => info!("start-up sweep: no orphaned step process on this host"),
        Err(e) => warn!(error = %e, "start-up sweep failed"),
    }
}

/// Opens the journal; each execution that was running when the service stopped is marked
/// interrupted (not re-run) and logged.
fn open_journal(path: &Path) -> anyhow::Result<(Journal, Vec<Execution>)> {
    let (journal, interrupted) = Journal::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the journal {}: {e}", path.display()))?;
    for e in &interrupted {
        warn!(
            execution = e.id,
            rule = %e.rule,
            target = e.target.as_deref().unwrap_or("-"),
            "execution was running when the service stopped: marked interrupted, not re-run"
        );
    }
    Ok((journal, interrupted))
}

/// `logging.audit`: the journal's events followed into a JSON-lines file, when enabled.
fn spawn_audit(setup: &Setup, journal: &Journal, journal_path: &Path) -> Task {
    let audit = &setup.loaded.config.logging.audit;
    if !audit.enabled {
        return Task::idle();
    }
    let path = match &audit.file {
        Some(f) => setup.loaded.resolve(f),
        None => journal_path.with_file_name("audit.jsonl"),
    };
    info!(path = %path.display(), "logging.audit: journal events to a JSON-lines file");
    let journal = journal.clone();
    Task::start(|cancel| super::audit::follow(journal, path, Duration::from_secs(1), cancel))
}

/// Queues a message for each interrupted execution: a human must check its target.
async fn escalate_interrupted(setup: &Setup, journal: &Journal, interrupted: &[Execution]) {
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
            interrupted_mail(setup, e, alert.as_ref(), crate::clock::now_ms())
        })
        .collect();
    if let Err(e) = journal.enqueue_mails(mails).await {
        warn!(error = %e, "cannot queue the messages about interrupted executions");
    }
}

/// HA mode (`coordination:`): the etcd lease and membership, kept alive until the very end.
fn coordinator(setup: &Setup, metrics: &Arc<Metrics>) -> anyhow::Result<Option<Arc<Coordinator>>> {
    let cfg = &setup.loaded.config;
    let Some(c) = &cfg.coordination else {
        return Ok(None);
    };
    let ca_pem = match &c.ca_file {
        Some(f) => {
            let path = setup.loaded.resolve(f);
            Some(
                std::fs::read(&path)
                    .map_err(|e| anyhow::anyhow!("coordination.ca_file {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let coord = Coordinator::new(c, &cfg.cluster.name, ca_pem, metrics.clone())
        .map_err(|e| anyhow::anyhow!("coordination: {e}"))?;
    info!(instance = coord.instance_id(), endpoints = ?c.endpoints, "HA mode: coordinating through etcd");
    Ok(Some(Arc::new(coord)))
}

/// The self-watch: scrapes, probes and rule conditions (runs with or without Alertmanager).
fn spawn_watch(
    engine: &EngineHandle,
    journal: &Journal,
    metrics: &Arc<Metrics>,
    coord: Option<Arc<Coordinator>>,
) -> Task {
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
    Task::start(|cancel| watcher.run(cancel))
}

/// The outbox's sender: delivers queued mail, woken by the engine.
fn spawn_sender(engine: &EngineHandle, journal: &Journal, metrics: &Arc<Metrics>) -> Task {
    let sender = Sender::new(
        journal.clone(),
        engine.setup.clone(),
        engine.mail_wake.clone(),
        metrics.clone(),
    );
    Task::start(|cancel| sender.run(cancel))
}

/// Serves until SIGTERM or SIGINT (`Ok`), reloading on SIGHUP; an HTTP server that stops
/// on its own is an error.
async fn run_until_signal(
    state: &AppState,
    server: &mut JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                let _ = crate::server::reload_setup(state).await;
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            r = &mut *server => {
                return match r {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                };
            }
        }
    }
}

/// A background task and the token that stops it.
pub(super) struct Task {
    cancel: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Task {
    /// Nothing running (a feature that is off).
    pub(super) fn idle() -> Task {
        Task {
            cancel: CancellationToken::new(),
            handle: None,
        }
    }

    /// Spawns what `start` makes of the task's token.
    pub(super) fn start<F>(start: impl FnOnce(CancellationToken) -> F) -> Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let handle = Some(tokio::spawn(start(cancel.clone())));
        Task { cancel, handle }
    }

    /// Cancels the task and waits for it at most `within`.
    async fn stop(self, within: Duration) {
        self.cancel.cancel();
        if let Some(h) = self.handle {
            let _ = tokio::time::timeout(within, h).await;
        }
    }
}

/// The tasks `serve` started besides the engine and the HTTP server.
struct Background {
    watch: Task,
    audit: Task,
    coord: Task,
    mail: Task,
    metrics: Task,
}

/// Closes intake, lets running executions finish within the grace, then stops the rest in
/// an order that loses nothing: the lease last but for mail and the listeners.
async fn shutdown(
    state: &AppState,
    engine: &EngineHandle,
    bg: Background,
    handle: axum_server::Handle<SocketAddr>,
    server: JoinHandle<anyhow::Result<()>>,
) {
    info!(
        grace_seconds = state.startup.recovery.shutdown_grace_seconds,
        "shutting down: intake closed, letting running executions finish"
    );
    state.accepting.store(false, Ordering::SeqCst);
    bg.watch.stop(Duration::from_secs(5)).await;
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
    bg.audit.stop(Duration::from_secs(10)).await;
    // Last: revoking the lease hands the locks and the shard to the peers at once.
    bg.coord.stop(Duration::from_secs(5)).await;
    // One last delivery round for the messages the shutdown produced; the rest wait in the
    // outbox for the next start.
    engine.mail_wake.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    bg.mail.stop(Duration::from_secs(10)).await;
    handle.graceful_shutdown(Some(Duration::from_secs(5)));
    let _ = server.await;
    bg.metrics.stop(Duration::from_secs(5)).await;
    info!("stopped");
}
