//! `http` step URLs. Where a request goes (scheme, host, port) is fixed by the template's
//! literal text and config values (`{{target.host}}`, `{{target.port}}`); any other value
//! only fills the path and query, each one percent-encoded as a single segment or query
//! value, so no label can add a segment, climb with `..`, start a new query parameter,
//! add a fragment or userinfo, or change the host.

use std::sync::LazyLock;

use regex::Regex;
use reqwest::Url;

use crate::runbook::render::{Renderer, StepError};

/// The only values an authority (host and port) may be rendered from: config values.
pub const AUTHORITY_VALUES: &[&str] = &["target.host", "target.port"];

/// One piece of a URL template: literal text or one `{{ name.path }}` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text, used as written.
    Lit(String),
    /// A value's template source (`{{ alert.labels.x }}`) and its dotted name.
    Value { src: String, name: String },
}

/// A URL template, split where it is parsed so that each value's place is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlTemplate {
    /// `http` or `https`, always literal.
    pub scheme: &'static str,
    /// Host and optional `:port`.
    pub authority: Vec<Piece>,
    /// The path (starts with `/` when not empty).
    pub path: Vec<Piece>,
    /// The query (after `?`), when there is one.
    pub query: Option<Vec<Piece>>,
}

/// A URL as rendered, with its parts as sent (see [`UrlTemplate::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedUrl {
    /// The exact URL that is sent and journaled.
    pub url: String,
    /// The path as sent.
    pub path: String,
    /// The query as sent.
    pub query: Option<String>,
}

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$").expect("static regex")
});

static AUTHORITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.\-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
        .expect("static regex")
});

/// Why a URL template is refused (for `check` and the loader): each says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// `{{` with no `}}` after it.
    #[error("a `{{{{` is not closed")]
    NotClosed,
    /// A helper, block or triple-stash where only a plain value may go; carries the inside.
    #[error(
        "`{{{{{0}}}}}`: a URL takes only plain values such as \
         `{{{{alert.labels.topic}}}}` (no helpers, blocks or `{{{{{{…}}}}}}`)"
    )]
    NotPlain(String),
    /// The scheme is not literal `http://` or `https://`.
    #[error("the URL must start with literal `http://` or `https://`")]
    Scheme,
    /// A value other than [`AUTHORITY_VALUES`] in the host or port; carries its name.
    #[error(
        "`{{{{{0}}}}}` is in the host or port: they come only from the \
         URL's literal text or from `{{{{target.host}}}}` and \
         `{{{{target.port}}}}` (config), never from alert data or params"
    )]
    ValueInAuthority(String),
    /// Nothing before the path.
    #[error("the URL has no host")]
    NoHost,
    /// A `#` anywhere in the literal text.
    #[error("a URL fragment (`#…`) is never sent: leave it out")]
    Fragment,
    /// `user:pw@` in the authority.
    #[error(
        "credentials in the URL (`user:pw@`) are refused: set an \
         `Authorization` header from a secret"
    )]
    Credentials,
    /// A character that no host or port has.
    #[error("`{}` cannot be in the host or port", .0.escape_debug())]
    HostChar(char),
    /// A character that must be percent-encoded in the path or query.
    #[error("`{}` must be percent-encoded in the URL's literal text", .0.escape_debug())]
    NotEncoded(char),
}

/// Splits `src` into literal text and plain `{{ name.path }}` values. Helpers and blocks
/// are refused: a value's place in the URL must be known before it is rendered.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Piece>, UrlError> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("{{") {
        if i > 0 {
            out.push(Piece::Lit(rest[..i].to_string()));
        }
        let after = &rest[i + 2..];
        let end = after.find("}}").ok_or(UrlError::NotClosed)?;
        let inner = after[..end].trim();
        if !NAME.is_match(inner) {
            return Err(UrlError::NotPlain(inner.to_string()));
        }
        let src_end = i + 2 + end + 2;
        out.push(Piece::Value {
            src: rest[i..src_end].to_string(),
            name: inner.to_string(),
        });
        rest = &rest[src_end..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.to_string()));
    }
    Ok(out)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Part {
    Authority,
    Path,
    Query,
}

