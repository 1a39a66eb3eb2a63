//! The replication wire protocol: control messages and stream frames, each
//! a serde type encoded with postcard behind a 4-byte big-endian length.
//!
//! One QUIC bidirectional stream carries a link. The replica speaks first
//! ([`ReplicaMessage::Hello`]); the primary answers with [`PrimaryMessage::
//! Continue`] or [`PrimaryMessage::FullResync`] and then streams batches.
//! The protocol version is named twice: in ALPN (`quire-repl/1`, so a peer of
//! another major version fails the TLS handshake with a clear reason) and in
//! the hello ([`PROTOCOL_VERSION`]: a primary refuses a replica speaking
//! another one, with the reason).
//!
//! Decoding is sans-IO ([`MessageReader`]): bytes in, messages out. A length
//! is checked against [`MAX_MESSAGE_BYTES`] before anything is allocated, so
//! an untrusted peer cannot make us reserve memory it did not send.

use super::ids::{Epoch, ReplId};
use serde::{Deserialize, Serialize};

/// ALPN protocol name of this wire format (the transport offers it).
pub use crate::transport::ALPN;
/// Version carried in the hello.
pub const PROTOCOL_VERSION: u16 = 4;
/// Largest encoded message accepted (a batch or snapshot chunk is far
/// smaller; this bounds memory per link).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The replica's opening message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    /// Node name (its certificate's name).
    pub node: String,
    pub region: String,
    /// The replica's client port, for INFO/ROLE on the primary.
    pub tcp_port: u16,
    /// The replica's own replication listener (for chaining and promotion).
    pub repl_addr: String,
    /// The history the replica holds: its replication id...
    pub replid: ReplId,
    /// ...and the offset of the next byte it needs.
    pub offset: u64,
    /// A full-sync snapshot partly received before the link broke: resume
    /// it instead of starting over.
    pub resume: Option<SnapshotResume>,
    /// The newest promotion epoch this replica has seen (fencing).
    pub epoch: Epoch,
    /// The oldest offset of `replid` at which this replica can rebuild its
    /// data (its snapshot's, when its log continues it): a demoted primary
    /// that went on past its successor's fork rewinds instead of taking a
    /// full sync.
    pub rewind_from: Option<u64>,
}

/// "Continue sending snapshot `id` from byte `at`."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotResume {
    pub id: String,
    pub at: u64,
}

/// A batch of the replication stream: raw bytes `[start, start+raw_len)`,
/// compressed with a streaming zstd context that earlier batches of the
/// link built up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub start: u64,
    pub raw_len: u32,
    /// CRC32 of the raw (decompressed) bytes.
    pub crc32: u32,
    /// The batch opens a new compression context: the receiver starts a
    /// new decoder for it (a link's first batch, and where a link joins or
    /// leaves the node's shared stream).
    pub fresh: bool,
    /// The payload is the raw bytes, not compressed: the link found the
    /// stream incompressible (random or already-compressed values) and
    /// skips zstd for it; the compression context is left as it was.
    pub stored: bool,
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
}

/// Tag bytes that open the fast path's datagrams (the datagram format's
/// version: a datagram with another tag is discarded).
pub const FRAGMENT_TAG: u8 = 1;
pub const PARITY_TAG: u8 = 2;
/// Upper bound of a [`Fragment`]'s encoding apart from its data.
pub const FRAGMENT_OVERHEAD: usize = 56;
/// Most datagrams one [`Parity`] covers.
pub const MAX_PARITY_GROUP: usize = 16;
/// Upper bound of a [`Parity`]'s encoding apart from its XOR bytes. The
/// sender sizes fragments to leave this much room, so a parity datagram
/// fits wherever its members did.
pub const PARITY_OVERHEAD: usize = 1 + 10 + 1 + 3 * MAX_PARITY_GROUP + 3;

/// One piece of a [`Batch`] sent as a QUIC DATAGRAM (the loss-resilient
/// copy beside the stream): the batch's identity, the checksum of its whole
/// compressed payload, and this piece's place in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragment {
    /// The link's datagram sequence number (parity groups name these).
    pub seq: u64,
    pub start: u64,
    pub raw_len: u32,
    /// CRC32 of the raw bytes (as in [`Batch`]).
    pub crc32: u32,
    pub fresh: bool,
    pub stored: bool,
    /// Length and CRC32 of the whole compressed payload, checked once all
    /// pieces are in, before anything reaches the decompressor.
    pub payload_len: u32,
    pub payload_crc32: u32,
    pub index: u16,
    pub count: u16,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// XOR of the encodings of fragments `first_seq ..` (each zero-padded to
