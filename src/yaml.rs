//! YAML documents that remember where each value came from.
//!
//! Every error `check` reports names a file and a line. Serde deserializers only know a
//! value's *path* (`rules[2].matchers[0]`), so this module parses YAML once with
//! `yaml-rust2`, builds a JSON value for serde and
//! an index from path to line. Duplicate mapping keys, which YAML parsers silently resolve
//! to the last one, are reported as errors here.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::ScanError;
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, Scanner, TScalarStyle};

/// A YAML parse failure with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} column {column}: {message}")]
pub struct YamlError {
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column of the problem.
    pub column: usize,
    /// What the parser found wrong.
    pub message: String,
}

/// A parsed YAML document: its value and the line each path starts on.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The document as JSON (YAML's data model mapped onto JSON's).
    pub value: Value,
    lines: HashMap<String, usize>,
    /// The text of each plain scalar YAML read as a number or boolean, by path.
    plain: HashMap<String, String>,
}

impl Document {
    /// Parses `text` (a single YAML document; an empty text is `null`).
    pub fn parse(text: &str) -> Result<Document, YamlError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser
            .load(&mut builder, false)
            .map_err(|e| syntax_error(text, &e))?;
        if let Some(err) = builder.error {
            return Err(err);
        }
        Ok(Document {
            value: builder.root.unwrap_or(Value::Null),
            lines: builder.lines,
            plain: builder.plain,
        })
    }

    /// The text of the plain scalar at `path` when YAML read it as a number or boolean
    /// (`007` for the integer 7), so that a string field can take what was written.
    pub fn plain_text(&self, path: &str) -> Option<&str> {
        self.plain.get(path).map(String::as_str)
    }

    /// Builds a document from its parts (layered configs merge documents).
    pub(crate) fn from_parts(
        value: Value,
        lines: HashMap<String, usize>,
        plain: HashMap<String, String>,
    ) -> Document {
        Document {
            value,
            lines,
            plain,
        }
    }

    /// The line of each path and the text of each plain scalar, by path.
    pub(crate) fn parts(&self) -> (&HashMap<String, usize>, &HashMap<String, String>) {
        (&self.lines, &self.plain)
    }

    /// The line `path` itself starts on (no ancestor's), when the document has that path.
    pub fn own_line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line a path (`a.b[0].c`, as `serde_path_to_error` prints it) starts on, or the
    /// line of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// A syntax error where the problem is. The scanner reports a problem inside a token at the
/// token's start ("while scanning a plain scalar, found a tab" names the scalar's line, not
/// the tab's); where it stopped is the line to fix, so that is reported, with the start.
fn syntax_error(text: &str, e: &ScanError) -> YamlError {
    let start = *e.marker();
    let mut scanner = Scanner::new(text.chars());
    // Bounded: every token consumes input, and the scanner stops at the first error.
    for _ in scanner.by_ref() {}
    let stop = scanner.mark();
    let same = scanner.get_error().as_ref() == Some(e);
    if same && stop.line() > start.line() {
        return YamlError {
            line: stop.line(),
            column: stop.col() + 1,
            message: format!("{} (scanning from line {})", e.info(), start.line()),
        };
    }
    YamlError {
        line: start.line(),
        column: start.col() + 1,
        message: e.info().to_string(),
    }
}

/// Deserializes `v`, the value found at path `at` of a document. On failure returns the full
/// path of the offending value (for [`Document::line_of`]) and serde's message.
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
    v: Value,
    at: &str,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => at.to_string(),
            i if i.starts_with('[') => format!("{at}{i}"),
            i => join_key(at, i),
        };
        (path, e.into_inner().to_string())
    })
}

/// Joins a parent path and a map key the way `serde_path_to_error` prints paths.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a parent path and a sequence index.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    lines: HashMap<String, usize>,
    plain: HashMap<String, String>,
    anchors: HashMap<usize, Value>,
    error: Option<YamlError>,
}

