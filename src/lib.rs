//! kafka-healing: heals Apache Kafka clusters from Alertmanager alerts and its own checks.
//!
//! The modules follow the pipeline: [`config`] and [`rules`] are what SREs write,
//! [`ingest`] turns Alertmanager's webhook into alerts, [`engine`] decides what to do with
//! them, [`runbook`] renders and runs the steps, and [`cli`] is the command line.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coord;
pub mod diag;
pub mod engine;
pub mod expo;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod journal;
pub mod kafka;
pub mod metrics;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod runbook;
pub mod server;
pub mod yaml;
