//! A received batch: verified, decompressed, split and applied.
//! The body lives in `quire::fuzzing` so CI replays the corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire::fuzzing::batch_apply(data));
