//! Validation: ranges and the seed's business rules. Every problem is reported.
//!
//! One submodule per section; [`validate`] runs them in a fixed order, so diagnostics
//! come out in the same order every time: errors by section, then warnings.

mod cluster;
mod coordination;
mod jmx;
mod monitoring;
mod notifications;
mod recovery;
mod secrets;
mod server;

use std::path::Path;
use std::str::FromStr;

use super::model::*;
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// True when `s` is a valid email address (RFC 5321 mailbox as lettre parses it).
pub fn valid_email(s: &str) -> bool {
    lettre::Address::from_str(s).is_ok()
}

/// Reports `key` unless `lo <= v <= hi`, as "must be between LO and HI, got V".
fn between<T: PartialOrd + std::fmt::Display>(
    err: &mut impl FnMut(&str, String),
    key: &str,
    v: T,
    lo: T,
    hi: T,
) {
    if v < lo || v > hi {
        err(key, format!("must be between {lo} and {hi}, got {v}"));
    }
}

/// Checks `config`; every problem goes into `diags` with the line of the key it concerns.
pub(super) fn validate(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);

    monitoring::monitoring(config, &mut err);
    let no_metrics = cluster::kafka_brokers(config, doc, &mut err);
    cluster::zookeeper_nodes(config, &mut err);
    recovery::recovery(config, &mut err);
    notifications::smtp(config, &mut err);
    notifications::limits_and_escalation(config, &mut err);
    server::server(config, &mut err);
    server::server_auth(config, &mut err);
    if let Some(c) = &config.coordination {
        coordination::coordination(c, &mut err);
    }
    for w in no_metrics {
        diags.warning(file, doc.line_of("cluster.kafka_brokers"), w);
    }
    jmx::raw_jmx_port(config, file, doc, diags);
    secrets::secrets(config, file, doc, diags);
    notifications::escalation_without_smtp(config, file, doc, diags);
    if let Some(k) = &config.kubernetes {
        super::kubernetes::validate(k, file, doc, diags);
    }
    if let Some(a) = &config.alertmanager {
        super::alertmanager::validate(a, file, doc, diags);
    }
    super::security::validate(&config.security, file, doc, diags);
    no_rules(config, file, doc, diags);
}

/// Warns when nothing can ever be remediated: no rule files and no inline actions.
fn no_rules(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    if config.rules.is_empty() && config.recovery.actions.is_empty() {
        diags.warning(
            file,
            doc.line_of("rules"),
            "no rule files configured: no alert will ever be remediated",
        );
    }
}
