//! Alertmanager label matchers, with Alertmanager's exact semantics.
//!
//! Syntax as `amtool` and `matchers:` in alertmanager.yml accept it:
//! `name op value` with op one of `=`, `!=`, `=~`, `!~`; the value may be double-quoted
//! (`\"`, `\\` and `\n` escapes; any other backslash is literal, as in Alertmanager's
//! `ParseMatcher`). Regexes are fully anchored (`^(?:re)$`). A missing label is the empty
//! string, so `severity=""` matches alerts without `severity` and `severity!~".+"` too.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// The four match operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// A parsed matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value (unescaped); for regex operators, the regex source as written.
    pub value: String,
    regex: Option<Regex>,
}

/// Why a matcher string is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// Not `name op value`.
    #[error("bad matcher format `{0}`: expected name=\"value\" with one of = != =~ !~")]
    Format(String),
    /// Before the operator stands something that is not a label name (`1bad="x"`).
    #[error(
        "bad matcher `{matcher}`: `{name}` is not a label name (label names match \
         [a-zA-Z_:][a-zA-Z0-9_:]*: a letter, `_` or `:` first, then letters, digits, `_`, `:`)"
    )]
    Name {
        /// The matcher as written.
        matcher: String,
        /// What stands where the label name should.
        name: String,
    },
    /// A `"` inside the value that is not escaped, or a missing closing quote.
    #[error("matcher value contains an unescaped double quote: `{0}`")]
    Quote(String),
    /// The regex does not compile.
    #[error("invalid regex `{regex}`: {reason}")]
    Regex {
        /// The regex as written.
        regex: String,
        /// The compiler's complaint.
        reason: String,
    },
}

/// Go's `\s` (`[\t\n\f\r ]`), which Alertmanager's matcher regex trims: not Unicode
/// whitespace, so a no-break space stays part of a value as it does in Alertmanager.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Rewrites the Perl classes and word boundaries whose meaning differs between Go's RE2
/// (what Alertmanager compiles with: ASCII) and Rust's `regex` (Unicode), so that a label
/// value like `٣` matches `\d` here exactly when it does in Alertmanager.
fn go_compatible(re: &str) -> String {
    const DIGIT: &str = "0-9";
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = "\\t\\n\\f\\r ";
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    // True right after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            let Some(n) = chars.next() else {
                out.push('\\');
                break;
            };
            let class = match n {
                'd' => Some((false, DIGIT)),
                'D' => Some((true, DIGIT)),
                'w' => Some((false, WORD)),
                'W' => Some((true, WORD)),
                's' => Some((false, SPACE)),
                'S' => Some((true, SPACE)),
                _ => None,
            };
            match class {
                Some((neg, set)) => {
                    out.push('[');
                    if neg {
                        out.push('^');
                    }
                    out.push_str(set);
                    out.push(']');
                }
                None if !in_class && matches!(n, 'b' | 'B') => {
                    out.push_str(&format!("(?-u:\\{n})"));
                }
                None => {
                    out.push('\\');
                    out.push(n);
                }
            }
            class_start = false;
            continue;
        }
        out.push(c);
        if in_class {
            if c == '[' && chars.peek() == Some(&':') {
                // A POSIX class `[:alpha:]`: copy through its closing `:]`.
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            } else if c == ']' && !class_start {
                in_class = false;
            }
            class_start = false;
        } else if c == '[' {
            in_class = true;
            class_start = true;
            if chars.peek() == Some(&'^') {
                out.push('^');
                chars.next();
            }
        }
    }
    out
}

/// Most regexes [`anchored_regex`] keeps compiled per thread; past that the cache starts over.
const REGEX_CACHE_MAX: usize = 4096;

thread_local! {
    /// Compiled regexes by source. Rule files repeat the same matchers (`severity=~"critical|page"`,
    /// `cluster=~"prod-.*"`) across many rules, and compiling one costs ~100 µs here (the
    /// `regex` crate builds a full DFA for small patterns, since `tracing-subscriber` enables
    /// that feature), which dominated `check` on large rule sets. `Regex` clones share the
    /// compiled program.
    static REGEX_CACHE: std::cell::RefCell<std::collections::HashMap<String, Regex>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Compiles `re` anchored at both ends, as Alertmanager and Prometheus do, with Go's ASCII
/// meaning of `\d`, `\w`, `\s` and `\b`. The same source gives the same regex, compiled once
/// per thread (errors are not cached).
pub fn anchored_regex(re: &str) -> Result<Regex, MatcherError> {
    if let Some(hit) = REGEX_CACHE.with(|c| c.borrow().get(re).cloned()) {
        return Ok(hit);
    }
    let compiled = compile_anchored(re)?;
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE_MAX {
            c.clear();
        }
        c.insert(re.to_string(), compiled.clone());
    });
    Ok(compiled)
}

