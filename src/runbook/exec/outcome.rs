//! How a try ended ([`Outcome`]), and why a step could not run ([`ExecError`]): what every
//! step kind's `run` returns.

use crate::journal::StepStatus;

/// Why a step could not be run at all, or a try failed without an exit status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The step has no program (or no request) to run.
    #[error("empty argv: nothing to run")]
    EmptyArgv,
    /// The argv does not have the shape the step kind needs.
    #[error("invalid {kind} step: {message}")]
    InvalidStep {
        /// The step kind.
        kind: String,
        /// What is wrong.
        message: String,
    },
    /// The step kind is not one the executor knows.
    #[error("unknown step kind `{0}`")]
    UnknownKind(String),
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program (argv\[0\]).
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("waiting for `{program}` failed: {source}")]
    Wait {
        /// The program (argv\[0\]).
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token was cancelled (shutdown) before or while the step ran.
    #[error("cancelled")]
    Cancelled,
}

impl ExecError {
    /// Whether the step cannot run as it is rendered, so that no run of the same plan can
    /// succeed: an empty or malformed argv, an unknown kind, or arguments the OS refuses
    /// (E2BIG: one label over 128 KiB is enough). Such a failure is recorded but counts as
    /// no attempt, and opens no circuit: running it again changes nothing.
    pub fn unfixable(&self) -> bool {
        match self {
            ExecError::EmptyArgv | ExecError::InvalidStep { .. } | ExecError::UnknownKind(_) => {
                true
            }
            ExecError::Spawn { source, .. } => {
                source.raw_os_error() == Some(nix::errno::Errno::E2BIG as i32)
            }
            ExecError::Wait { .. } | ExecError::Cancelled => false,
        }
    }
}

/// How one try ended (the part of a [`crate::journal::StepRecord`] a try decides).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: StepStatus,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr_truncated: bool,
    pub(crate) error: Option<String>,
    /// Another try cannot help (invalid step, cancellation).
    pub(crate) final_: bool,
    /// No later run can help either: the step cannot run as rendered (see
    /// [`ExecError::unfixable`]).
    pub(crate) unfixable: bool,
}

impl Outcome {
    pub(crate) fn new(status: StepStatus) -> Outcome {
        Outcome {
            status,
            exit_code: None,
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            error: None,
            final_: false,
            unfixable: false,
        }
    }

    pub(crate) fn failed(error: impl ToString) -> Outcome {
        Outcome {
            error: Some(error.to_string()),
            ..Outcome::new(StepStatus::Failed)
        }
    }

    /// A failure no retry can fix.
    pub(crate) fn fatal(error: ExecError) -> Outcome {
        Outcome {
            final_: true,
            unfixable: error.unfixable(),
            ..Outcome::failed(error)
        }
    }
}

/// `e` and its sources, joined by `: ` (reqwest's own message hides the cause).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
