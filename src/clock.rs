//! The wall clock, read in one place, and times as the service keeps them (milliseconds
//! since the Unix epoch) shown to people.
//!
//! Decisions take `now` as an argument; only the edges (the engine's runner, the webhook,
//! the self-watch, the executor) read the clock, through [`now_ms`]. `clippy.toml` forbids
//! `SystemTime::now` everywhere else, so a test can drive every decision with its own time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it, `i64::MAX` far after).
#[allow(clippy::disallowed_methods)] // The one reading of the wall clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it), for measurements
/// compared with other processes' clocks (`date +%s%N`).
#[allow(clippy::disallowed_methods)] // The wall clock, to the nanosecond.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `ms` as a [`SystemTime`] (negative values give the epoch).
pub fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `ms` as an RFC 3339 timestamp in UTC, to the second (negative values show the epoch).
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(ms)).to_string()
}

/// An RFC 3339 time (`2026-11-27T23:33:11Z`, fractions and `±hh:mm` offsets too) in
/// milliseconds since the epoch; `None` when it is not one, or before the epoch (as
/// Alertmanager's "no time", `0001-01-01T00:00:00Z`).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    // humantime takes `Z` only: an offset is read here and applied after.
    let (base, offset_s) = match s
        .len()
        .checked_sub(6)
        .and_then(|i| s.get(i..).map(|t| (i, t)))
    {
        Some((i, t))
            if (t.starts_with('+') || t.starts_with('-')) && t.as_bytes().get(3) == Some(&b':') =>
        {
            let h: i64 = t.get(1..3)?.parse().ok()?;
            let m: i64 = t.get(4..6)?.parse().ok()?;
            let sign = if t.starts_with('-') { -1 } else { 1 };
            (format!("{}Z", s.get(..i)?), sign * (h * 3600 + m * 60))
        }
        _ => (s.to_string(), 0),
    };
    let t = humantime::parse_rfc3339_weak(&base).ok()?;
    let ms = i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(ms.saturating_sub(offset_s.saturating_mul(1000)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_alertmanager_times() {
        use super::parse_rfc3339_ms as p;
        assert_eq!(p("2026-11-28T02:23:33Z"), Some(1_795_832_613_000));
        assert_eq!(p("2026-11-28T02:23:33.99Z"), Some(1_795_832_613_990));
        assert_eq!(p("2026-11-28T03:23:33+01:00"), Some(1_795_832_613_000));
        assert_eq!(p("2026-11-28T01:23:33.5-01:00"), Some(1_795_832_613_500));
        assert_eq!(p("0001-01-01T00:00:00Z"), None, "Alertmanager's no time");
        assert_eq!(p(""), None);
        assert_eq!(p("yesterday"), None);
    }

    #[test]
    fn formats_to_the_second() {
        assert_eq!(super::rfc3339_ms(1_795_832_613_990), "2026-11-28T02:23:33Z");
        assert_eq!(super::rfc3339_ms(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn now_is_after_this_code_was_written() {
        // 2026-01-01T00:00:00Z: a clock before it is wrong, or the function is.
        assert!(super::now_ms() > 1_767_225_600_000);
    }
}
