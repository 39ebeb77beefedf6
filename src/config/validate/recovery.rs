//! The `recovery` section's limits.

use super::between;
use crate::config::model::Config;

/// Checks that every recovery count and duration lies within its range.
pub(super) fn recovery(config: &Config, err: &mut impl FnMut(&str, String)) {
    let r = &config.recovery;
    between(err, "recovery.max_attempts", r.max_attempts, 1, 10);

    if !(1.0..=10.0).contains(&r.backoff_multiplier) {
        err(
            "recovery.backoff_multiplier",
            format!("must be between 1.0 and 10.0, got {}", r.backoff_multiplier),
        );
    }

    between(
        err,
        "recovery.step_timeout_seconds",
        r.step_timeout_seconds,
        1,
        86_400,
    );
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
        between(err, key, v, lo, hi);
    }
    for (key, v, lo, hi) in [
        (
            "recovery.max_concurrent_diagnostics",
            r.max_concurrent_diagnostics,
            1,
            1000,
        ),
        ("recovery.diagnostics_nice", r.diagnostics_nice, 0, 19),
        ("recovery.max_queued", r.max_queued, 10, 1_000_000),
        (
            "recovery.max_queued_remediation",
            r.max_queued_remediation,
            1,
            100_000,
        ),
    ] {
        between(err, key, v, lo, hi);
    }
}
