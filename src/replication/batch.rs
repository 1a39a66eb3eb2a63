//! Batching and compression of the replication stream (sans-IO).
//!
//! [`Batcher`] decides *when* to cut a batch: at once when the link has been
//! idle (a lone write is not delayed), otherwise coalescing until either the
//! size cap or the maximum delay is reached — so under load batches grow and
//! compress better, and no byte waits longer than `max_delay`.
//!
//! [`Compressor`]/[`Decompressor`] hold one zstd stream, flushed per batch:
//! each batch decodes on its own once the previous ones were decoded, and
//! later batches reuse the earlier ones as history, which is what makes
//! small, repetitive commands compress well. A compressor's first batch is
//! marked `fresh`; the decompressor starts a new context there, so a link
//! can move between compressed streams (its own, or the one the node
//! shares between the replicas at the live tail, see `tail`).

use super::protocol::Batch;
use std::io::Write;
use std::time::{Duration, Instant};

/// Limits for cutting batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_bytes: usize,
    pub max_delay: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_bytes: 64 * 1024,
            max_delay: Duration::from_millis(2),
        }
    }
}

/// What the sender should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing to send.
    Idle,
    /// Send this many bytes now.
    Send(usize),
    /// Wait for more data until this instant, then send what there is.
    WaitUntil(Instant),
}

/// The adaptive batching decision.
#[derive(Debug)]
pub struct Batcher {
    policy: BatchPolicy,
    last_sent: Option<Instant>,
    /// When the oldest unsent byte became available.
    pending_since: Option<Instant>,
}

impl Batcher {
    pub fn new(policy: BatchPolicy) -> Batcher {
        Batcher {
            policy,
            last_sent: None,
            pending_since: None,
        }
    }

    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Decides given `pending` unsent bytes at `now`.
    pub fn poll_cut(&mut self, now: Instant, pending: u64) -> Cut {
        if pending == 0 {
            self.pending_since = None;
            return Cut::Idle;
        }
        let since = *self.pending_since.get_or_insert(now);
        if pending >= self.policy.max_bytes as u64 {
            return Cut::Send(self.policy.max_bytes);
        }
        let idle_link = self
            .last_sent
            .is_none_or(|t| now.duration_since(t) >= self.policy.max_delay);
        let deadline = since + self.policy.max_delay;
        if idle_link || now >= deadline {
            Cut::Send(pending as usize)
        } else {
            Cut::WaitUntil(
                deadline.min(
                    self.last_sent
                        .map_or(deadline, |t| t + self.policy.max_delay),
                ),
            )
        }
    }

    /// Records that a batch of `bytes` went out at `now` (`remaining` are
    /// still pending).
    pub fn handle_sent(&mut self, now: Instant, remaining: u64) {
        self.last_sent = Some(now);
        self.pending_since = if remaining > 0 { Some(now) } else { None };
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("batch starts at offset {got}, expected {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("batch decompresses to more than its declared {0} bytes")]
    TooLong(u32),
    #[error("batch decompressed to {got} bytes, declared {declared}")]
    LengthMismatch { declared: u32, got: usize },
    #[error("batch checksum mismatch")]
    Checksum,
    #[error("corrupt compressed batch: {0}")]
    Corrupt(String),
    #[error("batch at {0} continues a compression context this link never started")]
    NoContext(u64),
}

/// The sending side's zstd stream, and whether it is worth running: a
/// stream whose batches do not shrink (random or already-compressed
/// values) is sent stored after [`INCOMPRESSIBLE_STREAK`] such batches,
/// and probed again with one compressed batch after [`PROBE_AFTER_BYTES`]
/// stored bytes (twice as long after each failed probe, up to
/// [`MAX_PROBE_AFTER_BYTES`]), so zstd never holds a link back for nothing.
/// A stored batch leaves the context untouched on both sides.
pub struct Compressor {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    started: bool,
    mode: CompressionMode,
    /// Consecutive compressed batches that did not shrink.
    streak: u32,
    /// Stored bytes until the next probe, and the interval after it.
    stored_left: u64,
    probe_after: u64,
}

/// Whether a compressor currently runs zstd on its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMode {
    Zstd,
    Stored,
}

impl CompressionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionMode::Zstd => "zstd",
            CompressionMode::Stored => "stored",
        }
    }
}

