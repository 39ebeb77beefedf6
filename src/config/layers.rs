//! Several config files read as one: deep-merged in order, each value keeping its file and
//! line.
//!
//! Maps merge key by key; a scalar or a list from a later file replaces the earlier one
//! whole. The validators take one file and one [`Document`] and look lines up by path, so
//! the merged document numbers lines in one virtual space: file `i`'s lines are shifted
//! past all earlier files' lines, and [`Merged::remap`] turns a virtual line back into the
//! file and line it came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diag::Diagnostics;
use crate::yaml::{Document, join_key};

/// Prefix of environment variables that override config keys:
/// `KAFKA_HEALING__RECOVERY__DRY_RUN=true` sets `recovery.dry_run`.
pub const ENV_PREFIX: &str = "KAFKA_HEALING";

/// One parsed config file.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The file's path, as given (an overlay's as found beside the first file).
    pub path: PathBuf,
    /// Its parsed text.
    pub doc: Document,
    /// True for the `config/<environment>.yaml` overlay.
    pub overlay: bool,
}

/// The layers merged into one document.
pub(super) struct Merged {
    /// The merged tree; its lines are virtual (see the module comment).
    pub doc: Document,
    /// Each layer's file and the offset its lines were shifted by, in layer order.
    spans: Vec<(PathBuf, usize)>,
}

impl Merged {
    /// Merges `layers` in order (later wins).
    pub fn new(layers: &[Layer]) -> Merged {
        let mut value = Value::Object(Default::default());
        let mut lines = HashMap::new();
        let mut plain = HashMap::new();
        let mut spans = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for layer in layers {
            spans.push((layer.path.clone(), offset));
            let mut acc = Acc {
                lines: &mut lines,
                plain: &mut plain,
                over: &layer.doc,
                offset,
            };
            if let (Value::Object(base), Value::Object(over)) = (&mut value, &layer.doc.value) {
                acc.merge_map(base, over, "");
            }
            let (own, _) = layer.doc.parts();
            offset += own.values().copied().max().unwrap_or(0) + 1;
        }
        Merged {
            doc: Document::from_parts(value, lines, plain),
            spans,
        }
    }

    /// The file and real line of a virtual line.
    pub fn place(&self, line: usize) -> (&Path, usize) {
        let i = self
            .spans
            .iter()
            .rposition(|(_, off)| *off < line)
            .unwrap_or(0);
        let (path, off) = &self.spans[i];
        (path, line.saturating_sub(*off))
    }

    /// Gives every diagnostic the merged phase reported against `primary` (the first file)
    /// the file and line its value really came from.
    pub fn remap(&self, diags: &mut Diagnostics, primary: &Path) {
        if self.spans.len() < 2 {
            return;
        }
        for d in &mut diags.items {
            if d.file != primary {
                continue;
            }
            if let Some(v) = d.line {
                let (file, line) = self.place(v);
                d.file = file.to_path_buf();
                d.line = Some(line);
            }
        }
    }
}

/// What merging one layer needs besides the two trees.
struct Acc<'a> {
    lines: &'a mut HashMap<String, usize>,
    plain: &'a mut HashMap<String, String>,
    over: &'a Document,
    offset: usize,
}

impl Acc<'_> {
    fn merge_map(
        &mut self,
        base: &mut serde_json::Map<String, Value>,
        over: &serde_json::Map<String, Value>,
        path: &str,
    ) {
        for (k, ov) in over {
            let p = join_key(path, k);
            match (base.get_mut(k), ov) {
                (Some(Value::Object(b)), Value::Object(o)) => {
                    // The map's own line stays where it was introduced.
                    if !self.lines.contains_key(&p)
                        && let Some(l) = self.over.own_line(&p)
                    {
                        self.lines.insert(p.clone(), l + self.offset);
                    }
                    self.merge_map(b, o, &p);
                }
                _ => {
                    self.replace(&p);
                    base.insert(k.clone(), ov.clone());
                }
            }
        }
    }

    /// Drops what earlier layers said under `p` and takes this layer's lines and texts.
    fn replace(&mut self, p: &str) {
        self.lines.retain(|k, _| !under(k, p));
        self.plain.retain(|k, _| !under(k, p));
        let (lines, plain) = self.over.parts();
        for (k, l) in lines {
            if under(k, p) {
                self.lines.insert(k.clone(), l + self.offset);
            }
        }
        for (k, t) in plain {
            if under(k, p) {
                self.plain.insert(k.clone(), t.clone());
            }
        }
    }
}

