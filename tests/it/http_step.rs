//! `http` steps against hostile alert values (issue 17, finding 6): each attack goes from a
//! rule file through the planner to a real request on 127.0.0.1, and the test asserts the
//! request that arrived (method, path, query, port, headers, body), or that none did.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kafka_healing::config::load_text;
use kafka_healing::engine::{Decision, Plan, plan_alert};
use kafka_healing::ingest::{Alert, AlertStatus};
use kafka_healing::journal::{StepRecord, StepStatus};
use kafka_healing::rules::load_rule_texts;
use kafka_healing::runbook::exec::client_builder;
use kafka_healing::runbook::exec::{ExecOptions, child_env, run_step};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::common::{Scratch, run, stderr};

/// Upper bound on one step run or one wait for a request.
const BOUND: Duration = Duration::from_secs(30);

/// A request as it arrived.
#[derive(Debug)]
struct Seen {
    /// `POST /path?query HTTP/1.1`.
    line: String,
    /// Header names lowercased, in arrival order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that records every request and answers each with `answer`
/// (a status line and extra header lines).
struct Recorder {
    port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Recorder {
    async fn start(answer: &'static str, extra: String) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let tx = tx.clone();
                let extra = extra.clone();
                tokio::spawn(async move {
                    let Some(s) = read_request(&mut sock).await else {
                        return;
                    };
                    let _ = tx.send(s);
                    let resp = format!(
                        "HTTP/1.1 {answer}\r\n{extra}Content-Length: 4\r\nConnection: close\r\n\r\ndone"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Recorder { port, seen }
    }

    /// The next request, within [`BOUND`].
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(BOUND, self.seen.recv())
            .await
            .expect("a request within the bound")
            .expect("server alive")
    }

    /// No request arrived (checked after the step that could have sent one has ended).
    fn none(&mut self) {
        assert!(
            self.seen.try_recv().is_err(),
            "no request may reach this server"
        );
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match tokio::time::timeout(BOUND, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match tokio::time::timeout(BOUND, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    Some(Seen {
        line,
        headers,
        body,
    })
}

/// One broker, `kafka-1` on 127.0.0.1:`port` (so `{{target.port}}` is a recorder's).
fn config(port: u16) -> kafka_healing::config::Config {
    let text = format!(
        "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {port}, jmx_port: 9404 }}\n"
    );
    load_text(&text, Path::new("config.yaml"), HashMap::new())
        .expect("config loads")
        .config
}

/// A rule `r` on alert `Hostile` that runs one `http` step written as `step` (YAML,
/// indented under `http:`).
fn rules(step: &str) -> String {
    format!(
        "rules:\n  - name: r\n    matchers: ['alertname=\"Hostile\"']\n    runbook: call\n\
         runbooks:\n  call:\n    steps:\n      - name: call\n        http:\n{step}"
    )
}

/// The plan for an alert with `labels` (plus `alertname` and `node_id: kafka-1`).
fn plan(port: u16, step: &str, labels: &[(&str, &str)]) -> Plan {
    let (set, diags) = load_rule_texts(vec![(PathBuf::from("rules.yaml"), Ok(rules(step)))]);
    assert!(!diags.has_errors(), "{diags}");
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("alertname".into(), "Hostile".into());
    l.insert("node_id".into(), "kafka-1".into());
    let alert = Alert {
        status: AlertStatus::Firing,
        labels: l,
        annotations: BTreeMap::new(),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        fingerprint: "f".into(),
        external_url: String::new(),
    };
    let mut plans = plan_alert(&config(port), &set, &alert);
    assert_eq!(plans.len(), 1);
    plans.remove(0)
}

/// The shipped client (no redirects), without the environment's proxy.
fn opts() -> ExecOptions {
    ExecOptions {
        retry_pause: Duration::from_millis(100),
        http_client: client_builder().no_proxy().build().expect("client"),
        ..ExecOptions::new(child_env(&[]))
    }
}

/// Runs the plan's one step, as the engine would.
async fn run_plan(p: &Plan) -> StepRecord {
    assert_eq!(p.decision, Decision::Run, "{}", p.reason);
    let cancel = CancellationToken::new();
    tokio::time::timeout(BOUND, run_step(&p.steps[0], 1, &opts(), &cancel))
        .await
        .expect("the step ends within the bound")
}

/// The request line a journaled URL stands for.
fn line_of(method: &str, journaled: &str, port: u16) -> String {
    let prefix = format!("http://127.0.0.1:{port}");
    let target = journaled
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{journaled} ∌ {prefix}"));
    format!("{method} {target} HTTP/1.1")
}

#[tokio::test]
async fn path_and_query_values_are_one_segment_and_one_value() {
    let mut srv = Recorder::start("200 OK", String::new()).await;
    let step = format!(
        "          url: 'http://127.0.0.1:{}/api/topics/{{{{alert.labels.topic}}}}/config?owner={{{{alert.labels.owner}}}}&dry=1'\n",
        srv.port
    );
    let p = plan(
        srv.port,
        &step,
        &[
            ("topic", "../../admin/delete?all=true"),
            ("owner", "x&all=true#frag"),
        ],
    );
    let rec = run_plan(&p).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    let seen = srv.next().await;
    assert_eq!(
        seen.line,
        "GET /api/topics/..%2F..%2Fadmin%2Fdelete%3Fall%3Dtrue/config?owner=x%26all%3Dtrue%23frag&dry=1 HTTP/1.1"
    );
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", srv.port).as_str())
    );
    // The journal holds exactly what was sent.
    assert_eq!(rec.argv[1], p.steps[0].argv[1]);
    assert_eq!(line_of("GET", &rec.argv[1], srv.port), seen.line);

    // A value that is a whole `..` segment is refused: URL parsers resolve it away.
    for v in ["..", ".", "%2e%2E"] {
        let p = plan(srv.port, &step, &[("topic", v), ("owner", "o")]);
        if v.starts_with('%') {
            // Encoded again (`%252e…`), it is an ordinary segment.
            assert_eq!(p.decision, Decision::Run, "{}", p.reason);
            assert!(p.steps[0].argv[1].contains("/topics/%252e%252E/"));
            continue;
        }
        assert_eq!(p.decision, Decision::Skip, "{v}");
        assert!(
            p.reason
                .contains(&format!("a path segment `{v}` is refused")),
            "{}",
            p.reason
        );
    }
    srv.none();
}

#[tokio::test]
async fn a_value_cannot_choose_host_port_or_credentials() {
    let mut srv = Recorder::start("200 OK", String::new()).await;
    let mut other = Recorder::start("200 OK", String::new()).await;
    let step = format!(
        "          method: POST\n          url: 'http://127.0.0.1:{}/hosts/{{{{alert.labels.instance}}}}'\n",
        srv.port
    );
    for hostile in [
        format!("127.0.0.1:{}/steal#", other.port),
        format!("user:pw@127.0.0.1:{}", other.port),
    ] {
        let p = plan(srv.port, &step, &[("instance", &hostile)]);
        let rec = run_plan(&p).await;
        assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
        let seen = srv.next().await;
        let want = format!(
            "POST /hosts/{} HTTP/1.1",
            hostile
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace('#', "%23")
                .replace('@', "%40")
        );
        assert_eq!(seen.line, want);
        assert_eq!(
            seen.header("authorization"),
            None,
            "no Basic auth from `user:pw@`"
        );
        assert_eq!(line_of("POST", &rec.argv[1], srv.port), seen.line);
    }
    other.none();

    // The host and port from config values: `{{target.host}}:{{target.port}}` is kafka-1.
    let step = "          url: 'http://{{target.host}}:{{target.port}}/ok'\n";
    let p = plan(srv.port, step, &[]);
    let rec = run_plan(&p).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    assert_eq!(srv.next().await.line, "GET /ok HTTP/1.1");
}

#[tokio::test]
async fn json_bodies_are_built_structurally() {
    let mut srv = Recorder::start("200 OK", String::new()).await;
    let step = format!(
        "          method: POST\n          url: 'http://127.0.0.1:{}/launch'\n          body:\n            action: restart\n            broker: '{{{{alert.labels.broker}}}}'\n            extra: {{ count: 2, tags: ['{{{{alert.labels.tag}}}}', true] }}\n",
        srv.port
    );
    let cases = [
        (r#"x", "action": "delete"#, r#"x"}{"#),
        (r#"\"}]}, {"a"#, "\u{2028}\\u0000'"),
        ("k1", "plain"),
    ];
    for (broker, tag) in cases {
        let p = plan(srv.port, &step, &[("broker", broker), ("tag", tag)]);
        let rec = run_plan(&p).await;
        assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
        let seen = srv.next().await;
        assert_eq!(seen.header("content-type"), Some("application/json"));
        let got: serde_json::Value = serde_json::from_str(&seen.body).expect("JSON arrived");
        assert_eq!(
            got,
            serde_json::json!({"action": "restart", "broker": broker,
                               "extra": {"count": 2, "tags": [tag, true]}})
        );
        // The journal holds exactly the body sent.
        assert_eq!(p.steps[0].body.as_deref(), Some(seen.body.as_str()));
    }
}

#[tokio::test]
async fn cr_lf_and_nul_are_refused_not_stripped() {
    let mut srv = Recorder::start("200 OK", String::new()).await;
    let step = format!(
        "          method: POST\n          url: 'http://127.0.0.1:{}/x/{{{{alert.labels.a}}}}'\n          body: {{ b: '{{{{alert.labels.b}}}}' }}\n",
        srv.port
    );
    for (a, b, why) in [
        ("ok\r\nX-Injected: 1", "b", "contains `\\r`"),
        ("ok\nHost: evil", "b", "contains `\\n`"),
        ("ok", "line1\nline2", "contains `\\n`"),
        ("ok\0", "b", "NUL"),
    ] {
        let p = plan(srv.port, &step, &[("a", a), ("b", b)]);
        assert_eq!(p.decision, Decision::Skip, "{a:?} {b:?}");
        assert!(p.reason.contains(why), "{} ∌ {why}", p.reason);
        assert!(p.steps.is_empty());
    }
    srv.none();
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut elsewhere = Recorder::start("200 OK", String::new()).await;
    let location = format!("Location: http://127.0.0.1:{}/stolen\r\n", elsewhere.port);
    let mut srv = Recorder::start("307 Temporary Redirect", location).await;
    let step = format!(
        "          method: POST\n          url: 'http://127.0.0.1:{}/launch'\n          body: {{ secret_job: '42' }}\n",
        srv.port
    );
    let p = plan(srv.port, &step, &[]);
    let rec = run_plan(&p).await;
    assert_eq!(rec.status, StepStatus::Failed, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some(
            format!(
                "HTTP 307 Temporary Redirect to `http://127.0.0.1:{}/stolen`: redirects are not followed",
                elsewhere.port
            )
            .as_str()
        )
    );
    assert_eq!(srv.next().await.body, r#"{"secret_job":"42"}"#);
    elsewhere.none();
}

#[tokio::test]
async fn headers_come_from_secrets_and_never_reach_the_journal() {
    let mut srv = Recorder::start("200 OK", String::new()).await;
    let dir = Scratch::new();
    let token = dir.write("awx.token", "tok-123\n");
    let step = format!(
        "          method: POST\n          url: 'http://127.0.0.1:{}/api/v2/job_templates/7/launch/'\n          headers:\n            Authorization: {{ secret_file: '{}', prefix: 'Bearer ' }}\n            Accept: application/json\n",
        srv.port,
        token.display()
    );
    let p = plan(srv.port, &step, &[]);
    let rec = run_plan(&p).await;
    assert_eq!(rec.status, StepStatus::Succeeded, "{rec:?}");
    let seen = srv.next().await;
    assert_eq!(seen.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert!(
        !rec.argv.iter().any(|a| a.contains("tok-123")),
        "{:?}",
        rec.argv
    );
    assert!(rec.argv.iter().any(|a| a.contains("awx.token")));

    // A missing secret fails the step before anything is sent.
    std::fs::remove_file(&token).expect("rm");
    let rec = run_plan(&p).await;
    assert_eq!(rec.status, StepStatus::Failed, "{rec:?}");
    assert!(
        rec.error.as_deref().unwrap_or("").contains("secret_file"),
        "{rec:?}"
    );
    srv.none();
}

/// Writes each rule file of `files` as `rules/rN.yaml` (one case per file, so each error's
/// line is known: line 9, the step's kind key under `      - name: call`), runs the real `check` on `cfg`, and
/// asserts that file N's step has an error containing `want[N]`.
fn check_each(
    s: &Scratch,
    cfg: &std::path::Path,
    files: impl Iterator<Item = String>,
    want: &[&str],
) {
    for (i, text) in files.enumerate() {
        let text = text
            .replace("name: r\n", &format!("name: r{i}\n"))
            .replace("runbook: call\n", &format!("runbook: call{i}\n"))
            .replace("\n  call:\n", &format!("\n  call{i}:\n"));
        s.write(&format!("rules/r{i}.yaml"), &text);
    }
    let o = run(&["check", "-c", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(1));
    let prefix = format!("{}/", s.path().display());
    let err = stderr(&o).replace(&prefix, "");
    for (i, want) in want.iter().enumerate() {
        let at = format!("rules/r{i}.yaml:9: error: ");
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(want)),
            "missing `{at}…{want}` in:\n{err}"
        );
    }
}

#[test]
fn check_refuses_what_could_leak() {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", &crate::common::config_with(""));
    let bad = [
        "          url: 'http://{{alert.labels.instance}}/x'\n",
        "          url: 'http://k1:{{alert.labels.port}}/x'\n",
        "          url: '{{alert.labels.scheme}}://k1/x'\n",
        "          url: 'http://user:pw@k1/x'\n",
        "          url: 'http://k1/x#{{alert.labels.a}}'\n",
        "          url: 'http://k1/{{#if alert.labels.a}}x{{/if}}'\n",
        "          url: http://k1/x\n          method: POST\n          body: 'id={{alert.labels.a}}'\n",
        "          url: http://k1/x\n          headers: { X-Token: '{{alert.labels.a}}' }\n",
        "          url: http://k1/x\n          headers: { Host: evil }\n",
        "          url: http://k1/x\n          headers: { Authorization: Bearer abc }\n",
    ];
    check_each(
        &s,
        &cfg,
        bad.iter().map(|b| rules(b)),
        &[
            "`{{alert.labels.instance}}` is in the host or port",
            "`{{alert.labels.port}}` is in the host or port",
            "must start with literal `http://` or `https://`",
            "credentials in the URL (`user:pw@`) are refused",
            "a URL fragment (`#…`) is never sent",
            "a URL takes only plain values",
            "a string body cannot use `alert.labels.a`",
            "headers are never templates",
            "http header `Host` cannot be set by a step",
            "http header `Authorization` carries a credential: take it from a secret",
        ],
    );
}

/// `wait_for` takes the same rules: its `tcp` address and `http` URL get their host and
/// port from literal text or config only, and a label in a `wait_for: http` path is one
/// encoded segment.
#[test]
fn wait_for_targets_come_from_config_not_alert_data() {
    let s = Scratch::new();
    let cfg = s.write("config.yaml", &crate::common::config_with(""));
    let bad = [
        "          tcp: '{{alert.labels.instance}}'\n",
        "          tcp: '127.0.0.1:{{alert.labels.port}}'\n",
        "          tcp: '{{target.host}}:9092/x'\n",
        "          http: 'http://{{alert.labels.instance}}/health'\n",
        "          http: 'http://k1:8080/{{#if alert.labels.a}}x{{/if}}'\n",
    ];
    let files = bad.iter().map(|b| {
        rules(&format!("{b}          timeout: 5s\n"))
            .replace("        http:\n", "        wait_for:\n")
    });
    check_each(
        &s,
        &cfg,
        files,
        &[
            "wait_for tcp: `{{alert.labels.instance}}` is in the host or port",
            "wait_for tcp: `{{alert.labels.port}}` is in the host or port",
            "wait_for tcp: `{{target.host}}:9092/x` is not host:port",
            "wait_for http: `{{alert.labels.instance}}` is in the host or port",
            "wait_for http: `{{#if alert.labels.a}}`: a URL takes only plain values",
        ],
    );
    // Config values are fine, and a label in the path stays one segment.
    let (set, diags) = load_rule_texts(vec![(
        PathBuf::from("rules.yaml"),
        Ok(rules(
            "          http: 'http://{{target.host}}:8080/topics/{{alert.labels.topic}}'\n          timeout: 5s\n",
        )
        .replace("        http:\n", "        wait_for:\n")),
    )]);
    assert!(!diags.has_errors(), "{diags}");
    let alert = Alert {
        status: AlertStatus::Firing,
        labels: [
            ("alertname", "Hostile"),
            ("node_id", "kafka-1"),
            ("topic", "../../admin?all=1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: BTreeMap::new(),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        fingerprint: "f".into(),
        external_url: String::new(),
    };
    let plans = plan_alert(&config(9), &set, &alert);
    assert_eq!(plans[0].decision, Decision::Run, "{}", plans[0].reason);
    assert_eq!(
        plans[0].steps[0].argv,
        [
            "http",
            "http://127.0.0.1:8080/topics/..%2F..%2Fadmin%3Fall%3D1"
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// A bounded run of the `http` fuzz target with values built from the characters that
    /// matter in a URL or a JSON document.
    #[test]
    fn fuzz_http_step_bounded(
        a in r#"[./?#&=@:%\\"{}\[\] +a-z0-9\r\n\x00é]{0,12}"#,
        b in r#"[./?#&=@:%\\"{}\[\] +a-z0-9\r\n\x00é]{0,12}"#,
        c in r#"[./?#&=@:%\\"{}\[\] +a-z0-9\r\n\x00é]{0,12}"#,
    ) {
        let input = format!("{a}\u{1}{b}\u{1}{c}");
        kafka_healing::fuzzing::http_step(input.as_bytes());
    }
}
