//! The `kafka-healing` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use kafka_healing::cli::{Cli, run};

fn main() -> ExitCode {
    run(Cli::parse())
}
