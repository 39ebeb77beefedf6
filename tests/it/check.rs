//! `kafka-healing check`: shipped files pass; every bad case fails naming file, line and problem.

use crate::common::*;

#[test]
fn shipped_examples_pass() {
    let o = run(&["check", "-c", "examples/config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("OK examples/config.yaml: 10 rules, 8 runbooks, 3 brokers"),
        "{}",
        stdout(&o)
    );
    // The limits it will decide with, each with its maximum, and the rules' overrides.
    assert!(
        stdout(&o).contains(
            "\n  attempts: 3 per 3600 s window (max 10 per 2592000 s); backoff 10 s ×2 \
             (max 86400 s ×10); cooldown 300 s (max 604800); circuits close 1800 s after \
             their problem resolved (max 604800)\n"
        ),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("100 remediation (max_queued_remediation, max 100000)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).ends_with("\n  rule overrides: broker-down (cooldown 600 s)\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn production_example_needs_its_secrets() {
    let o = run(&["check", "-c", "examples/production.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("examples/production.yaml:34: error: notifications.smtp.username: environment variable `SMTP_USERNAME` is not set"), "{e}");
    assert!(e.contains("`SMTP_PASSWORD` is not set"), "{e}");
    assert!(
        e.contains("`KAFKA_HEALING_WEBHOOK_TOKEN` is not set"),
        "{e}"
    );
    let o = run_env(
        &["check", "-c", "examples/production.yaml"],
        &[
            ("SMTP_USERNAME", "u"),
            ("SMTP_PASSWORD", "p"),
            ("KAFKA_HEALING_WEBHOOK_TOKEN", "t"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Runs `check` on a scratch config and rule files; returns (exit code, stderr).
fn check(config: &str, rule_files: &[(&str, &str)]) -> (Option<i32>, String) {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", config);
    for (name, text) in rule_files {
        s.write(&format!("rules/{name}"), text);
    }
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    // Paths in messages are absolute; make them relative for the assertions.
    let prefix = format!("{}/", s.path().display());
    (o.status.code(), stderr(&o).replace(&prefix, ""))
}

fn assert_invalid(config: &str, rules: &[(&str, &str)], expected: &[&str]) {
    let (code, err) = check(config, rules);
    assert_eq!(
        code,
        Some(1),
        "expected exit 1 for\n{config}\nstderr:\n{err}"
    );
    for e in expected {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }
}

#[test]
fn good_scratch_config_passes() {
    let (code, err) = check(&config_with(""), &[("a.yaml", GOOD_RULES)]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn config_ranges_and_business_rules() {
    let cases: &[(&str, &str)] = &[
        (
            "monitoring:\n  interval_seconds: 4\n  timeout_seconds: 2\n",
            "config.yaml:10: error: monitoring.interval_seconds: must be between 5 and 3600, got 4",
        ),
        (
            "monitoring:\n  interval_seconds: 4000\n",
            "must be between 5 and 3600, got 4000",
        ),
        (
            "monitoring:\n  timeout_seconds: 0\n",
            "config.yaml:10: error: monitoring.timeout_seconds: must be between 1 and 300, got 0",
        ),
        (
            "monitoring:\n  timeout_seconds: 301\n  interval_seconds: 600\n",
            "must be between 1 and 300, got 301",
        ),
        (
            "monitoring:\n  interval_seconds: 10\n  timeout_seconds: 10\n",
            "config.yaml:11: error: monitoring.timeout_seconds: monitoring timeout (10s) must be less than the interval (10s)",
        ),
        (
            "monitoring:\n  methods: [socket, carrier-pigeon]\n",
            "config.yaml:10: error: monitoring.methods[1]: unknown monitoring method `carrier-pigeon`, expected one of: socket jmx zookeeper http kafka",
        ),
        (
            "recovery:\n  max_attempts: 0\n",
            "recovery.max_attempts: must be between 1 and 10, got 0",
        ),
        (
            "recovery:\n  precondition_timeout_seconds: 0\n",
            "recovery.precondition_timeout_seconds: must be between 1 and 120, got 0",
        ),
        (
            "recovery:\n  precondition_recheck_seconds: 3601\n",
            "recovery.precondition_recheck_seconds: must be between 1 and 3600, got 3601",
        ),
        (
            "recovery:\n  backoff_multiplier: 0.5\n",
            "recovery.backoff_multiplier: must be between 1.0 and 10.0",
        ),
        (
            "recovery:\n  max_concurrent_per_cluster: 0\n",
            "recovery.max_concurrent_per_cluster: must be between 1 and 100, got 0",
        ),
        (
            "recovery:\n  attempt_window_seconds: 18446744073709551615\n",
            "recovery.attempt_window_seconds: must be between 1 and 2592000, got 18446744073709551615",
        ),
        (
            "recovery:\n  attempt_window_seconds: 2592001\n",
            "recovery.attempt_window_seconds: must be between 1 and 2592000, got 2592001",
        ),
        (
            "recovery:\n  cooldown_seconds: 18446744073709551615\n",
            "recovery.cooldown_seconds: must be between 0 and 604800, got 18446744073709551615",
        ),
        (
            "recovery:\n  cooldown_seconds: 604801\n",
            "recovery.cooldown_seconds: must be between 0 and 604800, got 604801",
        ),
        (
            "recovery:\n  initial_delay_seconds: 86401\n",
            "recovery.initial_delay_seconds: must be between 1 and 86400, got 86401",
        ),
        (
            "recovery:\n  max_concurrent_per_cluster: 101\n",
            "recovery.max_concurrent_per_cluster: must be between 1 and 100, got 101",
        ),
        (
            "recovery:\n  max_concurrent_diagnostics: 0\n",
            "recovery.max_concurrent_diagnostics: must be between 1 and 1000, got 0",
        ),
        (
            "recovery:\n  diagnostics_nice: 20\n",
            "recovery.diagnostics_nice: must be between 0 and 19, got 20",
        ),
        (
            "recovery:\n  diagnostics_nice: -1\n",
            "recovery.diagnostics_nice",
        ),
        (
            "server:\n  max_pending_alerts: 5\n",
            "server.max_pending_alerts: must be between 100 and 10000000, got 5",
        ),
        (
            "server:\n  admission_wait_ms: 30001\n",
            "server.admission_wait_ms: must be at most 30000 (Alertmanager's own timeout must not end the wait), got 30001",
        ),
        (
            "notifications:\n  rate_limit_seconds: 18446744073709551615\n",
            "notifications.rate_limit_seconds: must be between 0 and 86400, got 18446744073709551615",
        ),
        (
            "notifications:\n  retry_initial_seconds: 3601\n",
            "notifications.retry_initial_seconds: must be between 1 and 3600, got 3601",
        ),
        (
            "server:\n  body_limit_bytes: 67108865\n",
            "server.body_limit_bytes: must be at most 67108864 (64 MiB), got 67108865",
        ),
        (
            "recovery:\n  max_queued_remediation: 0\n",
            "recovery.max_queued_remediation: must be between 1 and 100000, got 0",
        ),
        (
            "recovery:\n  max_queued: 5\n",
            "recovery.max_queued: must be between 10 and 1000000, got 5",
        ),
        (
            "recovery:\n  max_attempts: lots\n",
            "config.yaml:10: error: recovery.max_attempts: expected an integer, got the string \"lots\"\n",
        ),
        (
            "recovery:\n  retry_forever: true\n",
            "config.yaml:10: error: recovery.retry_forever: unknown field `retry_forever`",
        ),
        (
            "colour: blue\n",
            "config.yaml:9: error: colour: unknown top-level key",
        ),
        (
            "server:\n  listen: localhost\n",
            "server.listen: `localhost` is not an address:port",
        ),
        (
            "server:\n  auth: {}\n",
            "server.auth: set bearer_token (or bearer_token_file) or basic",
        ),
        (
            "server:\n  auth:\n    bearer_token: x\n    basic: { username: a, password: b }\n",
            "set either bearer_token or basic, not both",
        ),
        (
            "server:\n  auth:\n    basic: { username: a }\n",
            "basic auth needs a non-empty password",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    from_email: not-an-address\n    to_emails: [ops@example.com]\n",
            "config.yaml:12: error: notifications.smtp.from_email: `not-an-address` is not a valid email address",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    from_email: a@example.com\n    to_emails: [ops@example.com, 'bad@']\n",
            "notifications.smtp.to_emails[1]: `bad@` is not a valid email address",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    from_email: a@example.com\n    to_emails: []\n",
            "at least one recipient is required",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    port: 0\n    from_email: a@example.com\n    to_emails: [o@example.com]\n",
            "notifications.smtp.port: must be between 1 and 65535",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    from_email: a@example.com\n    to_emails: [o@example.com]\n    username: u\n    password: p\n    password_file: pw\n",
            "set either the value or the `_file` variant, not both",
        ),
        (
            "notifications:\n  smtp:\n    host: mail\n    from_email: a@example.com\n    to_emails: [o@example.com]\n    password_file: /nonexistent/pw\n",
            "cannot read secret file /nonexistent/pw",
        ),
        ("logging:\n  level: loud\n", "unknown log level `loud`"),
        ("environment: moon\n", "unknown environment `moon`"),
        (
            "alertmanager:\n  url: ftp://am.example.com\n",
            "config.yaml:10: error: alertmanager.url: scheme `ftp` is not http or https",
        ),
        (
            "alertmanager:\n  url: am.example.com:9093\n",
            "config.yaml:10: error: alertmanager.url: scheme `am.example.com` is not http or https",
        ),
        (
            "alertmanager:\n  url: 'http://am:9093/?x=1'\n",
            "alertmanager.url: `http://am:9093/?x=1` has a query or fragment; give the base URL only",
        ),
        (
            "alertmanager:\n  url: not a url\n",
            "alertmanager.url: `not a url` is not a URL: relative URL without a base",
        ),
        (
            "alertmanager:\n  url: http://am:9093\n  timeout_seconds: 0\n",
            "config.yaml:11: error: alertmanager.timeout_seconds: must be between 1 and 60, got 0",
        ),
        (
            "alertmanager:\n  timeout_seconds: 5\n",
            "config.yaml:9: error: alertmanager: missing field `url`\n",
        ),
        (
            "alertmanager:\n  url: http://am:9093\n  silences: all\n",
            "alertmanager.silences: unknown field `silences`",
        ),
        (
            "rules: [nothing/*.yaml]\n",
            "`nothing/*.yaml` matches no rule file",
        ),
    ];
    for (extra, expected) in cases {
        // `rules:` in a case replaces the default list (a YAML duplicate key otherwise).
        let cfg = if extra.starts_with("rules:") {
            config_with("").replace("rules:\n  - rules/*.yaml\n", extra)
        } else {
            config_with(extra)
        };
        assert_invalid(&cfg, &[("a.yaml", GOOD_RULES)], &[expected]);
    }
}

#[test]
fn cluster_rules() {
    let even_zk = "cluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: a, port: 9092, jmx_port: 1 }\n  zookeeper_nodes:\n    - { node_id: z1, host: z1 }\n    - { node_id: z2, host: z2 }\nrules: [rules/*.yaml]\n";
    assert_invalid(
        even_zk,
        &[("a.yaml", GOOD_RULES)],
        &[
            "config.yaml:5: error: cluster.zookeeper_nodes: ZooKeeper ensemble size should be an odd number, found 2",
        ],
    );
    let dup = "cluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: a, port: 9092, jmx_port: 1 }\n    - { node_id: 1, host: b, port: 9092, jmx_port: 1 }\nrules: [rules/*.yaml]\n";
    assert_invalid(
        dup,
        &[("a.yaml", GOOD_RULES)],
        &["config.yaml:5: error: cluster.kafka_brokers[1].node_id: duplicate node_id `1`"],
    );
    let two = "environment: production\ncluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: a, port: 9092, jmx_port: 1 }\n    - { node_id: 2, host: b, port: 9092, jmx_port: 1 }\nrules: [rules/*.yaml]\n";
    assert_invalid(
        two,
        &[("a.yaml", GOOD_RULES)],
        &[
            "config.yaml:4: error: cluster.kafka_brokers: production environment requires at least 3 Kafka brokers, found 2",
        ],
    );
    let (code, err) = check(
        &two.replace("production", "staging"),
        &[("a.yaml", GOOD_RULES)],
    );
    assert_eq!(
        code,
        Some(0),
        "two brokers are fine outside production: {err}"
    );
    let no_jmx = "cluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: a, port: 9092 }\nrules: [rules/*.yaml]\n";
    // jmx by default (the seed's staging config): not scraped, and said.
    let (code, err) = check(no_jmx, &[("a.yaml", GOOD_RULES)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("config.yaml:3: warning: cluster.kafka_brokers[0]: broker `1` has neither jmx_port nor metrics_url, but monitoring.methods has jmx (by default): its metrics are not scraped; set metrics_url, or list monitoring.methods without jmx"),
        "{err}"
    );
    assert_invalid(
        &format!("{no_jmx}monitoring: {{ methods: [socket, jmx] }}\n"),
        &[("a.yaml", GOOD_RULES)],
        &[
            "config.yaml:4: error: cluster.kafka_brokers[0]: broker `1` has neither jmx_port nor metrics_url, but monitoring.methods has jmx",
        ],
    );
    let bad_port = "cluster:\n  name: t\n  kafka_brokers:\n    - { node_id: 1, host: a, port: 70000, jmx_port: 1 }\nrules: [rules/*.yaml]\n";
    assert_invalid(
        bad_port,
        &[("a.yaml", GOOD_RULES)],
        &[
            "config.yaml:4: error: cluster.kafka_brokers[0].port: expected an integer between 0 and 65535, got 70000\n",
        ],
    );
    let no_cluster = "rules: [rules/*.yaml]\n";
    assert_invalid(
        no_cluster,
        &[("a.yaml", GOOD_RULES)],
        &["missing required section `cluster`"],
    );
    let yaml = "cluster:\n  name: [unclosed\n";
    assert_invalid(yaml, &[], &["config.yaml:3: error: YAML:"]);
    let dup_key = "cluster:\n  name: a\n  name: b\n";
    assert_invalid(
        dup_key,
        &[],
        &["config.yaml:3: error: YAML: duplicate key `cluster.name`"],
    );
}

const RB: &str = "runbooks:\n  restart:\n    steps:\n      - name: s\n        exec: [echo, hi]\n";

#[test]
fn rule_file_problems_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n  - name: r\n    matchers: ['alertname=\"X\"']\n    runbook: nope\n",
            "rules/a.yaml:4: error: rules[0].runbook: unknown runbook `nope` (defined: restart)",
        ),
        (
            "rules:\n  - name: r\n    matchers:\n      - 'alertname=\"X\"'\n      - 'bad matcher'\n    runbook: restart\n",
            "rules/a.yaml:5: error: rules[0].matchers[1]: bad matcher format `bad matcher`",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['severity=~\"(crit\"']\n    runbook: restart\n",
            "rules/a.yaml:3: error: rules[0].matchers[0]: invalid regex `(crit`",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"x\"y\"']\n    runbook: restart\n",
            "unescaped double quote",
        ),
        (
            "rules:\n  - name: r\n    matchers: []\n    runbook: restart\n",
            "rules/a.yaml:3: error: rules[0].matchers: a rule needs at least one matcher",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    params:\n      p: '{{alert.lables.instance}}'\n",
            "rules/a.yaml:6: error: rules[0].params.p: `alert.lables.instance` cannot exist",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    params:\n      p: { value: '{{alert.labels.x}}', pattern: '[a-z' }\n",
            "rules[0].params.p.pattern: invalid regex `[a-z`",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    params:\n      p: '{{#if x}}open'\n",
            "rules[0].params.p: template does not compile",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    notify: ['nobody']\n",
            "rules[0].notify[0]: `nobody` is not a valid email address",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    max_attempts: 11\n",
            "rules[0].max_attempts: must be between 1 and 10, got 11",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n    cooldown_seconds: 604801\n",
            "rules[0].cooldown_seconds: must be at most 604800 (7 days), got 604801",
        ),
        (
            "rules:\n  - name: r\n    runbook: restart\n    condition: { expr: 'up == 0', for: 8d, alertname: X }\n",
            "must be at most 7d (604800 s), got 8days",
        ),
        (
            "rules:\n  - name: r\n    runbook: restart\n    condition: { expr: 'up == 0', for: 99999999999999999999d, alertname: X }\n",
            "rules[0].condition.for:",
        ),
        (
            "rules:\n  - name: r\n    match: ['a=\"b\"']\n    runbook: restart\n",
            "rules/a.yaml:3: error: rules[0].match: unknown field `match`, expected one of `name`",
        ),
        (
            "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: restart\n  - name: r\n    matchers: ['a=\"c\"']\n    runbook: restart\n",
            "rules/a.yaml:5: error: rules[1].name: duplicate rule name `r` (also at",
        ),
        (
            "rulez: []\n",
            "rules/a.yaml:1: error: rulez: unknown top-level key",
        ),
        ("rules: [\n", "rules/a.yaml:2: error: YAML:"),
    ];
    for (text, expected) in cases {
        let text = format!("{text}{RB}");
        assert_invalid(&config_with(""), &[("a.yaml", &text)], &[expected]);
    }
}

#[test]
fn runbook_problems() {
    let rule = "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: rb\n    params: { unit: kafka.service }\n";
    let cases: &[(&str, &str)] = &[
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: ['{{params.unti}}']\n",
            "rules/a.yaml:4: error: rules[0].runbook: runbook `rb` step `s`: `params.unti` is not a param of this rule (it declares: unit)",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        retries: 11\n        exec: [a]\n",
            "rules/a.yaml:10: error: runbooks.rb.steps[0].retries: `retries` must be at most 10, got 11",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        timeout: 604801\n        exec: [a]\n",
            "rules/a.yaml:10: error: runbooks.rb.steps[0].timeout: `timeout`: must be at most 7d (604800 s), got 7days 1s",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        kube: { action: scale, namespace: k, name: s, replicas: 1001 }\n",
            "`replicas` must be at most 1000, got 1001",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: ['{{target.hostname}}']\n",
            "`target.hostname` cannot exist",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: [a]\n        systemctl: { action: restart, unit: u }\n",
            "rules/a.yaml:9: error: runbooks.rb.steps[0]: step `s` has several kinds (exec, systemctl); give exactly one",
        ),
        (
            "runbooks:\n  rb:\n    disruptive: false\n    steps:\n      - name: bounce\n        systemctl: { action: restart, unit: '{{params.unit}}' }\n",
            "rules/a.yaml:11: error: runbooks.rb.steps[0].systemctl: step `bounce` (systemctl restart) changes a service, so this runbook is disruptive: remove `disruptive: false`",
        ),
        (
            "runbooks:\n  rb:\n    disruptive: false\n    steps:\n      - name: play\n        ansible: { playbook: p.yml }\n",
            "step `play` (ansible-playbook) changes a service, so this runbook is disruptive",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        shell: 'rm -rf /'\n",
            "rules/a.yaml:10: error: runbooks.rb.steps[0].shell: unknown key `shell` in step `s`",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        systemctl: { action: mask, unit: '{{params.unit}}' }\n",
            "systemctl action `mask` is not one of",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        wait_for: { tcp: 'a:1', http: 'http://a', timeout: 5s }\n",
            "wait_for needs exactly one of `tcp` and `http`",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        wait_for: { tcp: 'a:1', timeout: soon }\n",
            "`soon` is not a duration",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: []\n",
            "`exec` needs at least the program",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        http: { method: TRACE, url: 'http://x' }\n",
            "http method `TRACE` is not one of",
        ),
        (
            "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: [a, '{{params.unit}}']\n        on_failure: panic\n",
            "rules/a.yaml:11: error: runbooks.rb.steps[0].on_failure: `on_failure`: unknown variant `panic`",
        ),
        (
            "runbooks:\n  rb:\n    steps: []\n",
            "runbooks.rb.steps: a disruptive runbook needs at least one step",
        ),
    ];
    for (rb, expected) in cases {
        let text = format!("{rule}{rb}");
        assert_invalid(&config_with(""), &[("a.yaml", &text)], &[expected]);
    }
}

/// Issue 19: each error names the line to fix, not the start of what holds it.
#[test]
fn errors_point_at_the_line_to_fix() {
    // A tab indents line 4; the scalar the YAML scanner was reading starts on line 3.
    let tabbed = "rules:\n  - name: r\n    runbook: restart\n\tmatchers: ['a=\"b\"']\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", &format!("{tabbed}{RB}"))],
        &[
            "rules/a.yaml:4: error: YAML: while scanning a plain scalar, found a tab (scanning from line 3)\n",
        ],
    );
    let config = config_with("server:\n  listen: 127.0.0.1:1\n\tbody_limit_bytes: 1\n");
    assert_invalid(
        &config,
        &[("a.yaml", GOOD_RULES)],
        &[
            "config.yaml:11: error: YAML: while scanning a plain scalar, found a tab (scanning from line 10)\n",
        ],
    );
    // A step's bad key, each on its own line below the step's `name:` (line 9).
    let rule = "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: rb\n    params: { unit: kafka.service }\n";
    let steps =
        "runbooks:\n  rb:\n    steps:\n      - name: s\n        exec: [a]\n        retries: 11\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", &format!("{rule}{steps}"))],
        &[
            "rules/a.yaml:11: error: runbooks.rb.steps[0].retries: `retries` must be at most 10, got 11\n",
        ],
    );
    let steps = "runbooks:\n  rb:\n    steps:\n      - name: s\n        wait_for:\n          tcp: 'a:1'\n          http: 'http://a'\n          timeout: 5s\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", &format!("{rule}{steps}"))],
        &[
            "rules/a.yaml:10: error: runbooks.rb.steps[0].wait_for: wait_for needs exactly one of `tcp` and `http`",
        ],
    );
    // A PromQL error at `expr:` (line 6), not at `condition:` (line 4).
    let cond = "rules:\n  - name: r\n    runbook: restart\n    condition:\n      for: 1m\n      expr: 'up =='\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", &format!("{cond}{RB}"))],
        &["rules/a.yaml:6: error: rules[0].condition.expr: "],
    );
    // A matcher whose label name is what is wrong says so, and what a name is.
    let bad_name = "rules:\n  - name: r\n    matchers:\n      - 'alertname=\"X\"'\n      - '1bad=\"x\"'\n    runbook: restart\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", &format!("{bad_name}{RB}"))],
        &[
            "rules/a.yaml:5: error: rules[0].matchers[1]: bad matcher `1bad=\"x\"`: `1bad` is not a label name (label names match [a-zA-Z_:][a-zA-Z0-9_:]*: a letter, `_` or `:` first, then letters, digits, `_`, `:`)\n",
        ],
    );
}

