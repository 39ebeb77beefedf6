//! The integration tests: one binary, one module per area.

mod am_oracle;
mod check;
mod common;
mod config_layers;
mod deploy;
mod dry_run;
mod executor;
mod expo;
mod faults;
mod fuzz;
mod ha;
mod hostile;
mod journal;
mod kafka;
mod kafka_client;
mod kafka_watch;
mod kube;
mod mailbox;
mod probes;
mod promql;
mod safety;
mod scrape;
mod serve;
mod smtp;
mod stack;
mod unittest;
