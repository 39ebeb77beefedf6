//! Fuzz target `http`: see [`kafka_healing::fuzzing::http_step`] for what it drives and asserts.
//!
//! `cargo +nightly fuzz run http /tmp/http-corpus fuzz/corpus/http -- -jobs=1` (new inputs go to
//! the first folder, so the committed corpus stays small; see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_healing::fuzzing::http_step(data));
