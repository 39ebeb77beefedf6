//! The configuration's data model. Every field has a safe default unless it names something
//! only the operator can know (cluster name, brokers, SMTP host).

use std::path::PathBuf;

use super::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};

/// Deserializes a keyword enum case-insensitively; an unknown word lists the known ones.
/// (Serde's derived enum errors name neither.)
macro_rules! keyword_enum {
    ($ty:ty, $what:literal, [$(($word:literal, $val:expr)),+ $(,)?]) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match s.to_ascii_lowercase().as_str() {
                    $($word => Ok($val),)+
                    _ => Err(serde::de::Error::custom(format!(
                        concat!("unknown ", $what, " `{}`, expected one of:", $(" ", $word),+),
                        s
                    ))),
                }
            }
        }
    };
}

/// The whole configuration, after layering and secret resolution.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Kafka cluster this instance heals.
    pub cluster: ClusterConfig,
    /// How the service watches the cluster itself.
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// Global remediation policy (rules may override parts of it).
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// Where outcomes are sent.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The HTTP server Alertmanager posts to.
    #[serde(default)]
    pub server: ServerConfig,
    /// Rule files: paths or globs, relative to the config file.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Durable state (the journal).
    #[serde(default)]
    pub state: StateConfig,
    /// Log output.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Deployment environment; `production` enables stricter checks.
    #[serde(default)]
    pub environment: Environment,
    /// Several instances sharing the work through etcd; absent: one instance, no etcd.
    #[serde(default)]
    pub coordination: Option<CoordinationConfig>,
    /// The Kubernetes API, for `kube` steps; none: a rule using them is an error.
    #[serde(default)]
    pub kubernetes: Option<super::kubernetes::KubernetesConfig>,
    /// The Alertmanager whose silences the self-watch's alerts honour; none: they honour
    /// none (pauses still apply).
    #[serde(default)]
    pub alertmanager: Option<super::alertmanager::AlertmanagerConfig>,
    /// TLS and SASL for the Kafka protocol client; absent: plaintext without SASL.
    #[serde(default)]
    pub security: super::security::SecurityConfig,
    /// The service's own surfaces (the seed's `system:`): metrics on their own port.
    #[serde(default)]
    pub system: SystemConfig,
}

/// The seed's `system:` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// `/metrics` on its own port.
    pub metrics: SystemMetricsConfig,
}

/// `system.metrics`: `/metrics` also served on its own plain, read-only port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemMetricsConfig {
    /// `false`: no metrics port (the main server's `/metrics` stays).
    pub enabled: bool,
    /// The port, on the main listener's address; none: no separate port.
    pub port: Option<u16>,
    /// Exposition format; only `prometheus` (text 0.0.4).
    pub format: String,
}

impl Default for SystemMetricsConfig {
    fn default() -> Self {
        SystemMetricsConfig {
            enabled: true,
            port: None,
            format: "prometheus".into(),
        }
    }
}

/// The cluster: its name, brokers and (optionally) ZooKeeper ensemble.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name, used in templates (`cluster.name`), emails and logs; the seed writes
    /// none, so it defaults to `kafka`.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// The brokers; an alert is mapped to one of them to find its target.
    pub kafka_brokers: Vec<Broker>,
    /// ZooKeeper nodes, for clusters not yet on KRaft. Must be an odd number.
    #[serde(default)]
    pub zookeeper_nodes: Vec<ZookeeperNode>,
}

/// One Kafka broker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    /// Identifier, unique in the cluster (`kafka-1`, or Kafka's numeric `node.id`).
    #[serde(deserialize_with = "string_or_number")]
    pub node_id: String,
    /// Host name or address.
    pub host: String,
    /// Kafka listener port.
    pub port: u16,
    /// JMX (exporter) port, also used to map `instance` labels to this broker.
    #[serde(default)]
    pub jmx_port: Option<u16>,
    /// Metrics endpoint; default `http://host:jmx_port/metrics`.
    #[serde(default)]
    pub metrics_url: Option<String>,
}

