//! [`ExecOptions`]: how steps run, one value for every step of the service.

use std::time::Duration;

use super::env::child_env;
use super::lifeline;
use crate::runbook::steps::kube::conn::KubeConn;

/// How steps run; one value serves every step of the service.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Time limit for a step that names none.
    pub default_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a process group is stopped.
    pub kill_grace: Duration,
    /// Bytes kept of each output stream (stdout, stderr, HTTP body); the rest is discarded.
    pub max_output: usize,
    /// The complete environment of child processes (see [`child_env`]).
    pub env: Vec<(String, String)>,
    /// The client used by `http` and `wait_for: http` steps; build it from
    /// [`client_builder`], which follows no redirect.
    pub http_client: reqwest::Client,
    /// Pause between two tries of a `wait_for` step.
    pub wait_interval: Duration,
    /// Pause between two tries of a failed step that has retries left.
    pub retry_pause: Duration,
    /// How long output is still read after a process exits, while something it started
    /// keeps its stdout or stderr open.
    pub drain_timeout: Duration,
    /// The Kubernetes API connection for `kube` steps; none without a `kubernetes:` config.
    pub kube: Option<std::sync::Arc<KubeConn>>,
    /// `setpriv` (util-linux), through which a child process is started with a
    /// parent-death signal (SIGKILL) so that it dies with the service; `None`: started
    /// directly (see [`lifeline`]).
    pub setpriv: Option<std::path::PathBuf>,
    /// How many levels below the service's CPU priority child processes start (added to
    /// its nice value, at most 19, as `nice -n` does); 0: the service's own. The engine
    /// sets `recovery.diagnostics_nice` here for diagnostics runbooks only.
    pub nice: u32,
    /// The Kafka view `wait_in_sync` steps look through; none when the `security:`
    /// section could not be used (such a step then fails as it cannot run).
    pub safety: Option<std::sync::Arc<crate::runbook::precondition::Safety>>,
}

impl ExecOptions {
    /// Default options with `env` as the children's environment: 300 s timeout, 5 s kill
    /// grace, 64 KiB per stream, 1 s between `wait_for` tries and between retries, 2 s
    /// drain, and `setpriv` when this host has one that works ([`lifeline::setpriv`],
    /// looked for once per process).
    ///
    /// Builds the `http` steps' client (no redirects followed), which panics only if the TLS
    /// backend cannot be initialised (as `reqwest::Client::new` documents).
    pub fn new(env: Vec<(String, String)>) -> ExecOptions {
        ExecOptions {
            default_timeout: Duration::from_secs(300),
            kill_grace: Duration::from_secs(5),
            max_output: 64 * 1024,
            env,
            http_client: client(),
            wait_interval: Duration::from_secs(1),
            retry_pause: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
            kube: None,
            setpriv: lifeline::setpriv(),
            nice: 0,
            safety: None,
        }
    }
}

fn client() -> reqwest::Client {
    match client_builder().build() {
        Ok(c) => c,
        // Only a TLS backend that cannot start, where `reqwest::Client::new` panics too.
        Err(e) => panic!("cannot build the HTTP client: {e}"),
    }
}

impl Default for ExecOptions {
    /// [`ExecOptions::new`] with [`child_env`] of no extra variables.
    fn default() -> ExecOptions {
        ExecOptions::new(child_env(&[]))
    }
}

/// The client `http` and `wait_for: http` steps use: redirects are never followed (a
/// redirect could send the request, body included, elsewhere).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}
