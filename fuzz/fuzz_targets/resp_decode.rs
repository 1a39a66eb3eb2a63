//! The client-facing RESP decoder on arbitrary bytes.
//! The body lives in `quire::fuzzing` so CI replays the corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire::fuzzing::resp_decode(data));