/// One ZooKeeper node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZookeeperNode {
    /// Identifier, unique in the ensemble.
    #[serde(deserialize_with = "string_or_number")]
    pub node_id: String,
    /// Host name or address.
    pub host: String,
    /// Client port (usually 2181).
    #[serde(default = "default_zk_port")]
    pub port: u16,
}

/// `cluster.name` when the file gives none.
pub const DEFAULT_CLUSTER_NAME: &str = "kafka";

fn default_cluster_name() -> String {
    DEFAULT_CLUSTER_NAME.into()
}

fn default_zk_port() -> u16 {
    2181
}

/// A way the service checks the cluster itself.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MonitoringMethod {
    /// TCP connect to each broker's port.
    Socket,
    /// Scrape each broker's JMX exporter.
    Jmx,
    /// ZooKeeper four-letter-word probes.
    Zookeeper,
    /// HTTP status check of each metrics endpoint.
    Http,
    /// Kafka's own protocol: ApiVersions to each broker, then Metadata,
    /// `min.insync.replicas` and the KRaft quorum from one that answers.
    Kafka,
    /// The broker pods' readiness and restarts through the Kubernetes API (the seed's
    /// method; see `ingest::kube_watch`).
    Kubernetes,
}

/// Self-monitoring settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Seconds between checks (5–3600).
    pub interval_seconds: u64,
    /// Seconds one check may take (1–300, less than the interval).
    pub timeout_seconds: u64,
    /// Which checks to run.
    pub methods: Vec<MonitoringMethod>,
    /// Exporter series the in-memory store holds at most (1,000–10,000,000): new series
    /// beyond it are dropped, counted and escalated. Only series a condition can read are
    /// kept at all.
    pub max_series: usize,
    /// Series reserved for the targets' health (`up`, scrape, probe and Kafka-protocol
    /// series; 100–1,000,000), which exporter series can never take.
    pub max_health_series: usize,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            interval_seconds: 30,
            timeout_seconds: 15,
            methods: vec![MonitoringMethod::Socket, MonitoringMethod::Jmx],
            max_series: 200_000,
            max_health_series: 50_000,
        }
    }
}

/// Global remediation policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Executions per (rule, target) before the circuit opens (1–10).
    pub max_attempts: u32,
    /// Delay before the second attempt; later ones grow by `backoff_multiplier`.
    pub initial_delay_seconds: u64,
    /// Growth of the delay between attempts (1.0–10.0).
    pub backoff_multiplier: f64,
    /// Quiet time per (rule, target) after an execution.
    pub cooldown_seconds: u64,
    /// Disruptive executions allowed at once in the cluster (default 1).
    pub max_concurrent_per_cluster: u32,
    /// Non-disruptive (diagnostics, notify-only) executions running at once; more wait queued.
    pub max_concurrent_diagnostics: u32,
    /// How many levels below the service's CPU priority diagnostics' processes run (added
    /// to its nice value, as `nice -n` does; 0–19, default 10): a storm of diagnostics then
    /// leaves the CPU to the webhook, the journal and the broker. Remediation steps always
    /// run at the service's own priority.
    pub diagnostics_nice: u32,
    /// Executions waiting at most; beyond it new work is skipped (journaled, with its reason)
    /// instead of growing memory without bound in an alert storm.
    pub max_queued: u32,
    /// Disruptive and `broker_down` executions waiting at most: their own budget, which
    /// diagnostics never take (`max_queued` counts the others). While it is full the
    /// webhook answers 503 to a request that would add to it, before journaling it.
    pub max_queued_remediation: u32,
    /// Record what would run without running it.
    pub dry_run: bool,
    /// Window in which `max_attempts` are counted.
    pub attempt_window_seconds: u64,
    /// An open circuit closes by itself after the problem has been resolved this long.
    pub circuit_reset_seconds: u64,
    /// Time limit of a step that sets none.
    pub step_timeout_seconds: u64,
    /// Between SIGTERM and SIGKILL when a step times out.
    pub kill_grace_seconds: u64,
    /// On shutdown, how long running executions may go on before they are interrupted.
    pub shutdown_grace_seconds: u64,
    /// Time limit of each Kafka request (and the exporter scrape) a runbook's
    /// preconditions and `wait_in_sync` steps make; `broker_unreachable` gives the target
    /// 2 tries within it.
    pub precondition_timeout_seconds: u64,
    /// After a refusal, the work is judged again this much later while its alert still
    /// fires (a recovering broker is watched, not restarted).
    pub precondition_recheck_seconds: u64,
    /// The seed's remediation actions for a broker that is down, tried in order as a
    /// fallback chain; with no `rules:`, they select the built-in rule pack.
    pub actions: Vec<RecoveryAction>,
    /// Params of those actions over their defaults (`unit`, `inventory`, `namespace`, …;
    /// see rules/builtin/): each value a template, as a rule's params are.
    pub action_params: std::collections::BTreeMap<String, String>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_attempts: 3,
            initial_delay_seconds: 10,
            backoff_multiplier: 2.0,
            cooldown_seconds: 300,
            max_concurrent_per_cluster: 1,
            max_concurrent_diagnostics: 8,
            diagnostics_nice: 10,
            max_queued: 1000,
            max_queued_remediation: 100,
            dry_run: false,
            attempt_window_seconds: 3600,
            circuit_reset_seconds: 1800,
            step_timeout_seconds: 300,
            kill_grace_seconds: 10,
            shutdown_grace_seconds: 30,
            precondition_timeout_seconds: 5,
            precondition_recheck_seconds: 30,
            actions: Vec::new(),
            action_params: Default::default(),
        }
    }
}

