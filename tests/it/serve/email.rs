//! Email, end to end: kafka-healing runs a runbook and the outcome crosses a real socket to
//! a real SMTP server (aiosmtpd). Outages, restarts, the rate limit and escalations.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::harness::*;
use crate::common::Scratch;
use crate::mailbox::{SmtpServer, free_port, headers, parse_eml, pki, strings};

fn rules(rec: &str, exit_file_rule_extra: &str) -> String {
    format!(
        r#"rules:
  - name: broker-down
    description: restart a broker that stopped
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
    notify: [team@example.com]
{exit_file_rule_extra}
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["{rec}", "run", "{{{{target.host}}}}"]
"#
    )
}

fn smtp_cfg(port: u16, extra: &str) -> String {
    format!(
        "notifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    from_email: kafka-healing@example.com\n    to_emails: [oncall@example.com]\n    timeout_seconds: 5\n{extra}"
    )
}

async fn wait_mail(smtp: &SmtpServer, n: usize, secs: u64) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = smtp.received();
        if got.len() >= n {
            return got;
        }
        if Instant::now() > deadline {
            panic!("expected {n} message(s), got {}: {got:?}", got.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn part<'a>(parsed: &'a Value, ty: &str) -> &'a str {
    parsed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == ty)
        .and_then(|p| p["body"].as_str())
        .unwrap_or_else(|| panic!("no {ty} part in {parsed}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn outcome_mail_reaches_oncall_with_both_parts_and_hostile_labels_defused() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let srv = Server::start(
        &s,
        &config(&smtp_cfg(smtp.port, "")),
        &rules(rec.to_str().unwrap(), ""),
    );
    let mut labels = down("kafka-1");
    labels["v"] = json!("<script>alert(1)</script>\r\nBcc: evil@example.com");
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", labels)]))
            .await
            .0,
        200
    );
    let got = wait_mail(&smtp, 1, 20).await;
    let (eml, meta) = &got[0];
    assert_eq!(
        strings(&meta["rcpt_tos"]),
        ["oncall@example.com", "team@example.com"],
        "{meta}"
    );
    let parsed = parse_eml(eml);
    assert_eq!(
        headers(&parsed, "Subject"),
        ["[kafka-healing] RECOVERED kafka-1 (broker-down) test"]
    );
    assert!(
        headers(&parsed, "Bcc").is_empty(),
        "a label never adds a header"
    );
    assert_eq!(parsed["content_type"], "multipart/alternative");
    let text = part(&parsed, "text/plain");
    let html = part(&parsed, "text/html");
    assert!(
        text.contains("Outcome:   succeeded: all 1 step(s) succeeded"),
        "{text}"
    );
    assert!(text.contains("What happens next"), "{text}");
    assert!(
        text.contains(&format!("$ {} run k1.example.com", rec.display())),
        "{text}"
    );
    // No `alertmanager.url` is configured: the payload's externalURL is only text.
    assert!(
        text.contains(
            "Alertmanager (not a configured one, so no silence link): \
             http://alertmanager.example.com"
        ),
        "{text}"
    );
    assert!(!text.contains("Silence it:"), "{text}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "HTML escapes alert data");
    // The journal records it as sent.
    let j = kafka_healing::journal::Journal::open_read_only(&s.path().join("state/journal.db"))
        .unwrap();
    let mails = j.recent_mails(10).unwrap();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].sent_ms.is_some());
    assert_eq!(
        mails[0].mail.execution_id,
        Some(srv.executions().await[0]["id"].as_i64().unwrap())
    );
    assert!(!srv.log().contains("dry_run is on"), "{}", srv.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_outage_queues_mail_and_a_restart_delivers_each_once() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let port = free_port(); // nothing listens: the SMTP server is down
    let mut srv = Server::start(
        &s,
        &config(&smtp_cfg(port, "")),
        &rules(rec.to_str().unwrap(), ""),
    );
    let body = webhook(
        "r",
        vec![
            alert("firing", down("kafka-1")),
            alert("firing", down("kafka-2")),
        ],
    );
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(20, "both executions", |l| {
        l.iter().filter(|e| e["status"] == "succeeded").count() == 2
    })
    .await;
    // Remediation went on; the mail waits with the reason it failed.
    let db = s.path().join("state/journal.db");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = kafka_healing::journal::Journal::open_read_only(&db).unwrap();
        let pending = j.pending_mails().unwrap();
        if pending.len() == 2 && pending.iter().all(|m| m.attempts >= 1) {
            assert!(
                pending[0]
                    .last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("cannot connect"),
                "{pending:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mails not queued with failures: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = srv.metrics().await;
    assert!(m.contains("kafka_healing_outbox_depth 2"), "{m}");
    // Restart kafka-healing with the full outbox, then bring SMTP back.
    srv.signal(Signal::SIGTERM);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = srv.child.wait();
        drop(srv);
    })
    .await;
    let srv = Server::start_in(s.path());
    let smtp = SmtpServer::start_on(s.path(), port, &[]);
    let got = wait_mail(&smtp, 2, 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.received().len(), 2, "each message delivered once");
    let subjects: Vec<String> = got
        .iter()
        .map(|(e, _)| headers(&parse_eml(e), "Subject")[0].clone())
        .collect();
    assert!(subjects.contains(&"[kafka-healing] RECOVERED kafka-1 (broker-down) test".to_string()));
    assert!(subjects.contains(&"[kafka-healing] RECOVERED kafka-2 (broker-down) test".to_string()));
    drop(srv);
}

