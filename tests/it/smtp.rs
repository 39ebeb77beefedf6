//! SMTP delivery against a real SMTP server (Python aiosmtpd, tests/smtp/server.py) over
//! real sockets: plain, STARTTLS and implicit TLS with a test CA, AUTH, rejections,
//! refused connections and timeouts, through `notify test` and through `Mailer`.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kafka_healing::config::{Secret, SmtpConfig, SmtpTls};
use kafka_healing::notify::smtp::{Mailer, OutgoingMail, SendError};

use crate::common::{GOOD_RULES, Scratch, bin, config_with};
use crate::mailbox::*;

/// Writes a config whose notifications.smtp is `smtp` (YAML lines, indented 4) and a rule
/// file; returns the config path.
fn write_config(s: &Scratch, name: &str, smtp: &str) -> PathBuf {
    s.write("rules/r.yaml", GOOD_RULES);
    s.write(
        name,
        &config_with(&format!("notifications:\n  smtp:\n{smtp}")),
    )
}

fn smtp_yaml(port: u16, tls: &str, extra: &[&str]) -> String {
    let mut y = format!(
        "    host: 127.0.0.1\n    port: {port}\n    from_email: {FROM}\n    to_emails: [a@example.com, b@example.com]\n    tls: {tls}\n    timeout_seconds: 5\n"
    );
    for e in extra {
        y.push_str(&format!("    {e}\n"));
    }
    y
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `kafka-healing notify test -c CONFIG ARGS…`, killing it after 30 s.
fn notify_test(config: &Path, args: &[&str]) -> Run {
    let mut c = bin();
    c.arg("notify").arg("test").arg("-c").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_HEALING") {
            c.env_remove(k);
        }
    }
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kafka-healing");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`notify test` did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        elapsed: start.elapsed(),
        stdout: t_out.join().expect("stdout thread"),
        stderr: t_err.join().expect("stderr thread"),
    }
}

