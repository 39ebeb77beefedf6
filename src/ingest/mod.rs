//! Ingest: how alerts arrive: the Alertmanager webhook, and the self-watch (scrapes,
//! probes, rule conditions), which honours Alertmanager's silences ([`silence`]).

pub mod drops;
pub mod kafka_watch;
pub mod kube_watch;
pub mod probe;
pub mod retention;
pub mod scrape;
pub mod silence;
pub mod store;
pub mod watch;
pub mod webhook;

pub use webhook::{Alert, AlertStatus, WebhookError, WebhookPayload, fingerprint, parse_webhook};
