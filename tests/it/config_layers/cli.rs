//! The commands over layered files: `check --explain KEY`, `serve` reloading every layer,
//! `test` with a list of config files.

use crate::common::*;
use crate::serve::harness::{NOOP_RULES, Server, config};

/// Two layers: `base.yaml` then `over.yaml`, in a scratch directory.
fn layers() -> (Scratch, String, String) {
    let s = Scratch::new();
    let base = s.write(
        "base.yaml",
        &config_with(
            "notifications:\n  smtp:\n    host: mail.example.com\n    port: 587\n    from_email: kh@example.com\n    to_emails: [ops@example.com]\nrecovery:\n  cooldown_seconds: 300\n",
        ),
    );
    s.write("rules/r.yaml", GOOD_RULES);
    let over = s.write(
        "over.yaml",
        "# production values\nnotifications:\n  smtp:\n    port: 2525\n",
    );
    let (b, o) = (base.display().to_string(), over.display().to_string());
    (s, b, o)
}

fn explain(base: &str, over: &str, key: &str, vars: &[(&str, &str)]) -> (i32, String, String) {
    let o = run_env(&["check", "-c", base, "-c", over, "--explain", key], vars);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

#[test]
fn explain_names_the_file_and_line_of_the_first_and_the_second_file() {
    let (_s, base, over) = layers();
    let (code, out, err) = explain(&base, &over, "notifications.smtp.host", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("notifications.smtp.host = \"mail.example.com\"\n  from {base}:11\n")
    );
    let (code, out, err) = explain(&base, &over, "notifications.smtp.port", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("notifications.smtp.port = 2525\n  from {over}:4\n  overrides {base}:12\n")
    );
    // A list element: `cluster.kafka_brokers[1].host`, from the first file.
    let (code, out, _) = explain(&base, &over, "cluster.kafka_brokers[1].host", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("cluster.kafka_brokers[1].host = \"k2.example.com\"\n  from {base}:5\n")
    );
}

#[test]
fn explain_names_the_environment_variable_and_the_default() {
    let (_s, base, over) = layers();
    let var = "KAFKA_HEALING__RECOVERY__COOLDOWN_SECONDS";
    let (code, out, err) = explain(&base, &over, "recovery.cooldown_seconds", &[(var, "900")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "recovery.cooldown_seconds = 900\n  from environment variable {var}\n  overrides {base}:16\n"
        )
    );
    let (code, out, err) = explain(&base, &over, "recovery.backoff_multiplier", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "recovery.backoff_multiplier = 2.0\n  from the default (no file or variable sets it)\n"
    );
    // JSON: one object, the source typed.
    let o = run_env(
        &[
            "check",
            "-c",
            &base,
            "-c",
            &over,
            "--explain",
            "recovery.cooldown_seconds",
            "--json",
        ],
        &[(var, "900")],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["value"], 900);
    assert_eq!(v["source"]["kind"], "env");
    assert_eq!(v["source"]["var"], var);
}

#[test]
fn explain_of_a_secret_file_names_the_file_not_the_secret() {
    let (s, base, over) = layers();
    s.write("smtp-password", "hunter2\n");
    let over2 = s.write(
        "over2.yaml",
        "notifications:\n  smtp:\n    username: kh\n    password_file: smtp-password\n",
    );
    let o = run_env(
        &[
            "check",
            "-c",
            &base,
            "-c",
            &over,
            "-c",
            over2.to_str().unwrap(),
            "--explain",
            "notifications.smtp.password",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        out,
        format!(
            "notifications.smtp.password = \"***\"\n  from secret file {} (named by notifications.smtp.password_file at {}:4)\n",
            s.path().join("smtp-password").display(),
            over2.display()
        )
    );
    assert!(!out.contains("hunter2"));
}

#[test]
fn explain_of_an_unknown_key_lists_close_keys() {
    let (_s, base, over) = layers();
    let (code, out, err) = explain(&base, &over, "notifications.smtp.prot", &[]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with(
            "error: unknown key \"notifications.smtp.prot\"; close keys: notifications.smtp.port"
        ),
        "{err}"
    );
    let (code, _, err) = explain(&base, &over, "smtp.port", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("notifications.smtp.port"), "{err}");
    let (code, _, err) = explain(&base, &over, "a..b", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("\"a..b\" is not a key"), "{err}");
    // An invalid config has nothing in effect: exit 1 with its errors; a missing file 2.
    let o = run(&[
        "check",
        "-c",
        &base,
        "-c",
        "/nonexistent/k.yaml",
        "--explain",
        "recovery",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn check_names_every_file_it_read() {
    let (s, base, over) = layers();
    s.write(
        "config/development.yaml",
        "monitoring:\n  interval_seconds: 60\n",
    );
    let o = run_env(
        &["check", "-c", &base, "-c", &over],
        &[("KAFKA_HEALING__ENVIRONMENT", "development")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let overlay = s.path().join("config/development.yaml");
    assert!(
        stdout(&o).starts_with(&format!(
            "OK {base} + {over} + {}: 1 rule",
            overlay.display()
        )),
        "{}",
        stdout(&o)
    );
}

/// `/-/ready`'s text.
async fn ready(srv: &Server) -> String {
    match srv.get("/-/ready").await {
        (200, serde_json::Value::String(t)) => t,
        other => panic!("not ready: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reads_the_second_file_again() {
    let s = Scratch::new();
    s.write("config.yaml", &config(""));
    s.write("rules.yaml", NOOP_RULES);
    s.write(
        "more.yaml",
        &NOOP_RULES
            .replace("broker-down", "broker-down-too")
            .replace("noop", "noop-too"),
    );
    let over = s.write("over.yaml", "recovery:\n  cooldown_seconds: 60\n");
    // `serve -c config.yaml -c over.yaml`: the harness's argv, one more layer appended.
    let srv = Server::start_wrapped(
        s.path(),
        &["sh", "-c", "exec \"$@\" -c over.yaml", "sh"],
        &[],
    );
    assert_eq!(ready(&srv).await, "ready: 1 rules\n");

    // A mistake in the second file: the reload is refused, naming that file and line.
    s.write("over.yaml", "recovery:\n  cooldown_seconds: lots\n");
    let (code, body) = srv.post_path("/-/reload").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains(&format!(
            "{}:2: error: recovery.cooldown_seconds: expected an integer",
            // The server was given the relative path; it runs in the scratch directory.
            over.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        )),
        "{body}"
    );
    assert_eq!(
        ready(&srv).await,
        "ready: 1 rules\n",
        "the running setup stays"
    );

    // The second file now names a second rule file: the reload takes it.
    s.write("over.yaml", "rules: [rules.yaml, more.yaml]\n");
    let (code, body) = srv.post_path("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ready(&srv).await, "ready: 2 rules\n");
}

#[test]
fn a_rule_test_file_layers_a_list_of_configs() {
    let (s, base, over) = layers();
    s.write("bad.yaml", "\nrecovery:\n  max_attempts: many\n");
    s.write(
        "t.test.yaml",
        &format!("config: [{base}, {over}, bad.yaml]\ntests: []\n"),
    );
    let o = run(&["test", s.path().join("t.test.yaml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:3: error: recovery.max_attempts: expected an integer, got the string \"many\"",
            s.path().join("bad.yaml").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "config: {base} + {over} + {}",
            s.path().join("bad.yaml").display()
        )),
        "{err}"
    );
}

#[test]
fn a_rule_pattern_from_the_second_file_is_reported_at_its_line() {
    let (s, base, _) = layers();
    let over = s.write(
        "over.yaml",
        "# more rules\nrules:\n  - rules/*.yaml\n  - nothing/*.yaml\n",
    );
    let o = run(&["check", "-c", &base, "-c", over.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "{}:4: error: rules[1]: `nothing/*.yaml` matches no rule file",
            over.display()
        )),
        "{}",
        stderr(&o)
    );
}
