//! Durations as rule files write them (`30`, `"30s"`, `"5m"`, `"1h30m"`, `"500ms"`).
//!
//! A leaf of its own so that both the rule model and the step kinds can parse durations
//! without importing each other.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The longest duration a rule file may give (a condition's `for`, a step's `timeout`):
/// longer is a typo, not a policy, and would overflow the engine's millisecond arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// A rule file's duration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// A number that is not a whole, non-negative count of seconds.
    #[error("`{0}` is not a whole number of seconds")]
    NotWholeSeconds(serde_json::Number),
    /// A string humantime cannot read.
    #[error("`{text}` is not a duration like 30s, 5m or 1h ({reason})")]
    Unreadable {
        /// The string as written.
        text: String,
        /// What humantime says.
        reason: humantime::DurationError,
    },
    /// Neither a number nor a string.
    #[error("expected a duration like 30s, got {0}")]
    WrongType(Value),
    /// Longer than [`MAX_DURATION`].
    #[error("must be at most 7d (604800 s), got {}", humantime::format_duration(*.0))]
    TooLong(Duration),
}

/// Parses `30`, `"30s"`, `"5m"`, `"1h30m"` or `"500ms"`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &Value) -> Result<Duration, DurationError> {
    let d = match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| DurationError::NotWholeSeconds(n.clone())),
        Value::String(s) => {
            humantime::parse_duration(s).map_err(|reason| DurationError::Unreadable {
                text: s.clone(),
                reason,
            })
        }
        other => Err(DurationError::WrongType(other.clone())),
    }?;
    if d > MAX_DURATION {
        return Err(DurationError::TooLong(d));
    }
    Ok(d)
}

/// Serde `deserialize_with` for a required duration.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Serde `deserialize_with` for an optional duration (with `#[serde(default)]`).
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_duration(&Value::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