/// The files a `serve` run from the checkout leaves (the journal, its lock, the audit log)
/// are git-ignored.
#[test]
fn runtime_files_are_git_ignored() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join(".git").exists() {
        eprintln!("not a git checkout: nothing to check");
        return;
    }
    let files = [
        "kafka-healing.db",
        "kafka-healing.db.lock",
        "kafka-healing.db-wal",
        "examples/state/journal.db.lock",
        "examples/audit.jsonl",
    ];
    let o = std::process::Command::new("git")
        .current_dir(repo)
        .args(["check-ignore", "--no-index"])
        .args(files)
        .output()
        .expect("git");
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        files,
        "{}",
        stderr(&o)
    );
}

#[test]
fn duplicates_across_files() {
    let a = "rules:\n  - name: same\n    matchers: ['a=\"b\"']\n    runbook: rb\nrunbooks:\n  rb:\n    steps:\n      - { name: s, exec: [a] }\n";
    let b = "rules:\n  - name: same\n    matchers: ['a=\"c\"']\n    runbook: rb\nrunbooks:\n  rb:\n    steps:\n      - { name: s, exec: [b] }\n";
    assert_invalid(
        &config_with(""),
        &[("a.yaml", a), ("b.yaml", b)],
        &[
            "rules/b.yaml:6: error: runbooks.rb: duplicate runbook `rb` (also defined at rules/a.yaml:6)",
            "rules/b.yaml:2: error: rules[0].name: duplicate rule name `same` (also at",
            "rules/a.yaml:2)",
        ],
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let cfg = config_with(
        "monitoring:\n  interval_seconds: 4\n  timeout_seconds: 0\nrecovery:\n  max_attempts: 99\n",
    );
    let rules = "rules:\n  - name: r\n    matchers: ['bad']\n    runbook: missing\n  - name: q\n    matchers: ['a=~\"(\"']\n    runbook: missing\n";
    let (code, err) = check(&cfg, &[("a.yaml", rules)]);
    assert_eq!(code, Some(1));
    for e in [
        "monitoring.interval_seconds",
        "monitoring.timeout_seconds: must be between 1 and 300",
        "recovery.max_attempts",
        "rules[0].matchers[0]: bad matcher format",
        "rules[0].runbook: unknown runbook `missing`",
        "rules[1].matchers[0]: invalid regex",
        "rules[1].runbook: unknown runbook `missing`",
    ] {
        assert!(err.contains(e), "missing {e} in\n{err}");
    }
    assert!(err.contains("INVALID (7 errors)"), "{err}");
}

#[test]
fn warnings_do_not_fail() {
    let text = format!("{GOOD_RULES}  unused:\n    steps:\n      - {{ name: s, exec: [a] }}\n");
    let (code, err) = check(&config_with(""), &[("a.yaml", &text)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("rules/a.yaml:10: warning: runbooks.unused: not used by any rule"),
        "{err}"
    );
}

#[test]
fn json_diagnostics() {
    let s = Scratch::new();
    let cfg = s.write(
        "config.yaml",
        &config_with("recovery:\n  max_attempts: 0\n"),
    );
    s.write("rules/a.yaml", GOOD_RULES);
    let o = run(&["check", "--json", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let line = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(v["severity"], "error");
    assert_eq!(v["line"], 10);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("recovery.max_attempts")
    );
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&["check", "-c", "/nonexistent/config.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read config file /nonexistent/config.yaml"),
        "{}",
        stderr(&o)
    );
    let o = run(&["check", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["dry-run", "-c", "examples/config.yaml"]);
    assert_eq!(o.status.code(), Some(2), "missing --alerts");
}

#[test]
fn template_overrides_are_checked() {
    let smtp = "notifications:\n  smtp: { host: localhost, port: 25, tls: none, from_email: a@example.com, to_emails: [b@example.com] }\n  templates: { subject: nope.hbs }\n";
    assert_invalid(
        &config_with(smtp),
        &[("a.yaml", GOOD_RULES)],
        &["notifications.templates: template", "nope.hbs"],
    );
}

/// Issue 15: `requires:` is checked at its file and line: an unknown precondition, one
/// listed twice, and preconditions on a runbook aimed at no broker (they judge the target).
#[test]
fn precondition_problems() {
    let rule = "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: rb\n    params: { unit: kafka.service }\n";
    let cases: &[(&str, &str)] = &[
        (
            "runbooks:\n  rb:\n    requires: [broker_unreachable, restart_is_fine]\n    steps:\n      - name: s\n        exec: [a, '{{target.host}}']\n",
            "rules/a.yaml:8: error: runbooks.rb.requires[1]: unknown variant `restart_is_fine`, expected one of `broker_unreachable`, `restart_safe`, `not_starting`",
        ),
        (
            "runbooks:\n  rb:\n    requires:\n      - restart_safe\n      - restart_safe\n    steps:\n      - name: s\n        exec: [a, '{{target.host}}']\n",
            "rules/a.yaml:10: error: runbooks.rb.requires[1]: precondition `restart_safe` is listed twice",
        ),
        (
            "runbooks:\n  rb:\n    requires: [broker_unreachable, restart_safe]\n    steps:\n      - name: s\n        exec: [a, '{{params.unit}}']\n",
            "rules/a.yaml:8: error: runbooks.rb.requires: requires broker_unreachable, restart_safe but no step names a target broker (`target.*`): a precondition judges the broker a runbook acts on",
        ),
    ];
    for (rb, expected) in cases {
        let text = format!("{rule}{rb}");
        assert_invalid(&config_with(""), &[("a.yaml", &text)], &[expected]);
    }
    // Aimed at the target through a param default: fine.
    let ok = "rules:\n  - name: r\n    matchers: ['a=\"b\"']\n    runbook: rb\nrunbooks:\n  rb:\n    requires: [broker_unreachable, restart_safe, not_starting]\n    params: { host: { value: '{{target.host}}' } }\n    steps:\n      - name: s\n        exec: [a, '{{params.host}}']\n";
    let (code, err) = check(&config_with(""), &[("a.yaml", ok)]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn warns_when_brokers_times_kept_series_could_pass_the_cap() {
    let s = Scratch::new();
    let brokers: String = (0..40)
        .map(|i| {
            format!(
                "    - {{ node_id: b{i}, host: h{i}.example.com, port: 9092, jmx_port: 9404 }}\n"
            )
        })
        .collect();
    let cfg = |expr: &str| {
        s.write(
            "r.yaml",
            &format!("rules:\n  - name: r\n    condition: {{ expr: '{expr}' }}\n    runbook: rb\nrunbooks:\n  rb:\n    disruptive: false\n    steps: [{{ name: s, exec: ['true'] }}]\n"),
        );
        let p = s.write(
            "c.yaml",
            &format!("cluster:\n  name: t\n  kafka_brokers:\n{brokers}monitoring: {{ methods: [jmx, socket] }}\nrules: [r.yaml]\n"),
        );
        run(&["check", "-c", p.to_str().unwrap()])
    };
    // A selector without a metric name keeps a whole scrape (6,000) per broker: 40 × 6,000.
    let o = cfg("count({job=\"kafka\"}) > 0");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: monitoring: 40 brokers may need about 240000 exporter series (6000 per broker for what the conditions read: {job=\"kafka\"}) and 240 health series, over the series store's caps (200000, monitoring.max_series, and 50000, monitoring.max_health_series)"),
        "{}",
        stderr(&o)
    );
    // Two metric names: 40 × 2 × 40 series, well under the cap: no warning.
    let o = cfg("a > 0 and b > 0");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("may need about"), "{}", stderr(&o));
}

/// Runs `check` on a scratch config (plus `files`) with `env` set on the child; returns
/// (exit code, stdout, stderr) with the scratch path made relative.
fn check_env(
    config: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", config);
    s.write("rules/a.yaml", GOOD_RULES);
    for (name, text) in files {
        s.write(name, text);
    }
    let o = run_env(&["check", "-c", cfg.to_str().unwrap()], env);
    let prefix = format!("{}/", s.path().display());
    (
        o.status.code(),
        stdout(&o).replace(&prefix, ""),
        stderr(&o).replace(&prefix, ""),
    )
}

#[test]
fn wrong_types_in_the_file_are_errors_at_their_line_not_coerced() {
    let cases: &[(&str, &str)] = &[
        (
            "recovery:\n  max_concurrent_per_cluster: 1.5\n",
            "config.yaml:10: error: recovery.max_concurrent_per_cluster: expected an integer, got 1.5",
        ),
        (
            "recovery:\n  max_attempts: 3.7\n",
            "config.yaml:10: error: recovery.max_attempts: expected an integer, got 3.7",
        ),
        (
            "recovery:\n  dry_run: 2\n",
            "config.yaml:10: error: recovery.dry_run: expected true or false, got 2",
        ),
        (
            "recovery:\n  dry_run: \"off\"\n",
            "config.yaml:10: error: recovery.dry_run: expected true or false, got the string \"off\"",
        ),
        (
            "recovery:\n  dry_run: yes\n",
            "config.yaml:10: error: recovery.dry_run: expected true or false, got the string \"yes\"",
        ),
        (
            "recovery:\n  max_attempts: \"3\"\n",
            "config.yaml:10: error: recovery.max_attempts: expected an integer, got the string \"3\" (write it without quotes)",
        ),
        (
            "server:\n  body_limit_bytes: 1e6\n",
            "config.yaml:10: error: server.body_limit_bytes: expected an integer, got 1e6",
        ),
        (
            "server:\n  listen: [127.0.0.1:1]\n",
            "config.yaml:10: error: server.listen: expected a string, got a list",
        ),
    ];
    for (extra, expected) in cases {
        let (code, out, err) = check_env(&config_with(extra), &[], &[]);
        assert_eq!(code, Some(1), "{extra}: {out}");
        assert_eq!(
            err,
            format!("{expected}\nconfig.yaml: INVALID (1 error)\n"),
            "{extra}"
        );
    }
}

#[test]
fn env_values_reach_check_as_written_or_are_refused_by_type() {
    // A numeric-looking token is the token: check passes and prints no error.
    let (code, out, err) = check_env(
        &config_with(""),
        &[],
        &[("KAFKA_HEALING__SERVER__AUTH__BEARER_TOKEN", "007")],
    );
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    let var = "KAFKA_HEALING__RECOVERY__MAX_CONCURRENT_PER_CLUSTER";
    let (code, _, err) = check_env(&config_with(""), &[], &[(var, "1.5")]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "config.yaml: error: recovery.max_concurrent_per_cluster: expected an integer, got \
             the string \"1.5\" (value from environment variable {var})\n\
             config.yaml: INVALID (1 error)\n"
        )
    );
    let var = "KAFKA_HEALING__RECOVERY__DRY_RUN";
    let (code, _, err) = check_env(
        &config_with("recovery:\n  dry_run: false\n"),
        &[],
        &[(var, "off")],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "config.yaml:10: error: recovery.dry_run: expected true or false, got the string \
             \"off\" (value from environment variable {var})\n\
             config.yaml: INVALID (1 error)\n"
        )
    );
}

#[test]
fn token_files_only_lose_one_trailing_newline() {
    let cfg = config_with("server:\n  auth:\n    bearer_token_file: token\n");
    let why = "no client can send it (a bearer token is one word of visible ASCII; only a \
               single trailing newline is stripped from a `_file`)";
    for (text, what) in [
        ("tok-with-space ", "a space at its end"),
        ("tok-with-space \n", "a space at its end"),
        ("tok\n\n", "a newline at its end"),
        ("\ttok\n", "a tab at its start"),
        ("tok en\n", "a space inside it"),
        ("tok\u{1}en", "the control character U+0001 inside it"),
    ] {
        let (code, _, err) = check_env(&cfg, &[("token", text)], &[]);
        assert_eq!(code, Some(1), "{text:?}");
        assert_eq!(
            err,
            format!(
                "config.yaml:11: error: server.auth.bearer_token_file: the token has {what}; \
                 {why}\nconfig.yaml: INVALID (1 error)\n"
            ),
            "{text:?}"
        );
    }
    for ok in ["tok-123\n", "tok-123\r\n", "tok-123"] {
        let (code, _, err) = check_env(&cfg, &[("token", ok)], &[]);
        assert_eq!((code, err.as_str()), (Some(0), ""), "{ok:?}");
    }
    // The same holds for a token given inline or from the environment.
    let (code, _, err) = check_env(
        &config_with(""),
        &[],
        &[("KAFKA_HEALING__SERVER__AUTH__BEARER_TOKEN", "007 ")],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(
            "config.yaml: error: server.auth.bearer_token: the token has a space at its end; \
             no client can send it"
        ),
        "{err}"
    );
}

#[test]
fn a_password_file_with_extra_whitespace_is_kept_and_warned_about() {
    let cfg =
        config_with("server:\n  auth:\n    basic:\n      username: am\n      password_file: pw\n");
    let (code, out, err) = check_env(&cfg, &[("pw", "hunter2 \n")], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "config.yaml:13: warning: server.auth.basic.password_file: the password has a space \
             at its end, which is used as part of it (only a single trailing newline is \
             stripped from a `_file`)"
        ),
        "{out}{err}"
    );
}

#[test]
fn rule_files_do_not_coerce_either() {
    // The same wording as the config's (issue 19: rule files said `expected u32`).
    for (line, expected) in [
        (
            "    max_attempts: 2.5\n",
            "rules/a.yaml:5: error: rules[0].max_attempts: expected an integer, got 2.5",
        ),
        (
            "    dry_run: \"no\"\n",
            "rules/a.yaml:5: error: rules[0].dry_run: expected true or false, got the string \"no\"",
        ),
        (
            "    cooldown_seconds: \"60\"\n",
            "rules/a.yaml:5: error: rules[0].cooldown_seconds: expected an integer, got the string \"60\" (write it without quotes)",
        ),
    ] {
        let rules = GOOD_RULES.replacen(
            "    runbook: restart\n",
            &format!("    runbook: restart\n{line}"),
            1,
        );
        let (code, _, err) = check_env(&config_with(""), &[("rules/a.yaml", &rules)], &[]);
        assert_eq!(code, Some(1), "{line}");
        assert!(err.starts_with(&format!("{expected}\n")), "{line}: {err}");
    }
}

/// Issue 19: two typos and a bad value in one section are three errors in one run, each at
/// its line, not one per run (serde stops a section at its first error; the loader takes the
/// key out and reads the section again).
#[test]
fn every_wrong_key_and_value_of_a_section_is_reported_in_one_run() {
    let s = Scratch::new();
    s.write("rules/r.yaml", GOOD_RULES);
    let cfg = s.write(
        "config.yaml",
        &config_with(
            "recovery:\n  max_atempts: 3\n  cooldwn_seconds: 5\n  dry_run: maybe\n  max_attempts: 2\n",
        ),
    );
    let o = run(&["check", "-c", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o).replace(&format!("{}/", s.path().display()), "");
    let lines: Vec<&str> = e.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with(
            "config.yaml:10: error: recovery.max_atempts: unknown field `max_atempts`"
        ),
        "{e}"
    );
    assert!(
        lines[1].starts_with(
            "config.yaml:11: error: recovery.cooldwn_seconds: unknown field `cooldwn_seconds`"
        ),
        "{e}"
    );
    assert_eq!(
        lines[2],
        "config.yaml:12: error: recovery.dry_run: expected true or false, got the string \"maybe\""
    );
    assert!(e.ends_with("config.yaml: INVALID (3 errors)\n"), "{e}");
}
