//! `kafka-healing history` reads only the journal: it works where the rest of the config
//! cannot load (SMTP secrets unset), and refuses `--limit 0` instead of an empty list.

use kafka_healing::journal::{ExecStatus, Journal, NewExecution};
use serde_json::json;

use crate::common::*;

/// A config whose SMTP password comes from a variable that is not set here.
fn config() -> String {
    config_with(
        "state:\n  path: state/journal.db\nnotifications:\n  smtp:\n    host: mail.example.com\n    from_email: kh@example.com\n    to_emails: [oncall@example.com]\n    username: kh\n    password: ${HISTORY_TEST_SMTP_PASSWORD}\n",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn history_reads_the_journal_of_a_config_whose_smtp_secret_is_unset() {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", &config());
    s.write("rules/a.yaml", GOOD_RULES);
    let cfg = cfg.to_str().unwrap();
    {
        let (j, _) = Journal::open(&s.path().join("state/journal.db")).unwrap();
        j.create_execution(NewExecution {
            id: None,
            alert_id: None,
            rule: "broker-down".into(),
            runbook: "restart".into(),
            target: Some("kafka-2".into()),
            fingerprint: "fp".into(),
            status: ExecStatus::Succeeded,
            reason: "matched".into(),
            dry_run: false,
            disruptive: true,
            attempt: 1,
            plan: json!([]),
            created_ms: 1_700_000_000_000,
        })
        .await
        .unwrap();
    }
    // The whole config is invalid here (check says why) ...
    let o = run(&["check", "-c", cfg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`HISTORY_TEST_SMTP_PASSWORD` is not set"),
        "{}",
        stderr(&o)
    );
    // ... but history needs only state.path.
    let o = run(&["history", "-c", cfg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["executions"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["executions"][0]["rule"], "broker-down");
    assert_eq!(v["executions"][0]["target"], "kafka-2");
    assert_eq!(v["executions"][0]["status"], "succeeded");
    // The environment override of state.path is honoured as the loader would.
    let o = run_env(
        &["history", "-c", cfg, "--json"],
        &[("KAFKA_HEALING__STATE__PATH", "elsewhere.db")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("cannot open the journal") && stderr(&o).contains("elsewhere.db"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn history_limit_zero_is_refused_with_a_reason() {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", &config());
    let o = run(&["history", "-c", cfg.to_str().unwrap(), "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: --limit must be at least 1 (it is how many executions to list)\n"
    );
}
