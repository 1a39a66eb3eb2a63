//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, grown by
//! `cargo fuzz run`) through the same entry points as the fuzz targets, so
//! every input the fuzzer kept — and any crash it ever finds, once added
//! there — is re-checked in CI without a fuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "the {target} corpus is empty");
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn resp_decode_corpus() {
    replay("resp_decode", quire::fuzzing::resp_decode);
}

#[test]
fn repl_message_corpus() {
    replay("repl_message", quire::fuzzing::repl_message);
}

#[test]
fn batch_apply_corpus() {
    replay("batch_apply", quire::fuzzing::batch_apply);
}

#[test]
fn snapshot_load_corpus() {
    replay("snapshot_load", quire::fuzzing::snapshot_load);
}

#[test]
fn fastpath_datagrams_corpus() {
    replay("fastpath_datagrams", quire::fuzzing::fastpath_datagrams);
}
