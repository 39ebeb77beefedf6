//! `kafka-healing test`: the shipped rule tests pass, a wrong expectation fails with a
//! readable diff, invalid and unreadable files give exit 1 and 2.

use serde_json::Value;

use crate::common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn shipped_rule_tests_pass() {
    let o = run(&[
        "test",
        "rules/tests/kafka.test.yaml",
        "rules/tests/supervisorctl.test.yaml",
        "rules/tests/ansible.test.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "ok: 14 tests\n");
    // The test file sits in rules/tests/ so that the configs' `../rules/*.yaml` does not
    // load it as a rule file.
    let o = run(&["check", "-c", "examples/config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn condition_for_timing_fixture_passes() {
    let o = run(&[
        "test",
        "tests/data/unittest/condition.test.yaml",
        "rules/tests/kafka.test.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "ok: 16 tests\n");
}

#[test]
fn wrong_expectation_fails_with_a_readable_diff() {
    let o = run(&["test", "tests/data/unittest/wrong.test.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let want = [
        "FAILED tests/data/unittest/wrong.test.yaml:16: test \"fires too early and restarts the wrong broker\"\n",
        "  at 30s (line 27):\n    expected 1 plan, got 2 plans\n",
        "    missing (expected, not produced):\n      - rule=broker-down target=kafka-2 decision=run argv=[ssh -o BatchMode=yes -- kafka-2.example.com sudo -n systemctl restart -- kafka.service; kafka-2 kafka-2.example.com:9093 timeout=600 recovery_timeout=3600]\n",
        "        closest produced plan: rule broker-down on kafka-2\n          argv of step 2: expected [\"kafka-2\", \"kafka-2.example.com:9093\", \"timeout=600\", \"recovery_timeout=3600\"], got [\"kafka-2\", \"kafka-2.example.com:9092\", \"timeout=600\", \"recovery_timeout=3600\"]\n",
        "    unexpected (produced, not expected):\n      + RUN rule broker-down -> runbook restart-broker (target kafka-2, alert firing)\n            why: matched; target kafka-2\n",
        "      + RUN rule broker-down -> runbook restart-broker (target kafka-3, alert firing)\n            why: matched; target kafka-3; queued until kafka-2 finishes (max_concurrent_per_cluster = 1)\n",
        "  at 45s (line 24):\n    expected 1 plan, got 0 plans\n    missing (expected, not produced):\n      - rule=urp-self target=kafka-1 decision=run\n",
    ];
    for w in want {
        assert!(out.contains(w), "missing {w:?} in:\n{out}");
    }
    assert!(
        out.find("at 30s").unwrap() < out.find("at 45s").unwrap(),
        "time order"
    );
    assert!(
        !out.contains("\"passes\""),
        "passing tests are not reported"
    );
    assert!(out.ends_with("FAILED: 1 of 2 tests\n"), "{out}");
}

#[test]
fn json_report() {
    let o = run(&["test", "--json", "tests/data/unittest/wrong.test.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_eq!(out.trim_end().lines().count(), 1, "one JSON object: {out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["tests"], 2);
    assert_eq!(v["failed"], 1);
    let tests = &v["files"][0]["tests"];
    assert_eq!(tests[0]["passed"], true);
    let f = &tests[1]["failures"];
    assert_eq!(f[0]["kind"], "mismatch");
    assert_eq!(f[0]["at_ms"], 30_000);
    assert_eq!(
        f[0]["got"][1]["reason"]
            .as_str()
            .map(|r| r.contains("queued")),
        Some(true)
    );
    assert_eq!(f[1]["at_ms"], 45_000);
    assert_eq!(f[1]["missing"], serde_json::json!([[0, null]]));
}

fn invalid(text: &str, want: &[&str]) {
    let s = Scratch::new();
    let p = s.write("t.test.yaml", text);
    let path = p.to_string_lossy().into_owned();
    let o = run(&["test", &path]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{text}\n{err}");
    for w in want {
        let w = w.replace("FILE", &path);
        assert!(err.contains(&w), "missing {w:?} in:\n{err}");
    }
    assert!(err.contains("invalid test file"), "{err}");
    assert!(stdout(&o).contains("FAILED: 0 of 0 tests; 1 file not run"));
}

fn with_config(tests: &str) -> String {
    format!("config: {ROOT}/examples/config.yaml\n{tests}")
}

#[test]
fn invalid_files_name_file_and_line() {
    invalid(
        &with_config(
            "evalution_interval: 15s\ntests:\n  - name: t\n    expect: [{at: 0s, plans: []}]\n",
        ),
        &["FILE:2: error: evalution_interval: unknown key; a test file has config, rule_files"],
    );
    invalid(
        &with_config(
            "tests:\n  - name: t\n    expect:\n      - at: 0s\n        plans:\n          - {rule: broker-down, decison: run}\n",
        ),
        &["FILE:7: error: tests[0].expect[0].plans[0].decison: unknown field `decison`"],
    );
    invalid(
        &with_config("tests:\n  - name: t\n    expect:\n      - at: 20s\n        plans: []\n"),
        &[
            "FILE:5: error: tests[0].expect[0].at: 20s is not a multiple of evaluation_interval (15s)",
        ],
    );
    invalid(
        &with_config("tests:\n  - name: t\n    expect:\n      - at: soon\n        plans: []\n"),
        &["FILE:5: error: tests[0].expect[0].at: `soon` is not a duration"],
    );
    invalid(
        &with_config(
            "evaluation_interval: 1m\ntests:\n  - name: t\n    alerts:\n      - at: 30s\n        alerts: [{status: firing, label: {}}]\n    expect: [{at: 1m, plans: []}]\n",
        ),
        &[
            "FILE:6: error: tests[0].alerts[0].at: 30s is not a multiple of evaluation_interval (1m)",
            "tests[0].alerts[0].alerts[0].label: unknown alert key",
        ],
    );
    invalid(
        &with_config(
            "tests:\n  - name: t\n    input_series:\n      - series: 'up{job=~\"k\"}'\n        values: '1 1 two'\n      - series: up\n        values: '1+x2'\n    expect: [{at: 0s, plans: []}]\n",
        ),
        &[
            "FILE:5: error: tests[0].input_series[0].series: `up{job=~\"k\"}` is not a series",
            "FILE:8: error: tests[0].input_series[1].values: `1+x2` is not a value",
        ],
    );
    invalid(
        &with_config("tests:\n  - name: no expectations\n"),
        &["FILE:3: error: tests[0]: the test has no `expect:`"],
    );
    invalid(
        "config: nowhere.yaml\ntests:\n  - name: t\n    expect: [{at: 0s, plans: []}]\n",
        &["FILE:1: error: config: cannot read config file"],
    );
    invalid(
        &with_config(
            "tests:\n  - name: t\n    alerts:\n      - at: 0s\n        file: missing.json\n    expect: [{at: 0s, plans: []}]\n",
        ),
        &["FILE:6: error: tests[0].alerts[0].file: cannot read"],
    );
    invalid(
        "cluster: {name: t, kafka_brokers: []}\nrule_files: [none/*.yaml]\ntests:\n  - name: t\n    expect: [{at: 0s, plans: []}]\n",
        &["FILE:2: error: rule_files[0]: `none/*.yaml` matches no rule file"],
    );
    invalid("tests: [\n", &["FILE:2: error: YAML:"]);
}

#[test]
fn invalid_rule_files_are_reported() {
    let s = Scratch::new();
    s.write(
        "bad.yaml",
        "rules:\n  - name: r\n    matchers: ['alertname=\"X\"']\n    runbook: nope\n",
    );
    let p = s.write(
        "t.test.yaml",
        "cluster: {name: t, kafka_brokers: [{node_id: kafka-1, host: k1, port: 9092}]}\nrule_files: [bad.yaml]\ntests:\n  - name: t\n    expect: [{at: 0s, plans: []}]\n",
    );
    let o = run(&["test", &p.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("bad.yaml:4: error: rules[0].runbook: unknown runbook `nope`"),
        "{e}"
    );
}

#[test]
fn unreadable_file_is_a_usage_error() {
    let o = run(&["test", "rules/tests/kafka.test.yaml", "no/such.test.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("error: cannot read test file no/such.test.yaml"));
    assert!(
        stdout(&o).contains("FAILED: 0 of 12 tests; 1 file not run"),
        "{}",
        stdout(&o)
    );
    let o = run(&["test"]);
    assert_eq!(o.status.code(), Some(2), "no file is a usage error");
}

#[test]
fn series_no_condition_reads_are_dropped_and_named() {
    let s = Scratch::new();
    let src = std::fs::read_to_string(format!("{ROOT}/tests/data/unittest/condition.test.yaml"))
        .unwrap()
        .replace(
            "rule_files: [condition-rules.yaml]",
            &format!("rule_files: [{ROOT}/tests/data/unittest/condition-rules.yaml]"),
        )
        // An unread series (a typo of the URP gauge's name) alongside the read ones.
        .replacen(
            "        values: '0x9'\n",
            "        values: '0x9'\n      - series: 'kafka_server_replicamanager_underreplicated{node_id=\"kafka-2\"}'\n        values: '5x9'\n",
            1,
        );
    let p = s.write("t.test.yaml", &src);
    let path = p.to_string_lossy().into_owned();
    let o = run(&["test", &path]);
    let out = stdout(&o);
    // The dropped series changes nothing (no condition reads it): the test still passes,
    // and the report names it.
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains(&format!(
            "note: {path}: test \"pending, firing after for, resolved when the value clears\": no condition reads kafka_server_replicamanager_underreplicated{{node_id=\"kafka-2\"}}: dropped, as serve drops them\n"
        )),
        "{out}"
    );
    let o = run(&["test", "--json", &path]);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(
        v["files"][0]["tests"][0]["unread"],
        serde_json::json!(["kafka_server_replicamanager_underreplicated{node_id=\"kafka-2\"}"])
    );
    assert_eq!(v["files"][0]["tests"][1].get("unread"), None);
}
