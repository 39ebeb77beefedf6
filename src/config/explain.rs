//! `check --explain KEY`: a key's effective value and where it came from (a file and
//! line, an environment variable, a secret file, or the default).

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::layers::{Merged, under};
use super::load::Loaded;
use crate::yaml::{join_index, join_key};

/// A key's value in effect and its source.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The key, written canonically (`cluster.kafka_brokers[0].host`).
    pub key: String,
    /// The value in effect (secrets shown as `***`).
    pub value: Value,
    /// Where it came from.
    pub source: Source,
    /// Other places that set the key and were overridden (or, for a mapping, that it was
    /// merged from), earliest first.
    pub also: Vec<Place>,
    /// The value had `${NAME}` references, filled from the environment.
    pub references: bool,
}

/// A file and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Where a value in effect came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A config file (one of `-c`, or the environment overlay).
    File {
        /// Where.
        #[serde(flatten)]
        at: Place,
    },
    /// A `KAFKA_HEALING__*` variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A secret read from the file its `*_file` key names.
    SecretFile {
        /// The secret file, resolved.
        path: PathBuf,
        /// The `*_file` key.
        key: String,
        /// Where that key is, when a file set it.
        named_at: Option<Place>,
    },
    /// No file or variable sets it.
    Default,
}

/// Why a key cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The key is not written as a dotted path.
    #[error(
        "{key:?} is not a key: write a dotted path such as notifications.smtp.port or cluster.kafka_brokers[0].host"
    )]
    Malformed {
        /// The key as given.
        key: String,
    },
    /// No such key in the config or its defaults.
    #[error("unknown key {key:?}{}", close_list(.close))]
    Unknown {
        /// The key as given.
        key: String,
        /// Known keys close to it, closest first.
        close: Vec<String>,
    },
}

fn close_list(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!("; close keys: {}", close.join(", "))
    }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} = {}", self.key, self.value)?;
        match &self.source {
            Source::File { at } => writeln!(f, "  from {at}")?,
            Source::Env { var } => writeln!(f, "  from environment variable {var}")?,
            Source::SecretFile {
                path,
                key,
                named_at,
            } => {
                write!(f, "  from secret file {} (named by {key}", path.display())?;
                match named_at {
                    Some(at) => writeln!(f, " at {at})")?,
                    None => writeln!(f, ")")?,
                }
            }
            Source::Default => writeln!(f, "  from the default (no file or variable sets it)")?,
        }
        if self.references {
            writeln!(f, "  with ${{NAME}} references filled from the environment")?;
        }
        let word = if self.value.is_object() {
            "merged from"
        } else {
            "overrides"
        };
        for p in &self.also {
            writeln!(f, "  {word} {p}")?;
        }
        Ok(())
    }
}

