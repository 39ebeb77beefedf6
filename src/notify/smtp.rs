//! Delivering one message over SMTP with lettre: STARTTLS or TLS (public roots plus an
//! optional private CA), AUTH when credentials are set, the whole delivery under one
//! timeout, and errors that say which part of the conversation failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Recipients (from the configuration, never from alert data).
    pub to: Vec<String>,
    /// Subject (control characters already replaced).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Why a message could not be delivered. Each message names the server and says what an
/// operator can check.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No TCP connection: refused, unreachable, or the host name does not resolve.
    #[error("cannot connect to SMTP server {endpoint}: {reason}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// What the operating system said.
        reason: String,
    },
    /// The TLS handshake or certificate verification failed, or the server does not
    /// offer the TLS the config asks for (or demands TLS the config does not use).
    #[error(
        "TLS with SMTP server {endpoint} ({mode}) failed: {reason}; check tls mode, port and ca_file"
    )]
    Tls {
        /// `host:port`.
        endpoint: String,
        /// The configured mode (`auto`, `starttls`, `tls`, `none`).
        mode: &'static str,
        /// What failed.
        reason: String,
    },
    /// The server rejected AUTH, or requires AUTH that is not configured or possible.
    #[error("authentication with SMTP server {endpoint} failed: {reason}; check username/password")]
    Auth {
        /// `host:port`.
        endpoint: String,
        /// The server's reply or what is missing.
        reason: String,
    },
    /// The server permanently (5xx) rejected the sender, a recipient or the message.
    #[error("SMTP server {endpoint} rejected {what}: {code} {text}")]
    Rejected {
        /// `host:port`.
        endpoint: String,
        /// What was rejected: `recipient a@x`, `sender a@x`, or `the message (from …, to …)`.
        what: String,
        /// The server's reply code (5xx).
        code: u16,
        /// The server's reply text.
        text: String,
    },
    /// The server refused temporarily (4xx); a later attempt may succeed.
    #[error("SMTP server {endpoint} deferred the message (temporary failure): {code} {text}")]
    Deferred {
        /// `host:port`.
        endpoint: String,
        /// The server's reply code (4xx).
        code: u16,
        /// The server's reply text.
        text: String,
    },
    /// The whole delivery took longer than `timeout_seconds`.
    #[error(
        "SMTP delivery via {endpoint} timed out after {seconds}s (notifications.smtp.timeout_seconds); the server accepted the connection but did not finish the conversation: check host, port and tls mode"
    )]
    Timeout {
        /// `host:port`.
        endpoint: String,
        /// The limit, in seconds.
        seconds: u64,
    },
    /// The conversation broke: an unexpected or malformed reply, or the connection was
    /// lost midway.
    #[error("SMTP conversation with {endpoint} failed: {reason}")]
    Protocol {
        /// `host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The message or transport could not be built: a bad address, an unreadable or
    /// invalid `ca_file`.
    #[error("cannot prepare the email: {0}")]
    Build(String),
}

impl SendError {
    /// True when retrying the same message cannot help until someone changes the config
    /// or the server (auth, rejection, build); false for transient failures (connect,
    /// TLS, timeout, temporary replies, broken conversations).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::Auth { .. } | SendError::Rejected { .. } | SendError::Build(_)
        )
    }
}

/// Sends [`OutgoingMail`] through one configured SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
    tls: SmtpTls,
    timeout: Duration,
    has_credentials: bool,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("endpoint", &self.endpoint())
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("auth", &self.has_credentials)
            .finish()
    }
}

/// The config's keyword for a TLS mode.
pub fn tls_mode_name(tls: SmtpTls) -> &'static str {
    match tls {
        SmtpTls::Auto => "auto",
        SmtpTls::Starttls => "starttls",
        SmtpTls::Tls => "tls",
        SmtpTls::None => "none",
    }
}

