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
