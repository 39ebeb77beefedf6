//! Several `-c` files deep-merged in order, and the `config/<environment>.yaml` overlay,
//! with the seed's own dictionaries as the realistic case.

use std::path::{Path, PathBuf};

use kafka_healing::config::{Environment, LoadError, LogLevel, load_files_with_env};

use super::{env, errors};
use crate::common::*;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed");

fn seed(name: &str) -> String {
    std::fs::read_to_string(Path::new(SEED).join(name)).expect("seed file")
}

const SMTP_ENV: [(&str, &str); 2] = [("SMTP_USERNAME", "kh"), ("SMTP_PASSWORD", "pw")];

fn invalid(paths: &[PathBuf], vars: &[(&str, &str)]) -> String {
    match load_files_with_env(paths, env(vars)) {
        Err(e @ LoadError::Invalid(_)) => errors(e),
        Err(e) => panic!("expected an invalid config, got {e}"),
        Ok(_) => panic!("expected an invalid config, it loaded"),
    }
}

#[test]
fn two_seed_files_deep_merge_in_order() {
    // The guide's template as the base, its development dictionary on top.
    let s = Scratch::new();
    let base = s.write("config.yaml", &seed("config.yaml.template"));
    let dev = s.write("dev.yaml", &seed("config-manager-development.yaml"));
    // The dictionary's broker list replaced the template's whole, jmx_port and all, and
    // the template's `jmx` method needs one: the error is the dictionary's, at its line.
    let e = invalid(&[base.clone(), dev.clone()], &SMTP_ENV);
    assert_eq!(
        e,
        format!(
            "{}:3: error: cluster.kafka_brokers[0]: broker `kafka1` has neither jmx_port nor metrics_url, but monitoring.methods has jmx\n",
            dev.display()
        )
    );
    // A third layer: local tweaks.
    let local = s.write("local.yaml", "monitoring:\n  methods: [socket]\n");
    let l = load_files_with_env(&[base.clone(), dev.clone(), local.clone()], env(&SMTP_ENV))
        .expect("valid");
    let c = &l.config;
    // A list from the later file replaces the earlier one whole.
    let brokers: Vec<_> = c
        .cluster
        .kafka_brokers
        .iter()
        .map(|b| (b.node_id.as_str(), b.host.as_str(), b.port))
        .collect();
    assert_eq!(brokers, vec![("kafka1", "localhost", 9092)]);
    // Keys only the base has survive, in maps both files have.
    assert_eq!(c.cluster.zookeeper_nodes.len(), 1);
    assert_eq!(c.cluster.zookeeper_nodes[0].node_id, "zk-1");
    let smtp = c.notifications.smtp.as_ref().expect("smtp");
    assert_eq!(
        smtp.from_email, "kafka-alerts@example.com",
        "from the template"
    );
    assert_eq!(
        smtp.username.as_deref(),
        Some("kh"),
        "${{SMTP_USERNAME}} from the template"
    );
    // A scalar from the later file wins.
    assert_eq!(smtp.host, "localhost");
    assert_eq!(smtp.port, 1025);
    assert_eq!(c.monitoring.interval_seconds, 10);
    assert_eq!(c.monitoring.timeout_seconds, 5);
    assert_eq!(c.logging.level, LogLevel::Debug);
    assert_eq!(c.recovery.max_attempts, 3, "the template's");
    assert_eq!(l.files(), vec![base.clone(), dev, local]);
    assert_eq!(l.path, base, "the first file names the config");
    assert_eq!(l.base_dir, s.path());
}

#[test]
fn later_files_win_over_earlier_ones_in_the_order_given() {
    let s = Scratch::new();
    let a = s.write(
        "a.yaml",
        &config_with("recovery:\n  cooldown_seconds: 100\n  max_attempts: 2\n"),
    );
    let b = s.write("b.yaml", "recovery:\n  cooldown_seconds: 200\n");
    let c = s.write("c.yaml", "recovery:\n  cooldown_seconds: 300\n");
    let l = load_files_with_env(&[a.clone(), b.clone(), c.clone()], env(&[])).expect("valid");
    assert_eq!(l.config.recovery.cooldown_seconds, 300);
    assert_eq!(l.config.recovery.max_attempts, 2);
    let l = load_files_with_env(&[a, c, b], env(&[])).expect("valid");
    assert_eq!(l.config.recovery.cooldown_seconds, 200);
    // Environment variables still override every file.
    let l = load_files_with_env(
        &[s.path().join("a.yaml"), s.path().join("c.yaml")],
        env(&[("KAFKA_HEALING__RECOVERY__COOLDOWN_SECONDS", "400")]),
    )
    .expect("valid");
    assert_eq!(l.config.recovery.cooldown_seconds, 400);
}