/// One of the seed's `recovery.actions`: a way to bring a broker back.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    /// `systemctl restart` of the broker's service over ssh.
    RestartService,
    /// The `ansible/restart-broker.yml` playbook.
    Ansible,
    /// Evict the broker's pod and wait until it is ready again.
    RestartPod,
    /// Scale the broker's StatefulSet down and back.
    ScaleStatefulset,
}

keyword_enum!(
    RecoveryAction,
    "recovery action",
    [
        ("restart_service", RecoveryAction::RestartService),
        ("ansible", RecoveryAction::Ansible),
        ("restart_pod", RecoveryAction::RestartPod),
        ("scale_statefulset", RecoveryAction::ScaleStatefulset),
    ]
);

impl RecoveryAction {
    /// The action's name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryAction::RestartService => "restart_service",
            RecoveryAction::Ansible => "ansible",
            RecoveryAction::RestartPod => "restart_pod",
            RecoveryAction::ScaleStatefulset => "scale_statefulset",
        }
    }
}

/// Notification settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Email over SMTP; without it outcomes are only logged and journaled.
    pub smtp: Option<SmtpConfig>,
    /// Who hears about escalations (circuit opened, `on_failure: escalate`, interrupted
    /// executions, mail undeliverable for too long). The seed's `escalation.enabled` is read
    /// by loading: `false` leaves this `None` and sets `escalation_disabled`.
    pub escalation: Option<EscalationConfig>,
    /// True when the file says `escalation.enabled: false`: no escalation mail at all (not
    /// even to on-call). Set by loading, never read from the file.
    #[serde(skip)]
    pub escalation_disabled: bool,
    /// At most one email per (rule, target) per this many seconds; what is held back goes
    /// into the next one as a summary.
    pub rate_limit_seconds: u64,
    /// Files overriding the built-in message templates (handlebars).
    pub templates: TemplateFiles,
    /// First delay before retrying a failed delivery; doubles per attempt up to 15 min.
    pub retry_initial_seconds: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            smtp: None,
            escalation: None,
            escalation_disabled: false,
            rate_limit_seconds: 600,
            templates: TemplateFiles::default(),
            retry_initial_seconds: 10,
        }
    }
}