fn lit_ok(c: char, part: Part) -> bool {
    c.is_ascii_alphanumeric()
        || "-._~!$&'()*+,;=:@/%".contains(c)
        || (part == Part::Query && c == '?')
}

impl UrlTemplate {
    /// Parses a URL template; the error says what is wrong, for `check`.
    pub fn parse(src: &str) -> Result<UrlTemplate, UrlError> {
        let mut pieces = tokenize(src)?.into_iter();
        let first = match pieces.next() {
            Some(Piece::Lit(s)) => s,
            _ => String::new(),
        };
        let (scheme, rest) = if let Some(r) = first.strip_prefix("https://") {
            ("https", r.to_string())
        } else if let Some(r) = first.strip_prefix("http://") {
            ("http", r.to_string())
        } else {
            return Err(UrlError::Scheme);
        };
        let mut t = UrlTemplate {
            scheme,
            authority: Vec::new(),
            path: Vec::new(),
            query: None,
        };
        let mut part = Part::Authority;
        for p in std::iter::once(Piece::Lit(rest)).chain(pieces) {
            match p {
                Piece::Lit(s) => t.push_lit(&s, &mut part)?,
                Piece::Value { ref name, .. } if part == Part::Authority => {
                    if !AUTHORITY_VALUES.contains(&name.as_str()) {
                        return Err(UrlError::ValueInAuthority(name.clone()));
                    }
                    t.authority.push(p);
                }
                v @ Piece::Value { .. } => t.part_mut(part).push(v),
            }
        }
        if t.authority.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(t)
    }

    fn part_mut(&mut self, part: Part) -> &mut Vec<Piece> {
        match part {
            Part::Authority => &mut self.authority,
            Part::Path => &mut self.path,
            Part::Query => self.query.get_or_insert_with(Vec::new),
        }
    }

    fn push_lit(&mut self, s: &str, part: &mut Part) -> Result<(), UrlError> {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let next = match (c, *part) {
                ('#', _) => return Err(UrlError::Fragment),
                ('@', Part::Authority) => return Err(UrlError::Credentials),
                ('/', Part::Authority) => Some(Part::Path),
                ('?', Part::Authority | Part::Path) => Some(Part::Query),
                (c, Part::Authority) if !(c.is_ascii_alphanumeric() || "-._:[]".contains(c)) => {
                    return Err(UrlError::HostChar(c));
                }
                (c, p) if p != Part::Authority && !lit_ok(c, p) => {
                    return Err(UrlError::NotEncoded(c));
                }
                _ => None,
            };
            if let Some(n) = next {
                if i > start {
                    self.part_mut(*part)
                        .push(Piece::Lit(s[start..i].to_string()));
                }
                *part = n;
                // `/` belongs to the path; `?` only separates.
                start = if c == '/' { i } else { i + 1 };
                if n == Part::Query {
                    self.query.get_or_insert_with(Vec::new);
                }
            }
        }
        if start < s.len() {
            self.part_mut(*part)
                .push(Piece::Lit(s[start..].to_string()));
        }
        Ok(())
    }

    /// Every value's template source, for `check` and the loader.
    pub fn templates(&self) -> Vec<&str> {
        self.authority
            .iter()
            .chain(&self.path)
            .chain(self.query.iter().flatten())
            .filter_map(|p| match p {
                Piece::Value { src, .. } => Some(src.as_str()),
                Piece::Lit(_) => None,
            })
            .collect()
    }

    /// Renders the URL: values are checked ([`checked_value`]) and percent-encoded (path
    /// values as one segment, query values as values); a value that makes a `.` or `..`
    /// path segment is refused.
    pub fn render(&self, r: &Renderer<'_>, field: &str) -> Result<RenderedUrl, StepError> {
        let fill = |pieces: &[Piece], encode: bool| -> Result<String, StepError> {
            let mut s = String::new();
            for p in pieces {
                match p {
                    Piece::Lit(l) => s.push_str(l),
                    Piece::Value { src, .. } => {
                        let v = checked_value(r, field, src)?;
                        if encode {
                            s.push_str(&encode_component(&v));
                        } else {
                            s.push_str(&v);
                        }
                    }
                }
            }
            Ok(s)
        };
        let authority = fill(&self.authority, false)?;
        if !AUTHORITY.is_match(&authority) {
            return Err(r.error(format!(
                "{field}: `{}` is not a host or host:port",
                authority.escape_debug()
            )));
        }
        let mut path = fill(&self.path, true)?;
        if path.is_empty() {
            path.push('/');
        }
        if let Some(seg) = path.split('/').find(|s| is_dot_segment(s)) {
            return Err(r.error(format!("{field}: a path segment `{seg}` is refused")));
        }
        let query = self.query.as_ref().map(|q| fill(q, true)).transpose()?;
        let mut s = format!("{}://{authority}{path}", self.scheme);
        if let Some(q) = &query {
            s.push('?');
            s.push_str(q);
        }
        let url = Url::parse(&s).map_err(|e| r.error(format!("{field}: `{s}`: {e}")))?;
        // Values are fully encoded, so the parser has nothing left to reinterpret.
        if url.path() != path || url.query() != query.as_deref() {
            return Err(r.error(format!(
                "{field}: `{s}` would be sent as `{}`",
                url.as_str()
            )));
        }
        Ok(RenderedUrl {
            url: url.as_str().to_string(),
            path,
            query,
        })
    }
}

