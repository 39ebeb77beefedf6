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

/// Parses `30`, `"30s"`, `"5m"`, `"1h30m"` or `"500ms"`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{n}` is not a whole number of seconds")),
        Value::String(s) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration like 30s, 5m or 1h ({e})")),
        other => Err(format!("expected a duration like 30s, got {other}")),
    }?;
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most 7d (604800 s), got {}",
            humantime::format_duration(d)
        ));
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
