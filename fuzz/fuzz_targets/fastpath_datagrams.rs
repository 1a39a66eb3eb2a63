//! Fast-path datagrams (batch copies and parity) from an untrusted peer.
//! The body lives in `quire::fuzzing` so CI replays the corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quire::fuzzing::fastpath_datagrams(data));
