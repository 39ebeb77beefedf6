//! Sample values and timestamps, with Prometheus's (Go's `strconv`) rules.

use super::scan::snippet;

/// Parses a sample value: a decimal float, or `NaN`, `Inf`, `+Inf`, `-Inf`, `Infinity` in any
/// letter case. Like Prometheus: a signed `NaN` is rejected, and so is a finite literal too
/// large for an `f64` (Go reports a range error; Rust alone would give infinity).
#[inline]
pub(super) fn parse_value(token: &str) -> Result<f64, String> {
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) if v.is_nan() && !token.starts_with(['+', '-']) => Ok(v),
        Ok(v) if v.is_infinite() && !token.bytes().any(|b| b.is_ascii_digit()) => Ok(v),
        Ok(v) if v.is_infinite() => Err(format!("value `{}` out of range", snippet(token))),
        _ => Err(format!("invalid value `{}`", snippet(token))),
    }
}

/// Parses a timestamp: a decimal integer of milliseconds, optionally signed.
#[inline]
pub(super) fn parse_timestamp(token: &str) -> Result<i64, String> {
    token
        .parse::<i64>()
        .map_err(|_| format!("invalid timestamp `{}`", snippet(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_value("1.2345E7"), Ok(12_345_000.0));
        assert_eq!(parse_value("-0.5"), Ok(-0.5));
        assert_eq!(parse_value("+3"), Ok(3.0));
        assert_eq!(parse_value(".5"), Ok(0.5));
        assert_eq!(parse_value("1e-400"), Ok(0.0));
        for inf in ["+Inf", "Inf", "inf", "+inf", "INF", "Infinity", "+infinity"] {
            assert_eq!(parse_value(inf), Ok(f64::INFINITY), "{inf}");
        }
        assert_eq!(parse_value("-Inf"), Ok(f64::NEG_INFINITY));
        for nan in ["NaN", "nan", "NAN"] {
            assert!(parse_value(nan).unwrap().is_nan(), "{nan}");
        }
        for bad in [
            "abc", "", "-NaN", "+nan", "1_000", "0x10", "1,5", "1e", "--1",
        ] {
            assert_eq!(
                parse_value(bad),
                Err(format!("invalid value `{bad}`")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_value("1e400"),
            Err("value `1e400` out of range".into())
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_timestamp("-5"), Ok(-5));
        assert_eq!(
            parse_timestamp("1.5"),
            Err("invalid timestamp `1.5`".to_string())
        );
        assert!(parse_timestamp("99999999999999999999").is_err());
    }
}
