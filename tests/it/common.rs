//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `kafka-healing` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kafka-healing"))
}

/// Runs the binary with args, no stdin, and a clean KAFKA_HEALING_* environment.
pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// Runs the binary with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_HEALING") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("spawn kafka-healing")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory with a config and rule files.
pub struct Scratch {
    /// Kept alive for the test's duration.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// An empty scratch directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes `rel` with `text`, returning its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A minimal valid config naming `rules/*.yaml`; `extra` is appended (top-level YAML).
pub fn config_with(extra: &str) -> String {
    format!(
        "cluster:\n  name: test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: k1.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-2, host: k2.example.com, port: 9092, jmx_port: 9404 }}\n    - {{ node_id: kafka-3, host: k3.example.com, port: 9092, jmx_port: 9404 }}\nrules:\n  - rules/*.yaml\n{extra}"
    )
}

/// A minimal valid rule file.
pub const GOOD_RULES: &str = r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: [systemctl, restart, kafka.service]
"#;
