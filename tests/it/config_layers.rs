//! Config layering: file, then KAFKA_HEALING__* variables, then ${NAME} and *_file secrets.

use std::collections::HashMap;

use kafka_healing::config::{LoadError, MonitoringMethod, load_with_env};

use crate::common::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(e: LoadError) -> String {
    match e {
        LoadError::Invalid(d) => d.to_string(),
        other => panic!("expected invalid config, got {other}"),
    }
}

#[test]
fn environment_overrides_file_values_with_types() {
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &config_with("recovery:\n  dry_run: false\n  cooldown_seconds: 60\nmonitoring:\n  methods: [socket]\n"),
    );
    let l = load_with_env(
        &cfg,
        env(&[
            ("KAFKA_HEALING__RECOVERY__DRY_RUN", "true"),
            ("KAFKA_HEALING__RECOVERY__COOLDOWN_SECONDS", "900"),
            ("KAFKA_HEALING__MONITORING__METHODS", "socket,jmx"),
            ("KAFKA_HEALING__CLUSTER__NAME", "from-env"),
            ("KAFKA_HEALING__SERVER__LISTEN", "127.0.0.1:7000"),
            ("UNRELATED", "x"),
        ]),
    )
    .expect("valid");
    assert!(l.config.recovery.dry_run);
    assert_eq!(l.config.recovery.cooldown_seconds, 900);
    assert_eq!(
        l.config.monitoring.methods,
        vec![MonitoringMethod::Socket, MonitoringMethod::Jmx]
    );
    assert_eq!(l.config.cluster.name, "from-env");
    assert_eq!(l.config.server.listen, "127.0.0.1:7000");
    // Untouched values keep the file's.
    assert_eq!(l.config.cluster.kafka_brokers.len(), 3);
    assert_eq!(l.config.recovery.max_attempts, 3, "default");
}

#[test]
fn a_numeric_looking_env_value_still_fills_a_string_field() {
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &config_with(""));
    let l = load_with_env(&cfg, env(&[("KAFKA_HEALING__CLUSTER__NAME", "12345")])).expect("valid");
    assert_eq!(l.config.cluster.name, "12345");
}

#[test]
fn bad_env_value_names_the_variable() {
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &config_with(""));
    let e = errors(
        load_with_env(
            &cfg,
            env(&[("KAFKA_HEALING__RECOVERY__MAX_ATTEMPTS", "many")]),
        )
        .unwrap_err(),
    );
    assert!(e.contains("recovery.max_attempts"), "{e}");
    assert!(
        e.contains("(value from environment variable KAFKA_HEALING__RECOVERY__MAX_ATTEMPTS)"),
        "{e}"
    );
    let e =
        errors(load_with_env(&cfg, env(&[("KAFKA_HEALING__RECOVERY__NOPE", "1")])).unwrap_err());
    assert!(
        e.contains("unknown field `nope`"),
        "unknown keys from env are errors too: {e}"
    );
}

#[test]
fn references_and_escapes() {
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &config_with(
            "notifications:\n  smtp:\n    host: ${SMTP_HOST}\n    username: ${SMTP_USER}\n    password: \"${SMTP_PASS}\"\n    from_email: a@example.com\n    to_emails: [\"${ONCALL}\"]\nserver:\n  auth:\n    bearer_token: \"lit-$${NOT_A_VAR}\"\n",
        ),
    );
    let l = load_with_env(
        &cfg,
        env(&[
            ("SMTP_HOST", "mail.example.com"),
            ("SMTP_USER", "bot"),
            ("SMTP_PASS", "p@ss ${w}rd"),
            ("ONCALL", "oncall@example.com"),
        ]),
    )
    .expect("valid");
    let smtp = l.config.notifications.smtp.as_ref().expect("smtp");
    assert_eq!(smtp.host, "mail.example.com");
    assert_eq!(smtp.username.as_deref(), Some("bot"));
    assert_eq!(
        smtp.password.as_ref().map(|p| p.expose()),
        Some("p@ss ${w}rd"),
        "values are not expanded twice"
    );
    assert_eq!(smtp.to_emails, vec!["oncall@example.com"]);
    let token = l
        .config
        .server
        .auth
        .as_ref()
        .and_then(|a| a.bearer_token.as_ref())
        .expect("token");
    assert_eq!(token.expose(), "lit-${NOT_A_VAR}");
    assert!(
        !format!("{:?}", l.config).contains("p@ss"),
        "Debug must not print secrets"
    );

    let e = errors(load_with_env(&cfg, env(&[("SMTP_HOST", "h")])).unwrap_err());
    assert!(
        e.contains("environment variable `SMTP_USER` is not set"),
        "{e}"
    );
    assert!(e.contains("`SMTP_PASS` is not set"), "{e}");
    assert!(
        e.contains("notifications.smtp.to_emails[0]: environment variable `ONCALL` is not set"),
        "{e}"
    );
}

#[test]
fn secret_files_relative_to_the_config() {
    let s = Scratch::new();
    s.write("secrets/token", "tok-123\n");
    s.write("secrets/pw", "hunter2\r\n");
    let cfg = s.write(
        "c.yaml",
        &config_with(
            "server:\n  auth:\n    basic:\n      username: am\n      password_file: secrets/pw\n",
        ),
    );
    let l = load_with_env(&cfg, env(&[])).expect("valid");
    let basic = l
        .config
        .server
        .auth
        .as_ref()
        .and_then(|a| a.basic.as_ref())
        .expect("basic");
    assert_eq!(basic.password.as_ref().map(|p| p.expose()), Some("hunter2"));

    let cfg = s.write(
        "d.yaml",
        &config_with("server:\n  auth:\n    bearer_token_file: secrets/token\n"),
    );
    let l = load_with_env(&cfg, env(&[])).expect("valid");
    let token = l
        .config
        .server
        .auth
        .as_ref()
        .and_then(|a| a.bearer_token.as_ref())
        .expect("token");
    assert_eq!(token.expose(), "tok-123");
    assert_eq!(
        l.resolve(std::path::Path::new("x.db")),
        s.path().join("x.db")
    );
}

#[test]
fn range_errors_from_env_name_the_variable() {
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &config_with("monitoring:\n  timeout_seconds: 10\n"),
    );
    let e = errors(
        load_with_env(
            &cfg,
            env(&[("KAFKA_HEALING__MONITORING__TIMEOUT_SECONDS", "40")]),
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("monitoring.timeout_seconds: monitoring timeout (40s) must be less than the interval (30s) (value from environment variable KAFKA_HEALING__MONITORING__TIMEOUT_SECONDS)"),
        "{e}"
    );
    let e = errors(
        load_with_env(
            &cfg,
            env(&[("KAFKA_HEALING__MONITORING__METHODS", "socket,bogus")]),
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("monitoring.methods[1]: unknown monitoring method `bogus`"),
        "{e}"
    );
    assert!(
        e.contains("(value from environment variable KAFKA_HEALING__MONITORING__METHODS)"),
        "{e}"
    );
}
