//! Secret values: never printed, never serialized.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: never printed by `Debug`, serialized as `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret's value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The one trailing newline an editor or `echo` leaves is not part of a `*_file` secret;
/// anything else in the file is.
pub(super) fn from_file(text: &str) -> Secret {
    let t = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Secret(t.to_string())
}

/// The first character of `s` that `bad` refuses, named, with where it is.
fn first_bad(s: &str, bad: impl Fn(usize, char) -> bool) -> Option<String> {
    let last = s.chars().count().saturating_sub(1);
    let (i, c) = s.chars().enumerate().find(|&(i, c)| bad(i, c))?;
    let what = match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        '\n' => "a newline".to_string(),
        '\r' => "a carriage return".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        c if c.is_whitespace() => format!("the whitespace character U+{:04X}", u32::from(c)),
        c => format!("the non-ASCII character U+{:04X}", u32::from(c)),
    };
    let at = match i {
        0 => "at its start",
        i if i == last => "at its end",
        _ => "inside it",
    };
    Some(format!("{what} {at}"))
}

/// Why no client can send `token` as `Authorization: Bearer <token>`, if so: HTTP drops
/// whitespace around a header value, and the token is one word of visible ASCII.
pub(super) fn unsendable_token(token: &str) -> Option<String> {
    let why = first_bad(token, |_, c| !c.is_ascii_graphic())?;
    Some(format!(
        "the token has {why}; no client can send it (a bearer token is one word of visible \
         ASCII; only a single trailing newline is stripped from a `_file`)"
    ))
}

/// What is likely not meant to be part of a password: whitespace at either end or a
/// control character anywhere. It is kept (a password may hold anything), but said.
pub(super) fn doubtful_password(pw: &str) -> Option<String> {
    let last = pw.chars().count().saturating_sub(1);
    let why = first_bad(pw, |i, c| {
        c.is_control() || (c.is_whitespace() && (i == 0 || i == last))
    })?;
    Some(format!(
        "the password has {why}, which is used as part of it (only a single trailing newline \
         is stripped from a `_file`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secrets_lose_one_newline_only() {
        assert_eq!(from_file("tok\n").expose(), "tok");
        assert_eq!(from_file("tok\r\n").expose(), "tok");
        assert_eq!(from_file("tok\n\n").expose(), "tok\n");
        assert_eq!(from_file("tok \n").expose(), "tok ");
        assert_eq!(from_file(" tok").expose(), " tok");
    }

    #[test]
    fn tokens_no_client_can_send() {
        assert_eq!(unsendable_token("tok-123_/+=~."), None);
        let why = unsendable_token("tok-with-space ").unwrap();
        assert!(why.starts_with("the token has a space at its end; no client can send it"));
        assert!(
            unsendable_token(" tok")
                .unwrap()
                .contains("a space at its start")
        );
        assert!(
            unsendable_token("a b")
                .unwrap()
                .contains("a space inside it")
        );
        assert!(
            unsendable_token("a\tb")
                .unwrap()
                .contains("a tab inside it")
        );
        assert!(
            unsendable_token("tok\n")
                .unwrap()
                .contains("a newline at its end")
        );
        assert!(
            unsendable_token("a\u{0}b")
                .unwrap()
                .contains("control character U+0000")
        );
        assert!(
            unsendable_token("tök")
                .unwrap()
                .contains("non-ASCII character U+00F6")
        );
    }

    #[test]
    fn doubtful_passwords() {
        assert_eq!(doubtful_password("correct horse"), None);
        assert!(
            doubtful_password("pw ")
                .unwrap()
                .contains("a space at its end")
        );
        assert!(
            doubtful_password("pw\n")
                .unwrap()
                .contains("a newline at its end")
        );
        assert!(
            doubtful_password("p\u{7}w")
                .unwrap()
                .contains("U+0007 inside it")
        );
    }
}
