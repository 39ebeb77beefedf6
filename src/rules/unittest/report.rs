//! Readable failure reports: per test and time, expected against produced plans.

use std::fmt::Write;
use std::path::Path;

use super::run::{Mismatch, ProducedPlan, TestFailure, TestReport, differences};
use super::spec::{ExpectedDecision, ExpectedPlan, fmt_ms};
use crate::engine::Decision;
use crate::runbook::display_arg;

/// A produced plan as text: a headline (after `first`), then the reason, each step's argv
/// and the source, each line after `indent`.
pub fn render_plan(p: &ProducedPlan, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let verdict = match p.decision {
        Decision::Run => "RUN",
        Decision::Skip => "SKIP",
    };
    let _ = writeln!(
        out,
        "{first}{verdict} rule {} -> runbook {} (target {}, alert {})",
        p.rule,
        p.runbook,
        p.target.as_deref().unwrap_or("none"),
        p.status.as_str()
    );
    let _ = writeln!(out, "{indent}    why: {}", p.reason);
    for (i, argv) in p.argv.iter().enumerate() {
        let shown: Vec<String> = argv.iter().map(|a| display_arg(a)).collect();
        let _ = writeln!(out, "{indent}    {}. {}", i + 1, shown.join(" "));
    }
    let _ = writeln!(out, "{indent}    from: {}", p.source);
    out
}

/// An expected plan as `rule=… target=… decision=…` (only the fields given).
pub fn render_expected(e: &ExpectedPlan) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &e.rule {
        parts.push(format!("rule={r}"));
    }
    if let Some(r) = &e.runbook {
        parts.push(format!("runbook={r}"));
    }
    if let Some(t) = &e.target {
        parts.push(format!("target={}", t.as_deref().unwrap_or("none")));
    }
    if let Some(s) = e.status {
        parts.push(format!("status={}", s.as_str()));
    }
    if let Some(d) = e.decision {
        parts.push(
            match d {
                ExpectedDecision::Run => "decision=run",
                ExpectedDecision::Skip => "decision=skip",
            }
            .into(),
        );
    }
    if let Some(r) = &e.reason {
        parts.push(format!("reason={r:?}"));
    }
    if let Some(r) = &e.reason_contains {
        parts.push(format!("reason_contains={r:?}"));
    }
    if let Some(r) = &e.requires {
        let names: Vec<&str> = r.iter().map(|p| p.as_str()).collect();
        parts.push(format!("requires=[{}]", names.join(", ")));
    }
    if let Some(a) = &e.argv {
        let steps: Vec<String> = a
            .iter()
            .map(|argv| {
                argv.iter()
                    .map(|x| display_arg(x))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        parts.push(format!("argv=[{}]", steps.join("; ")));
    }
    if parts.is_empty() {
        "(any plan)".into()
    } else {
        parts.join(" ")
    }
}

fn plans(n: usize) -> String {
    if n == 1 {
        "1 plan".into()
    } else {
        format!("{n} plans")
    }
}

fn mismatch(out: &mut String, m: &Mismatch) {
    let _ = writeln!(
        out,
        "  expected {}, got {}",
        plans(m.expected.len()),
        plans(m.got.len())
    );
    if !m.missing.is_empty() {
        let _ = writeln!(out, "  missing (expected, not produced):");
        for (i, closest) in &m.missing {
            let e = &m.expected[*i];
            let _ = writeln!(out, "    - {}", render_expected(e));
            if let Some(j) = closest {
                let g = &m.got[*j];
                let _ = writeln!(
                    out,
                    "      closest produced plan: rule {} on {}",
                    g.rule,
                    g.target.as_deref().unwrap_or("none")
                );
                for d in differences(e, g) {
                    let _ = writeln!(out, "        {d}");
                }
            }
        }
    }
    if !m.unexpected.is_empty() {
        let _ = writeln!(out, "  unexpected (produced, not expected):");
        for j in &m.unexpected {
            out.push_str(&render_plan(&m.got[*j], "    + ", "      "));
        }
    }
    let matched = m.got.len() - m.unexpected.len();
    if matched > 0 {
        let _ = writeln!(out, "  matched as expected:");
        for (j, g) in m.got.iter().enumerate() {
            if !m.unexpected.contains(&j) {
                out.push_str(&render_plan(g, "      ", "      "));
            }
        }
    }
}

/// The report of a failed test: its name and line, then per failure the time and the diff.
pub fn render_failure(file: &Path, t: &TestReport) -> String {
    let mut out = String::new();
    let place = match t.line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    };
    let _ = writeln!(out, "FAILED {place}: test {:?}", t.name);
    for f in &t.failures {
        match f {
            TestFailure::Mismatch(m) => {
                let line = m.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                let _ = writeln!(out, "  at {}{line}:", fmt_ms(m.at_ms));
                let mut body = String::new();
                mismatch(&mut body, m);
                for l in body.lines() {
                    let _ = writeln!(out, "  {l}");
                }
            }
            TestFailure::Eval { at_ms, rule, error } => {
                let _ = writeln!(
                    out,
                    "  at {}: the condition of rule {rule} cannot be evaluated: {error}",
                    fmt_ms(*at_ms)
                );
            }
        }
    }
    out
}
