//! Validation: ranges and the seed's business rules. Every problem is reported.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use super::model::*;
use super::secret::{doubtful_password, unsendable_token};
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// True when `s` is a valid email address (RFC 5321 mailbox as lettre parses it).
pub fn valid_email(s: &str) -> bool {
    lettre::Address::from_str(s).is_ok()
}

/// Checks `config`; every problem goes into `diags` with the line of the key it concerns.
pub(super) fn validate(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let mut err = |path: &str, msg: String| diags.error_at(file, doc, path, msg);

    let m = &config.monitoring;
    if !(5..=3600).contains(&m.interval_seconds) {
        err(
            "monitoring.interval_seconds",
            format!("must be between 5 and 3600, got {}", m.interval_seconds),
        );
    }
    if !(1..=300).contains(&m.timeout_seconds) {
        err(
            "monitoring.timeout_seconds",
            format!("must be between 1 and 300, got {}", m.timeout_seconds),
        );
    }
    if !(1_000..=10_000_000).contains(&m.max_series) {
        err(
            "monitoring.max_series",
            format!("must be between 1000 and 10000000, got {}", m.max_series),
        );
    }
    if !(100..=1_000_000).contains(&m.max_health_series) {
        err(
            "monitoring.max_health_series",
            format!(
                "must be between 100 and 1000000, got {}",
                m.max_health_series
            ),
        );
    }
    if m.timeout_seconds >= m.interval_seconds {
        err(
            "monitoring.timeout_seconds",
            format!(
                "monitoring timeout ({}s) must be less than the interval ({}s)",
                m.timeout_seconds, m.interval_seconds
            ),
        );
    }

    let methods_given = doc.value.pointer("/monitoring/methods").is_some();
    let mut no_metrics = Vec::new();
    let c = &config.cluster;
    if c.name.trim().is_empty() {
        err("cluster.name", "must not be empty".into());
    }
    if c.kafka_brokers.is_empty() {
        err(
            "cluster.kafka_brokers",
            "at least one broker is required".into(),
        );
    }
    if config.environment == Environment::Production && c.kafka_brokers.len() < 3 {
        err(
            "cluster.kafka_brokers",
            format!(
                "production environment requires at least 3 Kafka brokers, found {}",
                c.kafka_brokers.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, b) in c.kafka_brokers.iter().enumerate() {
        let p = format!("cluster.kafka_brokers[{i}]");
        if b.node_id.trim().is_empty() {
            err(&format!("{p}.node_id"), "must not be empty".into());
        } else if !seen.insert(b.node_id.as_str()) {
            err(
                &format!("{p}.node_id"),
                format!("duplicate node_id `{}`", b.node_id),
            );
        }
        if b.host.trim().is_empty() {
            err(&format!("{p}.host"), "must not be empty".into());
        }
        if b.port == 0 {
            err(&format!("{p}.port"), "must be between 1 and 65535".into());
        }
        if b.jmx_port == Some(0) {
            err(
                &format!("{p}.jmx_port"),
                "must be between 1 and 65535".into(),
            );
        }
        if let Some(u) = &b.metrics_url {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(url) => err(
                    &format!("{p}.metrics_url"),
                    format!("scheme `{}` is not http or https", url.scheme()),
                ),
                Err(e) => err(&format!("{p}.metrics_url"), format!("not a URL: {e}")),
            }
        }
        if m.methods.contains(&MonitoringMethod::Jmx)
            && b.jmx_port.is_none()
            && b.metrics_url.is_none()
        {
            let msg = format!(
                "broker `{}` has neither jmx_port nor metrics_url, but monitoring.methods has jmx",
                b.node_id
            );
            if methods_given {
                err(&p, msg);
            } else {
                // The seed's configs leave `methods` at its default: not scraped, and said.
                no_metrics.push(format!("{p}: {msg} (by default): its metrics are not scraped; set metrics_url, or list monitoring.methods without jmx"));
            }
        }
    }

    let zk = &c.zookeeper_nodes;
    if !zk.is_empty() && zk.len().is_multiple_of(2) {
        err(
            "cluster.zookeeper_nodes",
            format!(
                "ZooKeeper ensemble size should be an odd number, found {}",
                zk.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, z) in zk.iter().enumerate() {
        if !seen.insert(z.node_id.as_str()) {
            err(
                &format!("cluster.zookeeper_nodes[{i}].node_id"),
                format!("duplicate node_id `{}`", z.node_id),
            );
        }
        if z.port == 0 {
            err(
                &format!("cluster.zookeeper_nodes[{i}].port"),
                "must be between 1 and 65535".into(),
            );
        }
    }
    if m.methods.contains(&MonitoringMethod::Zookeeper) && zk.is_empty() {
        err(
            "monitoring.methods",
            "method `zookeeper` needs cluster.zookeeper_nodes".into(),
        );
    }

    let r = &config.recovery;
    if !(1..=10).contains(&r.max_attempts) {
        err(
            "recovery.max_attempts",
            format!("must be between 1 and 10, got {}", r.max_attempts),
        );
    }

    if !(1.0..=10.0).contains(&r.backoff_multiplier) {
        err(
            "recovery.backoff_multiplier",
            format!("must be between 1.0 and 10.0, got {}", r.backoff_multiplier),
        );
    }

    if !(1..=86_400).contains(&r.step_timeout_seconds) {
        err(
            "recovery.step_timeout_seconds",
            format!(
                "must be between 1 and 86400, got {}",
                r.step_timeout_seconds
            ),
        );
    }
    for (key, v, max) in [
        ("recovery.kill_grace_seconds", r.kill_grace_seconds, 600),
        (
            "recovery.shutdown_grace_seconds",
            r.shutdown_grace_seconds,
            3600,
        ),
        (
            "recovery.circuit_reset_seconds",
            r.circuit_reset_seconds,
            7 * 86_400,
        ),
    ] {
        if v > max {
            err(key, format!("must be at most {max}, got {v}"));
        }
    }
    // Every duration and count has a maximum: the policy's arithmetic saturates, but a
    // value near u64::MAX is a typo, not a policy.
    for (key, v, lo, hi) in [
        (
            "recovery.initial_delay_seconds",
            r.initial_delay_seconds,
            1,
            86_400,
        ),
        (
            "recovery.attempt_window_seconds",
            r.attempt_window_seconds,
            1,
            30 * 86_400,
        ),
        (
            "recovery.cooldown_seconds",
            r.cooldown_seconds,
            0,
            7 * 86_400,
        ),
        (
            "recovery.max_concurrent_per_cluster",
            u64::from(r.max_concurrent_per_cluster),
            1,
            100,
        ),
        (
            "recovery.precondition_timeout_seconds",
            r.precondition_timeout_seconds,
            1,
            120,
        ),
        (
            "recovery.precondition_recheck_seconds",
            r.precondition_recheck_seconds,
            1,
            3600,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            err(key, format!("must be between {lo} and {hi}, got {v}"));
        }
    }
    for (key, v, lo, hi) in [
        (
            "recovery.max_concurrent_diagnostics",
            r.max_concurrent_diagnostics,
            1,
            1000,
        ),
        ("recovery.max_queued", r.max_queued, 10, 1_000_000),
        (
            "recovery.max_queued_remediation",
            r.max_queued_remediation,
            1,
            100_000,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            err(key, format!("must be between {lo} and {hi}, got {v}"));
        }
    }

    if let Some(smtp) = &config.notifications.smtp {
        if smtp.host.trim().is_empty() {
            err("notifications.smtp.host", "must not be empty".into());
        }
        if smtp.port == 0 {
            err(
                "notifications.smtp.port",
                "must be between 1 and 65535".into(),
            );
        }
        if !valid_email(&smtp.from_email) {
            err(
                "notifications.smtp.from_email",
                format!("`{}` is not a valid email address", smtp.from_email),
            );
        }
        if smtp.to_emails.is_empty() {
            err(
                "notifications.smtp.to_emails",
                "at least one recipient is required".into(),
            );
        }
        for (i, to) in smtp.to_emails.iter().enumerate() {
            if !valid_email(to) {
                err(
                    &format!("notifications.smtp.to_emails[{i}]"),
                    format!("`{to}` is not a valid email address"),
                );
            }
        }
        if !(1..=600).contains(&smtp.timeout_seconds) {
            err(
                "notifications.smtp.timeout_seconds",
                format!("must be between 1 and 600, got {}", smtp.timeout_seconds),
            );
        }
        if smtp.password.is_some() && smtp.username.is_none() {
            err(
                "notifications.smtp.password",
                "a password needs a username".into(),
            );
        }
    }

    let n = &config.notifications;
    for (key, v, lo, hi) in [
        (
            "notifications.rate_limit_seconds",
            n.rate_limit_seconds,
            0,
            86_400,
        ),
        (
            "notifications.retry_initial_seconds",
            n.retry_initial_seconds,
            1,
            3600,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            err(key, format!("must be between {lo} and {hi}, got {v}"));
        }
    }
    if let Some(esc) = &config.notifications.escalation {
        let u = esc.undeliverable_after_seconds;
        if !(1..=30 * 86_400).contains(&u) {
            err(
                "notifications.escalation.undeliverable_after_seconds",
                format!("must be between 1 and 2592000 (30 days), got {u}"),
            );
        }
        // Loading filled an empty list from on-call's: still empty only without smtp.
        if esc.to_emails.is_empty() && config.notifications.smtp.is_some() {
            err(
                "notifications.escalation.to_emails",
                "at least one recipient is required".into(),
            );
        }
        for (i, to) in esc.to_emails.iter().enumerate() {
            if !valid_email(to) {
                err(
                    &format!("notifications.escalation.to_emails[{i}]"),
                    format!("`{to}` is not a valid email address"),
                );
            }
        }
    }

    let s = &config.server;
    if SocketAddr::from_str(&s.listen).is_err() {
        err(
            "server.listen",
            format!(
                "`{}` is not an address:port (e.g. 127.0.0.1:5599)",
                s.listen
            ),
        );
    }
    if !(100..=10_000_000).contains(&s.max_pending_alerts) {
        err(
            "server.max_pending_alerts",
            format!(
                "must be between 100 and 10000000, got {}",
                s.max_pending_alerts
            ),
        );
    }
    if s.admission_wait_ms > 30_000 {
        err(
            "server.admission_wait_ms",
            format!(
                "must be at most 30000 (Alertmanager's own timeout must not end the wait), got {}",
                s.admission_wait_ms
            ),
        );
    }
    for (key, v, range) in [
        (
            "server.max_connections",
            s.max_connections as u64,
            16..=1_000_000,
        ),
        (
            "server.header_read_timeout_seconds",
            s.header_read_timeout_seconds,
            1..=300,
        ),
        (
            "server.body_timeout_seconds",
            s.body_timeout_seconds,
            1..=3600,
        ),
        (
            "server.keep_alive_idle_seconds",
            s.keep_alive_idle_seconds,
            1..=3600,
        ),
        (
            "server.http2_max_concurrent_streams",
            u64::from(s.http2_max_concurrent_streams),
            1..=1000,
        ),
    ] {
        if !range.contains(&v) {
            err(
                key,
                format!(
                    "must be between {} and {}, got {v}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    if s.http2 && s.tls.is_none() {
        err(
            "server.http2",
            "HTTP/2 is served over TLS only (set server.tls); plaintext h2c is never offered"
                .into(),
        );
    }
    if s.body_limit_bytes > 64 << 20 {
        err(
            "server.body_limit_bytes",
            format!(
                "must be at most 67108864 (64 MiB), got {}",
                s.body_limit_bytes
            ),
        );
    }
    if s.body_limit_bytes < 1024 {
        err(
            "server.body_limit_bytes",
            format!("must be at least 1024, got {}", s.body_limit_bytes),
        );
    }
    if let Some(a) = &s.auth {
        let bearer = a.bearer_token.is_some();
        match (bearer, &a.basic) {
            (false, None) => err(
                "server.auth",
                "set bearer_token (or bearer_token_file) or basic".into(),
            ),
            (true, Some(_)) => err(
                "server.auth",
                "set either bearer_token or basic, not both".into(),
            ),
            (true, None)
                if a.bearer_token
                    .as_ref()
                    .is_some_and(|t| t.expose().is_empty()) =>
            {
                err("server.auth.bearer_token", "must not be empty".into())
            }
            (_, Some(b)) if b.password.as_ref().is_none_or(|p| p.expose().is_empty()) => err(
                "server.auth.basic",
                "basic auth needs a non-empty password (or password_file)".into(),
            ),
            _ => {}
        }
    }

    if let Some(c) = &config.coordination {
        validate_coordination(c, &mut err);
    }
    for w in no_metrics {
        diags.warning(file, doc.line_of("cluster.kafka_brokers"), w);
    }
    raw_jmx_port(config, file, doc, diags);
    validate_secrets(config, file, doc, diags);
    escalation_without_smtp(config, file, doc, diags);
    if let Some(k) = &config.kubernetes {
        super::kubernetes::validate(k, file, doc, diags);
    }
    if let Some(a) = &config.alertmanager {
        super::alertmanager::validate(a, file, doc, diags);
    }
    super::security::validate(&config.security, file, doc, diags);

    if config.rules.is_empty() && config.recovery.actions.is_empty() {
        diags.warning(
            file,
            doc.line_of("rules"),
            "no rule files configured: no alert will ever be remediated",
        );
    }
}

/// Escalation needs SMTP; the seed's bare `escalation: {enabled: true}` without it is
/// accepted with a warning, since it names nobody to mail.
fn escalation_without_smtp(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    let n = &config.notifications;
    let Some(esc) = &n.escalation else { return };
    if n.smtp.is_some() {
        return;
    }
    if esc.to_emails.is_empty() {
        diags.warning(
            file,
            doc.line_of("notifications.escalation"),
            "notifications.escalation: no escalation mail is sent without notifications.smtp \
             (host, from_email, to_emails); add it, or set `enabled: false`",
        );
    } else {
        diags.error_at(
            file,
            doc,
            "notifications.escalation",
            "escalation needs notifications.smtp",
        );
    }
}

/// A secret's path for messages: its `_file` key when it was read from one.
fn secret_path(key: &str, file: Option<&std::path::PathBuf>) -> String {
    match file {
        Some(_) => format!("{key}_file"),
        None => key.to_string(),
    }
}

/// A token no client can send is an error; a password with whitespace at an end or a
/// control character is kept but said, since it is rarely meant.
fn validate_secrets(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    if let Some(a) = &config.server.auth
        && let Some(why) = a
            .bearer_token
            .as_ref()
            .and_then(|t| unsendable_token(t.expose()))
    {
        let p = secret_path("server.auth.bearer_token", a.bearer_token_file.as_ref());
        diags.error_at(file, doc, &p, why);
    }
    let mut passwords = Vec::new();
    if let Some(b) = config.server.auth.as_ref().and_then(|a| a.basic.as_ref()) {
        passwords.push((
            "server.auth.basic.password",
            &b.password,
            b.password_file.as_ref(),
        ));
    }
    if let Some(s) = &config.notifications.smtp {
        passwords.push((
            "notifications.smtp.password",
            &s.password,
            s.password_file.as_ref(),
        ));
    }
    let sasl = &config.security.sasl;
    passwords.push((
        "security.sasl.password",
        &sasl.password,
        sasl.password_file.as_ref(),
    ));
    if let Some(c) = &config.coordination {
        passwords.push(("coordination.password", &c.password, None));
    }
    for (key, pw, from) in passwords {
        if let Some(why) = pw.as_ref().and_then(|p| doubtful_password(p.expose())) {
            diags.warning(
                file,
                doc.line_of(&secret_path(key, from)),
                format!("{}: {why}", secret_path(key, from)),
            );
        }
    }
}

/// Checks the `coordination` section (high availability through etcd).
fn validate_coordination(c: &CoordinationConfig, err: &mut impl FnMut(&str, String)) {
    if c.endpoints.is_empty() {
        err(
            "coordination.endpoints",
            "at least one etcd endpoint is required".into(),
        );
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        let p = format!("coordination.endpoints[{i}]");
        match url::Url::parse(e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => err(
                &p,
                format!(
                    "`{e}` is not an http(s) URL with a host (scheme `{}`)",
                    u.scheme()
                ),
            ),
            Err(why) => err(&p, format!("`{e}` is not a URL: {why}")),
        }
    }
    if !(2..=300).contains(&c.lease_ttl_seconds) {
        err(
            "coordination.lease_ttl_seconds",
            format!("must be between 2 and 300, got {}", c.lease_ttl_seconds),
        );
    }
    if !c.key_prefix.starts_with('/') || !c.key_prefix.ends_with('/') {
        err(
            "coordination.key_prefix",
            format!("must start and end with `/`, got `{}`", c.key_prefix),
        );
    }
    match (&c.username, &c.password) {
        (Some(u), Some(p)) if u.is_empty() || p.expose().is_empty() => err(
            "coordination.username",
            "username and password must not be empty".into(),
        ),
        (Some(_), None) | (None, Some(_)) => err(
            "coordination.username",
            "set both username and password, or neither".into(),
        ),
        _ => {}
    }
    if let Some(id) = &c.instance_id
        && (id.trim().is_empty() || id.contains('/') || id.chars().any(char::is_control))
    {
        err(
            "coordination.instance_id",
            format!(
                "must be a non-empty name without `/`, got `{}`",
                id.escape_debug()
            ),
        );
    }
}

/// The ports JMX exporters are commonly served on: jmx_exporter's own default (5556),
/// Strimzi's and Confluent's (7071), Bitnami's and the Helm charts' (9404).
const EXPORTER_PORTS: &[u16] = &[5556, 7071, 9404];

/// `jmx_port` without `metrics_url` is scraped as a JMX exporter's HTTP port; in the
/// seed it is the broker's raw JMX (RMI) port, which speaks no HTTP. `check` is offline,
/// so it cannot ask: a port that is no common exporter port ([`EXPORTER_PORTS`]) is one
/// warning naming the brokers and what to set.
fn raw_jmx_port(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    if !config.monitoring.methods.contains(&MonitoringMethod::Jmx) {
        return;
    }
    let bare: Vec<(usize, &super::Broker)> = config
        .cluster
        .kafka_brokers
        .iter()
        .enumerate()
        .filter(|(_, b)| {
            b.metrics_url.is_none() && b.jmx_port.is_some_and(|p| !EXPORTER_PORTS.contains(&p))
        })
        .collect();
    let Some((first, _)) = bare.first() else {
        return;
    };
    let names: Vec<&str> = bare.iter().map(|(_, b)| b.node_id.as_str()).collect();
    diags.warning(
        file,
        doc.line_of(&format!("cluster.kafka_brokers[{first}].jmx_port")),
        format!(
            "cluster.kafka_brokers[{first}].jmx_port: `jmx` scrapes http://HOST:JMX_PORT/metrics \
             of {} {}, so jmx_port must be a Prometheus JMX exporter's port (commonly 5556, \
             7071 or 9404); if it is the broker's raw JMX port, as the seed's jmx_port is, it \
             speaks no HTTP and nothing is scraped: set metrics_url to the JMX exporter's URL (jmx_port then only maps \
             `instance` labels to the broker)",
            if names.len() == 1 {
                "broker"
            } else {
                "brokers"
            },
            names.join(", ")
        ),
    );
}