#[test]
fn plain_delivery_via_notify_test() {
    let s = Scratch::new();
    let srv = SmtpServer::start(s.path(), &[]);
    let cfg = write_config(&s, "kh.yaml", &smtp_yaml(srv.port, "none", &[]));
    let r = notify_test(&cfg, &[]);
    assert!(
        r.status.success(),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout.trim(),
        format!(
            "sent to a@example.com, b@example.com via 127.0.0.1:{} (none)",
            srv.port
        )
    );

    let got = srv.received();
    assert_eq!(got.len(), 1);
    let (eml, meta) = &got[0];
    assert_eq!(meta["mail_from"], FROM);
    assert_eq!(
        strings(&meta["rcpt_tos"]),
        vec!["a@example.com", "b@example.com"]
    );
    assert_eq!(meta["tls"], false);
    assert_eq!(meta["peer"][0], "127.0.0.1");

    let m = parse_eml(eml);
    assert_eq!(
        headers(&m, "Subject"),
        vec!["[kafka-healing] test message from test"]
    );
    assert_eq!(headers(&m, "From"), vec![FROM]);
    assert_eq!(headers(&m, "To"), vec!["a@example.com, b@example.com"]);
    assert_eq!(headers(&m, "Date").len(), 1);
    let ids = headers(&m, "Message-ID");
    assert_eq!(ids.len(), 1);
    assert!(ids[0].starts_with('<') && ids[0].ends_with('>'), "{ids:?}");
    assert_eq!(headers(&m, "X-Kafka-Healing").len(), 1);
    assert_eq!(m["content_type"], "multipart/alternative");
    let parts = m["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{m}");
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(parts[0]["charset"], "utf-8");
    assert_eq!(parts[1]["type"], "text/html");
    assert_eq!(parts[1]["charset"], "utf-8");
    let text = parts[0]["body"].as_str().expect("text");
    assert!(text.contains("test message from kafka-healing"), "{text}");
    assert!(text.contains("cluster test"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", srv.port)), "{text}");
    let html = parts[1]["body"].as_str().expect("html");
    assert!(html.contains("<b>test</b>"), "{html}");

    // --to replaces to_emails (envelope and header).
    let r = notify_test(&cfg, &["--to", "c@example.com", "--to", "d@example.com"]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("sent to c@example.com, d@example.com via"),
        "{}",
        r.stdout
    );
    let got = srv.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        strings(&got[1].1["rcpt_tos"]),
        vec!["c@example.com", "d@example.com"]
    );

    // Implicit TLS against a plain server: a TLS error, quickly.
    let cfg = write_config(&s, "tls.yaml", &smtp_yaml(srv.port, "tls", &[]));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr.starts_with("error: TLS with SMTP server"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("check tls mode, port and ca_file"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    assert_eq!(srv.received().len(), 2);
}

#[test]
fn notify_test_without_smtp_section_or_with_invalid_config_exits_1() {
    let s = Scratch::new();
    s.write("rules/r.yaml", GOOD_RULES);
    let cfg = s.write("kh.yaml", &config_with(""));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        r.stderr.contains("no notifications.smtp section"),
        "{}",
        r.stderr
    );

    let cfg = write_config(&s, "bad.yaml", &smtp_yaml(25, "bogus", &[]));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stderr.contains("tls mode"), "{}", r.stderr);
}

#[test]
fn starttls_with_test_ca_and_auth() {
    let s = Scratch::new();
    let pki = pki(s.path());
    let (cert, key) = (
        pki.cert.to_str().expect("utf-8"),
        pki.key.to_str().expect("utf-8"),
    );
    let srv = SmtpServer::start(
        s.path(),
        &[
            "--starttls-cert",
            cert,
            "--starttls-key",
            key,
            "--auth",
            "alice:s3cret",
        ],
    );
    let creds = ["username: alice", "password: s3cret"];
    let good = [&["ca_file: pki/ca.pem"][..], &creds[..]].concat();
    let cfg = write_config(&s, "ok.yaml", &smtp_yaml(srv.port, "starttls", &good));
    let r = notify_test(&cfg, &[]);
    assert!(
        r.status.success(),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout.trim(),
        format!(
            "sent to a@example.com, b@example.com via 127.0.0.1:{} (starttls)",
            srv.port
        )
    );
    let got = srv.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["tls"], true, "{}", got[0].1);
    assert!(
        got[0].1["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{}",
        got[0].1
    );
    assert_eq!(got[0].1["auth_user"], "alice");
    assert_eq!(
        strings(&got[0].1["rcpt_tos"]),
        vec!["a@example.com", "b@example.com"]
    );

    // Without ca_file the test CA is unknown: certificate verification fails.
    let cfg = write_config(&s, "noca.yaml", &smtp_yaml(srv.port, "starttls", &creds));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr.starts_with("error: TLS with SMTP server"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
    assert!(
        r.stderr.contains("check tls mode, port and ca_file"),
        "{}",
        r.stderr
    );

    // Wrong password.
    let bad = ["ca_file: pki/ca.pem", "username: alice", "password: wrong"];
    let cfg = write_config(&s, "badpw.yaml", &smtp_yaml(srv.port, "starttls", &bad));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr
            .starts_with("error: authentication with SMTP server"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("535"), "{}", r.stderr);
    assert!(r.stderr.contains("check username/password"), "{}", r.stderr);

    // The server requires AUTH and no username is configured.
    let cfg = write_config(
        &s,
        "nouser.yaml",
        &smtp_yaml(srv.port, "starttls", &["ca_file: pki/ca.pem"]),
    );
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("requires authentication but notifications.smtp.username is not set"),
        "{}",
        r.stderr
    );

    // tls: none against a server that demands STARTTLS first.
    let cfg = write_config(&s, "plain.yaml", &smtp_yaml(srv.port, "none", &[]));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr.starts_with("error: TLS with SMTP server"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("STARTTLS"), "{}", r.stderr);

    // Nothing but the first delivery arrived.
    assert_eq!(srv.received().len(), 1);
}

#[test]
fn implicit_tls_with_test_ca() {
    let s = Scratch::new();
    let pki = pki(s.path());
    let (cert, key) = (
        pki.cert.to_str().expect("utf-8"),
        pki.key.to_str().expect("utf-8"),
    );
    let srv = SmtpServer::start(
        s.path(),
        &[
            "--starttls-cert",
            cert,
            "--starttls-key",
            key,
            "--implicit-tls",
            "--auth",
            "bob:pw",
        ],
    );
    let extra = ["ca_file: pki/ca.pem", "username: bob", "password: pw"];
    let cfg = write_config(&s, "kh.yaml", &smtp_yaml(srv.port, "tls", &extra));
    let r = notify_test(&cfg, &["--to", "x@example.com"]);
    assert!(
        r.status.success(),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout.trim(),
        format!("sent to x@example.com via 127.0.0.1:{} (tls)", srv.port)
    );
    let got = srv.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["tls"], true, "{}", got[0].1);
    assert_eq!(got[0].1["auth_user"], "bob");
    assert_eq!(strings(&got[0].1["rcpt_tos"]), vec!["x@example.com"]);
}

