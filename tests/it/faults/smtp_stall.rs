//! An SMTP server that accepts connections and never says a word: each send times out
//! (`notifications.smtp.timeout_seconds`), the message stays in the outbox and is tried
//! again; once a real SMTP server listens on that port it is delivered, exactly once.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kafka_healing::journal::Journal;

use crate::common::Scratch;
use crate::mailbox::SmtpServer;
use crate::serve::harness::*;

use super::poll;

/// Accepts connections on 127.0.0.1 and holds them open until dropped, saying nothing but
/// `greeting` (when given) and never answering what the client sends.
struct Staller {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Staller {
    fn start(greeting: Option<&'static str>) -> Staller {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        if let Some(g) = greeting {
                            let _ = std::io::Write::write_all(&mut conn, g.as_bytes());
                        }
                        held.push(conn);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            // Listener and connections close here.
        });
        Staller {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Staller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const RULES: &str = r#"rules:
  - name: ok
    matchers: ['alertname="MailMe"']
    runbook: ok
runbooks:
  ok:
    disruptive: false
    steps:
      - name: noop
        exec: ["true"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_smtp_server_times_out_and_the_outbox_delivers_once_a_real_one_answers() {
    stall_then_deliver(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_smtp_server_that_greets_then_stalls_times_out_too() {
    stall_then_deliver(Some("220 stall.example.com ESMTP\r\n")).await;
}

async fn stall_then_deliver(greeting: Option<&'static str>) {
    let s = Scratch::new();
    let staller = Staller::start(greeting);
    let port = staller.port;
    let cfg = config(&format!(
        "notifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    from_email: kafka-healing@example.com\n    to_emails: [oncall@example.com]\n    timeout_seconds: 1\n"
    ));
    let srv = Server::start(&s, &cfg, RULES);
    let body = webhook(
        "r",
        vec![alert(
            "firing",
            serde_json::json!({"alertname": "MailMe", "node_id": "kafka-1"}),
        )],
    );
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(20, "the execution", |l| {
        l.iter().any(|e| e["status"] == "succeeded")
    })
    .await;

    // Two sends stalled: each timed out and the message is still queued.
    let accepted = staller.accepted.clone();
    assert!(
        poll(30, || accepted.load(Ordering::Relaxed) >= 2),
        "no second try; log:\n{}",
        srv.log()
    );
    let db = s.path().join("state/journal.db");
    let pending = Journal::open_read_only(&db)
        .expect("journal")
        .pending_mails()
        .expect("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].attempts >= 1, "{:?}", pending[0]);
    assert!(pending[0].sent_ms.is_none());
    let err = pending[0].last_error.clone().unwrap_or_default();
    assert!(err.to_lowercase().contains("time"), "a timeout: {err}");

    // The silent server goes away; a real one takes its port.
    drop(staller);
    let smtp = SmtpServer::start_on(s.path(), port, &[]);
    assert!(
        poll(60, || !smtp.received().is_empty()),
        "not delivered; log:\n{}",
        srv.log()
    );
    let ok = poll(10, || {
        Journal::open_read_only(&db)
            .and_then(|j| j.pending_mails())
            .is_ok_and(|p| p.is_empty())
    });
    assert!(ok, "the outbox still holds the message");
    assert_eq!(smtp.received().len(), 1, "delivered exactly once");
}
