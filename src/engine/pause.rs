//! Pauses: "hands off kafka-2 for 30 minutes, we are upgrading it". An operator's word, so
//! planned work is not taken for a failure and "healed".
//!
//! This module holds the types and the input checks, shared by the API, the CLI and the
//! decision core (which decides what a pause does: see `decide/pause.rs`). Every check is
//! pure: a duration is text and a bound, a reason is untrusted text with a length bound.

use std::fmt;

use serde_json::{Value, json};

use crate::clock::rfc3339_ms;

/// The shortest pause: one second (a zero pause is a typo).
pub const MIN_PAUSE_MS: i64 = 1_000;
/// The longest pause: 7 days. Longer "pauses" are decommissions: take the broker out of the
/// config instead.
pub const MAX_PAUSE_MS: i64 = 7 * 86_400_000;
/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How much of a bad input is quoted back in an error.
const ECHO_CHARS: usize = 64;

/// What a pause covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PauseScope {
    /// Every piece of work, whatever its target (also work without one).
    Cluster,
    /// Work on one broker (its `node_id`).
    Target(String),
}

impl PauseScope {
    /// Whether work on `target` (`None`: work without a target) is covered.
    pub fn covers(&self, target: Option<&str>) -> bool {
        match self {
            PauseScope::Cluster => true,
            PauseScope::Target(t) => target == Some(t.as_str()),
        }
    }

    /// The broker, for a target's pause.
    pub fn target(&self) -> Option<&str> {
        match self {
            PauseScope::Cluster => None,
            PauseScope::Target(t) => Some(t),
        }
    }

    /// The command that ends it early.
    pub fn resume_command(&self) -> String {
        match self {
            PauseScope::Cluster => "kafka-healing resume --cluster".into(),
            PauseScope::Target(t) => format!("kafka-healing resume --target {t}"),
        }
    }

    /// The API route that ends it early.
    pub fn resume_route(&self) -> String {
        match self {
            PauseScope::Cluster => "DELETE /api/v1/pauses/cluster".into(),
            PauseScope::Target(t) => format!("DELETE /api/v1/pauses/targets/{t}"),
        }
    }

    /// `cluster` or `target`, as the API names the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PauseScope::Cluster => "cluster",
            PauseScope::Target(_) => "target",
        }
    }
}

impl fmt::Display for PauseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseScope::Cluster => f.write_str("the cluster"),
            PauseScope::Target(t) => f.write_str(t),
        }
    }
}

/// A pause in force: its scope, from when until when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// What it covers.
    pub scope: PauseScope,
    /// When it was set (Unix ms).
    pub from_ms: i64,
    /// When it ends by itself (Unix ms).
    pub until_ms: i64,
    /// Why, as the operator said it (checked by [`check_reason`]).
    pub reason: String,
}

impl Pause {
    /// Whether it is still in force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.until_ms > now
    }

    /// How long it was set for, in words (`30m`, `1h 30m`).
    pub fn length(&self) -> String {
        let ms = self.until_ms.saturating_sub(self.from_ms).max(0);
        // Whole seconds: the request was in seconds or coarser.
        let secs = u64::try_from(ms / 1000).unwrap_or(0);
        humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
    }

    /// The API's view of it.
    pub fn json(&self) -> Value {
        json!({
            "scope": self.scope.kind(),
            "target": self.scope.target(),
            "from_ms": self.from_ms,
            "until_ms": self.until_ms,
            "until": rfc3339_ms(self.until_ms),
            "reason": self.reason,
            "resume": self.scope.resume_command(),
            "resume_route": self.scope.resume_route(),
        })
    }
}

/// A pause asked for, with its input checked (the target is checked against the
/// configuration by the core, which has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRequest {
    /// What it covers.
    pub scope: PauseScope,
    /// How long, in milliseconds ([`MIN_PAUSE_MS`] to [`MAX_PAUSE_MS`]).
    pub duration_ms: i64,
    /// Why.
    pub reason: String,
}