/// True when `path` is `p` or lies below it (`p.x`, `p[0]`).
pub(super) fn under(path: &str, p: &str) -> bool {
    path.strip_prefix(p)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Why an `environment` value cannot name an overlay file, if it cannot.
pub(super) fn bad_environment_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.contains("..") {
        Some("it contains `..`")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        Some("only letters, digits, `-`, `_` and `.` may be used")
    } else {
        None
    }
}

/// Where the overlay of environment `name` is: `config/<name>.yaml` in the first file's
/// directory.
pub(super) fn overlay_path(first: &Path, name: &str) -> PathBuf {
    first
        .parent()
        .unwrap_or(Path::new(""))
        .join("config")
        .join(format!("{name}.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(path: &str, text: &str) -> Layer {
        Layer {
            path: PathBuf::from(path),
            doc: Document::parse(text).expect("yaml"),
            overlay: false,
        }
    }

    #[test]
    fn maps_merge_and_scalars_and_lists_replace() {
        let a = layer(
            "a.yaml",
            "x:\n  keep: 1\n  over: 2\n  list: [1, 2, 3]\n  inner:\n    deep: a\n",
        );
        let b = layer(
            "b.yaml",
            "# comment\nx:\n  over: 20\n  list: [9]\n  inner:\n    added: b\ny: new\n",
        );
        let m = Merged::new(&[a, b]);
        let v = &m.doc.value;
        assert_eq!(v["x"]["keep"], 1);
        assert_eq!(v["x"]["over"], 20);
        assert_eq!(v["x"]["list"], serde_json::json!([9]));
        assert_eq!(v["x"]["inner"]["deep"], "a");
        assert_eq!(v["x"]["inner"]["added"], "b");
        assert_eq!(v["y"], "new");
        let at = |p: &str| {
            let (f, l) = m.place(m.doc.line_of(p).expect("line"));
            format!("{}:{l}", f.display())
        };
        assert_eq!(at("x.keep"), "a.yaml:2");
        assert_eq!(at("x.over"), "b.yaml:3");
        assert_eq!(at("x.list"), "b.yaml:4");
        assert_eq!(at("x.inner.deep"), "a.yaml:6");
        assert_eq!(at("x.inner.added"), "b.yaml:6");
        assert_eq!(at("y"), "b.yaml:7");
        // The replaced list's third element is gone, lines and all.
        assert_eq!(m.doc.own_line("x.list[2]"), None);
        assert_eq!(at("x"), "a.yaml:1", "a map stays where it was introduced");
    }

    #[test]
    fn a_scalar_replaces_a_map_and_a_map_a_scalar() {
        let m = Merged::new(&[
            layer("a.yaml", "x:\n  a: 1\ny: 2\n"),
            layer("b.yaml", "x: off\ny:\n  b: 3\n"),
        ]);
        assert_eq!(m.doc.value["x"], "off");
        assert_eq!(m.doc.value["y"]["b"], 3);
        assert_eq!(m.doc.own_line("x.a"), None);
        assert_eq!(m.doc.plain_text("y.b"), Some("3"));
    }

    #[test]
    fn environment_names_must_be_plain() {
        assert_eq!(bad_environment_name("production"), None);
        assert_eq!(bad_environment_name("eu-west_1"), None);
        assert!(bad_environment_name("../x").is_some());
        assert!(bad_environment_name("a/b").is_some());
        assert!(bad_environment_name("").is_some());
        assert!(bad_environment_name(".hidden").is_some());
        assert!(bad_environment_name("a b").is_some());
        assert_eq!(
            overlay_path(Path::new("/etc/kh/config.yaml"), "production"),
            PathBuf::from("/etc/kh/config/production.yaml")
        );
    }
}
