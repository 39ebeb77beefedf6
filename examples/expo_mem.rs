//! One parse of an exposition body with one parser, for measuring peak memory and whole-process
//! time (see BENCHMARKS.md):
//!
//! - `expo_mem ours|theirs|none`: the ~20 MB body (the JMX fixture 100 times), built in
//!   memory; `/usr/bin/time -v target/release/examples/expo_mem ours`. `none` only builds it.
//! - `expo_mem ours|theirs|none FILE`: the body read from FILE (`none` only reads it), as
//!   `promtool check metrics < FILE` does, for the side-by-side with promtool.
//! - `expo_mem write DIR`: writes the bodies of `benches/expo.rs` into DIR: small_2k.prom,
//!   jmx_200k.prom, and big_20m.prom, the fixture 100 times with every metric name of copy
//!   K prefixed `cK_` (a body that repeats a family's HELP/TYPE is invalid, and promtool
//!   would stop at the first repeat).

use kafka_healing::expo::parse;

#[path = "../benches/support/bodies.rs"]
mod bodies;
use bodies::{JMX, small};

/// The fixture 100 times, copy K with its metric names prefixed `cK_`: a valid ~20 MB body.
fn big_distinct() -> String {
    let mut out = String::with_capacity(JMX.len() * 101);
    for k in 0..100 {
        let prefix = format!("c{k}_");
        for line in JMX.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                out.push_str("# HELP ");
                out.push_str(&prefix);
                out.push_str(rest);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                out.push_str("# TYPE ");
                out.push_str(&prefix);
                out.push_str(rest);
            } else if line.is_empty() || line.starts_with('#') {
                out.push_str(line);
            } else {
                out.push_str(&prefix);
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().cloned().unwrap_or_default();
    if which == "write" {
        let dir = std::path::Path::new(args.get(1).expect("usage: expo_mem write DIR"));
        std::fs::create_dir_all(dir).expect("cannot create DIR");
        for (name, body) in [
            ("small_2k.prom", small()),
            ("jmx_200k.prom", JMX.to_string()),
            ("big_20m.prom", big_distinct()),
        ] {
            std::fs::write(dir.join(name), body).expect("cannot write a body");
        }
        return;
    }
    let body = match args.get(1) {
        Some(file) => std::fs::read_to_string(file).expect("cannot read FILE"),
        None => JMX.repeat(100),
    };
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
            eprintln!("usage: expo_mem ours|theirs|none [FILE] | expo_mem write DIR");
            std::process::exit(2);
        }
    };
    println!(
        "{which}: {} bytes, {samples} samples, {:?}",
        body.len(),
        started.elapsed()
    );
}