/// A compressed batch "shrinks" when it is at most this fraction of its
/// raw size.
pub const SHRINK_RATIO: f64 = 0.95;
/// Compressed batches in a row that must fail to shrink before the
/// compressor switches to stored batches.
pub const INCOMPRESSIBLE_STREAK: u32 = 4;
pub const PROBE_AFTER_BYTES: u64 = 4 << 20;
pub const MAX_PROBE_AFTER_BYTES: u64 = 256 << 20;

impl Compressor {
    pub fn new(level: i32) -> Compressor {
        // Creating a context only fails on allocation failure.
        let encoder = zstd::stream::write::Encoder::new(Vec::new(), level).expect("zstd context");
        Compressor {
            encoder,
            started: false,
            mode: CompressionMode::Zstd,
            streak: 0,
            stored_left: 0,
            probe_after: PROBE_AFTER_BYTES,
        }
    }

    pub fn mode(&self) -> CompressionMode {
        self.mode
    }

    /// Compresses `raw` (stream bytes starting at `start`) into a batch,
    /// or stores it while the stream is incompressible.
    pub fn compress(&mut self, start: u64, raw: &[u8]) -> Batch {
        let fresh = !std::mem::replace(&mut self.started, true);
        if self.mode == CompressionMode::Stored && self.stored_left > 0 {
            self.stored_left = self.stored_left.saturating_sub(raw.len() as u64);
            return Batch {
                start,
                raw_len: raw.len() as u32,
                crc32: crc32fast::hash(raw),
                fresh,
                stored: true,
                payload: raw.to_vec(),
            };
        }
        // Writing to a Vec cannot fail.
        let _ = self.encoder.write_all(raw);
        let _ = self.encoder.flush();
        let payload = std::mem::take(self.encoder.get_mut());
        self.judge(raw.len(), payload.len());
        Batch {
            start,
            raw_len: raw.len() as u32,
            crc32: crc32fast::hash(raw),
            fresh,
            stored: false,
            payload,
        }
    }

    /// Learns from a compressed batch whether zstd is paying off.
    fn judge(&mut self, raw: usize, compressed: usize) {
        // Tiny batches say little (framing dominates).
        if raw < 512 {
            return;
        }
        let shrank = (compressed as f64) <= raw as f64 * SHRINK_RATIO;
        match self.mode {
            CompressionMode::Zstd if shrank => self.streak = 0,
            CompressionMode::Zstd => {
                self.streak += 1;
                if self.streak >= INCOMPRESSIBLE_STREAK {
                    self.mode = CompressionMode::Stored;
                    self.stored_left = self.probe_after;
                }
            }
            // This was a probe.
            CompressionMode::Stored if shrank => {
                self.mode = CompressionMode::Zstd;
                self.streak = 0;
                self.probe_after = PROBE_AFTER_BYTES;
            }
            CompressionMode::Stored => {
                self.probe_after = (self.probe_after * 2).min(MAX_PROBE_AFTER_BYTES);
                self.stored_left = self.probe_after;
            }
        }
    }
}

/// The receiving side's zstd stream for one link, and the expected offset.
pub struct Decompressor {
    decoder: zstd::stream::write::Decoder<'static, Limited>,
    /// Whether a fresh batch started the current context.
    started: bool,
    next: u64,
}

/// A Vec that refuses to grow past a limit (decompression bombs).
pub struct Limited {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for Limited {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Decompressor {
    /// A decoder for a stream whose next batch starts at `next`.
    pub fn new(next: u64) -> Decompressor {
        Decompressor {
            decoder: Self::context(),
            started: false,
            next,
        }
    }

