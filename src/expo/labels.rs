//! Label sets: `{name="value",...}` with Prometheus's escapes, and label value unescaping.

use std::borrow::Cow;

use super::scan::Cursor;

/// Above this many labels the duplicate check sorts instead of comparing every pair.
const PAIRWISE_MAX: usize = 16;

/// Parses a label set; the cursor is on the `{`. Leaves the cursor after the `}`.
///
/// Accepted: `{}`, a trailing comma, spaces and tabs around names, `=` and `,`. Rejected
/// like Prometheus does: a missing `=` or quote, an unterminated value, a bad label name, and
/// a label name given twice (Prometheus refuses such a series with "label name is not unique").
pub(super) fn parse_labels<'a>(
    cur: &mut Cursor<'a>,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<(), String> {
    cur.pos += 1; // the `{`
    loop {
        cur.skip_ws();
        match cur.peek() {
            Some(b'}') => {
                cur.pos += 1;
                break;
            }
            None => return Err("unterminated label set: expected `}`".into()),
            Some(_) => {}
        }
        let name = cur.label_name();
        if name.is_empty() {
            return Err(format!("invalid label name at `{}`", cur.snippet_here()));
        }
        cur.skip_ws();
        if cur.peek() != Some(b'=') {
            return Err(format!("expected `=` after label name `{name}`"));
        }
        cur.pos += 1;
        cur.skip_ws();
        if cur.peek() != Some(b'"') {
            return Err(format!("expected `\"` to open the value of label `{name}`"));
        }
        cur.pos += 1;
        let value = label_value(cur).ok_or("unterminated label value")?;
        labels.push((name, value));
        cur.skip_ws();
        match cur.peek() {
            Some(b',') => cur.pos += 1,
            Some(b'}') => {
                cur.pos += 1;
                break;
            }
            None => return Err("unterminated label set: expected `,` or `}`".into()),
            Some(_) => {
                return Err(format!(
                    "expected `,` or `}}` after the value of label `{name}`, found `{}`",
                    cur.snippet_here()
                ));
            }
        }
    }
    match duplicate(labels) {
        Some(name) => Err(format!("duplicate label `{name}`")),
        None => Ok(()),
    }
}

/// Reads a label value after its opening quote, leaving the cursor after the closing quote.
/// `None` if the line ends first. Borrowed unless an escape forces a copy.
#[inline]
fn label_value<'a>(cur: &mut Cursor<'a>) -> Option<Cow<'a, str>> {
    let start = cur.pos;
    let rest = cur.b.get(start..)?;
    let i = memchr::memchr2(b'"', b'\\', rest)?;
    if rest.get(i) == Some(&b'"') {
        cur.pos = start + i + 1;
        return Some(Cow::Borrowed(cur.slice(start, start + i)));
    }
    unescape_value(cur, start + i).map(Cow::Owned)
}

/// The slow path of [`label_value`]: `first_escape` is the offset of the first backslash.
/// `\\`, `\"` and `\n` are unescaped; any other escape is kept verbatim (backslash and all),
/// as Prometheus does.
#[cold]
fn unescape_value(cur: &mut Cursor<'_>, first_escape: usize) -> Option<String> {
    let mut out = String::with_capacity(first_escape - cur.pos + 16);
    out.push_str(cur.slice(cur.pos, first_escape));
    let mut pos = first_escape;
    loop {
        // `pos` is on a `"` or a `\`.
        match cur.b.get(pos)? {
            b'"' => {
                cur.pos = pos + 1;
                return Some(out);
            }
            _ => match cur.b.get(pos + 1)? {
                b'\\' => {
                    out.push('\\');
                    pos += 2;
                }
                b'"' => {
                    out.push('"');
                    pos += 2;
                }
                b'n' => {
                    out.push('\n');
                    pos += 2;
                }
                _ => {
                    out.push('\\');
                    pos += 1;
                }
            },
        }
        let i = memchr::memchr2(b'"', b'\\', cur.b.get(pos..)?)?;
        out.push_str(cur.slice(pos, pos + i));
        pos += i;
    }
}

/// The first label name that occurs twice, if any.
fn duplicate<'a>(labels: &[(&'a str, Cow<'a, str>)]) -> Option<&'a str> {
    if labels.len() <= PAIRWISE_MAX {
        for (i, (name, _)) in labels.iter().enumerate() {
            if labels.iter().skip(i + 1).any(|(other, _)| other == name) {
                return Some(name);
            }
        }
        return None;
    }
    let mut names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// Unescapes HELP text: `\\` and `\n` (the 0.0.4 format's only escapes there); other
/// backslashes are kept. Borrowed if there is nothing to unescape.
pub(super) fn unescape_help(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut ahead = chars.clone();
        match ahead.next() {
            Some('\\') => {
                out.push('\\');
                chars = ahead;
            }
            Some('n') => {
                out.push('\n');
                chars = ahead;
            }
            _ => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Result<Vec<(&str, Cow<'_, str>)>, String> {
        let mut cur = Cursor::new(s);
        let mut v = Vec::new();
        parse_labels(&mut cur, &mut v)?;
        assert_eq!(cur.rest(), " 1", "cursor left after the `}}`");
        Ok(v)
    }

    #[test]
    fn borrowed_unless_escaped() {
        let v = labels(r#"{a="x",b="y\"z",c="p\\q\nr\ts"} 1"#).unwrap();
        assert!(matches!(v[0].1, Cow::Borrowed("x")));
        assert_eq!(v[1].1, "y\"z");
        assert_eq!(v[2].1, "p\\q\nr\\ts");
    }

    #[test]
    fn errors() {
        assert_eq!(
            labels(r#"{a="x} 1"#).unwrap_err(),
            "unterminated label value"
        );
        assert_eq!(labels(r#"{a="x\"#).unwrap_err(), "unterminated label value");
        assert_eq!(
            labels(r#"{a="1",a="2"} 1"#).unwrap_err(),
            "duplicate label `a`"
        );
        assert_eq!(
            labels(r#"{a} 1"#).unwrap_err(),
            "expected `=` after label name `a`"
        );
        assert_eq!(
            labels(r#"{,} 1"#).unwrap_err(),
            "invalid label name at `,} 1`"
        );
    }

    #[test]
    fn many_labels_duplicate_check_sorts() {
        let mut s = String::from("{");
        for i in 0..40 {
            s.push_str(&format!("l{i}=\"v\","));
        }
        s.push_str("l7=\"again\"} 1");
        assert_eq!(labels(&s).unwrap_err(), "duplicate label `l7`");
    }

    #[test]
    fn help_escapes() {
        assert_eq!(unescape_help(r"a\\b\nc\td\"), "a\\b\nc\\td\\");
        assert!(matches!(unescape_help("plain"), Cow::Borrowed(_)));
    }
}
