//! Snapshot files: damaged ones are refused, never half-loaded.
//! The body lives in `quire::fuzzing` so CI replays the corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire::fuzzing::snapshot_load(data));
