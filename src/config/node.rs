//! The layered configuration tree and its strict deserializer.
//!
//! A value keeps where it came from: a YAML scalar has the type YAML gave it, and a value from
//! an environment variable (or a `${NAME}` reference) is text. A string field takes text
//! verbatim (`007` stays `007`); a number or boolean field parses it strictly. Nothing is
//! coerced: `1.5` is not an integer, `2` and `"off"` are not booleans, `"3"` is not a number.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::yaml::{Document, join_index, join_key};

/// Deserializes `v`, the value at path `at` of `doc`, as the config is read: strict types,
/// the config's wording (`expected an integer, got 2.5`), and a plain scalar keeps its
/// written text in a string field (`007` stays `007`). For rule files. On failure returns
/// the full path of the offending value and the message.
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
    v: &Value,
    at: &str,
    doc: &Document,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(Node::from_value(v, at, doc)).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => at.to_string(),
            i if i.starts_with('[') => format!("{at}{i}"),
            i => join_key(at, i),
        };
        (path, e.into_inner().to_string())
    })
}

/// One value of the layered configuration.
#[derive(Clone)]
pub(super) enum Node {
    /// YAML `null`, `~` or nothing.
    Null,
    /// A YAML boolean, with its plain text when known.
    Bool(bool, Option<String>),
    /// A YAML number, with its plain text when known.
    Num(Number, Option<String>),
    /// A YAML string (quoted, or plain and not a number): only string fields take it.
    Str(String),
    /// Text from the environment: string fields take it as is, others parse it.
    Text(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The tree of `doc`, with each plain scalar's own text kept.
    pub(super) fn from_doc(doc: &Document) -> Node {
        Node::from_value(&doc.value, "", doc)
    }

    fn from_value(v: &Value, path: &str, doc: &Document) -> Node {
        let text = || doc.plain_text(path).map(str::to_string);
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b, text()),
            Value::Number(n) => Node::Num(n.clone(), text()),
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(a) => Node::Seq(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Node::from_value(v, &join_index(path, i), doc))
                    .collect(),
            ),
            Value::Object(m) => Node::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Node::from_value(v, &join_key(path, k), doc)))
                    .collect(),
            ),
        }
    }

    /// Removes the mapping entry at `path` (as serde reported it), so that deserializing
    /// again can go on to the next error. False when `path` names no mapping entry (the
    /// root, a sequence element, a missing key): nothing is removed.
    pub(super) fn remove_at(&mut self, path: &[serde_path_to_error::Segment]) -> bool {
        use serde_path_to_error::Segment;
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match (self, first) {
            (Node::Map(entries), Segment::Map { key }) => {
                let Some(i) = entries.iter().position(|(k, _)| k == key) else {
                    return false;
                };
                if rest.is_empty() {
                    entries.remove(i);
                    true
                } else {
                    entries[i].1.remove_at(rest)
                }
            }
            (Node::Seq(items), Segment::Seq { index }) if !rest.is_empty() => items
                .get_mut(*index)
                .is_some_and(|item| item.remove_at(rest)),
            _ => false,
        }
    }

    /// Sets `path` (dot-separated keys) to `value`, making mappings on the way.
    pub(super) fn set(&mut self, path: &[&str], value: Node) {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        if !matches!(self, Node::Map(_)) {
            *self = Node::Map(Vec::new());
        }
        let Node::Map(entries) = self else { return };
        let i = match entries.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                entries.push((first.to_string(), Node::Null));
                entries.len() - 1
            }
        };
        entries[i].1.set(rest, value);
    }

    /// How an error message shows this value. Only called when the value has the wrong
    /// type, so never for a secret (every secret field takes any text).
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b, t) => t.clone().unwrap_or_else(|| b.to_string()),
            Node::Num(n, t) => t.clone().unwrap_or_else(|| n.to_string()),
            Node::Str(s) | Node::Text(s) => format!("the string {s:?}"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
        }
    }

    fn wrong(&self, expected: Expected) -> NodeError {
        let mut found = self.describe();
        // A quoted value that would fit unquoted: say how to write it.
        let fits = |s: &str| match expected {
            Expected::Integer => s.parse::<i128>().is_ok(),
            Expected::Number => s.parse::<f64>().is_ok_and(f64::is_finite),
            Expected::Bool => s == "true" || s == "false",
            Expected::String | Expected::List | Expected::Mapping | Expected::Null => false,
        };
        if let Node::Str(s) = self
            && fits(s)
        {
            found.push_str(" (write it without quotes)");
        }
        NodeError::Type { expected, found }
    }

    /// The integer this value holds, if it lies in `min..=max`.
    fn integer(self, min: i128, max: i128) -> Result<i128, NodeError> {
        let i = match &self {
            Node::Num(n, text) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                // Beyond u64, YAML reads a float; its text still says which integer it was.
                .or_else(|| text.as_deref().and_then(|t| t.parse::<i128>().ok())),
            Node::Text(s) => s.parse::<i128>().ok(),
            _ => None,
        };
        let Some(i) = i else {
            return Err(self.wrong(Expected::Integer));
        };
        if i < min || i > max {
            return Err(NodeError::Range { min, max, value: i });
        }
        Ok(i)
    }
}