#[test]
fn refused_connection_names_host_and_port() {
    let s = Scratch::new();
    let port = free_port();
    let cfg = write_config(&s, "kh.yaml", &smtp_yaml(port, "starttls", &[]));
    let r = notify_test(&cfg, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr.starts_with(&format!(
            "error: cannot connect to SMTP server 127.0.0.1:{port}"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
}

#[test]
fn rejected_recipient_names_code_and_address() {
    let s = Scratch::new();
    let srv = SmtpServer::start(s.path(), &["--reject-rcpt", "bad@example.com"]);
    let cfg = write_config(&s, "kh.yaml", &smtp_yaml(srv.port, "none", &[]));
    let r = notify_test(
        &cfg,
        &["--to", "good@example.com", "--to", "bad@example.com"],
    );
    assert_eq!(r.status.code(), Some(1), "{}", r.stdout);
    assert!(
        r.stderr.starts_with(&format!(
            "error: SMTP server 127.0.0.1:{} rejected recipient bad@example.com: 550",
            srv.port
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no such user"), "{}", r.stderr);
    assert!(srv.received().is_empty());
}

fn smtp_config(port: u16, timeout_seconds: u64) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None::<Secret>,
        password_file: None,
        from_email: FROM.into(),
        to_emails: vec!["oncall@example.com".into()],
        tls: SmtpTls::None,
        ca_file: None,
        timeout_seconds,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subject_header_injection_is_neutralised() {
    let s = Scratch::new();
    let srv = SmtpServer::start(s.path(), &[]);
    let mailer = Mailer::new(&smtp_config(srv.port, 5), s.path()).expect("mailer");
    let mail = OutgoingMail {
        to: vec!["oncall@example.com".into()],
        subject: "KafkaBrokerDown\r\nBcc: evil@example.com".into(),
        text: "text".into(),
        html: "<p>html</p>".into(),
    };
    let id = tokio::time::timeout(Duration::from_secs(20), mailer.send_with_id(&mail))
        .await
        .expect("bounded")
        .expect("delivered");
    let got = srv.received();
    assert_eq!(got.len(), 1);
    let (eml, meta) = &got[0];
    assert_eq!(strings(&meta["rcpt_tos"]), vec!["oncall@example.com"]);
    let m = parse_eml(eml);
    assert!(headers(&m, "Bcc").is_empty(), "{m}");
    assert_eq!(
        headers(&m, "Subject"),
        vec!["KafkaBrokerDown  Bcc: evil@example.com"]
    );
    assert_eq!(headers(&m, "Message-ID"), vec![id]);
    // The raw header block: the subject is one line, nothing starts with `Bcc:`.
    let head = eml.split("\r\n\r\n").next().expect("header block");
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
        "{head}"
    );
    let subject_lines: Vec<&str> = head.lines().filter(|l| l.starts_with("Subject:")).collect();
    assert_eq!(
        subject_lines,
        vec!["Subject: KafkaBrokerDown  Bcc: evil@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    // Accepts connections (the kernel completes the handshake) and never speaks.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mailer = Mailer::new(&smtp_config(port, 1), Path::new(".")).expect("mailer");
    let mail = OutgoingMail {
        to: vec!["oncall@example.com".into()],
        subject: "s".into(),
        text: "t".into(),
        html: "h".into(),
    };
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), mailer.send(&mail))
        .await
        .expect("bounded by the mailer's own timeout");
    let elapsed = start.elapsed();
    match &r {
        Err(SendError::Timeout { endpoint, seconds }) => {
            assert_eq!(*seconds, 1);
            assert_eq!(endpoint, &format!("127.0.0.1:{port}"));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let e = r.expect_err("timeout");
    assert!(!e.is_permanent());
    assert!(e.to_string().contains("timed out after 1s"), "{e}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    drop(listener);
}