impl PauseRequest {
    /// Checks the duration text (`30m`, `2h`, `1h30m`, `1d`) and the reason.
    pub fn new(scope: PauseScope, duration: &str, reason: &str) -> Result<Self, PauseInputError> {
        Ok(PauseRequest {
            scope,
            duration_ms: parse_duration(duration)?,
            reason: check_reason(reason)?,
        })
    }
}

/// Why a pause's input was refused (the API answers 400 with this text, the CLI exits 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseInputError {
    /// No duration.
    #[error("`for` is missing or empty: give a duration such as 30m, 2h or 1h30m")]
    EmptyDuration,
    /// Not a duration.
    #[error(
        "`for` {text} is not a duration: a positive number and a unit, such as 30m, 2h, 1h30m or 1d ({why})"
    )]
    BadDuration {
        /// The text, quoted and escaped.
        text: String,
        /// The parser's words.
        why: String,
    },
    /// Shorter than [`MIN_PAUSE_MS`].
    #[error("`for` {text} is too short: a pause lasts at least 1s")]
    TooShort {
        /// The text, quoted and escaped.
        text: String,
    },
    /// Longer than [`MAX_PAUSE_MS`].
    #[error(
        "`for` {text} is too long: a pause lasts at most 7 days (168h); for longer, take the broker out of the config"
    )]
    TooLong {
        /// The text, quoted and escaped.
        text: String,
    },
    /// No reason.
    #[error(
        "`reason` is missing or empty: say why (it is shown with every decision the pause causes)"
    )]
    EmptyReason,
    /// A reason over [`MAX_REASON_CHARS`].
    #[error("`reason` is {chars} characters long; at most {MAX_REASON_CHARS}")]
    LongReason {
        /// Its length in characters.
        chars: usize,
    },
    /// A control or bidirectional-formatting character in the reason.
    #[error(
        "`reason` contains the character U+{code:04X} (a control or bidirectional-formatting character); use plain text on one line"
    )]
    ReasonChar {
        /// The character's code point.
        code: u32,
    },
}

/// `text` quoted and escaped for an error message, cut to [`ECHO_CHARS`].
fn echo(text: &str) -> String {
    let cut: String = text.chars().take(ECHO_CHARS).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Parses a pause duration (humantime's syntax: `30m`, `2h`, `1h 30m`, `1d`, `90s`) into
/// milliseconds within [`MIN_PAUSE_MS`]..=[`MAX_PAUSE_MS`].
pub fn parse_duration(text: &str) -> Result<i64, PauseInputError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(PauseInputError::EmptyDuration);
    }
    let d = humantime::parse_duration(t).map_err(|e| PauseInputError::BadDuration {
        text: echo(t),
        why: e.to_string(),
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms < MIN_PAUSE_MS {
        return Err(PauseInputError::TooShort { text: echo(t) });
    }
    if ms > MAX_PAUSE_MS {
        return Err(PauseInputError::TooLong { text: echo(t) });
    }
    Ok(ms)
}

/// Bidirectional-formatting characters (embeddings, overrides, isolates, marks): they can
/// make a log line or a terminal show something other than what it holds.
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a pause's reason: not empty once trimmed, at most [`MAX_REASON_CHARS`]
/// characters, no control or bidirectional-formatting characters. Returns it trimmed.
/// It is untrusted text still: logs and messages quote it escaped (`{:?}`), the HTML mail
/// escapes it.
pub fn check_reason(text: &str) -> Result<String, PauseInputError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(PauseInputError::EmptyReason);
    }
    let chars = t.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(PauseInputError::LongReason { chars });
    }
    if let Some(c) = t.chars().find(|c| c.is_control() || is_bidi_format(*c)) {
        return Err(PauseInputError::ReasonChar { code: u32::from(c) });
    }
    Ok(t.to_string())
}