#[test]
fn the_environment_overlay_beside_the_first_file_is_merged_over_the_files() {
    // The seed's way: a base config and config/<environment>.yaml, the environment named
    // outside the files (here by KAFKA_HEALING__ENVIRONMENT).
    let s = Scratch::new();
    let base = s.write("config.yaml", &seed("config.yaml.template"));
    let staging = s.write("config/staging.yaml", &seed("config-manager-staging.yaml"));
    let mut vars = SMTP_ENV.to_vec();
    vars.push(("KAFKA_HEALING__ENVIRONMENT", "staging"));
    // The staging brokers have no jmx_port: the template's `jmx` method cannot watch them.
    vars.push(("KAFKA_HEALING__MONITORING__METHODS", "socket"));
    let l = load_files_with_env(std::slice::from_ref(&base), env(&vars)).expect("valid");
    let c = &l.config;
    assert_eq!(c.environment, Environment::Staging);
    let ids: Vec<_> = c
        .cluster
        .kafka_brokers
        .iter()
        .map(|b| b.node_id.as_str())
        .collect();
    assert_eq!(ids, ["kafka-staging-1", "kafka-staging-2"]);
    assert_eq!(c.monitoring.interval_seconds, 20);
    assert!(c.security.ssl.enabled, "from the overlay");
    assert_eq!(
        c.notifications.smtp.as_ref().map(|m| m.host.as_str()),
        Some("smtp.example.com"),
        "the base's"
    );
    assert_eq!(l.files(), vec![base.clone(), staging]);
    assert_eq!(
        l.given_files(),
        vec![base.clone()],
        "a reload reads these again"
    );

    // Named in a file, too; the overlay comes after every file given.
    let over = s.write(
        "over.yaml",
        "environment: staging\nmonitoring:\n  interval_seconds: 45\n",
    );
    let l = load_files_with_env(
        &[base.clone(), over],
        env(&[SMTP_ENV[0], SMTP_ENV[1], vars[3]]),
    )
    .expect("valid");
    assert_eq!(l.config.monitoring.interval_seconds, 20, "the overlay wins");
    assert_eq!(l.files().len(), 3);
}

#[test]
fn a_missing_overlay_is_no_error() {
    let s = Scratch::new();
    let base = s.write("c.yaml", &config_with("environment: staging\n"));
    let l = load_files_with_env(std::slice::from_ref(&base), env(&[])).expect("valid");
    assert_eq!(l.config.environment, Environment::Staging);
    assert_eq!(l.files(), vec![base]);
}

#[test]
fn an_error_in_the_overlay_names_the_overlays_file_and_line() {
    // The seed's production dictionary has two brokers; production needs three. The
    // error is the overlay's: its list replaced the base's.
    let s = Scratch::new();
    let base = s.write(
        "config.yaml",
        &format!(
            "{}\nenvironment: production\n",
            seed("config.yaml.template")
        ),
    );
    s.write(
        "config/production.yaml",
        &seed("config-manager-production.yaml"),
    );
    let overlay = s.path().join("config/production.yaml");
    let e = invalid(std::slice::from_ref(&base), &SMTP_ENV);
    assert!(
        e.contains(&format!(
            "{}:2: error: cluster.kafka_brokers: production environment requires at least 3 Kafka brokers, found 2",
            overlay.display()
        )),
        "{e}"
    );

    // A wrong value and an unknown key in the overlay: each at its own line there.
    s.write(
        "config/production.yaml",
        "# production\nrecovery:\n  max_attempts: many\n  bogus: 1\n",
    );
    let base = s.write("config.yaml", &config_with("environment: production\n"));
    let e = invalid(&[base], &[]);
    let at = |line: usize| format!("{}:{line}: error: ", overlay.display());
    assert!(
        e.contains(&format!(
            "{}recovery.max_attempts: expected an integer, got the string \"many\"",
            at(3)
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("{}recovery.bogus: unknown field", at(4))),
        "{e}"
    );
    assert_eq!(e.matches("error:").count(), 2, "{e}");
}

#[test]
fn an_error_in_the_second_file_names_that_file() {
    let s = Scratch::new();
    let a = s.write("a.yaml", &config_with("monitoring:\n  methods: [socket]\n"));
    let b = s.write("b.yaml", "\n\nmonitoring:\n  methods: [socket, pigeon]\n");
    let e = invalid(&[a.clone(), b.clone()], &[]);
    assert!(
        e.contains(&format!(
            "{}:4: error: monitoring.methods[1]: unknown monitoring method `pigeon`",
            b.display()
        )),
        "{e}"
    );
    // A YAML error names its own file too.
    let b = s.write("b.yaml", "monitoring: [\n");
    let e = invalid(&[a, b.clone()], &[]);
    assert!(e.starts_with(&format!("{}:", b.display())), "{e}");
}

#[test]
fn an_environment_that_is_no_plain_name_is_refused_with_the_reason() {
    let s = Scratch::new();
    // What `../x` would reach: it must not be read.
    s.write("x.yaml", "recovery:\n  max_attempts: 9\n");
    let a = s.write("sub/a.yaml", &config_with(""));
    let b = s.write("sub/b.yaml", "# overlay name\nenvironment: ../x\n");
    let e = invalid(&[a.clone(), b.clone()], &[]);
    assert!(
        e.contains(&format!(
            "{}:2: error: environment: \"../x\" cannot name an overlay file (config/<environment>.yaml): it contains `..`",
            b.display()
        )),
        "{e}"
    );
    let e = invalid(&[a], &[("KAFKA_HEALING__ENVIRONMENT", "prod/x")]);
    assert!(
        e.contains("environment: \"prod/x\" cannot name an overlay file (config/<environment>.yaml): it contains a path separator"),
        "{e}"
    );
    assert!(
        e.contains("(value from environment variable KAFKA_HEALING__ENVIRONMENT)"),
        "{e}"
    );
}

#[test]
fn an_overlay_cannot_choose_another_environment() {
    let s = Scratch::new();
    let base = s.write("c.yaml", &config_with("environment: staging\n"));
    let overlay = s.write("config/staging.yaml", "environment: production\n");
    let e = invalid(&[base], &[]);
    assert!(
        e.contains(&format!(
            "{}:1: error: environment: the overlay of environment \"staging\" sets another environment",
            overlay.display()
        )),
        "{e}"
    );
}
