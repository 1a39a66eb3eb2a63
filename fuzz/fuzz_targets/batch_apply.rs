//! A received batch: verify + decompress, cut into units, apply them to a
//! replica's keyspace. The input is either a raw (possibly corrupt) batch
//! or, when it compresses cleanly, an arbitrary command stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quire::replication::batch::{Compressor, Decompressor};
use quire::replication::protocol::Batch;
use std::sync::OnceLock;

fn node() -> &'static (tokio::runtime::Runtime, std::sync::Arc<quire::server::Shared>) {
    static NODE: OnceLock<(tokio::runtime::Runtime, std::sync::Arc<quire::server::Shared>)> = OnceLock::new();
    NODE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut settings = quire::config::Settings::default();
        settings.dir = std::env::temp_dir().join("quire-fuzz-batch");
        settings.save = String::new();
        let shared = quire::server::Shared::new(settings, &quire::config::Sources::default());
        (rt, shared)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, shared) = node();
    let _guard = rt.enter();
    // 1. The bytes as a corrupt batch: must be refused, not applied.
    if data.len() >= 8 {
        let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (1 << 20);
        let crc32 = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        let batch = Batch { start: 0, raw_len, crc32, payload: data[8..].to_vec() };
        let _ = Decompressor::new(0).decompress(&batch);
    }
    // 2. The bytes as the stream content of a valid batch: verified,
    //    split into units, applied; errors are fine, panics are not.
    let batch = Compressor::new(1).compress(0, data);
    let raw = Decompressor::new(0).decompress(&batch).expect("round trip");
    let mut splitter = quire::replication::apply::UnitSplitter::new();
    if let Ok(units) = splitter.handle_bytes(&raw) {
        let mut session = quire::replication::replica::replicated_session("127.0.0.1:1".parse().unwrap());
        quire::replication::replica::apply_units(shared, &mut session, units);
    }
});
