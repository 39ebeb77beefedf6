//! Delivering one message over SMTP with lettre: STARTTLS or TLS (public roots plus an
//! optional private CA), AUTH when credentials are set, the whole delivery under one
//! timeout, and errors that say which part of the conversation failed.
//! (Implementation in progress.)

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
