//! Sample values and timestamps, with Prometheus's (Go's `strconv`) rules.

use super::scan::snippet;

/// Parses a sample value: a decimal float, or `NaN`, `Inf`, `+Inf`, `-Inf`, `Infinity` in any
/// letter case. Like Prometheus: a signed `NaN` is rejected, and so is a finite literal too
/// large for an `f64` (Go reports a range error; Rust alone would give infinity).
#[inline]
pub(super) fn parse_value(token: &str) -> Result<f64, String> {
    if let Some(v) = fast_decimal(token.as_bytes()) {
        return Ok(v);
    }
    slow_value(token)
}

/// The general case of [`parse_value`], with the standard library's parser.
#[cold]
fn slow_value(token: &str) -> Result<f64, String> {
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) if v.is_nan() && !token.starts_with(['+', '-']) => Ok(v),
        Ok(v) if v.is_infinite() && !token.bytes().any(|b| b.is_ascii_digit()) => Ok(v),
        Ok(v) if v.is_infinite() => Err(format!("value `{}` out of range", snippet(token))),
        _ => Err(format!("invalid value `{}`", snippet(token))),
    }
}

/// Exact powers of ten up to 10^22, the largest exactly representable in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The most significant digits the fast path takes (fits a `u64`).
const MAX_DIGITS: u32 = 19;

/// Clinger's fast path: `[+-]?digits[.digits][(e|E)[+-]?digits]` whose mantissa is at most
/// 2^53 and whose decimal exponent is within ±22 is one exact integer times or divided by
/// one exact power of ten, so a single IEEE operation rounds it correctly. `None` for
/// anything else (then the standard parser decides), never a wrong value.
#[inline]
fn fast_decimal(b: &[u8]) -> Option<f64> {
    let (neg, mut i) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut digits: u32 = 0;
    let mut exp: i32 = 0;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
        if digits == MAX_DIGITS {
            return None;
        }
        mantissa = mantissa * 10 + u64::from(d);
        digits += 1;
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
            if digits == MAX_DIGITS {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
            exp -= 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut e: i32 = 0;
        let mut edigits = 0;
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10) {
            if edigits == 4 {
                return None;
            }
            e = e * 10 + i32::from(d);
            edigits += 1;
            i += 1;
        }
        if edigits == 0 {
            return None;
        }
        exp += if eneg { -e } else { e };
    }
    if i != b.len() || mantissa > 1 << 53 {
        return None;
    }
    // The mantissa is at most 2^53, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let m = mantissa as f64;
    let v = match usize::try_from(exp) {
        Ok(e) => m * POW10.get(e)?,
        Err(_) => m / POW10.get(usize::try_from(exp.unsigned_abs()).ok()?)?,
    };
    Some(if neg { -v } else { v })
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
    fn fast_path_agrees_with_the_standard_parser() {
        for s in [
            "0",
            "-0",
            "+0.0",
            "1",
            "1.5",
            "1.2345E7",
            "1.849127E9",
            "9007199254740992",
            "9007199254740993",
            "0.1",
            "0.3",
            "123456789.123456789",
            "1e22",
            "1e23",
            "1e-22",
            "4.35E-5",
            "1.",
            ".5",
            "5.e3",
            "00012",
            "1e0005",
            "1E+2",
            "-7.25e-3",
        ] {
            let want: f64 = s.parse().unwrap();
            let got = parse_value(s).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
        }
        for s in ["", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "1e5x", "١"] {
            assert_eq!(fast_decimal(s.as_bytes()), None, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_is_exact(s in r"[+-]?[0-9]{0,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?") {
            if let Some(got) = fast_decimal(s.as_bytes()) {
                let want: f64 = s.parse().unwrap();
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "{}", s);
            }
        }

        #[test]
        fn fast_path_matches_on_finite_floats(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            for s in [format!("{v:e}"), format!("{v}"), format!("{v:E}")] {
                proptest::prop_assert_eq!(parse_value(&s).map(f64::to_bits), Ok(v.to_bits()), "{}", s);
            }
        }
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
