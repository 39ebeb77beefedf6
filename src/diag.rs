//! Diagnostics: what `check` (and every loader) reports about a file.
//!
//! Loaders never stop at the first problem: they push every problem they find into a
//! [`Diagnostics`] list, each naming its file and, where there is one, its line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::yaml::Document;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Usable, but probably not what the author meant.
    Warning,
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// What is wrong, in words an SRE can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                sev,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), sev, self.message),
        }
    }
}

/// A growing list of diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// Every diagnostic, in the order found.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records an error at an explicit line.
    pub fn error(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.push(Severity::Error, file, line, message.into());
    }

    /// Records a warning at an explicit line.
    pub fn warning(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.push(Severity::Warning, file, line, message.into());
    }

    /// Records an error about the value at `path` in `doc` (line looked up from the path).
    pub fn error_at(
        &mut self,
        file: &Path,
        doc: &Document,
        path: &str,
        message: impl fmt::Display,
    ) {
        let line = doc.line_of(path);
        let message = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.push(Severity::Error, file, line, message);
    }

    fn push(&mut self, severity: Severity, file: &Path, line: Option<usize>, message: String) {
        self.items.push(Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            message,
        });
    }

    /// Number of errors (warnings not counted).
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// True when there is at least one error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Orders diagnostics by file, then line, so output is the same on every run.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
}

/// `1 error`, `2 errors`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