fn compile_anchored(re: &str) -> Result<Regex, MatcherError> {
    Regex::new(&format!("^(?:{})$", go_compatible(re))).map_err(|e| MatcherError::Regex {
        regex: re.to_string(),
        reason: e
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("error: ")
            .to_string(),
    })
}

/// The error for `t` (the trimmed `s`) whose start is not `name op`: when an operator
/// follows something, that something is the bad label name; else the whole is malformed.
fn bad_name(s: &str, t: &str) -> MatcherError {
    let op = ["=~", "!~", "!=", "="]
        .iter()
        .filter_map(|op| t.find(op))
        .min();
    match op.map(|i| t[..i].trim_end_matches(is_go_space)) {
        Some(name) if !name.is_empty() && !name.contains(['"', '\'']) => MatcherError::Name {
            matcher: s.to_string(),
            name: name.to_string(),
        },
        _ => MatcherError::Format(s.to_string()),
    }
}

impl Matcher {
    /// A matcher from its parts, as Alertmanager's API v2 gives a silence's (`name`,
    /// `value`, `isRegex`, `isEqual`): the value is taken as it is (no quotes, no escapes);
    /// a regex is anchored as in [`parse`](Self::parse).
    pub fn from_parts(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored_regex(value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses one matcher string.
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let t = s.trim_matches(is_go_space);
        let name_end = t.find(|c: char| !is_name_char(c)).unwrap_or(t.len());
        let name = &t[..name_end];
        if name.is_empty() || !name.starts_with(is_name_start) {
            return Err(bad_name(s, t));
        }
        let rest = t[name_end..].trim_start_matches(is_go_space);
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(bad_name(s, t));
        };
        let value = unescape(rest.trim_matches(is_go_space))?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored_regex(&value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether the label set matches; a missing label counts as `""`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // parse() always sets the regex for regex operators.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), escaped)
    }
}

/// Alertmanager's value unescaping (`pkg/labels/parse.go`).
fn unescape(raw: &str) -> Result<String, MatcherError> {
    let (body, mut expect_quote) = match raw.strip_prefix('"') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.peek().map(|&(_, n)| n) {
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some(n @ ('"' | '\\')) => {
                    out.push(n);
                    chars.next();
                }
                // A spurious escape or a trailing backslash is literal.
                _ => out.push('\\'),
            },
            '"' => {
                if !expect_quote || i + 1 < body.len() {
                    return Err(MatcherError::Quote(raw.to_string()));
                }
                expect_quote = false;
            }
            _ => out.push(c),
        }
    }
    if expect_quote {
        return Err(MatcherError::Quote(raw.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap()
    }

    #[test]
    fn cached_regexes_behave_like_fresh_ones() {
        let a = anchored_regex("critical|page").unwrap();
        let b = anchored_regex("critical|page").unwrap();
        assert_eq!(a.as_str(), b.as_str());
        assert!(b.is_match("page") && !b.is_match("pager"));
        // Errors are not cached: the same bad source fails every time.
        assert!(anchored_regex("(unclosed").is_err());
        assert!(anchored_regex("(unclosed").is_err());
        // Different sources stay apart.
        assert!(!anchored_regex("critical").unwrap().is_match("page"));
    }

    #[test]
    fn parses_operators_and_quotes() {
        let x = m(r#"alertname="KafkaBrokerDown""#);
        assert_eq!(
            (x.name.as_str(), x.op, x.value.as_str()),
            ("alertname", MatchOp::Equal, "KafkaBrokerDown")
        );
        assert_eq!(m("severity =~ critical|page").op, MatchOp::Regex);
        assert_eq!(m("a!=b").op, MatchOp::NotEqual);
        assert_eq!(m(r#"a!~"x.*""#).op, MatchOp::NotRegex);
        assert_eq!(m(r#"a="q\"uo\\te\n""#).value, "q\"uo\\te\n");
        assert_eq!(m(r#"a="back\slash""#).value, "back\\slash");
        assert_eq!(m(r#"a="""#).value, "");
        assert_eq!(m("a=").value, "");
        assert_eq!(m("job:rate5m=\"1\"").name, "job:rate5m");
    }

    #[test]
    fn rejects_bad_matchers() {
        assert_eq!(
            Matcher::parse("1abc=x").err(),
            Some(MatcherError::Name {
                matcher: "1abc=x".into(),
                name: "1abc".into()
            })
        );
        assert!(matches!(
            Matcher::parse("abc"),
            Err(MatcherError::Format(_))
        ));
        assert!(
            Matcher::parse("a==b").is_ok(),
            "a==b is a=\"=b\" in Alertmanager"
        );
        assert_eq!(
            Matcher::parse(" a-b =~ c").err(),
            Some(MatcherError::Name {
                matcher: " a-b =~ c".into(),
                name: "a-b".into()
            })
        );
        assert!(matches!(
            Matcher::parse(r#"a="unterminated"#),
            Err(MatcherError::Quote(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a="x"y""#),
            Err(MatcherError::Quote(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a=x"y"#),
            Err(MatcherError::Quote(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a=~"(unclosed""#),
            Err(MatcherError::Regex { .. })
        ));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let x = m(r#"severity=~"crit|page""#);
        assert!(x.matches(&labels(&[("severity", "crit")])));
        assert!(x.matches(&labels(&[("severity", "page")])));
        assert!(
            !x.matches(&labels(&[("severity", "critical")])),
            "prefix must not match"
        );
        assert!(
            !x.matches(&labels(&[("severity", "xpage")])),
            "suffix must not match"
        );
        let y = m(r#"instance=~"kafka-\\d+:9404""#);
        assert!(y.matches(&labels(&[("instance", "kafka-12:9404")])));
        assert!(!y.matches(&labels(&[("instance", "kafka-12:94045")])));
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        assert_eq!(go_compatible(r"\d+"), "[0-9]+");
        assert_eq!(go_compatible(r"[\d_]"), "[[0-9]_]");
        assert_eq!(go_compatible(r"[^\S]"), r"[^[^\t\n\f\r ]]");
        assert_eq!(go_compatible(r"\bx\B"), r"(?-u:\b)x(?-u:\B)");
        assert_eq!(go_compatible(r"[]\d]"), "[][0-9]]");
        assert_eq!(go_compatible(r"[[:alpha:]\w]"), "[[:alpha:][0-9A-Za-z_]]");
        assert_eq!(go_compatible(r"\\d"), r"\\d", "an escaped backslash then d");
        assert_eq!(go_compatible(r"\."), r"\.");
        let d = m(r#"x=~"\d+""#);
        assert!(d.matches(&labels(&[("x", "42")])));
        assert!(
            !d.matches(&labels(&[("x", "٣")])),
            "Arabic-Indic digit is not \\d in Go"
        );
        let w = m(r#"x=~"\w+""#);
        assert!(!w.matches(&labels(&[("x", "é")])));
        let sp = m(r#"x=~"a\sb""#);
        assert!(sp.matches(&labels(&[("x", "a b")])));
        assert!(!sp.matches(&labels(&[("x", "a\u{a0}b")])));
        assert!(
            !sp.matches(&labels(&[("x", "a\u{b}b")])),
            "Go's \\s has no \\v"
        );
    }

    #[test]
    fn missing_label_is_empty_string() {
        let none = labels(&[("alertname", "X")]);
        assert!(m(r#"severity="""#).matches(&none));
        assert!(!m(r#"severity!="""#).matches(&none));
        assert!(m(r#"severity!="critical""#).matches(&none));
        assert!(m(r#"severity!~".+""#).matches(&none));
        assert!(!m(r#"severity=~".+""#).matches(&none));
        assert!(m(r#"severity=~".*""#).matches(&none));
        assert!(
            !m(r#"severity!~"critical|""#).matches(&none),
            "!~ with an alternative matching empty"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [r#"a="x\"y""#, r#"b=~"c|d""#, r#"c!="""#, r#"d!~"a\nb""#] {
            let x = m(s);
            let again = m(&x.to_string());
            assert_eq!((again.name, again.op, again.value), (x.name, x.op, x.value));
        }
    }
}
