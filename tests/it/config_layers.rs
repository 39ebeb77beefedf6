//! Config layering: files (deep-merged in order), the environment overlay, then
//! KAFKA_HEALING__* variables, then ${NAME} and *_file secrets.

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

/// Values that YAML or a number parser would read as numbers, each with what they would
/// become: the string field must keep the left one.
const NUMERIC_LOOKING: &[(&str, &str)] = &[
    ("007", "7"),
    ("1e3", "1000"),
    ("00000000000000000001", "1"),
    ("true", "false"),
    ("-0", "0"),
    ("0x1F", "31"),
];

#[test]
fn env_string_fields_keep_the_exact_text() {
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &config_with(
            "notifications:\n  smtp:\n    host: mail\n    username: u\n    from_email: a@example.com\n    to_emails: [o@example.com]\n",
        ),
    );
    for (text, _) in NUMERIC_LOOKING {
        let l = load_with_env(
            &cfg,
            env(&[
                ("KAFKA_HEALING__SERVER__AUTH__BEARER_TOKEN", text),
                ("KAFKA_HEALING__NOTIFICATIONS__SMTP__PASSWORD", text),
                ("KAFKA_HEALING__NOTIFICATIONS__SMTP__USERNAME", text),
                ("KAFKA_HEALING__CLUSTER__NAME", text),
                ("KAFKA_HEALING__STATE__PATH", text),
            ]),
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        let c = &l.config;
        let token = c.server.auth.as_ref().and_then(|a| a.bearer_token.as_ref());
        assert_eq!(token.map(|t| t.expose()), Some(*text));
        let smtp = c.notifications.smtp.as_ref().expect("smtp");
        assert_eq!(smtp.password.as_ref().map(|p| p.expose()), Some(*text));
        assert_eq!(smtp.username.as_deref(), Some(*text));
        assert_eq!(c.cluster.name, *text);
        assert_eq!(c.state.path, std::path::PathBuf::from(text));
    }
    // A list of strings from one variable: comma-separated, each item verbatim.
    let l = load_with_env(&cfg, env(&[("KAFKA_HEALING__RULES", "007.yaml,1e3")])).expect("valid");
    assert_eq!(l.config.rules, vec!["007.yaml", "1e3"]);
}

#[test]
fn a_plain_number_in_the_file_fills_a_string_field_as_written() {
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &config_with("server:\n  auth:\n    bearer_token: 007\n")
            .replace("name: test", "name: 1e3"),
    );
    let l = load_with_env(&cfg, env(&[])).expect("valid");
    let token = l
        .config
        .server
        .auth
        .as_ref()
        .and_then(|a| a.bearer_token.as_ref());
    assert_eq!(token.map(|t| t.expose()), Some("007"));
    assert_eq!(l.config.cluster.name, "1e3");
}