impl Builder {
    /// The path the next value will have, or `None` when the next scalar is a mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { path, items, .. }) => Some(join_index(path, items.len())),
            Some(Frame::Map { path, key, .. }) => key.as_ref().map(|k| join_key(path, k)),
        }
    }

    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                line: mark.line(),
                column: mark.col() + 1,
                message,
            });
        }
    }

    fn push_value(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, path, .. }) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                None => {
                    let k = match value {
                        Value::String(s) => s,
                        Value::Null => String::from("null"),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            let p = path.clone();
                            self.fail(mark, format!("{p}: a mapping key must be a scalar"));
                            return;
                        }
                    };
                    let p = join_key(path, &k);
                    if map.contains_key(&k) {
                        self.fail(mark, format!("duplicate key `{p}`"));
                        return;
                    }
                    // A value is reported at its key's line, even when it starts below it.
                    self.lines.entry(p).or_insert(mark.line());
                    *key = Some(k);
                }
            },
        }
    }
}

fn scalar(text: String, style: TScalarStyle, tagged_str: bool) -> Value {
    if style != TScalarStyle::Plain || tagged_str {
        return Value::String(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::String(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(path) = self.next_path() {
                    self.lines.entry(path).or_insert(mark.line());
                }
                let tagged_str = tag.is_some_and(|t| t.suffix == "str");
                let value = scalar(text.clone(), style, tagged_str);
                if let (Some(path), Value::Number(_) | Value::Bool(_)) = (self.next_path(), &value)
                {
                    self.plain.insert(path, text);
                }
                self.push_value(value, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => {
                let path = self.next_path().unwrap_or_default();
                self.lines.entry(path.clone()).or_insert(mark.line());
                self.stack.push(Frame::Seq {
                    path,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                let Some(path) = self.next_path() else {
                    self.fail(mark, "a mapping key must be a scalar".into());
                    return;
                };
                self.lines.entry(path.clone()).or_insert(mark.line());
                self.stack.push(Frame::Map {
                    path,
                    map: Map::new(),
                    key: None,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => {
                    self.push_value(Value::Array(items), anchor, mark)
                }
                Some(Frame::Map { map, anchor, .. }) => {
                    self.push_value(Value::Object(map), anchor, mark)
                }
                None => self.fail(mark, "unbalanced collection end".into()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(v) => self.push_value(v, 0, mark),
                None => self.fail(mark, "alias to an unknown anchor".into()),
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_lines() {
        let doc = Document::parse("a: 1\nb:\n  - x: \"7\"\n    y: yes\n  - 2.5\nc: ~\n").unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"a": 1, "b": [{"x": "7", "y": "yes"}, 2.5], "c": null})
        );
        assert_eq!(doc.line_of("a"), Some(1));
        assert_eq!(doc.line_of("b"), Some(2));
        assert_eq!(doc.line_of("b[0].y"), Some(4));
        assert_eq!(doc.line_of("b[1]"), Some(5));
        assert_eq!(doc.line_of("b[0].y.nope"), Some(4));
        assert_eq!(doc.line_of("c"), Some(6));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = Document::parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = Document::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 2), "{err:?}");
    }

    #[test]
    fn syntax_error_names_the_line_to_fix_not_the_token_start() {
        // A tab indents line 3; the scalar the scanner was reading starts on line 2.
        let err = Document::parse("a: 1\nb: 2\n\tc: 3\nd: 4\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert_eq!(
            err.message,
            "while scanning a plain scalar, found a tab (scanning from line 2)"
        );
        // A missing `:` is found on the next line: the scanner's own mark is right there.
        let err = Document::parse("a: 1\nb: c: d\ne: 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5), "{err:?}");
        assert_eq!(
            err.message,
            "mapping values are not allowed in this context"
        );
    }

    #[test]
    fn anchors_and_aliases() {
        let doc = Document::parse("x: &v [1, 2]\ny: *v\n").unwrap();
        assert_eq!(doc.value["y"], serde_json::json!([1, 2]));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let doc = Document::parse("a: \"123\"\nb: '1.5'\nc: !!str 9\nd: true\n").unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"a": "123", "b": "1.5", "c": "9", "d": true})
        );
    }
}