/// Renders one value; CR, LF and NUL are refused, never stripped.
pub(crate) fn checked_value(r: &Renderer<'_>, field: &str, src: &str) -> Result<String, StepError> {
    let v = r.one(field, src)?;
    if let Some(c) = v.chars().find(|c| matches!(c, '\r' | '\n')) {
        return Err(r.error(format!(
            "{field}: a rendered value contains `{}` (CR, LF and NUL are refused)",
            c.escape_debug()
        )));
    }
    Ok(v)
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`).
pub fn encode_component(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `.` and `..`, also percent-encoded, which URL parsers resolve away.
fn is_dot_segment(s: &str) -> bool {
    let l = s.to_ascii_lowercase().replace("%2e", ".");
    l == "." || l == ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::template::Templates;
    use serde_json::json;

    fn lit(s: &str) -> Piece {
        Piece::Lit(s.into())
    }

    fn val(name: &str) -> Piece {
        Piece::Value {
            src: format!("{{{{{name}}}}}"),
            name: name.into(),
        }
    }

    fn render(src: &str, ctx: serde_json::Value) -> Result<RenderedUrl, String> {
        let t = UrlTemplate::parse(src).map_err(|e| e.to_string())?;
        let mut templates = Templates::default();
        for s in t.templates() {
            templates.add(s).map_err(|e| e.0)?;
        }
        let r = Renderer {
            templates: &templates,
            ctx: &ctx,
            step: "s",
            brokers: &[],
        };
        t.render(&r, "url").map_err(|e| e.message)
    }

    #[test]
    fn splits_where_values_go() {
        let t = UrlTemplate::parse("http://h:1/a/{{x.y}}?q={{ x.z }}&r=1").unwrap();
        assert_eq!(t.scheme, "http");
        assert_eq!(t.authority, [lit("h:1")]);
        assert_eq!(t.path, [lit("/a/"), val("x.y")]);
        let z = Piece::Value {
            src: "{{ x.z }}".into(),
            name: "x.z".into(),
        };
        assert_eq!(t.query, Some(vec![lit("q="), z, lit("&r=1")]));
        let t = UrlTemplate::parse("https://{{target.host}}:{{target.port}}?a").unwrap();
        assert_eq!(
            t.authority,
            [val("target.host"), lit(":"), val("target.port")]
        );
        assert_eq!((t.path.len(), t.query), (0, Some(vec![lit("a")])));
    }

    #[test]
    fn refuses_what_could_move_the_request() {
        use UrlError as E;
        let authority = |n: &str| E::ValueInAuthority(n.into());
        for (src, variant, want) in [
            (
                "http://{{alert.labels.h}}/",
                authority("alert.labels.h"),
                "is in the host or port",
            ),
            (
                "http://h:{{params.port}}/",
                authority("params.port"),
                "is in the host or port",
            ),
            ("{{s}}://h/", E::Scheme, "literal `http://`"),
            ("ftp://h/", E::Scheme, "literal `http://`"),
            ("http://u:p@h/", E::Credentials, "credentials"),
            ("http://h/#x", E::Fragment, "fragment"),
            (
                "http://h/{{{x}}}",
                E::NotPlain("{x".into()),
                "only plain values",
            ),
            (
                "http://h/{{lookup x 'y'}}",
                E::NotPlain("lookup x 'y'".into()),
                "only plain values",
            ),
            ("http://h/{{x", E::NotClosed, "not closed"),
            ("http://h/a b", E::NotEncoded(' '), "percent-encoded"),
            ("http://h%2f:1/", E::HostChar('%'), "cannot be in the host"),
            ("http://h x/", E::HostChar(' '), "cannot be in the host"),
            ("http:///x", E::NoHost, "no host"),
        ] {
            let e = UrlTemplate::parse(src).unwrap_err();
            assert_eq!(e, variant, "{src}");
            assert!(e.to_string().contains(want), "{src}: {e}");
        }
        // The words users see, exactly as before the errors were typed.
        assert_eq!(E::NotClosed.to_string(), "a `{{` is not closed");
        assert_eq!(
            authority("alert.labels.h").to_string(),
            "`{{alert.labels.h}}` is in the host or port: they come only from the URL's \
             literal text or from `{{target.host}}` and `{{target.port}}` (config), never \
             from alert data or params"
        );
        assert_eq!(
            E::NotPlain("x y".into()).to_string(),
            "`{{x y}}`: a URL takes only plain values such as `{{alert.labels.topic}}` \
             (no helpers, blocks or `{{{…}}}`)"
        );
        assert_eq!(
            E::HostChar('\n').to_string(),
            "`\\n` cannot be in the host or port"
        );
    }

    #[test]
    fn values_are_encoded_and_checked() {
        let ctx = |v: &str| json!({"x": {"v": v}, "target": {"host": "k1", "port": 9092}});
        let u = render("http://h/a/{{x.v}}/b?q={{x.v}}", ctx("../c?d=1&e#f g+é")).unwrap();
        let enc = "..%2Fc%3Fd%3D1%26e%23f%20g%2B%C3%A9";
        assert_eq!(u.url, format!("http://h/a/{enc}/b?q={enc}"));
        let u = render("https://{{target.host}}:{{target.port}}", ctx("")).unwrap();
        assert_eq!((u.url.as_str(), u.path.as_str()), ("https://k1:9092/", "/"));
        for (v, want) in [
            ("..", "path segment `..`"),
            (".", "path segment `.`"),
            ("a\rb", "contains `\\r`"),
            ("a\nb", "contains `\\n`"),
            ("a\0b", "NUL"),
        ] {
            let e = render("http://h/a/{{x.v}}/b", ctx(v)).unwrap_err();
            assert!(e.contains(want), "{v:?}: {e}");
        }
        // A config value that is not a host is refused too.
        let bad = json!({"target": {"host": "a@b", "port": 1}});
        let e = render("http://{{target.host}}/", bad).unwrap_err();
        assert!(e.contains("is not a host"), "{e}");
    }
}