#[test]
fn env_numbers_and_booleans_parse_strictly() {
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &config_with(""));
    let l = load_with_env(
        &cfg,
        env(&[
            ("KAFKA_HEALING__RECOVERY__MAX_ATTEMPTS", "007"),
            ("KAFKA_HEALING__RECOVERY__BACKOFF_MULTIPLIER", "1.5"),
            ("KAFKA_HEALING__RECOVERY__DRY_RUN", "false"),
            ("KAFKA_HEALING__SERVER__BODY_LIMIT_BYTES", "4096"),
        ]),
    )
    .expect("valid");
    assert_eq!(l.config.recovery.max_attempts, 7);
    assert_eq!(l.config.recovery.backoff_multiplier, 1.5);
    assert!(!l.config.recovery.dry_run);
    assert_eq!(l.config.server.body_limit_bytes, 4096);

    let cases: &[(&str, &str, &str)] = &[
        (
            "RECOVERY__MAX_ATTEMPTS",
            "3.7",
            "recovery.max_attempts: expected an integer, got the string \"3.7\"",
        ),
        (
            "RECOVERY__MAX_ATTEMPTS",
            "1e3",
            "recovery.max_attempts: expected an integer, got the string \"1e3\"",
        ),
        (
            "RECOVERY__MAX_ATTEMPTS",
            " 3",
            "recovery.max_attempts: expected an integer, got the string \" 3\"",
        ),
        (
            "RECOVERY__MAX_ATTEMPTS",
            "-1",
            "recovery.max_attempts: expected an integer between 0 and 4294967295, got -1",
        ),
        (
            "RECOVERY__MAX_CONCURRENT_PER_CLUSTER",
            "1.5",
            "recovery.max_concurrent_per_cluster: expected an integer, got the string \"1.5\"",
        ),
        (
            "RECOVERY__DRY_RUN",
            "1",
            "recovery.dry_run: expected true or false, got the string \"1\"",
        ),
        (
            "RECOVERY__DRY_RUN",
            "off",
            "recovery.dry_run: expected true or false, got the string \"off\"",
        ),
        (
            "RECOVERY__DRY_RUN",
            "TRUE",
            "recovery.dry_run: expected true or false, got the string \"TRUE\"",
        ),
        (
            "RECOVERY__DRY_RUN",
            "yes",
            "recovery.dry_run: expected true or false, got the string \"yes\"",
        ),
        (
            "RECOVERY__BACKOFF_MULTIPLIER",
            "inf",
            "recovery.backoff_multiplier: expected a number, got the string \"inf\"",
        ),
        (
            "SERVER__BODY_LIMIT_BYTES",
            "4k",
            "server.body_limit_bytes: expected an integer, got the string \"4k\"",
        ),
    ];
    for (key, value, expected) in cases {
        let var = format!("KAFKA_HEALING__{key}");
        let e = errors(load_with_env(&cfg, env(&[(&var, value)])).unwrap_err());
        assert_eq!(
            e.lines().next().unwrap_or_default(),
            format!(
                "{}: error: {expected} (value from environment variable {var})",
                cfg.display()
            ),
            "{var}={value}"
        );
    }
}

