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

#[cfg(test)]
mod tests {
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
