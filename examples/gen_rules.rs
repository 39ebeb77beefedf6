//! Writes a generated rule set for timing `kafka-healing check` (see BENCHMARKS.md):
//! `gen_rules DIR N` writes DIR/config.yaml and DIR/rules.yaml with N rules, and prints the
//! config's path. The rule shapes are those of `benches/rules.rs`.

// `alert_json` is for benches/rules.rs only.
#[allow(dead_code)]
#[path = "../benches/support/rulegen.rs"]
mod rulegen;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, n] = args.as_slice() else {
        eprintln!("usage: gen_rules DIR N");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N: a number of rules");
    std::fs::create_dir_all(dir).expect("cannot create DIR");
    let cfg = rulegen::write(std::path::Path::new(dir), n).expect("cannot write the rule set");
    println!("{}", cfg.display());
}