/// What a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expected {
    /// An integer of the field's type.
    Integer,
    /// Any finite number.
    Number,
    /// `true` or `false`.
    Bool,
    /// Text.
    String,
    /// A sequence.
    List,
    /// A mapping.
    Mapping,
    /// Nothing.
    Null,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expected::Integer => "an integer",
            Expected::Number => "a number",
            Expected::Bool => "true or false",
            Expected::String => "a string",
            Expected::List => "a list",
            Expected::Mapping => "a mapping",
            Expected::Null => "null",
        })
    }
}

/// Why a value does not fit its field.
#[derive(Debug, thiserror::Error)]
pub(super) enum NodeError {
    /// The value has another type than the field.
    #[error("expected {expected}, got {found}")]
    Type {
        /// What the field takes.
        expected: Expected,
        /// What was there.
        found: String,
    },
    /// An integer outside the field's type.
    #[error("expected an integer between {min} and {max}, got {value}")]
    Range {
        /// The type's least value.
        min: i128,
        /// The type's greatest value.
        max: i128,
        /// The value given.
        value: i128,
    },
    /// Any other problem a type reports (unknown field, missing field, bad keyword).
    #[error("{0}")]
    Custom(String),
}

impl de::Error for NodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        NodeError::Custom(msg.to_string())
    }
}