    fn context() -> zstd::stream::write::Decoder<'static, Limited> {
        // Creating a context only fails on allocation failure.
        zstd::stream::write::Decoder::new(Limited {
            buf: Vec::new(),
            limit: 0,
        })
        .expect("zstd context")
    }

    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Verifies and decompresses the next batch into the decompressor's
    /// own buffer (reused from batch to batch: a fresh 64 KiB buffer per
    /// batch cost a replica page faults on every one). After an error the
    /// link must be dropped: the zstd history is no longer trustworthy.
    pub fn decompress(&mut self, batch: &Batch) -> Result<&[u8], BatchError> {
        if batch.start != self.next {
            return Err(BatchError::OutOfOrder {
                expected: self.next,
                got: batch.start,
            });
        }
        if batch.fresh {
            let buf = std::mem::take(&mut self.decoder.get_mut().buf);
            self.decoder = Self::context();
            self.decoder.get_mut().buf = buf;
            self.started = true;
        } else if !self.started {
            return Err(BatchError::NoContext(batch.start));
        }
        if batch.stored {
            // Raw bytes; the zstd context does not see them (nor did the
            // sender's).
            if batch.payload.len() != batch.raw_len as usize {
                return Err(BatchError::LengthMismatch {
                    declared: batch.raw_len,
                    got: batch.payload.len(),
                });
            }
            if crc32fast::hash(&batch.payload) != batch.crc32 {
                return Err(BatchError::Checksum);
            }
            let out = &mut self.decoder.get_mut().buf;
            out.clear();
            out.extend_from_slice(&batch.payload);
            self.next += batch.payload.len() as u64;
            return Ok(&self.decoder.get_ref().buf);
        }
        let out = self.decoder.get_mut();
        out.buf.clear();
        out.buf.reserve((batch.raw_len as usize).min(1 << 20));
        out.limit = batch.raw_len as usize;
        let written = self
            .decoder
            .write_all(&batch.payload)
            .and_then(|_| self.decoder.flush());
        if let Err(e) = written {
            return Err(if e.to_string() == "limit" {
                BatchError::TooLong(batch.raw_len)
            } else {
                BatchError::Corrupt(e.to_string())
            });
        }
        let raw = &self.decoder.get_ref().buf;
        if raw.len() != batch.raw_len as usize {
            return Err(BatchError::LengthMismatch {
                declared: batch.raw_len,
                got: raw.len(),
            });
        }
        if crc32fast::hash(raw) != batch.crc32 {
            return Err(BatchError::Checksum);
        }
        self.next += raw.len() as u64;
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_link_sends_at_once_busy_link_coalesces() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy {
            max_bytes: 1000,
            max_delay: Duration::from_millis(2),
        });
        assert_eq!(b.poll_cut(t0, 0), Cut::Idle);
        assert_eq!(b.poll_cut(t0, 10), Cut::Send(10));
        b.handle_sent(t0, 0);
        let t1 = t0 + Duration::from_micros(500);
        assert_eq!(
            b.poll_cut(t1, 20),
            Cut::WaitUntil(t0 + Duration::from_millis(2))
        );
        assert_eq!(b.poll_cut(t0 + Duration::from_millis(2), 30), Cut::Send(30));
        b.handle_sent(t0 + Duration::from_millis(2), 0);
        assert_eq!(
            b.poll_cut(t0 + Duration::from_millis(3), 5000),
            Cut::Send(1000)
        );
    }