/// Every number and boolean field of the sections with defaults, found from the defaults
/// themselves (so a field added later is covered), plus the optional sections' ones.
fn typed_fields() -> Vec<(String, &'static str)> {
    use kafka_healing::config::*;
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, &'static str)>) {
        let Some(m) = v.as_object() else { return };
        for (k, v) in m {
            let p = format!("{prefix}.{k}");
            match v {
                serde_json::Value::Bool(_) => out.push((p, "bool")),
                serde_json::Value::Number(n) if n.is_f64() => out.push((p, "float")),
                serde_json::Value::Number(_) => out.push((p, "int")),
                serde_json::Value::Object(_) => walk(&p, v, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    let sections = [
        (
            "monitoring",
            serde_json::to_value(MonitoringConfig::default()),
        ),
        ("recovery", serde_json::to_value(RecoveryConfig::default())),
        (
            "notifications",
            serde_json::to_value(NotificationsConfig::default()),
        ),
        ("server", serde_json::to_value(ServerConfig::default())),
        ("security", serde_json::to_value(SecurityConfig::default())),
    ];
    for (name, v) in sections {
        walk(name, &v.expect("serializes"), &mut out);
    }
    for p in [
        "notifications.smtp.port",
        "notifications.smtp.timeout_seconds",
        "notifications.escalation.undeliverable_after_seconds",
        "coordination.lease_ttl_seconds",
        "kubernetes.request_timeout_seconds",
        "alertmanager.timeout_seconds",
    ] {
        out.push((p.to_string(), "int"));
    }
    out.push(("kubernetes.in_cluster".into(), "bool"));
    out
}

/// `a.b.c: v` as nested YAML.
fn nested(path: &str, value: &str) -> String {
    let mut y = String::new();
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        y.push_str(&"  ".repeat(i));
        y.push_str(seg);
        y.push(':');
        y.push_str(if i + 1 == segs.len() { " " } else { "\n" });
    }
    y.push_str(value);
    y.push('\n');
    y
}

#[test]
fn no_number_or_boolean_field_coerces_a_wrong_type() {
    let fields = typed_fields();
    assert!(fields.len() >= 30, "{fields:?}");
    let s = Scratch::new();
    for (path, ty) in &fields {
        let wrong: &[(&str, &str)] = match *ty {
            "int" => &[
                ("1.5", "expected an integer, got 1.5"),
                (
                    "\"3\"",
                    "expected an integer, got the string \"3\" (write it without quotes)",
                ),
                ("true", "expected an integer, got true"),
            ],
            "float" => &[
                (
                    "\"2.5\"",
                    "expected a number, got the string \"2.5\" (write it without quotes)",
                ),
                ("fast", "expected a number, got the string \"fast\""),
            ],
            _ => &[
                ("2", "expected true or false, got 2"),
                ("\"off\"", "expected true or false, got the string \"off\""),
                ("off", "expected true or false, got the string \"off\""),
                (
                    "\"true\"",
                    "expected true or false, got the string \"true\" (write it without quotes)",
                ),
            ],
        };
        for (value, expected) in wrong {
            let text = config_with(&nested(path, value));
            let line = text.lines().count();
            let cfg = s.write("c.yaml", &text);
            let e = errors(load_with_env(&cfg, env(&[])).unwrap_err());
            let want = format!("{}:{line}: error: {path}: {expected}", cfg.display());
            assert!(
                e.lines().any(|l| l == want),
                "{path}: {value}: want\n{want}\ngot\n{e}"
            );
            // The same text from the environment is read by the field's type too (a quoted
            // value is the right text there).
            if value.starts_with('"') {
                continue;
            }
            let var = format!("KAFKA_HEALING__{}", path.replace('.', "__").to_uppercase());
            let cfg = s.write("c.yaml", &config_with(""));
            let e = errors(load_with_env(&cfg, env(&[(&var, value)])).unwrap_err());
            let want = format!("{path}: {expected} (value from environment variable {var})")
                .replace(
                    &format!("got {value}"),
                    &format!("got the string \"{value}\""),
                );
            assert!(e.contains(&want), "{var}={value}: want\n{want}\ngot\n{e}");
        }
    }
}

/// Runs the binary with `env` on the child (and no other KAFKA_HEALING* variable), killed
/// after 30 s.
fn run_bounded(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new("timeout");
    c.args(["-s", "KILL", "30", env!("CARGO_BIN_EXE_kafka-healing")])
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_HEALING") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().expect("spawn timeout kafka-healing")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_takes_the_env_token_as_written_and_refuses_its_number() {
    use crate::serve::harness::{NOOP_RULES, Server, TOKEN, alert, config, webhook};
    let body = webhook(
        "r",
        vec![alert("firing", serde_json::json!({"alertname": "Other"}))],
    );
    for (token, reparsed) in NUMERIC_LOOKING.iter().take(3) {
        let s = Scratch::new();
        let cfg = config("").replace(&format!("  auth: {{ bearer_token: {TOKEN} }}\n"), "");
        let srv = Server::start_env_in(
            &s,
            &cfg,
            NOOP_RULES,
            &[("KAFKA_HEALING__SERVER__AUTH__BEARER_TOKEN", token)],
        );
        let (st, v) = srv.post_with(&body, Some(&format!("Bearer {token}"))).await;
        assert_eq!(st, 200, "token {token}: {v}");
        let (st, _) = srv
            .post_with(&body, Some(&format!("Bearer {reparsed}")))
            .await;
        assert_eq!(st, 401, "token {token} must not be read as {reparsed}");
    }
}

#[test]
fn the_smtp_password_from_env_is_sent_as_written() {
    use crate::mailbox::{FROM, SmtpServer, pki};
    let s = Scratch::new();
    let pki = pki(s.path());
    let srv = SmtpServer::start(
        s.path(),
        &[
            "--starttls-cert",
            pki.cert.to_str().expect("utf-8"),
            "--starttls-key",
            pki.key.to_str().expect("utf-8"),
            "--auth",
            "alice:007",
        ],
    );
    s.write("rules/r.yaml", GOOD_RULES);
    let cfg = s.write(
        "c.yaml",
        &config_with(&format!(
            "notifications:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    username: alice\n    from_email: {FROM}\n    to_emails: [a@example.com]\n    ca_file: pki/ca.pem\n    timeout_seconds: 5\n",
            srv.port
        )),
    );
    let cfg = cfg.to_str().expect("utf-8");
    let var = "KAFKA_HEALING__NOTIFICATIONS__SMTP__PASSWORD";
    let o = run_bounded(&["notify", "test", "-c", cfg], &[(var, "007")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = srv.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["auth_user"], "alice");
    // The number it would have been read as is not the password.
    let o = run_bounded(&["notify", "test", "-c", cfg], &[(var, "7")]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).starts_with("error: authentication with SMTP server"),
        "{}",
        stderr(&o)
    );
    assert_eq!(srv.received().len(), 1);
}

mod cli;
mod merge;
