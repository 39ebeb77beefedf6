//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, kept in the library so that the
//! targets (under `cargo +nightly fuzz`) and the corpus replay test (`tests/it/fuzz.rs`,
//! under plain `cargo test`) run the same code. Each function takes the raw fuzz input,
//! must never panic, and asserts the invariants of the part it drives.
//!
//! Not part of the service's interface.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use crate::config::{Config, load_text};
use crate::engine::{Decision, plan_alert, plan_payload};
use crate::expo::{Sample, parse};
use crate::ingest::{Alert, AlertStatus, parse_webhook};
use crate::rules::{Matcher, RuleSet, load_rule_texts};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus folder (`fuzz/corpus/NAME`).
pub const TARGETS: &[(&str, Target)] = &[
    ("expo", expo),
    ("webhook", webhook),
    ("rules", rule_file),
    ("config", config_file),
    ("matcher", matcher),
    ("template", template),
    ("http", http_step),
];

const CONFIG: &str = "cluster:
  name: fuzz
  kafka_brokers:
    - { node_id: kafka-1, host: k1.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-2, host: k2.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-3, host: k3.example.com, port: 9092, jmx_port: 9404 }
";

/// The template target's rule: five argv elements, four of them fed by hostile values.
const TEMPLATE_RULES: &str = r#"
rules:
  - name: hostile
    matchers: ['alertname="Fuzz"']
    runbook: echo
runbooks:
  echo:
    steps:
      - name: echo
        exec: ["/bin/echo", "{{alert.labels.a}}", "x{{alert.labels.b}}y", "{{alert.annotations.c}}", "--opt={{alert.labels.a}}{{alert.labels.b}}"]
"#;

/// The http target's rule: hostile values in the path, the query and a JSON body.
const HTTP_RULES: &str = r#"
rules:
  - name: hostile-http
    matchers: ['alertname="Fuzz"']
    runbook: call
runbooks:
  call:
    steps:
      - name: call
        http:
          method: POST
          url: "https://api.example.com:8443/v1/{{alert.labels.a}}/x{{alert.labels.b}}y?q={{alert.labels.b}}&r=1&s={{alert.annotations.c}}"
          body:
            action: restart
            broker: "{{alert.labels.a}}"
            note: "b={{alert.labels.b}}."
            nested: { list: ["{{alert.annotations.c}}", 2, true] }
"#;

/// The number of elements of the template target's argv template.
const TEMPLATE_ARGC: usize = 5;

fn fixture(files: &[(&str, &str)]) -> (Config, RuleSet) {
    let loaded = match load_text(CONFIG, Path::new("fuzz/config.yaml"), HashMap::new()) {
        Ok(l) => l,
        Err(e) => panic!("the fuzz config loads: {e}"),
    };
    let (set, diags) = load_rule_texts(
        files
            .iter()
            .map(|(name, text)| (PathBuf::from(name), Ok(text.to_string())))
            .collect(),
    );
    assert!(!diags.has_errors(), "the fuzz rules load: {diags}");
    (loaded.config, set)
}

/// The shipped rule pack (`rules/kafka.yaml` with the systemctl restart flavour, as
/// `examples/config.yaml` loads it) over three brokers.
static SHIPPED: LazyLock<(Config, RuleSet)> = LazyLock::new(|| {
    fixture(&[
        ("rules/kafka.yaml", include_str!("../rules/kafka.yaml")),
        (
            "rules/restart/systemctl.yaml",
            include_str!("../rules/restart/systemctl.yaml"),
        ),
    ])
});
static HOSTILE: LazyLock<(Config, RuleSet)> =
    LazyLock::new(|| fixture(&[("rules.yaml", TEMPLATE_RULES)]));
static HOSTILE_HTTP: LazyLock<(Config, RuleSet)> =
    LazyLock::new(|| fixture(&[("rules.yaml", HTTP_RULES)]));

/// The exposition parser: never panics, errors name a line of the input, and whatever it
/// accepts survives a render-and-parse round trip unchanged.
pub fn expo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::expo::Parser::new(&text).count();
    match parse(&text) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}"),
        Ok(samples) => {
            let again = render_expo(&samples);
            let reparsed = match parse(&again) {
                Ok(r) => r,
                Err(e) => panic!("a rendered body parses: {e}\n{again}"),
            };
            assert_eq!(reparsed.len(), samples.len());
            for (a, b) in samples.iter().zip(&reparsed) {
                assert_eq!(
                    (a.name, &a.labels, a.timestamp_ms),
                    (b.name, &b.labels, b.timestamp_ms)
                );
                assert!(
                    a.value.to_bits() == b.value.to_bits() || a.value.is_nan() && b.value.is_nan()
                );
            }
        }
    }
}

