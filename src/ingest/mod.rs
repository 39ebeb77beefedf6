//! Ingest: how alerts arrive. Today the Alertmanager webhook; self-scrape and probes
//! produce the same [`Alert`] shape later.

pub mod probe;
pub mod scrape;
pub mod store;
pub mod watch;
pub mod webhook;

pub use webhook::{Alert, AlertStatus, WebhookError, WebhookPayload, fingerprint, parse_webhook};