    #[test]
    fn no_byte_waits_longer_than_max_delay() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy {
            max_bytes: 1 << 20,
            max_delay: Duration::from_millis(2),
        });
        b.handle_sent(t0, 0);
        let mut now = t0;
        for step in 1..100u64 {
            now += Duration::from_micros(300);
            match b.poll_cut(now, step) {
                Cut::WaitUntil(at) => assert!(at <= now + Duration::from_millis(2)),
                Cut::Send(_) => b.handle_sent(now, 0),
                Cut::Idle => unreachable!(),
            }
        }
    }

    #[test]
    fn streaming_context_compresses_small_commands() {
        let mut c = Compressor::new(3);
        let mut d = Decompressor::new(0);
        let mut raw_total = 0;
        let mut wire_total = 0;
        let mut offset = 0u64;
        for i in 0..2000 {
            let cmd = format!("*3\r\n$3\r\nSET\r\n$12\r\nuser:{:07}\r\n$40\r\n{{\"name\":\"user{:07}\",\"score\":{:08}}}\r\n", i, i, i * 7);
            let batch = c.compress(offset, cmd.as_bytes());
            raw_total += cmd.len();
            wire_total += batch.payload.len();
            assert_eq!(d.decompress(&batch).unwrap(), cmd.as_bytes());
            offset += cmd.len() as u64;
        }
        assert!(
            (wire_total as f64) < raw_total as f64 * 0.5,
            "{wire_total} vs {raw_total}"
        );
    }

    #[test]
    fn incompressible_streams_are_stored_and_probed_again() {
        use rand::RngCore;
        let mut c = Compressor::new(1);
        let mut d = Decompressor::new(0);
        let mut rng = rand::rng();
        let mut offset = 0u64;
        let mut send = |c: &mut Compressor, raw: &[u8], offset: &mut u64| {
            let b = c.compress(*offset, raw);
            assert_eq!(d.decompress(&b).expect("decodes"), raw);
            *offset += raw.len() as u64;
            b
        };
        // Random 4 KiB values: after the streak, batches are stored.
        let mut stored = 0;
        for _ in 0..64 {
            let mut raw = vec![0u8; 16 * 1024];
            rng.fill_bytes(&mut raw);
            let b = send(&mut c, &raw, &mut offset);
            stored += b.stored as usize;
            assert!(b.payload.len() <= raw.len() + raw.len() / 100);
        }
        assert_eq!(c.mode(), CompressionMode::Stored);
        assert_eq!(stored, 64 - INCOMPRESSIBLE_STREAK as usize);
        // Compressible again: the next probe finds it and zstd resumes,
        // continuing the context the stored batches left alone.
        let text = b"{\"user\":\"someone\",\"action\":\"login\",\"ok\":true}".repeat(400);
        let mut compressed_after = 0;
        for _ in 0..400 {
            let b = send(&mut c, &text, &mut offset);
            if !b.stored {
                compressed_after += 1;
                assert!(b.payload.len() < text.len() / 4 || compressed_after == 1);
            }
        }
        assert_eq!(c.mode(), CompressionMode::Zstd);
        assert!(compressed_after > 100);
    }

    #[test]
    fn corrupt_and_out_of_order_batches_refused() {
        let mut c = Compressor::new(3);
        let batch = c.compress(0, b"*1\r\n$4\r\nPING\r\n");
        let mut bad = batch.clone();
        bad.crc32 ^= 1;
        assert_eq!(
            Decompressor::new(0).decompress(&bad),
            Err(BatchError::Checksum)
        );
        assert!(matches!(
            Decompressor::new(5).decompress(&batch),
            Err(BatchError::OutOfOrder { .. })
        ));
        let mut short = batch.clone();
        short.raw_len = 3;
        assert!(Decompressor::new(0).decompress(&short).is_err());
        let mut garbage = batch.clone();
        garbage.payload = vec![0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff];
        assert!(Decompressor::new(0).decompress(&garbage).is_err());
        assert_eq!(
            Decompressor::new(0).decompress(&batch).unwrap(),
            b"*1\r\n$4\r\nPING\r\n"
        );
        let later = c.compress(batch.raw_len as u64, b"*1\r\n$4\r\nPING\r\n");
        assert!(!later.fresh);
        assert_eq!(
            Decompressor::new(later.start).decompress(&later),
            Err(BatchError::NoContext(later.start))
        );
    }

    #[test]
    fn a_fresh_batch_switches_the_receiver_to_another_stream() {
        let mut d = Decompressor::new(0);
        let mut offset = 0u64;
        let mut stream = |c: &mut Compressor, ids: std::ops::Range<u64>| {
            for i in ids.clone() {
                let raw = format!(
                    "*3\r\n$3\r\nSET\r\n$8\r\nkey:{i:04}\r\n$20\r\n{{\"v\":\"value-{i:07}\"}}\r\n"
                );
                let b = c.compress(offset, raw.as_bytes());
                assert_eq!(b.fresh, i == ids.start);
                assert_eq!(d.decompress(&b).unwrap(), raw.as_bytes());
                offset += raw.len() as u64;
            }
        };
        stream(&mut Compressor::new(1), 0..10);
        // Mid-way, the link moves to another compressor's stream, which
        // starts a new context there.
        stream(&mut Compressor::new(1), 10..20);
    }
}