/// Why a pause or a resume could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    /// The target is not a configured broker.
    #[error("`{}` is not a configured broker", .0.escape_debug())]
    UnknownTarget(String),
    /// The journal could not record it: nothing changed.
    #[error("journal unavailable, nothing changed: {0}")]
    Journal(String),
    /// The engine is not running (the service is stopping).
    #[error("the engine is not running (the service is stopping); retry later")]
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_within_bounds_parse_and_the_rest_is_refused_with_its_reason() {
        assert_eq!(parse_duration("30m"), Ok(30 * 60_000));
        assert_eq!(parse_duration(" 1h 30m "), Ok(90 * 60_000));
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("7d"), Ok(MAX_PAUSE_MS));
        assert_eq!(parse_duration("1week"), Ok(MAX_PAUSE_MS));
        assert_eq!(parse_duration(""), Err(PauseInputError::EmptyDuration));
        assert_eq!(
            parse_duration("0s").map_err(|e| e.to_string()),
            Err("`for` \"0s\" is too short: a pause lasts at least 1s".into())
        );
        assert!(matches!(
            parse_duration("999ms"),
            Err(PauseInputError::TooShort { .. })
        ));
        assert_eq!(
            parse_duration("7d 1s").map_err(|e| e.to_string()),
            Err("`for` \"7d 1s\" is too long: a pause lasts at most 7 days (168h); for longer, take the broker out of the config".into())
        );
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(PauseInputError::BadDuration { .. })
        ));
        assert!(matches!(
            parse_duration("100000000h"),
            Err(PauseInputError::TooLong { .. })
        ));
        assert_eq!(
            parse_duration("-5m").map_err(|e| e.to_string()),
            Err("`for` \"-5m\" is not a duration: a positive number and a unit, such as 30m, 2h, 1h30m or 1d (expected number at 0)".into())
        );
        assert!(matches!(
            parse_duration("30"),
            Err(PauseInputError::BadDuration { .. })
        ));
        assert!(matches!(
            parse_duration("soon"),
            Err(PauseInputError::BadDuration { .. })
        ));
        // Input is echoed escaped and cut.
        let long = format!("{}\n", "x".repeat(100));
        let e = parse_duration(&format!("a\u{202e}{long}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`for` \"a\\u{202e}xxx"), "{e}");
        assert!(e.contains("x\"… is not a duration"), "{e}");
    }

    #[test]
    fn reasons_are_bounded_plain_text() {
        assert_eq!(
            check_reason("  upgrade to 3.9 "),
            Ok("upgrade to 3.9".into())
        );
        assert_eq!(check_reason(" \t "), Err(PauseInputError::EmptyReason));
        assert_eq!(check_reason(&"é".repeat(500)), Ok("é".repeat(500)));
        assert_eq!(
            check_reason(&"é".repeat(501)),
            Err(PauseInputError::LongReason { chars: 501 })
        );
        assert_eq!(
            check_reason("two\nlines").map_err(|e| e.to_string()),
            Err("`reason` contains the character U+000A (a control or bidirectional-formatting character); use plain text on one line".into())
        );
        assert_eq!(
            check_reason("abc\u{202e}fed"),
            Err(PauseInputError::ReasonChar { code: 0x202e })
        );
        assert_eq!(
            check_reason("bell\u{7}"),
            Err(PauseInputError::ReasonChar { code: 7 })
        );
        // Quotes, angle brackets and non-Latin text are fine: they are escaped where shown.
        assert!(check_reason("<b>\"upgrade\"</b> 升级").is_ok());
    }

    #[test]
    fn a_pause_names_how_to_end_it() {
        let p = Pause {
            scope: PauseScope::Target("kafka-2".into()),
            from_ms: 0,
            until_ms: 5_400_000,
            reason: "upgrade".into(),
        };
        assert_eq!(p.length(), "1h 30m");
        assert_eq!(
            p.json(),
            json!({
                "scope": "target", "target": "kafka-2", "from_ms": 0, "until_ms": 5_400_000,
                "until": "1970-01-01T01:30:00Z", "reason": "upgrade",
                "resume": "kafka-healing resume --target kafka-2",
                "resume_route": "DELETE /api/v1/pauses/targets/kafka-2",
            })
        );
        assert!(PauseScope::Cluster.covers(None));
        assert!(PauseScope::Cluster.covers(Some("kafka-1")));
        assert!(!p.scope.covers(Some("kafka-1")));
        assert!(!p.scope.covers(None));
        assert_eq!(
            PauseScope::Cluster.resume_route(),
            "DELETE /api/v1/pauses/cluster"
        );
    }
}
