//! Parses a ~20 MB exposition body (the JMX fixture 100 times) once, with one parser, for
//! measuring peak memory: `/usr/bin/time -v target/release/examples/expo_mem ours|theirs|none`.
//! `none` only builds the body (the baseline).

use kafka_healing::expo::parse;

const JMX: &str = include_str!("../tests/data/expo/jmx_kafka.prom");

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let body = JMX.repeat(100);
    let started = std::time::Instant::now();
    let samples = match which.as_str() {
        "ours" => parse(&body).map(|v| v.len()).unwrap_or(0),
        "theirs" => {
            let lines = body.lines().map(|l| Ok(l.to_owned()));
            prometheus_parse::Scrape::parse(lines)
                .map(|s| s.samples.len())
                .unwrap_or(0)
        }
        "none" => 0,
        _ => {
            eprintln!("usage: expo_mem ours|theirs|none");
            std::process::exit(2);
        }
    };
    println!(
        "{which}: {} bytes, {samples} samples, {:?}",
        body.len(),
        started.elapsed()
    );
}
