//! `kafka-healing check --explain KEY`: one key's effective value and its source.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::{self, LoadError};

pub(super) fn run(paths: &[PathBuf], key: &str, json: bool) -> ExitCode {
    let loaded = match config::load_files(paths) {
        Ok(l) => l,
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(LoadError::Invalid(d)) => {
            // Only a valid config has values in effect to explain.
            eprint!("{d}");
            eprintln!(
                "{}: INVALID ({})",
                super::ConfigFiles::shown(paths),
                crate::diag::plural(d.error_count(), "error")
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match config::explain(&loaded, key) {
        Ok(x) if json => match serde_json::to_string(&x) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(x) => {
            print!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
