//! One compressed stream for all the replicas at the live tail (sans-IO).
//!
//! Compression is most of what a replica costs its upstream (zstd level 1
//! runs at ~700 MB/s here, the rest of a batch's handling is a copy and a
//! send). Replicas that keep up all need the same bytes at about the same
//! time, so the node compresses each batch once into a [`SharedTail`] and
//! every link on it sends that batch. A link that is behind (a new link, a
//! catch-up after an outage) compresses its own batches, as before; it joins
//! the shared stream where a batch opens a new compression context (marked
//! `fresh`, see `batch`), which the shared stream does as soon as a link
//! wants to join; a link that falls behind what the tail holds leaves it
//! and starts a fresh context of its own.
//!
//! Batch boundaries on the shared stream are cut by whichever link asks
//! for the next batch first; the others send the same batch when they get
//! there.

use super::batch::Compressor;
use super::protocol::Batch;
use std::collections::VecDeque;
use std::sync::Arc;

/// Compressed bytes of recent shared batches kept for links a little
/// behind the one that cut them.
const MAX_HELD_BYTES: usize = 16 << 20;
const MAX_HELD_BATCHES: usize = 8192;

/// The node's shared compressed stream.
pub struct SharedTail {
    /// Replication history and compression level the stream belongs to.
    generation: u64,
    level: i32,
    compressor: Option<Compressor>,
    /// Where the next shared batch starts.
    next: Option<u64>,
    batches: VecDeque<Arc<Batch>>,
    held_bytes: usize,
    /// A link wants to join: the next batch opens a new context.
    fresh_wanted: bool,
}

impl Default for SharedTail {
    fn default() -> Self {
        SharedTail {
            generation: u64::MAX,
            level: 1,
            compressor: None,
            next: None,
            batches: VecDeque::new(),
            held_bytes: 0,
            fresh_wanted: false,
        }
    }
}

impl SharedTail {
    /// Starts over when the history or the level changed.
    fn sync(&mut self, generation: u64, level: i32) {
        if self.generation != generation || self.level != level {
            *self = SharedTail {
                generation,
                level,
                ..SharedTail::default()
            };
        }
    }

    fn get(&self, at: u64) -> Option<Arc<Batch>> {
        let i = self.batches.partition_point(|b| b.start < at);
        self.batches.get(i).filter(|b| b.start == at).cloned()
    }

    /// Compresses `raw` (stream bytes at `at`) as the next shared batch.
    fn push(&mut self, at: u64, raw: &[u8], fresh: bool) -> Arc<Batch> {
        // A batch that does not continue the held ones starts them (and
        // the context) over.
        let continues = self.next == Some(at);
        if !continues {
            self.batches.clear();
            self.held_bytes = 0;
        }
        if fresh || std::mem::take(&mut self.fresh_wanted) || !continues {
            self.compressor = None;
        }
        let batch = Arc::new(
            self.compressor
                .get_or_insert_with(|| Compressor::new(self.level))
                .compress(at, raw),
        );
        self.next = Some(at + raw.len() as u64);
        self.held_bytes += batch.payload.len();
        self.batches.push_back(batch.clone());
        while self.held_bytes > MAX_HELD_BYTES || self.batches.len() > MAX_HELD_BATCHES {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.held_bytes -= old.payload.len();
        }
        batch
    }
}

/// Where a link's batches come from.
pub struct LinkCompressor {
    level: i32,
    /// The link's own context while it is not on the shared stream.
    own: Option<Compressor>,
}

/// A batch for a link, and whether compressing it was this call's work.
pub struct NextBatch {
    pub batch: Arc<Batch>,
    pub compressed: bool,
}

impl LinkCompressor {
    /// A new link: its replica has no context yet, so the first batch it
    /// gets is fresh whichever stream it comes from.
    pub fn new(level: i32) -> LinkCompressor {
        LinkCompressor {
            level,
            own: Some(Compressor::new(level)),
        }
    }

    pub fn on_shared_stream(&self) -> bool {
        self.own.is_none()
    }

    /// A batch at `sent` that another link already compressed and this one
    /// can send as it is.
    pub fn ready(
        &mut self,
        tail: &mut SharedTail,
        generation: u64,
        sent: u64,
    ) -> Option<Arc<Batch>> {
        tail.sync(generation, self.level);
        let batch = tail.get(sent)?;
        if self.own.is_some() && !batch.fresh {
            return None;
        }
        self.own = None;
        Some(batch)
    }

