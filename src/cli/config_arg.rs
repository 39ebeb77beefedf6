//! `-c/--config`, shared by every command that reads the config.

use std::path::PathBuf;

/// The config files of a command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFiles {
    /// Config file (YAML). Repeat -c to layer files: they are deep-merged in order (mappings
    /// merge key by key; a scalar or a list from a later file replaces the earlier one
    /// whole). Then `environment: X` adds config/X.yaml from the first file's directory when
    /// it exists, and KAFKA_HEALING__SECTION__KEY variables override everything. Relative
    /// paths in any file resolve against the first file's directory.
    #[arg(
        short = 'c',
        long = "config",
        env = "KAFKA_HEALING_CONFIG",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<PathBuf>,
}

impl ConfigFiles {
    /// The files, in the order given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.files
    }

    /// The files as one line for messages: `a.yaml + b.yaml`.
    pub fn shown(paths: &[PathBuf]) -> String {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    }
}