/// Escalation recipients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Recipients of escalations (on-call's list is separate). Empty (the seed writes
    /// none): loading fills in `smtp.to_emails`.
    #[serde(default)]
    pub to_emails: Vec<String>,
    /// A message not delivered after this long is escalated.
    #[serde(default = "default_undeliverable")]
    pub undeliverable_after_seconds: u64,
}

fn default_undeliverable() -> u64 {
    3600
}

/// Template overrides, relative to the config file. Each is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateFiles {
    /// Subject line template.
    pub subject: Option<PathBuf>,
    /// Plain-text body template.
    pub text: Option<PathBuf>,
    /// HTML body template (alert data is HTML-escaped).
    pub html: Option<PathBuf>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS required for a remote host; to a loopback address, STARTTLS when the
    /// server offers it and plain otherwise (a local relay or a dev mail catcher).
    #[default]
    Auto,
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host.
    None,
}

/// SMTP settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// AUTH user name.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password (prefer `password_file` or `${NAME}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the AUTH password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from_email: String,
    /// On-call recipients.
    pub to_emails: Vec<String>,
    /// Transport security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM file with CA certificates to trust besides the public roots (private relays).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit for one whole delivery (connect, TLS, AUTH, DATA), in seconds.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_seconds: u64,
}

fn default_smtp_timeout() -> u64 {
    30
}

fn default_smtp_port() -> u16 {
    587
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Authentication required on the API; none when absent.
    pub auth: Option<AuthConfig>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Alerts journaled but not yet decided, at most; beyond it the webhook answers 503
    /// before journaling (Alertmanager retries), so a storm cannot fill memory.
    pub max_pending_alerts: usize,
    /// While the diagnostics queue is full (`recovery.max_queued`), a request whose alerts
    /// only need diagnostics waits this long for room, then gets 503 (Alertmanager retries)
    /// instead of being journaled and skipped. Milliseconds; 0 turns this off (every
    /// request is taken, and what finds the queue full is journaled `skipped`).
    pub admission_wait_ms: u64,
    /// Open connections at most; a new one beyond it first displaces the oldest that has
    /// not yet sent an authenticated request, else it is closed at once. Lowered at start
    /// when the descriptor limit cannot hold it.
    pub max_connections: usize,
    /// Seconds from accept until a connection's first request head is complete (a
    /// connection that sends nothing is closed then too); also the TLS handshake's bound.
    pub header_read_timeout_seconds: u64,
    /// Seconds an authenticated request has to deliver its whole body (408 after).
    pub body_timeout_seconds: u64,
    /// Seconds a kept-alive connection may wait for its next request head to be complete.
    pub keep_alive_idle_seconds: u64,
    /// Serve HTTP/2 (needs `tls`: negotiated by ALPN; plaintext h2c is never offered).
    pub http2: bool,
    /// Concurrent HTTP/2 streams per connection, at most.
    pub http2_max_concurrent_streams: u32,
}

/// A PEM certificate chain and private key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM), relative to the config file.
    pub cert_file: PathBuf,
    /// Private key (PEM), relative to the config file.
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5599".into(),
            auth: None,
            body_limit_bytes: 1024 * 1024,
            tls: None,
            max_pending_alerts: 20_000,
            admission_wait_ms: 2_000,
            max_connections: 1024,
            header_read_timeout_seconds: 10,
            body_timeout_seconds: 30,
            keep_alive_idle_seconds: 30,
            http2: false,
            http2_max_concurrent_streams: 32,
        }
    }
}

/// API authentication: a bearer token or basic auth (exactly one).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer token Alertmanager sends (`http_config.authorization`).
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth credentials (`http_config.basic_auth`).
    pub basic: Option<BasicAuth>,
}

/// Basic auth credentials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Durable state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite journal path, relative to the config file.
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("kafka-healing.db"),
        }
    }
}

/// Log level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Decisions in detail.
    Debug,
    /// What happened and why.
    #[default]
    Info,
    /// Problems that were handled.
    Warn,
    /// Problems that were not.
    Error,
}

