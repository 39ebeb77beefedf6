//! The seed's runtime keys (issue 18): SMTP `tls: auto`, `logging.file` rotation,
//! `logging.audit`, `system.metrics` on its own port, and raw JMX ports named as such.

use std::path::Path;
use std::time::Duration;

use kafka_healing::config::{SmtpConfig, SmtpTls};
use kafka_healing::notify::smtp::{Mailer, OutgoingMail};

use crate::common::Scratch;
use crate::mailbox::*;

fn smtp(port: u16, tls: SmtpTls, ca_file: Option<&Path>) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None,
        password_file: None,
        from_email: FROM.into(),
        to_emails: vec!["oncall@example.com".into()],
        tls,
        ca_file: ca_file.map(Path::to_path_buf),
        timeout_seconds: 5,
    }
}

fn mail() -> OutgoingMail {
    OutgoingMail {
        to: vec!["oncall@example.com".into()],
        subject: "auto".into(),
        text: "text".into(),
        html: "<p>html</p>".into(),
    }
}

async fn send(cfg: &SmtpConfig, dir: &Path) -> Result<String, String> {
    let mailer = Mailer::new(cfg, dir).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(20), mailer.send_with_id(&mail()))
        .await
        .expect("bounded")
        .map_err(|e| e.to_string())
}

/// The seed's dev mail server has no STARTTLS: the default (`auto`) delivers to it in plain
/// because it is on loopback; `starttls` still refuses.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_auto_delivers_plain_to_loopback_without_starttls() {
    let s = Scratch::new();
    let srv = SmtpServer::start(s.path(), &[]);
    assert_eq!(SmtpTls::default(), SmtpTls::Auto);
    send(&smtp(srv.port, SmtpTls::default(), None), s.path())
        .await
        .expect("auto delivers");
    let got = srv.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["tls"], false, "{}", got[0].1);
    assert_eq!(strings(&got[0].1["rcpt_tos"]), vec!["oncall@example.com"]);

    let e = send(&smtp(srv.port, SmtpTls::Starttls, None), s.path())
        .await
        .expect_err("starttls refuses a server without STARTTLS");
    assert!(e.contains("(starttls)"), "{e}");
    assert_eq!(srv.received().len(), 1);
}

/// On loopback, `auto` still upgrades when the server offers STARTTLS.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_auto_upgrades_to_starttls_when_offered() {
    let s = Scratch::new();
    let pki = pki(s.path());
    let (cert, key) = (
        pki.cert.to_str().expect("utf-8"),
        pki.key.to_str().expect("utf-8"),
    );
    let srv = SmtpServer::start(s.path(), &["--starttls-cert", cert, "--starttls-key", key]);
    send(&smtp(srv.port, SmtpTls::Auto, Some(&pki.ca)), s.path())
        .await
        .expect("auto delivers over STARTTLS");
    let got = srv.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["tls"], true, "{}", got[0].1);
}

const RULES: &str = "rules:\n  - name: broker-down\n    matchers: ['alertname=\"KafkaBrokerDown\"']\n    runbook: rb\nrunbooks:\n  rb:\n    steps: [{ name: s, exec: ['true'] }]\n";

fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `logging.file` takes the log off stderr into the file (its rotation at `max_size_mb` is
/// tested in `cli::logfile`); `system.metrics.port` serves `/metrics` alone, without auth.
#[tokio::test(flavor = "multi_thread")]
async fn serve_logs_to_the_file_and_serves_metrics_on_its_own_port() {
    use crate::serve::harness::{Server, config};
    let s = Scratch::new();
    let mport = free_port();
    let cfg = config(&format!(
        "logging:\n  file: logs/kh.log\n  max_size_mb: 1\n  backup_count: 2\nsystem:\n  metrics:\n    enabled: true\n    port: {mport}\n    format: prometheus\n"
    ));
    let srv = Server::start(&s, &cfg, RULES);
    let logs = s.path().join("logs");
    let first = std::fs::read_to_string(logs.join("kh.log")).expect("log file");
    assert!(first.contains("listening"), "{first}");
    assert!(!srv.log().contains("listening"), "stderr: {}", srv.log());

    let client = reqwest::Client::new();
    let m = client
        .get(format!("http://127.0.0.1:{mport}/metrics"))
        .send()
        .await
        .expect("GET metrics port");
    assert_eq!(m.status().as_u16(), 200);
    let body = m.text().await.expect("body");
    assert!(body.contains("# TYPE "), "{body}");
    let other = client
        .get(format!("http://127.0.0.1:{mport}/api/v1/executions"))
        .send()
        .await
        .expect("GET api on metrics port");
    assert_eq!(other.status().as_u16(), 404, "only /metrics there");

    // What the service logs after the start goes to the file too.
    srv.signal(nix::sys::signal::Signal::SIGHUP);
    let t0 = std::time::Instant::now();
    let reloaded = || {
        std::fs::read_to_string(logs.join("kh.log"))
            .unwrap_or_default()
            .contains("SIGHUP: reloading")
    };
    while !reloaded() && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloaded(),
        "{}",
        std::fs::read_to_string(logs.join("kh.log")).unwrap_or_default()
    );
    assert_eq!(
        files_named(&logs, "kh.log"),
        vec!["kh.log"],
        "nothing to rotate yet"
    );
}

