//! Exposition bodies shared by the parser benchmark (`benches/expo.rs`) and the memory and
//! file tool (`examples/expo_mem.rs`), so both measure the same inputs.

/// The JMX-exporter fixture (~200 KB of a real broker's scrape).
pub const JMX: &str = include_str!("../../tests/data/expo/jmx_kafka.prom");

/// The first lines of the fixture, up to about 2 KB.
pub fn small() -> String {
    let mut out = String::new();
    for line in JMX.lines() {
        if out.len() + line.len() > 2048 {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