// The seed writes `INFO`; every keyword is accepted in any case.
keyword_enum!(
    LogLevel,
    "log level",
    [
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("warning", LogLevel::Warn),
        ("error", LogLevel::Error),
    ]
);
keyword_enum!(
    LogFormat,
    "log format",
    [("text", LogFormat::Text), ("json", LogFormat::Json)]
);
keyword_enum!(
    SmtpTls,
    "tls mode",
    [
        ("auto", SmtpTls::Auto),
        ("starttls", SmtpTls::Starttls),
        ("tls", SmtpTls::Tls),
        ("none", SmtpTls::None),
    ]
);
keyword_enum!(
    MonitoringMethod,
    "monitoring method",
    [
        ("socket", MonitoringMethod::Socket),
        ("jmx", MonitoringMethod::Jmx),
        ("zookeeper", MonitoringMethod::Zookeeper),
        ("http", MonitoringMethod::Http),
        ("kafka", MonitoringMethod::Kafka),
        ("kubernetes", MonitoringMethod::Kubernetes),
    ]
);
keyword_enum!(
    Environment,
    "environment",
    [
        ("development", Environment::Development),
        ("dev", Environment::Development),
        ("staging", Environment::Staging),
        ("production", Environment::Production),
        ("prod", Environment::Production),
    ]
);

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging: to standard error (journald, Kubernetes and supervisors collect it), or to a
/// size-rotated file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Minimum level.
    pub level: LogLevel,
    /// Line format.
    pub format: LogFormat,
    /// Log to this file (relative to the config file) instead of standard error.
    pub file: Option<PathBuf>,
    /// Rotate `file` when it reaches this many MiB.
    pub max_size_mb: u64,
    /// Rotated files kept (`file.1` … `file.N`); older ones are deleted.
    pub backup_count: u32,
    /// The audit trail.
    pub audit: AuditConfig,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: LogLevel::default(),
            format: LogFormat::default(),
            file: None,
            max_size_mb: 100,
            backup_count: 5,
            audit: AuditConfig::default(),
        }
    }
}

/// `logging.audit`: the journal's events as JSON lines in a file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit file.
    pub enabled: bool,
    /// Its path, relative to the config file; default `audit.jsonl` beside the journal.
    pub file: Option<PathBuf>,
}

/// Deployment environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A laptop or CI.
    #[default]
    Development,
    /// Pre-production.
    Staging,
    /// Production: at least three brokers required.
    Production,
}

/// Accepts `kafka-1` or `1` (Kafka's numeric `node.id`) as a string.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a number")]
    enum Id {
        S(String),
        I(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::I(i) => i.to_string(),
    })
}

/// The coordination service behind [`CoordinationConfig`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CoordinationBackend {
    /// etcd v3, through its JSON gRPC gateway (`/v3/...`).
    #[default]
    Etcd,
}

keyword_enum!(
    CoordinationBackend,
    "coordination backend",
    [("etcd", CoordinationBackend::Etcd)]
);

/// High availability: instances register in etcd with a lease, take a lock per piece of
/// work before running it, and split the self-watch targets among themselves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationConfig {
    /// The coordination service (only `etcd`).
    #[serde(default)]
    pub backend: CoordinationBackend,
    /// etcd client URLs (`http://host:2379`); tried in order.
    pub endpoints: Vec<String>,
    /// Lifetime of the instance's lease: a dead instance's locks and shard are taken over
    /// after this long (2–300).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_seconds: u64,
    /// Prefix of every key kafka-healing writes; must start and end with `/`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// This instance's name among its peers (unique); default: the host name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// etcd user, when etcd has authentication enabled (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// The user's password (write `${ENV_VAR}` rather than the secret itself).
    #[serde(default)]
    pub password: Option<Secret>,
    /// CA certificate (PEM) that signed etcd's server certificate, for `https` endpoints
    /// with a private CA; relative to the config file. Default: the public web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_lease_ttl() -> u64 {
    10
}

fn default_key_prefix() -> String {
    "/kafka-healing/".into()
}