/// Renders samples back to exposition text with correct escaping.
fn render_expo(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for s in samples {
        out.push_str(s.name);
        out.push('{');
        for (k, v) in &s.labels {
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push_str("\",");
        }
        out.push_str("} ");
        out.push_str(&if s.value.is_nan() {
            "NaN".to_string()
        } else {
            format!("{:e}", s.value)
        });
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {ts}"));
        }
        out.push('\n');
    }
    out
}

/// A webhook body through the server's parser (`parse_webhook`) and `dry-run`'s planner
/// (`plan_payload`) with the shipped rule pack (systemctl flavour): never panics; a plan that runs has steps
/// and one that is skipped has none and says why; at most one plan runs per work key;
/// the plans serialize (as `dry-run --json` prints them).
pub fn webhook(data: &[u8]) {
    let Ok(payload) = parse_webhook(data) else {
        return;
    };
    let (cfg, rules) = &*SHIPPED;
    let set = plan_payload(cfg, rules, &payload);
    let mut keys = std::collections::HashSet::new();
    for p in &set.plans {
        match p.decision {
            Decision::Run => {
                assert!(!p.steps.is_empty(), "a plan that runs has steps: {p:?}");
                assert_eq!(p.status, AlertStatus::Firing);
                assert!(keys.insert(p.work_key()), "one run per work key: {p:?}");
            }
            Decision::Skip => {
                assert!(p.steps.is_empty(), "a skipped plan has no steps: {p:?}");
                assert!(!p.reason.is_empty(), "a skipped plan says why: {p:?}");
            }
        }
    }
    if let Err(e) = serde_json::to_string(&set) {
        panic!("plans serialize: {e}");
    }
}

/// A rule file through the loader and every check `check` makes: never panics; when it
/// has no errors, every rule names a runbook that exists.
pub fn rule_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (set, diags) = load_rule_texts(vec![(PathBuf::from("fuzz.yaml"), Ok(text.to_string()))]);
    let _ = diags.to_string();
    if !diags.has_errors() {
        for r in &set.rules {
            assert!(
                set.runbooks.contains_key(&r.runbook),
                "rule `{}` names runbook `{}`",
                r.name,
                r.runbook
            );
        }
    }
}

