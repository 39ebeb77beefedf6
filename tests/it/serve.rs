//! `kafka-healing serve` for real: the binary on 127.0.0.1:0, real HTTP, real child
//! processes, a real SQLite journal. Each test writes its own config and rule files.

pub(crate) mod harness;

mod actions_heal;
mod conditions;
mod crash;
mod email;
mod fleet;
mod intake;
mod kafka_heal;
mod kafka_pause;
mod pauses;
mod policy;
mod reset;
mod runbooks;
mod silences;