    /// The next batch for a link at `sent` that decided to send up to `n`
    /// bytes; `read(at, n)` gives the stream's bytes.
    pub fn next_batch<E>(
        &mut self,
        tail: &mut SharedTail,
        generation: u64,
        sent: u64,
        n: usize,
        read: impl FnOnce(u64, usize) -> Result<Vec<u8>, E>,
    ) -> Result<NextBatch, E> {
        if let Some(batch) = self.ready(tail, generation, sent) {
            return Ok(NextBatch {
                batch,
                compressed: false,
            });
        }
        if self.own.is_none() {
            if tail.next == Some(sent) {
                let raw = read(sent, n)?;
                return Ok(NextBatch {
                    batch: tail.push(sent, &raw, false),
                    compressed: true,
                });
            }
            // Behind what the tail holds: on our own from here.
            self.own = Some(Compressor::new(self.level));
        }
        match tail.next {
            Some(next) if next > sent => {
                // Catching up: stop where the shared stream is, and ask it
                // to open a context there for us to join.
                let raw = read(sent, n.min((next - sent) as usize))?;
                if sent + raw.len() as u64 == next {
                    tail.fresh_wanted = true;
                }
                let batch = self
                    .own
                    .as_mut()
                    .expect("private above")
                    .compress(sent, &raw);
                Ok(NextBatch {
                    batch: Arc::new(batch),
                    compressed: true,
                })
            }
            // At (or past) the shared stream's end: open a context there
            // and join it.
            _ => {
                let raw = read(sent, n)?;
                self.own = None;
                Ok(NextBatch {
                    batch: tail.push(sent, &raw, true),
                    compressed: true,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::batch::Decompressor;

    /// A stream of SET commands, long enough for several batches.
    fn stream(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < len {
            crate::resp::encode_request(
                &[
                    b"SET".as_slice(),
                    format!("key:{i}").as_bytes(),
                    format!("{{\"n\":{i},\"tag\":\"t{}\"}}", i % 7).as_bytes(),
                ],
                &mut out,
            );
            i += 1;
        }
        out
    }

    /// A link and the replica at its other end.
    struct Link {
        compressor: LinkCompressor,
        sent: u64,
        replica: Decompressor,
        received: Vec<u8>,
        compressed: usize,
    }

    impl Link {
        fn new(at: u64) -> Link {
            Link {
                compressor: LinkCompressor::new(1),
                sent: at,
                replica: Decompressor::new(at),
                received: Vec::new(),
                compressed: 0,
            }
        }

        /// Sends one batch of up to `n` bytes from `data` (what the log
        /// holds so far).
        fn send(&mut self, tail: &mut SharedTail, data: &[u8], n: usize) {
            let next =
                self.compressor
                    .next_batch(tail, 0, self.sent, n, |at, n| -> Result<Vec<u8>, ()> {
                        let at = at as usize;
                        Ok(data[at..(at + n).min(data.len())].to_vec())
                    });
            let next = next.unwrap();
            self.compressed += next.compressed as usize;
            self.received.extend(
                self.replica
                    .decompress(&next.batch)
                    .expect("every batch decodes at the replica"),
            );
            self.sent += next.batch.raw_len as u64;
        }
    }

    #[test]
    fn links_at_the_tail_share_one_compression() {
        let data = stream(200_000);
        let mut tail = SharedTail::default();
        let (mut a, mut b) = (Link::new(0), Link::new(0));
        let mut end = 0;
        while end < data.len() {
            end = (end + 3000).min(data.len());
            for link in [&mut a, &mut b] {
                while (link.sent as usize) < end {
                    link.send(&mut tail, &data[..end], 4096);
                }
            }
        }
        assert_eq!(a.received, data);
        assert_eq!(b.received, data);
        assert!(a.compressor.on_shared_stream() && b.compressor.on_shared_stream());
        // One of them compressed (almost) everything, the other sent it.
        assert!(
            a.compressed + b.compressed <= a.compressed.max(b.compressed) + 2,
            "{} + {}",
            a.compressed,
            b.compressed
        );
    }

    #[test]
    fn a_link_behind_catches_up_on_its_own_then_joins() {
        let data = stream(400_000);
        let mut tail = SharedTail::default();
        let mut leader = Link::new(0);
        // The leader streams the first half alone.
        while (leader.sent as usize) < data.len() / 2 {
            leader.send(&mut tail, &data[..data.len() / 2], 2048);
        }
        // A new link resumes from far back (a partial resync), at a batch
        // that continues the shared context (so it cannot start there),
        // while the leader keeps going in small steps.
        let from = tail.batches[1].start;
        assert!(!tail.batches[1].fresh);
        let mut late = Link::new(from);
        let mut end = data.len() / 2;
        let mut joined_at = None;
        while end < data.len() || (late.sent as usize) < data.len() {
            end = (end + 1000).min(data.len());
            while (leader.sent as usize) < end {
                leader.send(&mut tail, &data[..end], 2048);
            }
            // The late link reads big batches while it is behind.
            for _ in 0..3 {
                if (late.sent as usize) < end {
                    late.send(&mut tail, &data[..end], 16384);
                }
            }
            if joined_at.is_none() && late.compressor.on_shared_stream() {
                joined_at = Some(late.sent);
            }
        }
        assert_eq!(leader.received, data);
        assert_eq!(late.received, data[from as usize..]);
        assert!(late.compressed > 0);
        assert!(
            joined_at.is_some(),
            "the late link joined the shared stream once it caught up"
        );
        assert!(leader.compressor.on_shared_stream() && late.compressor.on_shared_stream());
    }

    #[test]
    fn a_link_that_falls_off_the_held_batches_goes_on_alone() {
        let data = stream(MAX_HELD_BATCHES * 1200);
        let mut tail = SharedTail::default();
        let (mut fast, mut slow) = (Link::new(0), Link::new(0));
        fast.send(&mut tail, &data, 1024);
        slow.send(&mut tail, &data, 1024);
        assert!(slow.compressor.on_shared_stream());
        // The fast link runs far ahead: the tail drops what slow still needs.
        while (fast.sent as usize) < data.len() {
            fast.send(&mut tail, &data, 1024);
        }
        slow.send(&mut tail, &data, 65536);
        assert!(
            !slow.compressor.on_shared_stream(),
            "off the shared stream once its batches are gone"
        );
        while (slow.sent as usize) < data.len() {
            slow.send(&mut tail, &data, 65536);
        }
        assert_eq!(slow.received, data);
        assert_eq!(fast.received, data);
    }

    #[test]
    fn a_new_history_starts_the_tail_over() {
        let data = stream(50_000);
        let mut tail = SharedTail::default();
        let mut link = Link::new(0);
        link.send(&mut tail, &data, 4096);
        let mut other = LinkCompressor::new(1);
        // Generation 1 (say, after a promotion): nothing of generation 0 is offered.
        assert!(other.ready(&mut tail, 1, 0).is_none());
        assert!(tail.batches.is_empty());
    }
}
