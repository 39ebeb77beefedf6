//! The journal: durable record of alerts, executions, steps and policy events (SQLite).
//! (Implementation in progress.)

pub mod model;

pub use model::*;
