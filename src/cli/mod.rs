//! The command line: `check`, `dry-run` (and, as they land, `serve`, `test`, `history`).

mod check;
mod dry_run;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Log filter (also RUST_LOG), e.g. `info` or `kafka_healing=debug`.
    #[arg(long, global = true, env = "KAFKA_HEALING_LOG", default_value = "warn")]
    pub log: String,
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
        /// Config file (YAML). Environment variables KAFKA_HEALING__SECTION__KEY override it.
        #[arg(short, long, env = "KAFKA_HEALING_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Print diagnostics as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show which rules an Alertmanager webhook payload matches and the exact argv each step
    /// would run. Nothing is executed.
    #[command(name = "dry-run")]
    DryRun {
        /// Config file (YAML).
        #[arg(short, long, env = "KAFKA_HEALING_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Webhook body (JSON, Alertmanager version 4); `-` reads standard input.
        #[arg(short, long, value_name = "FILE|-")]
        alerts: PathBuf,
        /// Print exactly one JSON object instead of the readable plan.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(&cli.log);
    match cli.command {
        Command::Check { config, json } => check::run(&config, json),
        Command::DryRun {
            config,
            alerts,
            json,
        } => dry_run::run(&config, &alerts, json),
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
