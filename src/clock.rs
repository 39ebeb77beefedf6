//! Times as the service keeps them (milliseconds since the Unix epoch) shown to people.

/// `ms` as an RFC 3339 timestamp in UTC, to the second (negative values show the epoch).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_to_the_second() {
        assert_eq!(super::rfc3339_ms(1_795_832_613_990), "2026-11-28T02:23:33Z");
        assert_eq!(super::rfc3339_ms(-5), "1970-01-01T00:00:00Z");
    }
}