/// the longest): with all but one of them, the missing one is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    pub first_seq: u64,
    /// Encoded length of each member, in sequence order.
    pub lens: Vec<u16>,
    #[serde(with = "serde_bytes_compat")]
    pub xor: Vec<u8>,
}

/// A fast-path datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram {
    Fragment(Fragment),
    Parity(Parity),
}

/// Encodes a fragment as one datagram.
pub fn encode_fragment(fragment: &Fragment) -> Vec<u8> {
    // Serializing owned in-memory values to a Vec cannot fail.
    postcard::to_extend(fragment, vec![FRAGMENT_TAG]).unwrap_or_default()
}

/// Encodes a parity datagram.
pub fn encode_parity(parity: &Parity) -> Vec<u8> {
    postcard::to_extend(parity, vec![PARITY_TAG]).unwrap_or_default()
}

/// Decodes one datagram; a foreign or malformed one is an error.
pub fn decode_datagram(datagram: &[u8]) -> Result<Datagram, ProtocolError> {
    let malformed = |e: postcard::Error| ProtocolError::Malformed(e.to_string());
    match datagram.split_first() {
        Some((&FRAGMENT_TAG, body)) => postcard::from_bytes(body)
            .map(Datagram::Fragment)
            .map_err(malformed),
        Some((&PARITY_TAG, body)) => postcard::from_bytes(body)
            .map(Datagram::Parity)
            .map_err(malformed),
        Some((tag, _)) => Err(ProtocolError::Malformed(format!(
            "unknown datagram tag {tag}"
        ))),
        None => Err(ProtocolError::Malformed("empty datagram".into())),
    }
}

/// Messages from replica to primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplicaMessage {
    Hello(Hello),
    /// Everything before `offset` is applied, and everything before
    /// `fsynced` is fsynced in the replica's own log (0 with `appendonly
    /// no`): WAIT counts the first, WAITAOF the second.
    Ack {
        offset: u64,
        fsynced: u64,
    },
    /// A fencing probe from a node acting as primary: "what epoch are you
    /// at, and who is your primary?" Answered with `ProbeReply`.
    Probe {
        epoch: Epoch,
    },
}

/// Messages from primary to replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PrimaryMessage {
    /// Partial resync: the stream continues from `offset` of `replid`.
    Continue {
        replid: ReplId,
        offset: u64,
        epoch: Epoch,
        /// The primary's client port (what INFO's `master_port` shows, and
        /// what Sentinel compares).
        tcp_port: u16,
    },
    /// Full resync: snapshot file `snapshot_id` (the data at `offset`)
    /// follows from byte `resume_at`, then the stream from `offset`.
    FullResync {
        replid: ReplId,
        offset: u64,
        snapshot_id: String,
        snapshot_bytes: u64,
        file_crc32: u32,
        resume_at: u64,
        epoch: Epoch,
        /// The primary's client port, as in `Continue`.
        tcp_port: u16,
        /// Why the history asked for could not continue (the replica
        /// shows it: a backlog too short for its outages, a new history).
        reason: String,
    },
    /// Part of the snapshot file starting at byte `at`.
    SnapshotChunk {
        at: u64,
        crc32: u32,
        #[serde(with = "serde_bytes_compat")]
        data: Vec<u8>,
    },
    Batch(Batch),
    /// Keep-alive with the primary's current offset and wall clock (for lag
    /// in milliseconds); the replica answers with an ack.
    Ping {
        offset: u64,
        unix_ms: i64,
        /// The primary's epoch, so fencing also reaches live links.
        epoch: Epoch,
    },
    /// The primary refuses the link (reason is logged by both sides).
    Refused {
        reason: String,
    },
    /// Answer to a probe.
    ProbeReply {
        epoch: Epoch,
        is_primary: bool,
        upstream: Option<String>,
        replid: ReplId,
        replid2: ReplId,
        second_offset: Option<u64>,
    },
    /// Planned failover: everything up to `offset` has been sent; take over
    /// as primary with `epoch`.
    Handover {
        epoch: Epoch,
        offset: u64,
    },
    /// The replica's history forked from this node's at `to`: rebuild the
    /// data there (setting aside what came after), then ask again.
    Rewind {
        to: u64,
        epoch: Epoch,
        tcp_port: u16,
    },
}

/// Encodes a message with its length prefix.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Serializing owned in-memory values to a Vec cannot fail.
    let body = postcard::to_extend(message, Vec::new()).unwrap_or_default();
    out[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Encodes `PrimaryMessage::Batch` from a borrowed batch (links on the
/// shared stream send the same batch without copying it first).
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    struct AsMessage<'a>(&'a Batch);
    impl Serialize for AsMessage<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            // The variant's place in `PrimaryMessage` (a test pins it).
            s.serialize_newtype_variant("PrimaryMessage", 3, "Batch", self.0)
        }
    }
    encode(&AsMessage(batch))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Sans-IO reader of length-prefixed messages.