macro_rules! integers {
    ($($method:ident $visit:ident $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
            let i = self.integer(i128::from(<$t>::MIN), i128::from(<$t>::MAX))?;
            let n = <$t>::try_from(i).map_err(|_| NodeError::Custom(format!("{i} is out of range")))?;
            v.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Node {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Null => v.visit_unit(),
            Node::Bool(b, _) => v.visit_bool(b),
            Node::Num(n, _) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => v.visit_u64(u),
                (_, Some(i), _) => v.visit_i64(i),
                (_, _, f) => v.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Node::Str(s) | Node::Text(s) => v.visit_string(s),
            Node::Seq(items) => v.visit_seq(Items(items.into_iter())),
            Node::Map(entries) => v.visit_map(Entries(entries.into_iter(), None)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Bool(b, _) => v.visit_bool(b),
            Node::Text(ref s) if s == "true" => v.visit_bool(true),
            Node::Text(ref s) if s == "false" => v.visit_bool(false),
            other => Err(other.wrong(Expected::Bool)),
        }
    }

    integers!(
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
    );

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        let f = match &self {
            Node::Num(n, _) => n.as_f64(),
            Node::Text(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        match f {
            Some(f) if f.is_finite() => v.visit_f64(f),
            _ => Err(self.wrong(Expected::Number)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(v)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Str(s) | Node::Text(s) => v.visit_string(s),
            // A plain `007` or `true` in a string field means the text as written.
            Node::Num(_, Some(t)) | Node::Bool(_, Some(t)) => v.visit_string(t),
            other => Err(other.wrong(Expected::String)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_any(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_any(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Null => v.visit_none(),
            other => v.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Null => v.visit_unit(),
            other => Err(other.wrong(Expected::Null)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, NodeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, NodeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Seq(items) => v.visit_seq(Items(items.into_iter())),
            // A list from one environment variable is comma-separated.
            Node::Text(s) => {
                let items: Vec<Node> = if s.is_empty() {
                    Vec::new()
                } else {
                    s.split(',').map(|p| Node::Text(p.to_string())).collect()
                };
                v.visit_seq(Items(items.into_iter()))
            }
            other => Err(other.wrong(Expected::List)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, NodeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        match self {
            Node::Map(entries) => v.visit_map(Entries(entries.into_iter(), None)),
            other => Err(other.wrong(Expected::Mapping)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        match self {
            Node::Str(s) | Node::Text(s) => v.visit_enum(s.into_deserializer()),
            other => Err(other.wrong(Expected::String)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        v.visit_unit()
    }
}

struct Items(std::vec::IntoIter<Node>);

impl<'de> SeqAccess<'de> for Items {
    type Error = NodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        self.0.next().map(|n| seed.deserialize(n)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries(std::vec::IntoIter<(String, Node)>, Option<Node>);

impl<'de> MapAccess<'de> for Entries {
    type Error = NodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        let Some((k, v)) = self.0.next() else {
            return Ok(None);
        };
        self.1 = Some(v);
        seed.deserialize(k.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, NodeError> {
        match self.1.take() {
            Some(v) => seed.deserialize(v),
            None => Err(NodeError::Custom("a value without its key".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    fn de<T: DeserializeOwned>(n: Node) -> Result<T, String> {
        T::deserialize(n).map_err(|e| e.to_string())
    }

    fn text(s: &str) -> Node {
        Node::Text(s.into())
    }

    #[test]
    fn text_is_read_by_the_field_type() {
        assert_eq!(de::<String>(text("007")), Ok("007".into()));
        assert_eq!(de::<u16>(text("007")), Ok(7));
        assert_eq!(de::<bool>(text("true")), Ok(true));
        assert_eq!(de::<f64>(text("1.5")), Ok(1.5));
        assert_eq!(
            de::<Vec<String>>(text("a,,b")),
            Ok(vec!["a".into(), String::new(), "b".into()])
        );
        assert_eq!(de::<Vec<String>>(text("")), Ok(vec![]));
        assert_eq!(
            de::<u32>(text("1e3")),
            Err("expected an integer, got the string \"1e3\"".into())
        );
        assert_eq!(
            de::<bool>(text("True")),
            Err("expected true or false, got the string \"True\"".into())
        );
        assert_eq!(
            de::<f64>(text("NaN")),
            Err("expected a number, got the string \"NaN\"".into())
        );
    }

    #[test]
    fn yaml_scalars_are_not_coerced() {
        let seven = Node::Num(7.into(), Some("007".into()));
        assert_eq!(de::<String>(seven.clone()), Ok("007".into()));
        assert_eq!(de::<u8>(seven), Ok(7));
        assert_eq!(
            de::<String>(Node::Num(7.into(), None)),
            Err("expected a string, got 7".into())
        );
        assert_eq!(
            de::<u8>(Node::Num(300.into(), None)),
            Err("expected an integer between 0 and 255, got 300".into())
        );
        let huge = Number::from_f64(1.8446744073709552e19)
            .map(|n| Node::Num(n, Some("18446744073709551616".into())));
        assert_eq!(
            de::<u64>(huge.expect("finite")),
            Err(
                "expected an integer between 0 and 18446744073709551615, got 18446744073709551616"
                    .into()
            )
        );
        // The hint says "without quotes" only when that would fit.
        assert_eq!(
            de::<u32>(Node::Str("true".into())),
            Err("expected an integer, got the string \"true\"".into())
        );
        assert_eq!(
            de::<bool>(Node::Str("true".into())),
            Err("expected true or false, got the string \"true\" (write it without quotes)".into())
        );
        assert_eq!(de::<Option<String>>(Node::Null), Ok(None));
    }
}
