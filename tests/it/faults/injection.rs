//! The injection corpus (`tests/data/hostile-values.txt`, escape scheme at its top) through
//! webhook → runbook → email: each value, as a label and as an annotation, reaches argv as
//! exactly one element byte for byte (or is refused with a clear reason: NUL, or over the
//! kernel's 128 KiB per-argument limit), no command hidden in a value runs (canary files),
//! and no email gets an injected header or recipient (raw messages at the SMTP sink).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kafka_healing::journal::Journal;

use crate::common::Scratch;
use crate::mailbox::{FROM, SmtpServer};
use crate::serve::harness::*;

use super::{journal_db, poll};

/// Linux's MAX_ARG_STRLEN: the longest argv element, with its NUL.
const MAX_ARG_STRLEN: usize = 128 * 1024;
/// The longest argv element the runbook makes of a value: `--x=VALUE`.
const PREFIX: &str = "--x=";

/// Decodes one line of the corpus (see the file's header).
fn decode(line: &str, canary: &str) -> String {
    if let Some(rest) = line.strip_prefix("!repeat ") {
        let (n, text) = rest.split_once(' ').expect("!repeat N TEXT");
        return decode(text, canary).repeat(n.parse().expect("repeat count"));
    }
    if line == "\\e" {
        return String::new();
    }
    let line = line.replace("@CANARY@", canary);
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "\\u{{HEX}} in {line:?}");
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let cp = u32::from_str_radix(&hex, 16).expect("hex code point");
                out.push(char::from_u32(cp).expect("a Unicode scalar value"));
            }
            other => panic!("unknown escape \\{other:?} in {line:?}"),
        }
    }
    out
}

/// The corpus, decoded.
pub(crate) fn corpus(canary: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/hostile-values.txt"
    ))
    .expect("corpus");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| decode(l, canary))
        .collect()
}

fn rules(rec: &str) -> String {
    format!(
        r#"rules:
  - name: inject
    matchers: ['alertname="Inject"']
    runbook: inject
    params:
      i: "{{{{alert.labels.idx}}}}"
runbooks:
  inject:
    disruptive: false
    steps:
      - name: record
        exec: ["{rec}", "inj-{{{{params.i}}}}", "{{{{alert.labels.v}}}}", "{{{{alert.annotations.a}}}}", "{PREFIX}{{{{alert.labels.v}}}}"]
      - name: echo
        exec: ["printf", "%s", "{{{{alert.annotations.a}}}}"]
"#
    )
}

/// The names of the header fields of a raw message, in order.
fn header_names(eml: &str) -> Vec<String> {
    let head = eml
        .split("\r\n\r\n")
        .next()
        .expect("a header section")
        .to_string();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| {
            l.split_once(':')
                .map(|(n, _)| n.to_ascii_lowercase())
                .unwrap_or_else(|| panic!("header line without a name: {l:?}"))
        })
        .collect()
}

