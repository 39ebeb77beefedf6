//! `systemctl` steps: `systemctl ACTION -- UNIT`, locally or over ssh, optionally with sudo.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::runbook::render::{Lowered, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "systemctl";

/// `systemctl` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemctlStep {
    /// `start`, `stop`, `restart`, `try-restart`, `reload`, `reload-or-restart`,
    /// `is-active` or `status`.
    pub action: String,
    /// Unit name (template).
    pub unit: String,
    /// Remote host (template): run over `ssh -o BatchMode=yes`.
    #[serde(default)]
    pub host: Option<String>,
    /// Prefix with `sudo -n` (no password prompt).
    #[serde(default)]
    pub sudo: bool,
}

/// The systemctl actions a step may use.
pub const SYSTEMCTL_ACTIONS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "try-restart",
    "reload",
    "reload-or-restart",
    "is-active",
    "status",
];

/// The actions that only read.
const READ_ONLY: &[&str] = &["is-active", "status"];

static UNIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.@:-]+$").expect("static regex"));

impl SystemctlStep {
    /// Every template source: the unit and the host.
    pub(crate) fn templates(&self) -> Vec<&str> {
        [Some(self.unit.as_str()), self.host.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// An action that is not one of [`SYSTEMCTL_ACTIONS`].
    pub(crate) fn problems(&self) -> Vec<String> {
        if SYSTEMCTL_ACTIONS.contains(&self.action.as_str()) {
            return Vec::new();
        }
        vec![format!(
            "systemctl action `{}` is not one of {}",
            self.action,
            SYSTEMCTL_ACTIONS.join(", ")
        )]
    }

    /// Every action but `is-active` and `status` changes the service.
    pub(crate) fn changes_a_service(&self) -> Option<String> {
        (!READ_ONLY.contains(&self.action.as_str())).then(|| format!("systemctl {}", self.action))
    }

    /// `[ssh -o BatchMode=yes -- HOST] [sudo -n] systemctl ACTION -- UNIT`, the unit a
    /// systemd unit name and the host a plain host name.
    pub(crate) fn lower(&self, r: &Renderer<'_>) -> Result<Lowered, StepError> {
        if !SYSTEMCTL_ACTIONS.contains(&self.action.as_str()) {
            return Err(r.error(format!("systemctl action `{}` is not allowed", self.action)));
        }
        let unit = r.one("unit", &self.unit)?;
        if !UNIT.is_match(&unit) || unit.starts_with('-') {
            return Err(r.error(format!(
                "unit: `{}` is not a systemd unit name",
                unit.escape_debug()
            )));
        }
        let mut argv = Vec::new();
        if let Some(h) = &self.host {
            // ssh hands the remote command to a shell: only vetted words may go there.
            let host = r.host("host", h)?;
            argv.extend(["ssh", "-o", "BatchMode=yes", "--", &host].map(String::from));
        }
        if self.sudo {
            argv.extend(["sudo", "-n"].map(String::from));
        }
        argv.extend([
            "systemctl".to_string(),
            self.action.clone(),
            "--".to_string(),
            unit,
        ]);
        Ok(Lowered::argv(argv))
    }
}

/// Disruptive unless the action (the word after `systemctl`) is `is-active` or `status`.
pub(crate) fn is_disruptive(argv: &[String]) -> bool {
    let action = argv
        .iter()
        .position(|a| a == "systemctl")
        .and_then(|i| argv.get(i + 1));
    !action.is_some_and(|a| READ_ONLY.contains(&a.as_str()))
}

/// One try: the argv as a child process, as `exec` runs it.
pub(crate) use super::exec::run;
