//! The `notifications` section: SMTP, rate limits and escalation.

use std::path::Path;

use super::{between, valid_email};
use crate::config::model::*;
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// Checks the SMTP server, its sender and recipients, its timeout and credentials.
pub(super) fn smtp(config: &Config, err: &mut impl FnMut(&str, String)) {
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
        between(
            err,
            "notifications.smtp.timeout_seconds",
            smtp.timeout_seconds,
            1,
            600,
        );
        if smtp.password.is_some() && smtp.username.is_none() {
            err(
                "notifications.smtp.password",
                "a password needs a username".into(),
            );
        }
    }
}

/// Checks the rate limit, the retry delay and the escalation's deadline and recipients.
pub(super) fn limits_and_escalation(config: &Config, err: &mut impl FnMut(&str, String)) {
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
        between(err, key, v, lo, hi);
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
}

/// Escalation needs SMTP; the seed's bare `escalation: {enabled: true}` without it is
/// accepted with a warning, since it names nobody to mail.
pub(super) fn escalation_without_smtp(
    config: &Config,
    file: &Path,
    doc: &Document,
    diags: &mut Diagnostics,
) {
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