/// (execution status, its first failed step's error, reason) per `idx`.
fn outcomes(dir: &Path) -> BTreeMap<usize, (String, String, String)> {
    let db = journal_db(dir);
    let mut st = db
        .prepare(
            "SELECT json_extract(e.plan, '$.params.i'), e.status, e.reason, \
             COALESCE((SELECT error FROM steps s WHERE s.execution_id = e.id AND s.error IS NOT NULL \
                       ORDER BY idx LIMIT 1), '') \
             FROM executions e WHERE e.rule = 'inject'",
        )
        .expect("prepare");
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .map(|(i, status, reason, error)| (i.parse().expect("idx"), (status, error, reason)))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_through_webhook_runbook_and_email_stay_inert() {
    let s = Scratch::new();
    let canary = format!("{}/canary-", s.path().display());
    let values = corpus(&canary);
    assert!(values.len() >= 200, "{} values", values.len());
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let cfg = config(&format!(
        "recovery: {{ max_attempts: 1 }}\nnotifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    from_email: {FROM}\n    to_emails: [oncall@example.com]\n    timeout_seconds: 5\n",
        smtp.port
    ));
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().expect("utf-8 path")));
    for (i, v) in values.iter().enumerate() {
        let mut a = alert(
            "firing",
            serde_json::json!({"alertname": "Inject", "idx": i.to_string(), "v": v}),
        );
        a["annotations"]["a"] = serde_json::Value::String(v.clone());
        let (st, body) = srv.post(&webhook("r", vec![a])).await;
        assert_eq!(st, 200, "value {i} {:?}: {body}", trim(v));
    }
    let n = values.len();
    let finished = poll(120, || {
        outcomes(s.path())
            .values()
            .filter(|(st, _, _)| matches!(st.as_str(), "succeeded" | "failed" | "skipped"))
            .count()
            == n
    });
    assert!(finished, "not every value was decided; log:\n{}", srv.log());

    let out = outcomes(s.path());
    let (mut ran, mut nul, mut too_long) = (0, 0, 0);
    for (i, v) in values.iter().enumerate() {
        let (status, error, reason) = &out[&i];
        let calls = recorded(s.path(), &format!("inj-{i}"));
        if v.contains('\0') {
            assert_eq!(status, "skipped", "value {i}");
            assert!(reason.contains("NUL byte"), "value {i}: {reason}");
            assert!(calls.is_empty(), "value {i} with NUL ran");
            nul += 1;
        } else if PREFIX.len() + v.len() + 1 > MAX_ARG_STRLEN {
            assert_eq!(status, "failed", "value {i}");
            assert!(
                error.contains("Argument list too long"),
                "value {i}: {error}"
            );
            assert!(calls.is_empty(), "value {i} over the argv limit ran");
            too_long += 1;
        } else {
            assert_eq!(
                status,
                "succeeded",
                "value {i} {:?}: {reason} {error}",
                trim(v)
            );
            assert_eq!(calls.len(), 1, "value {i}: ran once");
            let argv = &calls[0].2;
            assert_eq!(
                argv,
                &vec![v.clone(), v.clone(), format!("{PREFIX}{v}")],
                "value {i} {:?}: one argv element each, byte for byte",
                trim(v)
            );
            ran += 1;
        }
    }
    assert!(nul >= 4 && too_long >= 1 && ran + nul + too_long == n);

    let canaries: Vec<String> = std::fs::read_dir(s.path())
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("canary"))
        .collect();
    assert!(canaries.is_empty(), "injected commands ran: {canaries:?}");

    // Every outcome message is delivered (the outbox folds messages with the same key into
    // one), to on-call only, with the headers every other message has.
    let db = s.path().join("state/journal.db");
    let delivered = poll(60, || {
        Journal::open_read_only(&db)
            .and_then(|j| j.pending_mails())
            .is_ok_and(|p| p.is_empty())
            && !smtp.received().is_empty()
    });
    assert!(delivered, "the outbox did not empty; log:\n{}", srv.log());
    let received = smtp.received();
    let reference = header_names(&received[0].0);
    for name in ["from", "to", "subject"] {
        assert_eq!(
            reference.iter().filter(|h| *h == name).count(),
            1,
            "{reference:?}"
        );
    }
    for (eml, meta) in &received {
        assert_eq!(meta["mail_from"], FROM);
        assert_eq!(meta["rcpt_tos"], serde_json::json!(["oncall@example.com"]));
        let names = header_names(eml);
        assert_eq!(names, reference, "same header fields in every message");
        let head = eml.split("\r\n\r\n").next().unwrap_or("");
        assert!(!head.contains("evil@example.org"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("x-injected"), "{head}");
    }
    eprintln!(
        "injection: {n} values; {ran} ran byte for byte, {nul} refused (NUL), {too_long} refused (E2BIG); {} messages",
        received.len()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A value shortened for messages.
fn trim(v: &str) -> String {
    v.chars().take(60).collect()
}
