//! Fuzz target `expo`: see [`kafka_healing::fuzzing::expo`] for what it drives and asserts.
//!
//! `cargo +nightly fuzz run expo /tmp/expo-corpus fuzz/corpus/expo -- -jobs=1` (new inputs go to
//! the first folder, so the committed corpus stays small; see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_healing::fuzzing::expo(data));