/// Two mails for one (rule, target) wait out an SMTP outage and go out as one: the summary
/// says they were held because the server could not take them, with the error, not by the
/// rate limit (which is off here).
#[tokio::test(flavor = "multi_thread")]
async fn mail_held_by_an_smtp_outage_says_why() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let port = free_port(); // nothing listens: the SMTP server is down
    let cfg = config(&smtp_cfg(port, "")) + "recovery: { cooldown_seconds: 0, max_attempts: 10 }\n";
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    for i in 1..=2 {
        let body = webhook("r", vec![alert("firing", down("kafka-1"))]);
        assert_eq!(srv.post(&body).await.0, 200);
        srv.wait_until(20, "the run", |l| {
            l.iter().filter(|e| e["status"] == "succeeded").count() == i
        })
        .await;
    }
    let db = s.path().join("state/journal.db");
    let pending = || {
        kafka_healing::journal::Journal::open_read_only(&db)
            .unwrap()
            .pending_mails()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(pending().len() == 2 && pending().iter().all(|m| m.attempts >= 1)) {
        assert!(
            Instant::now() < deadline,
            "not both failed: {:?}",
            pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.signal(Signal::SIGTERM);
    let _ = tokio::task::spawn_blocking(move || {
        let mut srv = srv;
        let _ = srv.child.wait();
    })
    .await;
    // Both due before the next start, so its first round takes them together.
    let due = pending().iter().map(|m| m.next_attempt_ms).max().unwrap();
    let wait = (due - kafka_healing::clock::now_ms()).max(0) as u64 + 100;
    assert!(wait < 60_000, "retry backoff of {wait} ms");
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let smtp = SmtpServer::start_on(s.path(), port, &[]);
    let _srv = Server::start_in(s.path());
    let got = wait_mail(&smtp, 1, 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.received().len(), 1, "the two went out as one");
    let parsed = parse_eml(&got[0].0);
    assert_eq!(
        headers(&parsed, "Subject"),
        ["[kafka-healing] RECOVERED kafka-1 (broker-down) test (+1 earlier)"]
    );
    let text = part(&parsed, "text/plain");
    assert!(
        text.contains(
            "Also since the last email (1 held while the SMTP server could not take them; \
             last error: cannot connect"
        ),
        "{text}"
    );
    assert!(!text.contains("rate limit"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_auth_failure_keeps_the_mail_queued_until_fixed() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let pki = pki(s.path());
    let smtp = SmtpServer::start(
        s.path(),
        &[
            "--starttls-cert",
            pki.cert.to_str().unwrap(),
            "--starttls-key",
            pki.key.to_str().unwrap(),
            "--auth",
            "alice:right",
        ],
    );
    let tls = |pw: &str| {
        smtp_cfg(
            smtp.port,
            &format!(
                "    username: alice\n    password: {pw}\n    ca_file: {}\n",
                pki.ca.display()
            ),
        )
        .replace("tls: none", "tls: starttls")
    };
    let srv = Server::start(
        &s,
        &config(&tls("wrong")),
        &rules(rec.to_str().unwrap(), ""),
    );
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", down("kafka-3"))]))
            .await
            .0,
        200
    );
    let db = s.path().join("state/journal.db");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let j = kafka_healing::journal::Journal::open_read_only(&db).unwrap();
        let p = j.pending_mails().unwrap();
        if let Some(m) = p.first().filter(|m| m.attempts >= 1) {
            let e = m.last_error.clone().unwrap_or_default();
            assert!(e.contains("authentication") || e.contains("AUTH"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(smtp.received().is_empty());
    // Fix the password and reload: the queued message goes out, over TLS, authenticated.
    s.write("config.yaml", &config(&tls("right")));
    assert_eq!(srv.post_path("/-/reload").await.0, 200);
    let got = wait_mail(&smtp, 1, 20).await;
    assert_eq!(got[0].1["tls"], true, "{}", got[0].1);
    assert_eq!(got[0].1["auth_user"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_holds_back_and_folds_into_one_summary() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let cfg =
        config(&smtp_cfg(smtp.port, "").replace("rate_limit_seconds: 0", "rate_limit_seconds: 3"))
            + "recovery: { cooldown_seconds: 0, max_attempts: 10 }\n";
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    for i in 1..=3 {
        assert_eq!(
            srv.post(&webhook("r", vec![alert("firing", down("kafka-1"))]))
                .await
                .0,
            200
        );
        srv.wait_until(20, "the run", |l| {
            l.iter().filter(|e| e["status"] == "succeeded").count() == i
        })
        .await;
    }
    let first = wait_mail(&smtp, 1, 10).await;
    assert_eq!(first.len(), 1, "only one mail inside the window");
    let got = wait_mail(&smtp, 2, 15).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        smtp.received().len(),
        2,
        "the held-back ones went out together"
    );
    let second = parse_eml(&got[1].0);
    assert_eq!(
        headers(&second, "Subject"),
        ["[kafka-healing] RECOVERED kafka-1 (broker-down) test (+1 earlier)"]
    );
    let text = part(&second, "text/plain");
    assert!(
        text.contains("Also since the last email (1 held back by the rate limit):"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn escalations_reach_the_escalation_list() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("exit", "1");
    // oncall@ is refused by the server: its messages stay undeliverable.
    let smtp = SmtpServer::start(s.path(), &["--reject-rcpt", "oncall@example.com"]);
    let esc =
        "  escalation:\n    to_emails: [boss@example.com]\n    undeliverable_after_seconds: 1\n";
    let cfg = config(
        &smtp_cfg(smtp.port, "").replace("notifications:\n", &format!("notifications:\n{esc}")),
    ) + "recovery: { max_attempts: 1 }\n";
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", down("kafka-2"))]))
            .await
            .0,
        200
    );
    // The circuit opens (1/1 attempts failed): escalation to boss@; and the FAILED outcome
    // to oncall@ is undeliverable, which after 1 s is escalated too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let subjects = loop {
        let subjects: Vec<(Vec<String>, String)> = smtp.envelopes();
        if subjects.len() >= 2 {
            break subjects;
        }
        assert!(
            Instant::now() < deadline,
            "escalations not delivered: {subjects:?}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        subjects
            .iter()
            .all(|(to, _)| to == &vec!["boss@example.com".to_string()]),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|(_, s)| s == "[kafka-healing] ESCALATION kafka-2 (broker-down) test"),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|(_, s)| s.starts_with("[kafka-healing] ESCALATION email undeliverable for 0 min: [kafka-healing] FAILED kafka-2")),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_interrupted_by_a_crash_is_escalated_after_restart() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "30");
    let smtp = SmtpServer::start(s.path(), &[]);
    let esc = "  escalation:\n    to_emails: [boss@example.com]\n";
    let cfg = config(
        &smtp_cfg(smtp.port, "").replace("notifications:\n", &format!("notifications:\n{esc}")),
    );
    let mut srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", down("kafka-3"))]))
            .await
            .0,
        200
    );
    srv.wait_until(10, "running", |l| {
        l.iter().any(|e| e["status"] == "running")
    })
    .await;
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    drop(srv);
    s.write("sleep", "0");
    let _srv = Server::start_in(s.path());
    let got = wait_mail(&smtp, 1, 20).await;
    let parsed = parse_eml(&got[0].0);
    assert_eq!(strings(&got[0].1["rcpt_tos"]), ["boss@example.com"]);
    assert_eq!(
        headers(&parsed, "Subject"),
        ["[kafka-healing] ESCALATION kafka-3 (broker-down) test"]
    );
    let text = part(&parsed, "text/plain");
    assert!(
        text.contains("a human is needed: an execution was interrupted"),
        "{text}"
    );
    assert!(text.contains("never re-run blindly"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_mails_what_would_have_run() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let cfg = config(&smtp_cfg(smtp.port, "")) + "recovery: { dry_run: true }\n";
    let _srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    assert_eq!(
        _srv.post(&webhook("r", vec![alert("firing", down("kafka-1"))]))
            .await
            .0,
        200
    );
    let got = wait_mail(&smtp, 1, 20).await;
    let parsed = parse_eml(&got[0].0);
    assert_eq!(
        headers(&parsed, "Subject"),
        ["[kafka-healing] DRY-RUN kafka-1 (broker-down) test"]
    );
    let text = part(&parsed, "text/plain");
    assert!(text.contains("1. restart [exec] not run"), "{text}");
    assert!(
        text.contains(&format!("$ {} run k1.example.com", rec.display())),
        "{text}"
    );
    assert!(recorded(s.path(), "run").is_empty(), "nothing executed");
    // Said once, at start, so that whoever reads the log knows nothing will run.
    let log = _srv.log();
    assert_eq!(
        log.matches("recovery.dry_run is on: runbooks are recorded and mailed, never run")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_used_up_by_a_new_alert_escalate_by_email() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let esc = "  escalation:\n    to_emails: [boss@example.com]\n";
    let cfg = config(
        &smtp_cfg(smtp.port, "").replace("notifications:\n", &format!("notifications:\n{esc}")),
    ) + "recovery: { max_attempts: 1, cooldown_seconds: 0 }\n";
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap(), ""));
    let body = webhook("r", vec![alert("firing", down("kafka-1"))]);
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(20, "success", |l| {
        l.iter().any(|e| e["status"] == "succeeded")
    })
    .await;
    // The alert keeps firing: the next notification finds the attempts used up.
    assert_eq!(srv.post(&body).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<(Vec<String>, String)> = smtp.envelopes();
        if let Some((to, _)) = got
            .iter()
            .find(|(_, s)| s.starts_with("[kafka-healing] ESCALATION kafka-1"))
        {
            assert_eq!(to, &vec!["boss@example.com".to_string()]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no escalation mail: {got:?}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `href` value in `html`, in order.
fn hrefs(html: &str) -> Vec<&str> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn attacker_links_in_a_payload_are_shown_as_text_never_as_links() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let smtp = SmtpServer::start(s.path(), &[]);
    let am = "alertmanager:\n  url: http://am.example.com:9093/\n";
    let srv = Server::start(
        &s,
        &config(&format!("{am}{}", smtp_cfg(smtp.port, ""))),
        &rules(rec.to_str().unwrap(), ""),
    );
    // Alertmanager 0.25's own request, made hostile.
    let fixture = std::fs::read_to_string("examples/alerts/firing-two-brokers.json").unwrap();
    let mut hostile: Value = serde_json::from_str(&fixture).unwrap();
    hostile["alerts"].as_array_mut().unwrap().truncate(1);
    let a = &mut hostile["alerts"][0];
    a["labels"]["node_id"] = json!("kafka-2");
    a["generatorURL"] = json!("javascript:alert(document.cookie)");
    hostile["externalURL"] = json!("http://evil.example.com:9093");
    assert_eq!(srv.post(&hostile.to_string()).await.0, 200);
    let got = wait_mail(&smtp, 1, 20).await;
    let parsed = parse_eml(&got[0].0);
    let html = part(&parsed, "text/html");
    let text = part(&parsed, "text/plain");
    assert_eq!(hrefs(html), Vec::<&str>::new(), "no link at all: {html}");
    assert!(
        html.contains(
            "<p>Source (not an http(s) URL, so not a link): \
             <code>javascript:alert(document.cookie)</code></p>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<p>Alertmanager (not a configured one, so no silence link): \
             <code>http://evil.example.com:9093</code></p>"
        ),
        "{html}"
    );
    assert!(!html.contains("silences/new"), "{html}");
    assert!(!text.contains("Silence it:"), "{text}");
    assert!(
        text.contains(
            "Alertmanager (not a configured one, so no silence link): \
             http://evil.example.com:9093"
        ),
        "{text}"
    );
    assert!(
        text.contains("Source (not an http(s) URL): javascript:alert(document.cookie)"),
        "{text}"
    );
    // The same request as Alertmanager sends it, from the configured Alertmanager (its
    // host in capitals, no trailing slash): both links, on http(s) and the configured URL.
    let mut fine: Value = serde_json::from_str(&fixture).unwrap();
    fine["alerts"].as_array_mut().unwrap().truncate(1);
    fine["alerts"][0]["labels"]["node_id"] = json!("kafka-3");
    fine["externalURL"] = json!("http://AM.example.com:9093");
    assert_eq!(srv.post(&fine.to_string()).await.0, 200);
    let got = wait_mail(&smtp, 2, 20).await;
    let parsed = parse_eml(&got[1].0);
    assert_eq!(
        headers(&parsed, "Subject"),
        ["[kafka-healing] RECOVERED kafka-3 (broker-down) test"]
    );
    let html = part(&parsed, "text/html");
    let links = hrefs(html);
    assert_eq!(links.len(), 2, "{html}");
    assert_eq!(
        links[0],
        "http://prometheus.example.com:9090/graph?g0.expr&#x3D;up%7Bjob%3D%22kafka%22%7D+%3D%3D+0"
    );
    assert!(
        links[1].starts_with("http://am.example.com:9093/#/silences/new?filter&#x3D;%7B"),
        "{html}"
    );
    assert!(!html.contains("not a configured one"), "{html}");
}