/// A config file through the loader (layers, `${NAME}` expansion, validation): never
/// panics; errors are diagnostics. Inputs naming device or proc files are skipped (a
/// `*_file` secret pointing at `/dev/zero` would only measure the machine's memory).
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys", ".."]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    let env = HashMap::from([("FUZZ".to_string(), "value".to_string())]);
    match load_text(text, Path::new("/nonexistent/fuzz/config.yaml"), env) {
        Ok(l) => {
            assert!(!l.warnings.has_errors());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The Alertmanager matcher parser: never panics, and a parsed matcher printed and parsed
/// again is the same matcher that matches the same labels.
pub fn matcher(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (spec, label) = text.split_once('\u{1}').unwrap_or((text, ""));
    let Ok(m) = Matcher::parse(spec) else {
        return;
    };
    let printed = m.to_string();
    let again = match Matcher::parse(&printed) {
        Ok(a) => a,
        Err(e) => panic!("{spec:?} printed as {printed:?} does not parse: {e}"),
    };
    assert_eq!(
        (&m.name, m.op, &m.value),
        (&again.name, again.op, &again.value),
        "{spec:?} printed as {printed:?}"
    );
    let labels = BTreeMap::from([(m.name.clone(), label.to_string())]);
    assert_eq!(m.matches(&labels), again.matches(&labels));
    let _ = m.matches(&BTreeMap::new());
}

/// Hostile label and annotation values (the input split at `\x01` into `a`, `b`, `c`)
/// rendered into a five-element argv: never panics; the argv has exactly five elements
/// holding each value byte for byte; a value with a NUL byte is refused with that reason
/// and nothing runs.
pub fn template(data: &[u8]) {
    let (a, b, c) = three(data);
    let (cfg, rules) = &*HOSTILE;
    let alert = hostile_alert(&a, &b, &c);
    let plans = plan_alert(cfg, rules, &alert);
    assert_eq!(plans.len(), 1, "the rule matches");
    let p = &plans[0];
    if a.contains('\0') || b.contains('\0') || c.contains('\0') {
        assert_eq!(p.decision, Decision::Skip, "{p:?}");
        assert!(p.reason.contains("NUL"), "{}", p.reason);
        return;
    }
    assert_eq!(p.decision, Decision::Run, "{}", p.reason);
    let argv = &p.steps[0].argv;
    assert_eq!(argv.len(), TEMPLATE_ARGC);
    assert_eq!(
        argv[1..],
        [a.clone(), format!("x{b}y"), c, format!("--opt={a}{b}")]
    );
}

/// The input split at `\x01` into three values.
fn three(data: &[u8]) -> (String, String, String) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let mut next = || parts.next().unwrap_or("").to_string();
    (next(), next(), next())
}

/// An alert with labels `a`, `b` and annotation `c`.
fn hostile_alert(a: &str, b: &str, c: &str) -> Alert {
    Alert {
        status: AlertStatus::Firing,
        labels: BTreeMap::from([
            ("alertname".to_string(), "Fuzz".to_string()),
            ("a".to_string(), a.to_string()),
            ("b".to_string(), b.to_string()),
        ]),
        annotations: BTreeMap::from([("c".to_string(), c.to_string())]),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        fingerprint: "0".into(),
        external_url: String::new(),
    }
}

/// Hostile values (the input split at `\x01` into labels `a`, `b` and annotation `c`) in
/// an `http` step's path, query and JSON body: never panics; a value with NUL, CR or LF,
/// or one that would make a `.`/`..` path segment, is refused with that reason; otherwise
/// scheme, host, port and path prefix are the template's, each value comes back byte for
/// byte from its path segment or query value, and the body is JSON of the template's shape
/// holding each value byte for byte.
pub fn http_step(data: &[u8]) {
    let (a, b, c) = three(data);
    let (cfg, rules) = &*HOSTILE_HTTP;
    let plans = plan_alert(cfg, rules, &hostile_alert(&a, &b, &c));
    assert_eq!(plans.len(), 1, "the rule matches");
    let p = &plans[0];
    // Values render in the order they appear: a and b in the path, then c.
    let bad = |v: &str| {
        if v.contains('\0') {
            Some("NUL")
        } else if v.contains(['\r', '\n']) {
            Some("CR, LF and NUL are refused")
        } else {
            None
        }
    };
    let dot = (a == "." || a == "..").then_some("path segment");
    let refused = bad(&a).or(bad(&b)).or(dot).or(bad(&c));
    if let Some(why) = refused {
        assert_eq!(p.decision, Decision::Skip, "{p:?}");
        assert!(p.reason.contains(why), "{} ∌ {why}", p.reason);
        return;
    }
    assert_eq!(p.decision, Decision::Run, "{}", p.reason);
    let step = &p.steps[0];
    let [method, url, content_type] = step.argv.as_slice() else {
        panic!("argv is [METHOD, URL, content type]: {:?}", step.argv);
    };
    assert_eq!(method, "POST");
    assert_eq!(content_type, r#"["content-type","application/json"]"#);
    let u = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => panic!("{url:?} parses: {e}"),
    };
    assert_eq!(u.as_str(), url, "sent as journaled");
    assert_eq!(
        (
            u.scheme(),
            u.host_str(),
            u.port(),
            u.username(),
            u.password()
        ),
        ("https", Some("api.example.com"), Some(8443), "", None),
        "{url}"
    );
    assert_eq!(u.fragment(), None, "{url}");
    let segs: Vec<String> = u
        .path()
        .split('/')
        .map(|s| decode(s).unwrap_or_else(|| panic!("{s:?} decodes")))
        .collect();
    assert_eq!(segs, ["", "v1", a.as_str(), &format!("x{b}y")], "{url}");
    let query: Vec<(String, String)> = u
        .query()
        .unwrap_or("")
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let d = |s: &str| decode(s).unwrap_or_else(|| panic!("{s:?} decodes"));
            (d(k), d(v))
        })
        .collect();
    let want = [("q", &b), ("r", &"1".to_string()), ("s", &c)]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(query, want, "{url}");
    let body: serde_json::Value = match serde_json::from_str(step.body.as_deref().unwrap_or("")) {
        Ok(v) => v,
        Err(e) => panic!("the body is JSON: {e}: {:?}", step.body),
    };
    assert_eq!(
        body,
        serde_json::json!({
            "action": "restart",
            "broker": a,
            "note": format!("b={b}."),
            "nested": { "list": [c, 2, true] },
        })
    );
}

/// Percent-decodes `s` as UTF-8; `None` if it is not.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
