//! Entry points shared by the fuzz targets (`fuzz/`) and the regression
//! test that replays their corpus in CI (`tests/fuzz_corpus.rs`): each takes
//! arbitrary bytes and must return without panicking, looping or
//! allocating from an untrusted length.

use crate::persist::{KeyspaceBuilder, SnapshotReader};
use crate::replication::apply::UnitSplitter;
use crate::replication::batch::{Compressor, Decompressor};
use crate::replication::protocol::{Batch, MessageReader, PrimaryMessage, ReplicaMessage};
use crate::resp::{DecodeLimits, RequestDecoder};
use bytes::BytesMut;
use std::sync::{Arc, OnceLock};

/// The client-facing RESP decoder, input fed in two pieces.
pub fn resp_decode(data: &[u8]) {
    let split = data
        .first()
        .map(|b| *b as usize % (data.len() + 1))
        .unwrap_or(0);
    for limits in [
        DecodeLimits::default(),
        DecodeLimits {
            max_bulk_bytes: 64,
            max_multibulk_len: 4,
        },
    ] {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        'feed: for part in [&data[..split], &data[split..]] {
            buf.extend_from_slice(part);
            loop {
                match decoder.decode(&mut buf, &limits) {
                    Ok(Some(args)) => assert!(!args.is_empty()),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// Fast-path datagrams from an untrusted peer: the input is cut into
/// datagrams (a length byte before each), fed to a reassembler, and any
/// batch it hands over goes to a decompressor (which must refuse it
/// cleanly if it is garbage).
pub fn fastpath_datagrams(data: &[u8]) {
    use crate::replication::fastpath::{Reassembler, ReassemblyLimits};
    let mut r = Reassembler::new(
        0,
        ReassemblyLimits {
            max_buffered_bytes: 64 * 1024,
            max_ahead: 1 << 20,
        },
    );
    let mut d = Decompressor::new(0);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, next) = tail.split_at((len as usize).min(tail.len()));
        let _ = r.handle_datagram(datagram);
        while let Some((batch, _)) = r.poll_batch() {
            if d.decompress(&batch).is_err() {
                return;
            }
        }
        rest = next;
    }
}

/// Replication control messages and frames from an untrusted peer.
pub fn repl_message(data: &[u8]) {
    let mut a = MessageReader::new();
    a.handle_bytes(data);
    while let Ok(Some(_)) = a.poll_message::<PrimaryMessage>() {}
    let mut b = MessageReader::new();
    b.handle_bytes(data);
    while let Ok(Some(_)) = b.poll_message::<ReplicaMessage>() {}
}

fn replica_node() -> &'static Arc<crate::node::Shared> {
    static NODE: OnceLock<Arc<crate::node::Shared>> = OnceLock::new();
    NODE.get_or_init(|| {
        let settings = crate::config::Settings {
            dir: std::env::temp_dir().join(format!("quire-fuzz-{}", std::process::id())),
            save: Default::default(),
            ..Default::default()
        };
        crate::node::Shared::new(
            settings,
            &crate::config::Sources::default(),
            crate::commands::stream_applier,
        )
    })
}

/// A received batch: first as a (corrupt) batch that must be refused,
/// then as the content of a valid batch, split into units and applied to
/// a replica's keyspace.
pub fn batch_apply(data: &[u8]) {
    let shared = replica_node();
    if data.len() >= 8 {
        let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (1 << 20);
        let crc32 = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        let batch = Batch {
            start: 0,
            raw_len,
            crc32,
            fresh: true,
            stored: data[0] & 1 == 1,
            payload: data[8..].to_vec(),
        };
        let _ = Decompressor::new(0).decompress(&batch);
    }
    let batch = Compressor::new(1).compress(0, data);
    let mut decompressor = Decompressor::new(0);
    let raw = decompressor
        .decompress(&batch)
        .expect("a batch round-trips");
    let mut splitter = UnitSplitter::new();
    if let Ok(units) = splitter.handle_bytes(raw) {
        // Applied as a replica applies the stream: through the node's
        // one entry point, under the dataset lock, no runtime needed.
        let mut applier = (shared.applier)(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut data = shared.data.lock();
        applier.apply(shared, &mut data, &units);
    }
}

/// A snapshot file (on disk or shipped in a full sync).
pub fn snapshot_load(data: &[u8]) {
    let Ok(mut reader) = SnapshotReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    let mut builder = KeyspaceBuilder::new();
    let mut records = 0;
    while let Ok(Some(record)) = reader.next_record() {
        if builder.apply(record).is_err() || records > 100_000 {
            return;
        }
        records += 1;
    }
}
