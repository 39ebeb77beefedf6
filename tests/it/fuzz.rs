//! The fuzz corpora as a normal test: every committed file of every `fuzz/corpus/TARGET`
//! folder goes through the same function the fuzz target calls
//! (`kafka_healing::fuzzing`), so CI checks them without a nightly toolchain.

use std::path::Path;

use kafka_healing::fuzzing::TARGETS;

#[test]
fn corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {name} is empty");
        for f in &files {
            let data = std::fs::read(f).expect("read corpus file");
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "target {name} fails on {}", f.display());
        }
        total += files.len();
    }
    assert!(total >= TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for (name, _) in TARGETS {
        assert!(root.join(format!("{name}.rs")).is_file(), "{name}");
    }
}
