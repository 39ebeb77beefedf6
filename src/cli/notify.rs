//! `kafka-healing notify test`: sends one test email through the configured SMTP server,
//! so an SRE can check host, port, TLS, credentials and recipients before an incident.

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_INVALID;
use crate::notify::smtp::{Mailer, OutgoingMail, tls_mode_name};

/// Escapes text for HTML.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The machine's host name, for the "where it came from" line.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

pub(super) fn run_test(config_path: &[PathBuf], to: &[String]) -> ExitCode {
    let loaded = match super::load_config(config_path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(smtp) = loaded.config.notifications.smtp.as_ref() else {
        eprintln!(
            "error: {} has no notifications.smtp section; there is nothing to test",
            super::ConfigFiles::shown(config_path)
        );
        return ExitCode::from(EXIT_INVALID);
    };
    let mailer = match Mailer::new(smtp, &loaded.base_dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let recipients: Vec<String> = if to.is_empty() {
        smtp.to_emails.clone()
    } else {
        to.to_vec()
    };
    let cluster = &loaded.config.cluster.name;
    let host = host_name();
    let config_shown = super::ConfigFiles::shown(&loaded.files());
    let mail = OutgoingMail {
        to: recipients.clone(),
        subject: format!("[kafka-healing] test message from {cluster}"),
        text: format!(
            "This is a test message from kafka-healing {version} for cluster {cluster}.\n\
             Sent by `kafka-healing notify test` on {host} with config {config_shown},\n\
             via {endpoint} ({mode}).\n\nIf you can read this, email notifications work.\n",
            version = env!("CARGO_PKG_VERSION"),
            endpoint = mailer.endpoint(),
            mode = tls_mode_name(mailer.tls()),
        ),
        html: format!(
            "<!DOCTYPE html>\n<html><body>\n<p>This is a test message from kafka-healing \
             {version} for cluster <b>{cluster}</b>.</p>\n<p>Sent by <code>kafka-healing \
             notify test</code> on {host} with config <code>{config_shown}</code>, via \
             {endpoint} ({mode}).</p>\n<p>If you can read this, email notifications \
             work.</p>\n</body></html>\n",
            version = env!("CARGO_PKG_VERSION"),
            cluster = html_escape(cluster),
            host = html_escape(&host),
            config_shown = html_escape(&config_shown),
            endpoint = html_escape(&mailer.endpoint()),
            mode = tls_mode_name(mailer.tls()),
        ),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(mailer.send(&mail)) {
        Ok(()) => {
            println!(
                "sent to {} via {} ({})",
                recipients.join(", "),
                mailer.endpoint(),
                tls_mode_name(mailer.tls())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `notify` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test email through notifications.smtp to check host, port, TLS, credentials
    /// and recipients. Exit 0 when the server accepted it, 1 when not (the error says why).
    Test {
        /// The config files.
        #[command(flatten)]
        config: super::ConfigFiles,
        /// Send to this address instead of notifications.smtp.to_emails (repeatable).
        #[arg(long, value_name = "ADDR")]
        to: Vec<String>,
    },
}

pub(super) fn run(cmd: NotifyCommand) -> ExitCode {
    match cmd {
        NotifyCommand::Test { config, to } => run_test(config.paths(), &to),
    }
}