#[derive(Default)]
pub struct MessageReader {
    buf: Vec<u8>,
}

impl MessageReader {
    pub fn new() -> MessageReader {
        MessageReader::default()
    }

    /// Feeds bytes received from the peer.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed by a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, if one has arrived.
    pub fn poll_message<T: for<'de> Deserialize<'de>>(
        &mut self,
    ) -> Result<Option<T>, ProtocolError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let message = postcard::from_bytes(&self.buf[4..4 + len])
            .map_err(|e| ProtocolError::Malformed(e.to_string()));
        self.buf.drain(..4 + len);
        message.map(Some)
    }
}

/// Byte vectors as postcard byte strings (one length + raw bytes) rather
/// than sequences of integers, without a crate for it.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> ReplicaMessage {
        ReplicaMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: "eu-west".into(),
            region: "eu".into(),
            tcp_port: 6380,
            repl_addr: "127.0.0.1:7380".into(),
            replid: ReplId::from("a".repeat(40)),
            offset: 12345,
            resume: Some(SnapshotResume {
                id: "s1".into(),
                at: 99,
            }),
            epoch: Epoch(3),
            rewind_from: Some(100),
        })
    }

    #[test]
    fn round_trip_split_at_every_byte() {
        let messages = vec![
            hello(),
            ReplicaMessage::Ack {
                offset: 7,
                fsynced: 5,
            },
        ];
        let wire: Vec<u8> = messages.iter().flat_map(encode).collect();
        for split in 0..wire.len() {
            let mut reader = MessageReader::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                reader.handle_bytes(part);
                while let Some(m) = reader.poll_message::<ReplicaMessage>().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, messages);
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn a_borrowed_batch_encodes_as_the_message() {
        let batch = Batch {
            start: 77,
            raw_len: 3,
            crc32: 9,
            fresh: true,
            stored: false,
            payload: vec![1, 2, 3],
        };
        assert_eq!(
            encode_batch(&batch),
            encode(&PrimaryMessage::Batch(batch.clone()))
        );
    }

    #[test]
    fn batch_payload_is_compact() {
        let batch = PrimaryMessage::Batch(Batch {
            start: 1,
            raw_len: 3,
            crc32: 9,
            fresh: false,
            stored: true,
            payload: vec![0xff; 1000],
        });
        assert!(encode(&batch).len() < 1020);
    }

    #[test]
    fn datagram_overhead_bounds_hold_for_extreme_headers() {
        let f = Fragment {
            seq: u64::MAX,
            start: u64::MAX,
            raw_len: u32::MAX,
            crc32: u32::MAX,
            fresh: true,
            stored: true,
            payload_len: u32::MAX,
            payload_crc32: u32::MAX,
            index: u16::MAX,
            count: u16::MAX,
            data: vec![7; 1400],
        };
        let wire = encode_fragment(&f);
        assert!(wire.len() <= 1400 + FRAGMENT_OVERHEAD, "{}", wire.len());
        assert_eq!(decode_datagram(&wire).unwrap(), Datagram::Fragment(f));
        assert!(decode_datagram(&wire[..wire.len() - 1]).is_err());
        let p = Parity {
            first_seq: u64::MAX,
            lens: vec![u16::MAX; MAX_PARITY_GROUP],
            xor: vec![1; 1400],
        };
        let wire = encode_parity(&p);
        assert!(wire.len() <= 1400 + PARITY_OVERHEAD, "{}", wire.len());
        assert_eq!(decode_datagram(&wire).unwrap(), Datagram::Parity(p));
        assert!(decode_datagram(&[]).is_err());
        assert!(decode_datagram(&[9, 1, 2]).is_err());
    }

    #[test]
    fn oversized_length_refused_before_allocation() {
        let mut reader = MessageReader::new();
        reader.handle_bytes(&u32::MAX.to_be_bytes());
        assert_eq!(
            reader.poll_message::<PrimaryMessage>(),
            Err(ProtocolError::TooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut reader = MessageReader::new();
        let mut wire = 5u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[0xee, 0xff, 0xff, 0xff, 0xff]);
        reader.handle_bytes(&wire);
        assert!(matches!(
            reader.poll_message::<PrimaryMessage>(),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_bytes_field_is_malformed() {
        let full = encode(&PrimaryMessage::SnapshotChunk {
            at: 0,
            crc32: 0,
            data: vec![1; 100],
        });
        let body = &full[4..full.len() - 10];
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        let mut reader = MessageReader::new();
        reader.handle_bytes(&wire);
        assert!(matches!(
            reader.poll_message::<PrimaryMessage>(),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
