//! Fuzzes the exposition parser: it must never panic, errors must name a line of the input,
//! and whatever it accepts must survive a render-and-parse round trip unchanged.
//!
//! `cargo +nightly fuzz run expo /tmp/expo-corpus fuzz/corpus/expo` (new inputs go to the
//! first folder, so the committed corpus stays small).
#![no_main]

use kafka_healing::expo::{Parser, Sample, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Parser::new(&text).count();
    match parse(&text) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}"),
        Ok(samples) => {
            let again = render(&samples);
            let reparsed = parse(&again).expect("a rendered body parses");
            assert_eq!(reparsed.len(), samples.len());
            for (a, b) in samples.iter().zip(&reparsed) {
                assert_eq!(
                    (a.name, &a.labels, a.timestamp_ms),
                    (b.name, &b.labels, b.timestamp_ms)
                );
                assert!(
                    a.value.to_bits() == b.value.to_bits() || a.value.is_nan() && b.value.is_nan()
                );
            }
        }
    }
});

/// Renders samples back to exposition text with correct escaping.
fn render(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    for s in samples {
        out.push_str(s.name);
        out.push('{');
        for (k, v) in &s.labels {
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push_str("\",");
        }
        out.push_str("} ");
        out.push_str(&if s.value.is_nan() {
            "NaN".to_string()
        } else {
            format!("{:e}", s.value)
        });
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {ts}"));
        }
        out.push('\n');
    }
    out
}
