//! The command line: `check`, `serve`, `history`, `reset`, `pause`, `resume`, `dry-run`, `eval`, `scrape`, `test` and `notify`.

mod audit;
mod check;
mod config_arg;
mod dry_run;
mod eval;
mod explain;
mod history;
mod logfile;
mod notify;
mod output;
mod pause;
mod reset;
mod scrape;
mod serve;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use config_arg::ConfigFiles;

/// Exit code: the configuration or input is invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: the command line is wrong or a named file cannot be read.
pub const EXIT_USAGE: u8 = 2;

/// kafka-healing heals Apache Kafka clusters: Alertmanager posts alerts to it, declarative
/// rules map them to runbooks (argv steps, never a shell), and it runs them safely.
///
/// Author rules with `check` (lint) and `dry-run` (see exactly what would run).
/// Exit codes: 0 ok, 1 invalid config/rules/input, 2 usage error or unreadable file.
#[derive(Debug, Parser)]
#[command(name = "kafka-healing", version, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info` or `kafka_healing=debug` (RUST_LOG also works). `serve`
    /// defaults to the config's `logging.level`, the other commands to `warn`.
    #[arg(long, global = true, env = "KAFKA_HEALING_LOG")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and every rule file it names; report every problem with file
    /// and line. Exit 0 when valid, 1 when not.
    Check {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
        /// Print diagnostics as JSON lines.
        #[arg(long)]
        json: bool,
        /// Print KEY's effective value (dotted path: notifications.smtp.port,
        /// cluster.kafka_brokers[0].host) and where it came from: file and line, environment
        /// variable, secret file or default.
        #[arg(long, value_name = "KEY")]
        explain: Option<String>,
    },
    /// Run the service: take Alertmanager's webhook, journal every alert, and run the
    /// matching runbooks under the safety policy. SIGHUP reloads config and rules; SIGTERM
    /// stops intake and lets running steps finish for recovery.shutdown_grace_seconds.
    Serve {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
    },
    /// List recent executions from the journal, newest first (read-only: safe while
    /// `serve` runs).
    History {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// At most this many (max 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only this status (queued, running, succeeded, failed, escalated, cancelled,
        /// interrupted, skipped, dry_run, refused).
        #[arg(long)]
        status: Option<String>,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only this target (broker node_id).
        #[arg(long)]
        target: Option<String>,
    },
    /// Close open circuits (after a human fixed the cause) through the running service's
    /// API, so the rules may run again: a broker's (every rule), a rule's (every target,
    /// `--rule`), or one rule's on one broker (both). Attempts are forgotten with them.
    #[command(arg_required_else_help = true)]
    Reset {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
        /// A broker's node_id, or `zookeeper/ID`; with `--rule`, `-` names the circuit of
        /// a runbook without a target.
        #[arg(required_unless_present = "rule")]
        target: Option<String>,
        /// Close this rule's circuits (on every target, or on TARGET).
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// Service base URL, when it is not the config's server.listen.
        #[arg(long)]
        url: Option<String>,
        /// Accept a self-signed TLS certificate.
        #[arg(long)]
        insecure: bool,
    },
    /// Pause remediation of a broker (or the whole cluster) for planned work, through the
    /// running service's API: nothing new runs on it until the pause ends (by itself, or by
    /// `resume`); what it held back is decided again then.
    Pause(pause::PauseArgs),
    /// End a pause early, through the running service's API; the alerts it held back that
    /// still fire are decided again.
    Resume(pause::ResumeArgs),
    /// Show which rules an Alertmanager webhook payload matches and the exact argv each step
    /// would run. Nothing is executed.
    #[command(name = "dry-run")]
    DryRun {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
        /// Webhook body (JSON, Alertmanager version 4); `-` reads standard input.
        #[arg(short, long, value_name = "FILE|-")]
        alerts: PathBuf,
        /// Print exactly one JSON object instead of the readable plan.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a PromQL condition against metrics in exposition text format, as a rule's
    /// `condition.expr` would see them. Exit 1 when the expression is invalid or unsupported.
    Eval {
        /// Metrics (Prometheus/OpenMetrics text); samples without a timestamp are taken at
        /// the evaluation time. `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        metrics: PathBuf,
        /// Evaluation time in ms since the epoch (default: the newest timestamp in the
        /// file, else now).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        at_ms: Option<i64>,
        /// Print one JSON object (Prometheus API shape).
        #[arg(long)]
        json: bool,
        /// The PromQL expression.
        expr: String,
    },
    /// Scrape and probe every target once (the JMX exporters, broker sockets, ZooKeeper,
    /// as monitoring.methods says) and show what each rule condition returns now. Nothing
    /// is remediated.
    Scrape {
        /// The config files.
        #[command(flatten)]
        config: ConfigFiles,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run rule unit tests, like `promtool test rules`.
    ///
    /// Simulated series and injected Alertmanager payloads go through the decision path
    /// (conditions with their `for`, then the plans `dry-run` shows), and the plans
    /// produced at given times are compared with the expected ones. Nothing is executed.
    /// Exit 0 when all pass, 1 when a test fails or a test file is invalid, 2 when a file
    /// cannot be read.
    Test {
        /// Test files (YAML); see `rules/tests/kafka.test.yaml`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Email notifications: `notify test` sends a test message through the configured SMTP
    /// server.
    Notify {
        /// What to do.
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // `serve` sets up logging from its config; the others log warnings only by default.
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(cli.log.as_deref().unwrap_or("warn"), false, None);
    }
    match cli.command {
        Command::Serve { config } => serve::run(config.paths(), cli.log.as_deref()),
        Command::Check {
            config,
            json,
            explain: Some(key),
        } => explain::run(config.paths(), &key, json),
        Command::Check {
            config,
            json,
            explain: None,
        } => check::run(config.paths(), json),
        Command::DryRun {
            config,
            alerts,
            json,
        } => dry_run::run(config.paths(), &alerts, json),
        Command::Reset {
            config,
            target,
            rule,
            url,
            insecure,
        } => reset::run(
            config.paths(),
            reset::What {
                target: target.as_deref(),
                rule: rule.as_deref(),
            },
            url.as_deref(),
            insecure,
        ),
        Command::Pause(a) => pause::run_pause(a),
        Command::Resume(a) => pause::run_resume(a),
        Command::History {
            config,
            json,
            limit,
            status,
            rule,
            target,
        } => history::run(history::Args {
            config: config.paths(),
            json,
            limit,
            status: status.as_deref(),
            rule,
            target,
        }),
        Command::Eval {
            metrics,
            at_ms,
            json,
            expr,
        } => eval::run(&metrics, at_ms, &expr, json),
        Command::Notify { command } => notify::run(command),
        Command::Scrape { config, json } => scrape::run(config.paths(), json),
        Command::Test { files, json } => test::run(&files, json),
    }
}

/// Loads a config for a command, or reports why not: an unreadable file is a usage
/// error (exit 2), an invalid one exit 1 with every diagnostic.
fn load_config(paths: &[PathBuf]) -> Result<crate::config::Loaded, ExitCode> {
    match crate::config::load_files(paths) {
        Ok(l) => Ok(l),
        Err(e @ crate::config::LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_USAGE))
        }
        Err(crate::config::LoadError::Invalid(d)) => {
            eprint!("{d}");
            eprintln!("error: the configuration is invalid; run `kafka-healing check` for details");
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// Loads config, rules and templates for a command, or reports why not (exit 2 for an
/// unreadable file, 1 for an invalid setup with every diagnostic).
fn load_setup(paths: &[PathBuf]) -> Result<crate::engine::Setup, ExitCode> {
    match crate::engine::Setup::load_files(paths) {
        Ok(s) => Ok(s),
        Err(e @ crate::config::LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_USAGE))
        }
        Err(crate::config::LoadError::Invalid(d)) => {
            eprint!("{d}");
            eprintln!(
                "error: the configuration or rules are invalid; run `kafka-healing check` for details"
            );
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// Sets up the global subscriber: to standard error, or to `file` (rotated) when given.
fn init_logging(level: &str, json: bool, file: Option<logfile::RotatingFile>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|e| {
            eprintln!("warning: bad log filter `{level}` ({e}); using `info`");
            tracing_subscriber::EnvFilter::new("info")
        });
    let (writer, ansi) = match file {
        Some(f) => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(f),
            false,
        ),
        None => (
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
