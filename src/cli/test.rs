//! `kafka-healing test FILE…`: rule unit tests (see [`crate::rules::unittest`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::diag::plural;
use crate::rules::unittest::{self, FileReport, UnitTestError, render_failure};

enum Outcome {
    Ran(FileReport),
    Unreadable(String),
    Invalid(crate::diag::Diagnostics),
}

fn run_file(path: &Path) -> Outcome {
    match unittest::load(path) {
        Ok(file) => Outcome::Ran(file.run()),
        Err(e @ UnitTestError::Read { .. }) => Outcome::Unreadable(e.to_string()),
        Err(UnitTestError::Invalid(d)) => Outcome::Invalid(d),
    }
}

pub(super) fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let outcomes: Vec<(&PathBuf, Outcome)> = files.iter().map(|f| (f, run_file(f))).collect();
    let (mut total, mut failed, mut invalid, mut unreadable) = (0, 0, 0, 0);
    for (_, o) in &outcomes {
        match o {
            Outcome::Ran(r) => {
                total += r.tests.len();
                failed += r.failed();
            }
            Outcome::Invalid(_) => invalid += 1,
            Outcome::Unreadable(_) => unreadable += 1,
        }
    }
    if json {
        let per_file: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|(path, o)| match o {
                Outcome::Ran(r) => json!({"file": path, "tests": r.tests}),
                Outcome::Invalid(d) => json!({"file": path, "invalid": d.items}),
                Outcome::Unreadable(e) => json!({"file": path, "error": e}),
            })
            .collect();
        let v = json!({
            "files": per_file,
            "tests": total,
            "failed": failed,
            "invalid_files": invalid,
            "unreadable_files": unreadable,
        });
        println!("{v}");
    } else {
        for (_, o) in &outcomes {
            match o {
                Outcome::Ran(r) => {
                    for t in r.tests.iter().filter(|t| !t.passed) {
                        print!("{}", render_failure(&r.file, t));
                    }
                    for t in r.tests.iter().filter(|t| !t.unread.is_empty()) {
                        println!(
                            "note: {}: test {:?}: no condition reads {}: dropped, as serve drops them",
                            r.file.display(),
                            t.name,
                            t.unread.join(", ")
                        );
                    }
                }
                Outcome::Invalid(d) => {
                    eprint!("{d}");
                }
                Outcome::Unreadable(e) => eprintln!("error: {e}"),
            }
        }
        for (path, o) in &outcomes {
            match o {
                Outcome::Invalid(d) => eprintln!(
                    "error: {}: invalid test file ({})",
                    path.display(),
                    plural(d.error_count(), "error")
                ),
                Outcome::Ran(_) | Outcome::Unreadable(_) => {}
            }
        }
        let broken = invalid + unreadable;
        let files_note = if broken > 0 {
            format!("; {} not run", plural(broken, "file"))
        } else {
            String::new()
        };
        if failed == 0 && broken == 0 {
            println!("ok: {}", plural(total, "test"));
        } else {
            println!("FAILED: {failed} of {}{files_note}", plural(total, "test"));
        }
    }
    if unreadable > 0 {
        ExitCode::from(EXIT_USAGE)
    } else if invalid > 0 || failed > 0 {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}