/// What `tls: auto` means for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoTls {
    /// STARTTLS must succeed: the host is not a loopback address.
    RequireStarttls,
    /// STARTTLS when offered, plain otherwise: the host is a loopback address.
    Opportunistic,
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without brackets). Other names
/// are remote even when they resolve to loopback: the decision must not depend on DNS.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") || h.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The `tls: auto` decision: plain is allowed to loopback addresses only.
pub fn auto_tls(host: &str) -> AutoTls {
    if is_loopback_host(host) {
        AutoTls::Opportunistic
    } else {
        AutoTls::RequireStarttls
    }
}

/// Replaces every control character (CR, LF, TAB, DEL, C1 controls…) with a space, so a
/// subject built from alert data can never start a new header line.
pub fn sanitize_subject(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn parse_mailbox(addr: &str, what: &str) -> Result<Mailbox, SendError> {
    addr.trim()
        .parse::<Mailbox>()
        .map_err(|e| SendError::Build(format!("{what} `{addr}` is not a valid address: {e}")))
}

fn resolve(base_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// TLS parameters: the public (webpki) roots plus every certificate in `ca_file`.
fn tls_parameters(cfg: &SmtpConfig, base_dir: &Path) -> Result<TlsParameters, SendError> {
    let mut builder =
        TlsParameters::builder(cfg.host.clone()).certificate_store(CertificateStore::WebpkiRoots);
    if let Some(ca) = &cfg.ca_file {
        let path = resolve(base_dir, ca);
        let pem = std::fs::read(&path).map_err(|e| {
            SendError::Build(format!(
                "cannot read notifications.smtp.ca_file {}: {e}",
                path.display()
            ))
        })?;
        let count = String::from_utf8_lossy(&pem)
            .matches("-----BEGIN CERTIFICATE-----")
            .count();
        if count == 0 {
            return Err(SendError::Build(format!(
                "notifications.smtp.ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            SendError::Build(format!(
                "notifications.smtp.ca_file {}: {}",
                path.display(),
                source_text(&e)
            ))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| {
        SendError::Build(format!(
            "TLS setup (notifications.smtp.ca_file): {}",
            source_text(&e)
        ))
    })
}

/// The innermost useful text of lettre's error: lettre prefixes its own kind ("Connection
/// error: …") and wraps TLS handshake errors twice, which says nothing to an operator.
fn source_text(e: &lettre::transport::smtp::Error) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(inner) = cur.downcast_ref::<lettre::transport::smtp::Error>() {
        match std::error::Error::source(inner) {
            Some(s) => cur = s,
            None => break,
        }
    }
    cur.to_string()
}

/// The first `std::io::Error` in an error's source chain.
fn io_kind(e: &lettre::transport::smtp::Error) -> Option<std::io::ErrorKind> {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = s.source();
    }
    None
}

/// A hint for the commonest TLS failures (rustls's wording).
fn tls_hint(reason: &str, host: &str) -> String {
    let hint = if reason.contains("UnknownIssuer") {
        "the server's certificate is not signed by a public CA nor by one in ca_file; set \
         ca_file to the CA that issued it"
            .to_string()
    } else if reason.contains("NotValidForName") {
        format!(
            "the server's certificate does not name `{host}`; use the host name it was issued for"
        )
    } else if reason.contains("Expired") || reason.contains("NotValidYet") {
        "the server's certificate is outside its validity period (or this clock is wrong)"
            .to_string()
    } else if reason.contains("CaUsedAsEndEntity") {
        "the server presents a CA certificate as its own; it needs a leaf certificate".to_string()
    } else if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
        "the server did not answer with TLS: for a plain/STARTTLS port (587, 25) use \
         tls: starttls"
            .to_string()
    } else {
        return reason.to_string();
    };
    format!("{reason} ({hint})")
}

impl Mailer {
    /// Builds the transport from the config. `base_dir` is the config file's directory
    /// (`Loaded::base_dir`): a relative `ca_file` is resolved against it.
    pub fn new(cfg: &SmtpConfig, base_dir: &Path) -> Result<Mailer, SendError> {
        let from = parse_mailbox(&cfg.from_email, "notifications.smtp.from_email")?;
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Auto => match auto_tls(&cfg.host) {
                AutoTls::RequireStarttls => Tls::Required(tls_parameters(cfg, base_dir)?),
                AutoTls::Opportunistic => Tls::Opportunistic(tls_parameters(cfg, base_dir)?),
            },
            SmtpTls::Starttls => Tls::Required(tls_parameters(cfg, base_dir)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(cfg, base_dir)?),
        };
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &cfg.username {
            let password = cfg
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder
                .credentials(Credentials::new(user.clone(), password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            host: cfg.host.clone(),
            port: cfg.port,
            tls: cfg.tls,
            timeout,
            has_credentials: cfg.username.is_some(),
        })
    }

    /// `host:port` of the server.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The configured TLS mode.
    pub fn tls(&self) -> SmtpTls {
        self.tls
    }

    /// The sender address.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The limit for one whole delivery.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Builds the MIME message: `multipart/alternative` (text/plain, then text/html, both
    /// UTF-8) with From, To, Subject (control characters replaced), Date, Message-ID and
    /// `X-Kafka-Healing`.
    pub fn compose(&self, mail: &OutgoingMail) -> Result<Message, SendError> {
        if mail.to.is_empty() {
            return Err(SendError::Build("the message has no recipient".into()));
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(sanitize_subject(&mail.subject))
            .date_now()
            .message_id(None)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Kafka-Healing"),
                env!("CARGO_PKG_VERSION").to_string(),
            ));
        for to in &mail.to {
            builder = builder.to(parse_mailbox(to, "recipient")?);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| SendError::Build(e.to_string()))
    }

    /// Delivers `mail` (connect, TLS, AUTH, MAIL, RCPT, DATA) within the timeout.
    pub async fn send(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        self.send_with_id(mail).await.map(|_| ())
    }

    /// Like [`Mailer::send`], returning the message's `Message-ID` (with angle brackets).
    pub async fn send_with_id(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        let message = self.compose(mail)?;
        let id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_string();
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_) => Err(SendError::Timeout {
                endpoint: self.endpoint(),
                seconds: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(self.classify(&e, &recipients)),
            Ok(Ok(_)) => Ok(id),
        }
    }

    /// Turns lettre's error into one an operator can act on.
    fn classify(&self, e: &lettre::transport::smtp::Error, recipients: &[String]) -> SendError {
        let endpoint = self.endpoint();
        let mode = tls_mode_name(self.tls);
        let reason = source_text(e);
        let lower = reason.to_ascii_lowercase();

        if let Some(code) = e.status() {
            let code = u16::from(code);
            let text = reason.trim().to_string();
            return self.classify_reply(code, text, recipients);
        }
        if e.is_timeout() {
            return SendError::Timeout {
                endpoint,
                seconds: self.timeout.as_secs(),
            };
        }
        if e.is_tls() {
            return SendError::Tls {
                endpoint,
                mode,
                reason,
            };
        }
        if e.is_client() {
            if lower.contains("authentication mechanism") {
                return SendError::Auth {
                    endpoint,
                    reason: "the server offers no AUTH mechanism this client supports \
                             (PLAIN, LOGIN) on this connection; many servers offer AUTH \
                             only over TLS"
                        .into(),
                };
            }
            if lower.contains("starttls") || lower.contains("not encrypted") {
                return SendError::Tls {
                    endpoint,
                    mode,
                    reason: format!("{reason} (the server does not offer STARTTLS)"),
                };
            }
            return SendError::Protocol { endpoint, reason };
        }
        // lettre's "Connection" kind (it has no predicate): the TCP connect (with name
        // resolution), or the TLS handshake (implicit TLS or after STARTTLS), which lettre
        // reports the same way. Greeting and later replies are other kinds.
        if e.to_string().starts_with("Connection error") {
            let kind = io_kind(e);
            let dns = lower.contains("lookup") || lower.contains("resolve");
            let tcp_level = dns
                || matches!(
                    kind,
                    Some(
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::HostUnreachable
                            | std::io::ErrorKind::NetworkUnreachable
                            | std::io::ErrorKind::AddrNotAvailable
                            | std::io::ErrorKind::AddrInUse
                            | std::io::ErrorKind::PermissionDenied
                    )
                );
            if self.tls != SmtpTls::None && !tcp_level {
                let reason = if kind == Some(std::io::ErrorKind::UnexpectedEof) {
                    format!("the server closed the connection during the TLS handshake ({reason})")
                } else {
                    tls_hint(&reason, &self.host)
                };
                return SendError::Tls {
                    endpoint,
                    mode,
                    reason,
                };
            }
            let reason = if kind == Some(std::io::ErrorKind::ConnectionRefused) {
                format!("connection refused (is the server running and the port right?): {reason}")
            } else if dns {
                format!("cannot resolve the host name: {reason}")
            } else {
                reason
            };
            return SendError::Connect { endpoint, reason };
        }
        if e.is_response() {
            return SendError::Protocol {
                endpoint,
                reason: format!("unexpected reply from the server: {reason}"),
            };
        }
        SendError::Protocol {
            endpoint,
            reason: format!("{e}"),
        }
    }

    /// Classifies a negative SMTP reply.
    fn classify_reply(&self, code: u16, text: String, recipients: &[String]) -> SendError {
        let endpoint = self.endpoint();
        let lower = text.to_ascii_lowercase();
        // 530 is both "Must issue a STARTTLS command first" and "Authentication required".
        let wants_tls = lower.contains("starttls")
            || (code == 530 && lower.contains("tls"))
            || lower.contains("encryption required");
        if wants_tls && code != 538 {
            return SendError::Tls {
                endpoint,
                mode: tls_mode_name(self.tls),
                reason: format!("the server requires TLS first: {code} {text}"),
            };
        }
        let auth_code = matches!(code, 530 | 534 | 535 | 538)
            || (code == 454 && lower.contains("auth"))
            || (code >= 500 && lower.contains("authentication"));
        if auth_code {
            let reason = if !self.has_credentials && matches!(code, 530 | 554 | 550 | 553) {
                format!(
                    "the server requires authentication but notifications.smtp.username \
                     is not set ({code} {text})"
                )
            } else if code == 538 {
                format!("the server accepts AUTH only over TLS ({code} {text})")
            } else {
                format!("the server rejected the credentials: {code} {text}")
            };
            return SendError::Auth { endpoint, reason };
        }
        if code < 500 {
            return SendError::Deferred {
                endpoint,
                code,
                text,
            };
        }
        let from = self.from.email.to_string();
        let named = recipients
            .iter()
            .find(|r| lower.contains(&r.to_ascii_lowercase()));
        let what = match named {
            Some(r) => format!("recipient {r}"),
            None if lower.contains(&from.to_ascii_lowercase()) => format!("sender {from}"),
            None => format!(
                "the sender or a recipient (from {from}, to {})",
                recipients.join(", ")
            ),
        };
        SendError::Rejected {
            endpoint,
            what,
            code,
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn cfg() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 2525,
            username: None,
            password: None,
            password_file: None,
            from_email: "kafka-healing@example.com".into(),
            to_emails: vec!["oncall@example.com".into()],
            tls: SmtpTls::None,
            ca_file: None,
            timeout_seconds: 5,
        }
    }

    fn mail(subject: &str) -> OutgoingMail {
        OutgoingMail {
            to: vec!["a@example.com".into(), "b@example.com".into()],
            subject: subject.into(),
            text: "plain body".into(),
            html: "<p>html body</p>".into(),
        }
    }

    #[test]
    fn control_characters_in_the_subject_become_spaces() {
        assert_eq!(
            sanitize_subject("a\r\nBcc: evil@example.com\tb\u{7f}c\u{85}d\0e"),
            "a  Bcc: evil@example.com b c d e"
        );
        assert_eq!(sanitize_subject("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn composed_message_has_one_subject_line_and_no_injected_header() {
        let m = Mailer::new(&cfg(), Path::new(".")).expect("mailer");
        let msg = m
            .compose(&mail("broken\r\nBcc: evil@example.com\r\nX-Evil: 1"))
            .expect("compose");
        let raw = String::from_utf8(msg.formatted()).expect("utf-8");
        let headers = raw.split("\r\n\r\n").next().expect("headers");
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(!headers.contains("\r\nX-Evil:"), "{headers}");
        assert!(
            headers.contains("Subject: broken  Bcc: evil@example.com  X-Evil: 1\r\n"),
            "{headers}"
        );
        let to: Vec<String> = msg.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, vec!["a@example.com", "b@example.com"]);
        assert!(headers.contains("Message-ID: <"), "{headers}");
        assert!(headers.contains("Date: "), "{headers}");
        assert!(headers.contains("multipart/alternative"), "{headers}");
    }

    #[test]
    fn bad_addresses_and_missing_ca_file_are_build_errors() {
        let mut c = cfg();
        c.from_email = "not an address".into();
        let e = Mailer::new(&c, Path::new(".")).expect_err("bad from");
        assert!(matches!(e, SendError::Build(_)), "{e}");
        assert!(e.is_permanent());

        let mut c = cfg();
        c.tls = SmtpTls::Starttls;
        c.ca_file = Some(PathBuf::from("does-not-exist.pem"));
        let e = Mailer::new(&c, Path::new("/nonexistent-dir")).expect_err("ca");
        assert!(
            e.to_string()
                .contains("/nonexistent-dir/does-not-exist.pem"),
            "{e}"
        );

        let m = Mailer::new(&cfg(), Path::new(".")).expect("mailer");
        let mut bad = mail("s");
        bad.to = vec!["nope".into()];
        assert!(matches!(m.compose(&bad), Err(SendError::Build(_))));
        bad.to = vec![];
        assert!(matches!(m.compose(&bad), Err(SendError::Build(_))));
    }

    #[test]
    fn auto_allows_plain_to_loopback_only() {
        for h in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert_eq!(auto_tls(h), AutoTls::Opportunistic, "{h}");
        }
        for h in [
            "smtp.example.com",
            "10.0.0.5",
            "192.168.1.1",
            "::ffff:10.0.0.1",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert_eq!(auto_tls(h), AutoTls::RequireStarttls, "{h}");
        }
        assert_eq!(SmtpTls::default(), SmtpTls::Auto);
        assert_eq!(tls_mode_name(SmtpTls::Auto), "auto");
    }

    #[test]
    fn replies_are_classified() {
        let mut c = cfg();
        c.username = Some("u".into());
        c.password = Some(Secret("p".into()));
        let m = Mailer::new(&c, Path::new(".")).expect("mailer");
        let rcpts = vec!["a@example.com".to_string()];
        let e = m.classify_reply(
            535,
            "5.7.8 Authentication credentials invalid".into(),
            &rcpts,
        );
        assert!(matches!(e, SendError::Auth { .. }), "{e}");
        assert!(e.to_string().contains("check username/password"), "{e}");
        let e = m.classify_reply(550, "5.1.1 <a@example.com>: no such user".into(), &rcpts);
        assert!(e.to_string().contains("recipient a@example.com"), "{e}");
        assert!(e.to_string().contains("550"), "{e}");
        assert!(e.is_permanent());
        let e = m.classify_reply(451, "4.3.0 try again later".into(), &rcpts);
        assert!(matches!(e, SendError::Deferred { code: 451, .. }), "{e}");
        assert!(!e.is_permanent());
        let e = m.classify_reply(530, "Must issue a STARTTLS command first".into(), &rcpts);
        assert!(matches!(e, SendError::Tls { .. }), "{e}");

        let m = Mailer::new(&cfg(), Path::new(".")).expect("mailer");
        let e = m.classify_reply(530, "5.7.0 Authentication required".into(), &rcpts);
        assert!(e.to_string().contains("username is not set"), "{e}");
    }
}
