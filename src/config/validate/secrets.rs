//! Secrets that cannot be sent, or are probably not what was meant.

use std::path::Path;

use crate::config::model::*;
use crate::config::secret::{doubtful_password, unsendable_token};
use crate::diag::Diagnostics;
use crate::yaml::Document;

/// A secret's path for messages: its `_file` key when it was read from one.
fn secret_path(key: &str, file: Option<&std::path::PathBuf>) -> String {
    match file {
        Some(_) => format!("{key}_file"),
        None => key.to_string(),
    }
}

/// A token no client can send is an error; a password with whitespace at an end or a
/// control character is kept but said, since it is rarely meant.
pub(super) fn secrets(config: &Config, file: &Path, doc: &Document, diags: &mut Diagnostics) {
    if let Some(a) = &config.server.auth
        && let Some(why) = a
            .bearer_token
            .as_ref()
            .and_then(|t| unsendable_token(t.expose()))
    {
        let p = secret_path("server.auth.bearer_token", a.bearer_token_file.as_ref());
        diags.error_at(file, doc, &p, why);
    }
    let mut passwords = Vec::new();
    if let Some(b) = config.server.auth.as_ref().and_then(|a| a.basic.as_ref()) {
        passwords.push((
            "server.auth.basic.password",
            &b.password,
            b.password_file.as_ref(),
        ));
    }
    if let Some(s) = &config.notifications.smtp {
        passwords.push((
            "notifications.smtp.password",
            &s.password,
            s.password_file.as_ref(),
        ));
    }
    let sasl = &config.security.sasl;
    passwords.push((
        "security.sasl.password",
        &sasl.password,
        sasl.password_file.as_ref(),
    ));
    if let Some(c) = &config.coordination {
        passwords.push(("coordination.password", &c.password, None));
    }
    for (key, pw, from) in passwords {
        if let Some(why) = pw.as_ref().and_then(|p| doubtful_password(p.expose())) {
            diags.warning(
                file,
                doc.line_of(&secret_path(key, from)),
                format!("{}: {why}", secret_path(key, from)),
            );
        }
    }
}