/// One step of a key.
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` (or `a.b.0.c`) as steps, and written canonically.
fn parse_key(key: &str) -> Option<(Vec<Seg>, String)> {
    let mut segs = Vec::new();
    let mut canon = String::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if name.is_empty() && rest.is_empty() {
            return None;
        }
        if !name.is_empty() {
            match name.parse::<usize>() {
                Ok(i) if !segs.is_empty() => {
                    segs.push(Seg::Index(i));
                    canon = join_index(&canon, i);
                }
                _ => {
                    segs.push(Seg::Key(name.to_string()));
                    canon = join_key(&canon, name);
                }
            }
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let i = rest.get(1..close)?.parse::<usize>().ok()?;
            segs.push(Seg::Index(i));
            canon = join_index(&canon, i);
            rest = &rest[close + 1..];
        }
    }
    (!segs.is_empty()).then_some((segs, canon))
}

fn lookup<'a>(v: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    segs.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

/// Explains `key` of a loaded config.
pub fn explain(loaded: &Loaded, key: &str) -> Result<Explanation, ExplainError> {
    let Some((segs, canon)) = parse_key(key.trim()) else {
        return Err(ExplainError::Malformed { key: key.into() });
    };
    // Serializing a config cannot fail (plain data, string keys); null then finds nothing.
    let effective = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    let layers = &loaded.provenance.layers;
    let merged = Merged::new(layers);
    let raw = lookup(&merged.doc.value, &segs);
    let Some(value) = lookup(&effective, &segs).or(raw).cloned() else {
        return Err(ExplainError::Unknown {
            key: key.into(),
            close: close_keys(&canon, &effective, &merged.doc.value),
        });
    };
    let place = |p: &str| {
        merged.doc.own_line(p).map(|v| {
            let (file, line) = merged.place(v);
            Place {
                file: file.to_path_buf(),
                line,
            }
        })
    };
    let winner = place(&canon);
    let all: Vec<Place> = layers
        .iter()
        .filter_map(|l| {
            l.doc.own_line(&canon).map(|line| Place {
                file: l.path.clone(),
                line,
            })
        })
        .collect();
    let env = loaded
        .provenance
        .env_keys
        .iter()
        .find(|(p, _)| under(&canon, p));
    let secret = canon.rsplit_once('.').and_then(|(parent, leaf)| {
        let file_key = join_key(parent, &format!("{leaf}_file"));
        let path = lookup(&merged.doc.value, &parse_key(&file_key)?.0)?.as_str()?;
        Some((
            file_key.clone(),
            loaded.resolve(path.as_ref()),
            place(&file_key),
        ))
    });
    let source = match (env, secret, winner) {
        (Some((_, var)), _, _) => Source::Env { var: var.clone() },
        (None, Some((key, path, named_at)), _) if value != Value::Null => Source::SecretFile {
            path,
            key,
            named_at,
        },
        (None, _, Some(at)) => Source::File { at },
        (None, _, None) => Source::Default,
    };
    let also = match &source {
        Source::File { at } => all.into_iter().filter(|p| p != at).collect(),
        _ => all,
    };
    let references = env.is_none()
        && raw
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("${"));
    Ok(Explanation {
        key: canon,
        value,
        source,
        also,
        references,
    })
}

/// Known keys near `key`: same last step, or a small edit away; closest first, at most 8.
fn close_keys(key: &str, effective: &Value, merged: &Value) -> Vec<String> {
    let mut all = Vec::new();
    paths(effective, "", &mut all);
    paths(merged, "", &mut all);
    all.sort();
    all.dedup();
    let leaf = |p: &str| p.rsplit(['.', '[']).next().unwrap_or(p).to_string();
    let mine = leaf(key);
    let mut scored: Vec<(usize, String)> = all
        .into_iter()
        .filter_map(|p| {
            let d = edit_distance(key, &p);
            let near = d <= (key.len() / 4).max(2) || leaf(&p) == mine;
            near.then_some((d, p))
        })
        .collect();
    scored.sort();
    scored.truncate(8);
    scored.into_iter().map(|(_, p)| p).collect()
}

fn paths(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = join_key(at, k);
                paths(v, &p, out);
                out.push(p);
            }
        }
        // Lists: the first element stands for the others.
        Value::Array(a) => {
            if let Some(first) = a.first() {
                paths(first, &join_index(at, 0), out);
            }
        }
        _ => {}
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_canonically() {
        let canon = |k: &str| parse_key(k).map(|(_, c)| c);
        assert_eq!(canon("a.b"), Some("a.b".into()));
        assert_eq!(canon("a.b[0].c"), Some("a.b[0].c".into()));
        assert_eq!(canon("a.b.0.c"), Some("a.b[0].c".into()));
        assert_eq!(canon("a..b"), None);
        assert_eq!(canon("a[x]"), None);
        assert_eq!(canon(""), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("pot", "port"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn close_keys_by_edit_or_leaf() {
        let v = serde_json::json!({"notifications": {"smtp": {"port": 25, "host": "h"}},
            "server": {"port": 1}});
        let c = close_keys("notifications.smtp.prot", &v, &Value::Null);
        assert_eq!(
            c.first().map(String::as_str),
            Some("notifications.smtp.port")
        );
        let c = close_keys("smtp.port", &v, &Value::Null);
        assert!(c.contains(&"notifications.smtp.port".to_string()), "{c:?}");
        assert!(c.contains(&"server.port".to_string()), "{c:?}");
    }
}
