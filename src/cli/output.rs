//! Human-readable output.

use std::fmt::Write;

use crate::engine::{Decision, PlanSet};
use crate::ingest::WebhookPayload;
use crate::runbook::display_arg;

/// Renders the plan for a payload as readable text.
pub fn print_plans(payload: &WebhookPayload, set: &PlanSet) -> String {
    let mut out = String::new();
    for alert in &payload.alerts {
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.escape_debug()))
            .collect();
        let _ = writeln!(
            out,
            "alert {} [{}] {{{}}}",
            alert.fingerprint,
            alert.status.as_str(),
            labels.join(", ")
        );
        let plans: Vec<_> = set
            .plans
            .iter()
            .filter(|p| p.fingerprint == alert.fingerprint)
            .collect();
        if plans.is_empty() {
            let _ = writeln!(out, "  no rule matches");
        }
        for p in plans {
            let verdict = match p.decision {
                Decision::Run => "RUN",
                Decision::Skip => "SKIP",
            };
            let _ = writeln!(
                out,
                "  {verdict} rule {} -> runbook {} (target {})",
                p.rule,
                p.runbook,
                p.target.as_deref().unwrap_or("none")
            );
            let _ = writeln!(out, "    why: {}", p.reason);
            if p.decision == Decision::Run && !p.requires.is_empty() {
                let names: Vec<&str> = p.requires.iter().map(|r| r.as_str()).collect();
                let _ = writeln!(
                    out,
                    "    requires (asked of Kafka before the first disruptive step): {}",
                    names.join(", ")
                );
            }
            for (i, s) in p.steps.iter().enumerate() {
                let argv: Vec<String> = s.argv.iter().map(|a| display_arg(a)).collect();
                let _ = writeln!(
                    out,
                    "    {}. {} [{}] {}",
                    i + 1,
                    s.name,
                    s.kind,
                    argv.join(" ")
                );
            }
        }
    }
    let run = set
        .plans
        .iter()
        .filter(|p| p.decision == Decision::Run)
        .count();
    let _ = writeln!(
        out,
        "{} alerts, {} plans ({} run, {} skip), {} unmatched; nothing was executed",
        payload.alerts.len(),
        set.plans.len(),
        run,
        set.plans.len() - run,
        set.unmatched.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::display_arg;

    #[test]
    fn quoting_for_display() {
        assert_eq!(display_arg("kafka.service"), "kafka.service");
        assert_eq!(display_arg("a b"), "'a b'");
        assert_eq!(display_arg("it's"), r"'it'\''s'");
        assert_eq!(display_arg("a\nb"), "\"a\\nb\"");
        assert_eq!(display_arg(""), "''");
    }
}