/// `system.metrics.enabled: false`: no metrics port, the main `/metrics` stays.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_port_off_when_disabled() {
    use crate::serve::harness::{Server, config};
    let s = Scratch::new();
    let mport = free_port();
    let cfg = config(&format!(
        "system:\n  metrics:\n    enabled: false\n    port: {mport}\n"
    ));
    let srv = Server::start(&s, &cfg, RULES);
    assert!(srv.metrics().await.contains("# TYPE "));
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{mport}/metrics"))
        .send()
        .await;
    assert!(
        r.is_err_and(|e| e.is_connect()),
        "nothing listens on {mport}"
    );
}

/// A raw TCP server standing in for a broker's JMX/RMI port: to anything it answers
/// non-HTTP bytes and closes. Returns its port and the count of connections.
fn raw_jmx() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf);
            // JRMI's ProtocolAck (0x4e), then an endpoint: not HTTP.
            let _ = c.write_all(b"\x4e\x00\x09127.0.0.1\x00\x00\xc3\x50");
        }
    });
    (port, n)
}

/// `jmx_port` is the broker's raw JMX port: `scrape` names it as such.
#[tokio::test(flavor = "multi_thread")]
async fn scrape_names_a_raw_jmx_port() {
    let (port, _) = raw_jmx();
    let s = Scratch::new();
    let closed = free_port();
    s.write(
        "c.yaml",
        &format!(
            "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {closed}, jmx_port: {port} }}\nmonitoring: {{ interval_seconds: 30, timeout_seconds: 2, methods: [jmx] }}\nrules: [r.yaml]\n"
        ),
    );
    s.write("r.yaml", RULES);
    let cfg = s.path().join("c.yaml");
    let out = tokio::task::spawn_blocking(move || {
        crate::common::run(&["scrape", "-c", cfg.to_str().expect("utf-8"), "--json"])
    })
    .await
    .expect("join");
    let v: serde_json::Value = serde_json::from_str(&crate::common::stdout(&out)).expect("json");
    let jmx = v["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["method"] == "jmx"))
        .expect("jmx target");
    let msg = format!("port {port} speaks no HTTP: raw JMX? set metrics_url to the JMX exporter");
    assert_eq!(jmx["up"], false, "{jmx}");
    assert_eq!(jmx["error"], msg.as_str(), "{jmx}");
    assert_eq!(crate::common::stderr(&out).matches(&msg).count(), 1);
}

/// The log says it once, however many scrape rounds meet the raw port.
#[tokio::test(flavor = "multi_thread")]
async fn serve_logs_a_raw_jmx_port_once() {
    use crate::serve::harness::Server;
    let (port, conns) = raw_jmx();
    let s = Scratch::new();
    let closed = free_port();
    let cfg = format!(
        "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {closed}, jmx_port: {port} }}\nmonitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [jmx] }}\nserver:\n  listen: 127.0.0.1:0\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n"
    );
    let srv = Server::start(&s, &cfg, RULES);
    // Three rounds (two connections each: the GET and the probe), within 60 s.
    let t0 = std::time::Instant::now();
    while conns.load(std::sync::atomic::Ordering::SeqCst) < 6
        && t0.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n >= 6, "only {n} connections in 60 s");
    let msg = format!("port {port} speaks no HTTP: raw JMX? set metrics_url to the JMX exporter");
    assert_eq!(srv.log().matches(&msg).count(), 1, "{}", srv.log());
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// Waits (at most 20 s) until the audit file holds every committed journal event, then
/// checks it holds exactly those, in id order, field for field.
async fn audit_matches(path: &Path, journal_path: &Path) -> Vec<serde_json::Value> {
    let journal = kafka_healing::journal::Journal::open_read_only(journal_path).expect("journal");
    let want: Vec<serde_json::Value> = journal
        .events_after(0, 10_000)
        .expect("events")
        .iter()
        .map(|e| serde_json::to_value(e).expect("json"))
        .collect();
    assert!(!want.is_empty(), "the journal has events");
    let t0 = std::time::Instant::now();
    while audit_lines(path).len() < want.len() && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = audit_lines(path);
    assert_eq!(got, want);
    got
}

/// `logging.audit.enabled`: every journal event, once committed, is a JSON line in the
/// audit file; after a restart the file resumes after its last id (no repeat).
#[tokio::test(flavor = "multi_thread")]
async fn audit_file_holds_the_journal_events_across_a_restart() {
    use crate::serve::harness::{Server, alert, config, down, webhook};
    let s = Scratch::new();
    let cfg = config("logging:\n  audit:\n    enabled: true\n");
    let path = s.path().join("state/audit.jsonl");
    let db = s.path().join("state/journal.db");
    let srv = Server::start(&s, &cfg, RULES);
    // Two at once: the second waits for the cluster slot (an event).
    let body = webhook(
        "kh",
        vec![
            alert("firing", down("kafka-1")),
            alert("firing", down("kafka-2")),
        ],
    );
    let (st, v) = srv.post(&body).await;
    assert_eq!(st, 200, "{v}");
    srv.wait_until(30, "kafka-1 done", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-1" && e["status"] == "succeeded")
    })
    .await;
    let before = audit_matches(&path, &db).await;
    srv.signal(nix::sys::signal::Signal::SIGTERM);
    drop(srv);

    // After a restart the file resumes after its last id: nothing repeated.
    let srv = Server::start_in(s.path());
    let body = webhook("kh", vec![alert("firing", down("kafka-3"))]);
    let (st, v) = srv.post(&body).await;
    assert_eq!(st, 200, "{v}");
    srv.wait_until(30, "kafka-3 done", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-3" && e["status"] == "succeeded")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = audit_matches(&path, &db).await;
    assert_eq!(after[..before.len()], before[..]);
    drop(srv);
}

/// `check` is offline: it cannot ask a port what it speaks, so a `jmx_port` that `jmx`
/// would scrape (no metrics_url) and that is no common exporter port is one warning naming
/// the brokers and what to set; with metrics_url, a common exporter port, or without the
/// `jmx` method, nothing is said.
#[test]
fn check_warns_that_jmx_port_must_be_an_exporter() {
    let check = |brokers: &str, methods: &str| {
        let s = Scratch::new();
        let cfg = s.write(
            "c.yaml",
            &format!("cluster:\n  kafka_brokers:\n{brokers}monitoring: {{ methods: {methods} }}\nrules: [r.yaml]\n"),
        );
        s.write("r.yaml", RULES);
        let o = crate::common::run(&["check", "-c", cfg.to_str().expect("utf-8")]);
        let prefix = format!("{}/", s.path().display());
        (
            o.status.code(),
            crate::common::stderr(&o).replace(&prefix, ""),
        )
    };
    let seed = "    - { node_id: kafka-0, host: h0, port: 9092, metrics_url: \"http://h0:7071/metrics\" }\n    - { node_id: kafka-1, host: h1, port: 9092, jmx_port: 9999 }\n    - { node_id: kafka-2, host: h2, port: 9092, jmx_port: 9999 }\n";
    let (code, err) = check(seed, "[socket, jmx]");
    assert_eq!(code, Some(0), "{err}");
    let w = "c.yaml:4: warning: cluster.kafka_brokers[1].jmx_port: `jmx` scrapes http://HOST:JMX_PORT/metrics of brokers kafka-1, kafka-2, so jmx_port must be a Prometheus JMX exporter's port (commonly 5556, 7071 or 9404); if it is the broker's raw JMX port, as the seed's jmx_port is, it speaks no HTTP and nothing is scraped: set metrics_url to the JMX exporter's URL (jmx_port then only maps `instance` labels to the broker)\n";
    assert_eq!(err.matches("jmx_port must be").count(), 1, "{err}");
    assert!(err.contains(w), "{err}");
    // The `jmx` method by default (no methods given) scrapes too.
    let one = "    - { node_id: kafka-1, host: h1, port: 9092, jmx_port: 9999 }\n";
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &format!("cluster:\n  kafka_brokers:\n{one}rules: [r.yaml]\n"),
    );
    s.write("r.yaml", RULES);
    let o = crate::common::run(&["check", "-c", cfg.to_str().expect("utf-8")]);
    assert!(
        crate::common::stderr(&o)
            .contains("jmx_port: `jmx` scrapes http://HOST:JMX_PORT/metrics of broker kafka-1, so"),
        "{}",
        crate::common::stderr(&o)
    );
    // No `jmx`: jmx_port only maps `instance` labels; nothing to say.
    let (code, err) = check(one, "[socket]");
    assert_eq!((code, err.contains("jmx_port")), (Some(0), false), "{err}");
    // A common exporter port: taken as one.
    let exporter = "    - { node_id: kafka-1, host: h1, port: 9092, jmx_port: 7071 }\n";
    let (code, err) = check(exporter, "[jmx]");
    assert_eq!((code, err.contains("jmx_port")), (Some(0), false), "{err}");
    // metrics_url given: the exporter is named.
    let named = "    - { node_id: kafka-1, host: h1, port: 9092, jmx_port: 9999, metrics_url: \"http://h1:7071/metrics\" }\n";
    let (code, err) = check(named, "[jmx]");
    assert_eq!((code, err.contains("jmx_port")), (Some(0), false), "{err}");
}
