//! The loss-resilient fast path (sans-IO): every compressed batch may also
//! travel as QUIC DATAGRAMs beside the reliable stream, and the replica
//! applies each batch from whichever copy arrives first.
//!
//! Why: on one ordered stream a single lost packet holds back everything
//! behind it for a round trip plus loss detection. The stream is small next
//! to the link (zstd), so a second, independently lost copy costs little and
//! turns most of those stalls into nothing: the datagram copy of the lost
//! batch, and of the batches after it, arrive while the stream waits for its
//! retransmission.
//!
//! The stream stays the source of truth. Both copies are the *same*
//! compressed bytes (one compressor per link), so the replica's zstd history
//! is identical whichever copy it decoded; the [`Reassembler`] hands batches
//! over strictly in offset order, exactly once, after checking each datagram
//! copy whole (length + CRC32 of the compressed payload) — nothing
//! unverified reaches the decompressor.
//!
//! [`Redundancy`] decides per batch whether to send the copy: never while the
//! sender is behind (catch-up after an outage, or a saturated link), never
//! when the copies themselves queue up, and in `auto` mode only while the
//! link has shown loss recently (a new link is presumed lossy until it has
//! run clean for a while).

use super::protocol::{
    self, Batch, Datagram, Fragment, Parity, FRAGMENT_OVERHEAD, MAX_PARITY_GROUP, PARITY_OVERHEAD,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Batches that would need more datagrams than this go by stream only
/// (they are catch-up batches; the copy would only compete with them).
pub const MAX_FRAGMENTS: usize = 64;

/// Splits `batch` into datagrams of at most `max_datagram` bytes (leaving
/// room for a parity header), numbered from `next_seq` on; `None` if it
/// needs more than [`MAX_FRAGMENTS`] (or the path allows none).
pub fn fragment(
    batch: &Batch,
    max_datagram: usize,
    next_seq: &mut u64,
) -> Option<Vec<(u64, Vec<u8>)>> {
    let room = max_datagram
        .checked_sub(FRAGMENT_OVERHEAD + PARITY_OVERHEAD)
        .filter(|r| *r >= 64)?;
    let count = batch.payload.len().div_ceil(room).max(1);
    if count > MAX_FRAGMENTS {
        return None;
    }
    let payload_crc32 = crc32fast::hash(&batch.payload);
    let first = *next_seq;
    *next_seq += count as u64;
    let pieces = (0..count)
        .map(|i| {
            let data = batch.payload[i * room..((i + 1) * room).min(batch.payload.len())].to_vec();
            let seq = first + i as u64;
            let encoded = protocol::encode_fragment(&Fragment {
                seq,
                start: batch.start,
                raw_len: batch.raw_len,
                crc32: batch.crc32,
                fresh: batch.fresh,
                stored: batch.stored,
                payload_len: batch.payload.len() as u32,
                payload_crc32,
                index: i as u16,
                count: count as u16,
                data,
            });
            (seq, encoded)
        })
        .collect();
    Some(pieces)
}

/// XOR parity over groups of consecutive fragment datagrams (sending
/// side): one extra datagram per group lets the replica rebuild any one
/// lost member. During a stream stall every copy counts — one lost copy
/// holds back all later batches until the stream's retransmission — and a
/// stall spans dozens of datagrams on a long link.
#[derive(Debug)]
pub struct ParityEncoder {
    group: usize,
    first_seq: u64,
    lens: Vec<u16>,
    xor: Vec<u8>,
    /// When the open group got its first member.
    opened: Option<Instant>,
    /// Longest a group stays open waiting for more members.
    max_wait: Duration,
}

impl ParityEncoder {
    pub fn new(group: usize, max_wait: Duration) -> ParityEncoder {
        ParityEncoder {
            group: group.clamp(1, MAX_PARITY_GROUP),
            first_seq: 0,
            lens: Vec::new(),
            xor: Vec::new(),
            opened: None,
            max_wait,
        }
    }

    /// Adds fragment datagram `seq` (sent at `now`); returns the group's
    /// parity datagram once the group is full.
    pub fn handle(&mut self, now: Instant, seq: u64, encoded: &[u8]) -> Option<Vec<u8>> {
        if !self.lens.is_empty() && seq != self.first_seq + self.lens.len() as u64 {
            // Not contiguous (cannot happen: every copied fragment comes
            // here); start over rather than describe a wrong group.
            self.lens.clear();
            self.xor.clear();
        }
        if self.lens.is_empty() {
            self.first_seq = seq;
            self.opened = Some(now);
        }
        if self.xor.len() < encoded.len() {
            self.xor.resize(encoded.len(), 0);
        }
        xor_into(&mut self.xor, encoded);
        self.lens.push(encoded.len() as u16);
        if self.lens.len() >= self.group {
            self.flush()
        } else {
            None
        }
    }

    /// When the open group must be closed (see [`Self::poll_flush`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.max_wait)
    }

    /// The parity of a group open for `max_wait` or longer, so the last
    /// copies before a lull are covered without waiting for more traffic.
    pub fn poll_flush(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.deadline()
            .filter(|d| *d <= now)
            .and_then(|_| self.flush())
    }

    /// The parity of the group so far, if it has members.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.opened = None;
        if self.lens.is_empty() {
            return None;
        }
        let parity = Parity {
            first_seq: self.first_seq,
            lens: std::mem::take(&mut self.lens),
            xor: std::mem::take(&mut self.xor),
        };
        Some(protocol::encode_parity(&parity))
    }
}

/// XORs `src` into the front of `dst` (parity over zero-padded members).
fn xor_into(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(x, b)| *x ^= b);
}

/// Fragments (by sequence number) and parities kept for rebuilding lost
/// datagrams: this many sequence numbers behind the newest seen.
const RECOVERY_WINDOW: u64 = 1024;

/// Which copy of a batch was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stream,
    Datagram,
}

/// Counters of the reassembly, for INFO and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub from_stream: u64,
    pub from_datagram: u64,
    /// Copies that arrived after their batch was already had.
    pub duplicates: u64,
    /// Datagrams discarded as malformed, inconsistent or failing their
    /// checksum, or dropped to stay within the memory bound.
    pub rejected: u64,
    /// Lost fragment datagrams rebuilt from a parity datagram.
    pub recovered: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReassemblyError {
    /// The reliable stream itself skipped or repeated bytes: the link is
    /// broken and must be re-established.
    #[error("stream batch starts at {got}, expected {expected}")]
    StreamGap { expected: u64, got: u64 },
    #[error("stream batch [{start}, {end}) straddles the applied offset {next}")]
    StreamOverlap { start: u64, end: u64, next: u64 },
}

/// Why a datagram was discarded (the link carries on: the stream has it).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FragmentError {
    #[error("{0}")]
    Malformed(#[from] protocol::ProtocolError),
    #[error("fragment header out of bounds")]
    Bounds,
    #[error("fragment disagrees with earlier pieces of its batch")]
    Inconsistent,
    #[error("batch [{start}, {end}) straddles the applied offset {next}")]
    Overlap { start: u64, end: u64, next: u64 },
    #[error("batch at {start} is too far ahead of the applied offset {next}")]
    TooFarAhead { start: u64, next: u64 },
    #[error("reassembled payload failed its checksum")]
    Checksum,
}

/// Memory bounds of the reassembly.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Datagram bytes held while waiting for earlier batches.
    pub max_buffered_bytes: usize,
    /// Batches starting further than this past the applied offset are
    /// discarded (the stream brings them).
    pub max_ahead: u64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_buffered_bytes: 8 << 20,
            max_ahead: 64 << 20,
        }
    }
}

struct Partial {
    raw_len: u32,
    crc32: u32,
    fresh: bool,
    stored: bool,
    payload_len: u32,
    payload_crc32: u32,
    pieces: Vec<Option<Vec<u8>>>,
    missing: usize,
    bytes: usize,
}

impl Partial {
    fn matches(&self, f: &Fragment) -> bool {
        self.raw_len == f.raw_len
            && self.crc32 == f.crc32
            && self.fresh == f.fresh
            && self.stored == f.stored
            && self.payload_len == f.payload_len
            && self.payload_crc32 == f.payload_crc32
            && self.pieces.len() == f.count as usize
    }
}

/// Merges the stream copy and the datagram copy of each batch into one
/// in-order sequence of batches, each exactly once.
pub struct Reassembler {
    /// Offset of the next batch to hand over (everything before it was).
    next: u64,
    /// Where the next stream batch must start (the stream is contiguous).
    stream_next: u64,
    ready: BTreeMap<u64, (Batch, Source)>,
    partial: BTreeMap<u64, Partial>,
    /// Bytes held for datagram copies (ready or partial).
    buffered: usize,
    /// Recent fragment datagrams as received, and parities, by sequence
    /// number (within [`RECOVERY_WINDOW`] of `newest_seq`).
    recent: BTreeMap<u64, Vec<u8>>,
    parities: BTreeMap<u64, Parity>,
    newest_seq: u64,
    limits: ReassemblyLimits,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler for a link whose stream starts at `start`.
    pub fn new(start: u64, limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            next: start,
            stream_next: start,
            ready: BTreeMap::new(),
            partial: BTreeMap::new(),
            buffered: 0,
            recent: BTreeMap::new(),
            parities: BTreeMap::new(),
            newest_seq: 0,
            limits,
            stats: ReassemblyStats::default(),
        }
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Whether the next batch in order is here (and [`Self::poll_batch`]
    /// would hand it over).
    pub fn has_next(&self) -> bool {
        self.ready.contains_key(&self.next)
    }

    /// Bytes held for datagram copies.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// A batch read from the reliable stream.
    pub fn handle_stream(&mut self, batch: Batch) -> Result<(), ReassemblyError> {
        let (start, end) = (batch.start, batch.start + batch.raw_len as u64);
        if start != self.stream_next {
            return Err(ReassemblyError::StreamGap {
                expected: self.stream_next,
                got: start,
            });
        }
        self.stream_next = end;
        if end <= self.next {
            self.stats.duplicates += 1;
            return Ok(());
        }
        if start < self.next {
            return Err(ReassemblyError::StreamOverlap {
                start,
                end,
                next: self.next,
            });
        }
        match self.ready.get(&start) {
            // The datagram copy got here first and is verified: keep it.
            Some((held, Source::Datagram))
                if held.raw_len == batch.raw_len
                    && held.fresh == batch.fresh
                    && held.stored == batch.stored =>
            {
                self.stats.duplicates += 1
            }
            _ => {
                if let Some((old, Source::Datagram)) =
                    self.ready.insert(start, (batch, Source::Stream))
                {
                    self.buffered -= old.payload.len();
                }
            }
        }
        if let Some(p) = self.partial.remove(&start) {
            self.buffered -= p.bytes;
        }
        Ok(())
    }

    /// One datagram. Errors are reasons to discard it, not to drop the link.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), FragmentError> {
        let result = match protocol::decode_datagram(datagram) {
            Err(e) => Err(e.into()),
            Ok(Datagram::Fragment(f)) => {
                let seq = f.seq;
                self.remember(seq, datagram);
                let taken = self.take_fragment(f);
                self.try_recover(seq);
                taken
            }
            Ok(Datagram::Parity(p)) => self.take_parity(p),
        };
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    /// Keeps a fragment datagram for rebuilding others of its group.
    fn remember(&mut self, seq: u64, datagram: &[u8]) {
        if seq + RECOVERY_WINDOW < self.newest_seq {
            return;
        }
        self.recent.entry(seq).or_insert_with(|| datagram.to_vec());
        if seq > self.newest_seq {
            self.newest_seq = seq;
            let floor = seq.saturating_sub(RECOVERY_WINDOW);
            self.recent = self.recent.split_off(&floor);
            self.parities = self.parities.split_off(&floor);
        }
    }

    fn take_parity(&mut self, p: Parity) -> Result<(), FragmentError> {
        let max_len = protocol::MAX_MESSAGE_BYTES;
        if p.lens.is_empty()
            || p.lens.len() > MAX_PARITY_GROUP
            || p.xor.len() > max_len
            || p.lens.iter().any(|l| *l as usize > p.xor.len())
        {
            return Err(FragmentError::Bounds);
        }
        if p.first_seq + RECOVERY_WINDOW < self.newest_seq {
            return Ok(());
        }
        let first = p.first_seq;
        self.parities.insert(first, p);
        self.try_recover(first);
        Ok(())
    }

    /// Rebuilds the one missing member of the parity group holding `seq`,
    /// if exactly one is missing, and takes it as if it had arrived.
    fn try_recover(&mut self, seq: u64) {
        let Some((&first, parity)) = self.parities.range(..=seq).next_back() else {
            return;
        };
        let members = first..first + parity.lens.len() as u64;
        if !members.contains(&seq) {
            return;
        }
        let mut missing = members.clone().filter(|s| !self.recent.contains_key(s));
        let (Some(lost), None) = (missing.next(), missing.next()) else {
            if members.clone().all(|s| self.recent.contains_key(&s)) {
                self.parities.remove(&first);
            }
            return;
        };
        let Some(parity) = self.parities.remove(&first) else {
            return;
        };
        let mut rebuilt = parity.xor;
        for s in members {
            if let Some(d) = self.recent.get(&s) {
                xor_into(&mut rebuilt, d);
            }
        }
        rebuilt.truncate(parity.lens[(lost - first) as usize] as usize);
        match protocol::decode_datagram(&rebuilt) {
            Ok(Datagram::Fragment(f)) if f.seq == lost => {
                self.stats.recovered += 1;
                self.recent.insert(lost, rebuilt);
                if self.take_fragment(f).is_err() {
                    self.stats.rejected += 1;
                }
            }
            _ => self.stats.rejected += 1,
        }
    }

    fn take_fragment(&mut self, f: Fragment) -> Result<(), FragmentError> {
        let count = f.count as usize;
        let max = protocol::MAX_MESSAGE_BYTES as u32;
        if count == 0
            || count > MAX_FRAGMENTS
            || f.index >= f.count
            || f.payload_len > max
            || f.raw_len > max
            || f.data.len() > f.payload_len as usize
        {
            return Err(FragmentError::Bounds);
        }
        let (start, end) = (f.start, f.start.saturating_add(f.raw_len as u64));
        if end <= self.next || self.ready.contains_key(&start) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        if start < self.next {
            return Err(FragmentError::Overlap {
                start,
                end,
                next: self.next,
            });
        }
        if start - self.next > self.limits.max_ahead {
            return Err(FragmentError::TooFarAhead {
                start,
                next: self.next,
            });
        }
        let partial = self.partial.entry(start).or_insert_with(|| Partial {
            raw_len: f.raw_len,
            crc32: f.crc32,
            fresh: f.fresh,
            stored: f.stored,
            payload_len: f.payload_len,
            payload_crc32: f.payload_crc32,
            pieces: vec![None; count],
            missing: count,
            bytes: 0,
        });
        if !partial.matches(&f) {
            return Err(FragmentError::Inconsistent);
        }
        let slot = &mut partial.pieces[f.index as usize];
        if slot.is_some() {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let len = f.data.len();
        *slot = Some(f.data);
        partial.missing -= 1;
        partial.bytes += len;
        self.buffered += len;
        if partial.missing == 0 {
            let Some(p) = self.partial.remove(&start) else {
                return Ok(());
            };
            self.buffered -= p.bytes;
            let mut payload = Vec::with_capacity(p.bytes);
            for piece in p.pieces.into_iter().flatten() {
                payload.extend_from_slice(&piece);
            }
            if payload.len() != p.payload_len as usize
                || crc32fast::hash(&payload) != p.payload_crc32
            {
                return Err(FragmentError::Checksum);
            }
            self.buffered += payload.len();
            self.ready.insert(
                start,
                (
                    Batch {
                        start,
                        raw_len: p.raw_len,
                        crc32: p.crc32,
                        fresh: p.fresh,
                        stored: p.stored,
                        payload,
                    },
                    Source::Datagram,
                ),
            );
        }
        self.enforce_memory_bound();
        Ok(())
    }

    /// Drops the datagram copies furthest ahead until within the bound
    /// (the stream brings those batches anyway).
    fn enforce_memory_bound(&mut self) {
        while self.buffered > self.limits.max_buffered_bytes {
            let ready = self
                .ready
                .iter()
                .rev()
                .find(|(_, (_, s))| *s == Source::Datagram)
                .map(|(k, _)| *k);
            let partial = self.partial.keys().next_back().copied();
            let victim_ready = match (ready, partial) {
                (Some(r), Some(p)) => r > p,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return,
            };
            if victim_ready {
                if let Some((b, _)) = ready.and_then(|k| self.ready.remove(&k)) {
                    self.buffered -= b.payload.len();
                }
            } else if let Some(p) = partial.and_then(|k| self.partial.remove(&k)) {
                self.buffered -= p.bytes;
            }
            self.stats.rejected += 1;
        }
    }

    /// The next batch in offset order, if it is here.
    pub fn poll_batch(&mut self) -> Option<(Batch, Source)> {
        loop {
            let (&start, _) = self.ready.first_key_value()?;
            if start > self.next {
                return None;
            }
            let (batch, source) = self.ready.remove(&start)?;
            if source == Source::Datagram {
                self.buffered -= batch.payload.len();
            }
            if start < self.next {
                continue;
            }
            self.next = start + batch.raw_len as u64;
            match source {
                Source::Stream => self.stats.from_stream += 1,
                Source::Datagram => self.stats.from_datagram += 1,
            }
            while let Some(entry) = self.partial.first_entry() {
                if *entry.key() >= self.next {
                    break;
                }
                self.buffered -= entry.remove().bytes;
            }
            return Some((batch, source));
        }
    }
}

pub use crate::config::DatagramMode;

/// How long one observed loss keeps `auto` copies on.
pub const LOSS_MEMORY: Duration = Duration::from_secs(30);
/// Below this round trip a stream stall costs a few milliseconds at most
/// (a LAN, or co-located nodes): `auto` sends no copies.
pub const MIN_AUTO_RTT: Duration = Duration::from_millis(5);

/// The link's state as the sender samples it (about once a second).
#[derive(Debug, Clone, Copy)]
pub struct PathSample {
    pub at: Instant,
    pub rtt: Duration,
    /// Packets the QUIC connection sent and declared lost so far.
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// Stream bytes sent on this link so far (without the copies).
    pub stream_bytes: u64,
}

/// The redundancy decision for one link.
#[derive(Debug)]
pub struct Redundancy {
    mode: DatagramMode,
    /// The link's capacity in bytes per second, if configured.
    capacity: Option<f64>,
    last: Option<PathSample>,
    /// The last loss seen, or the link's start until one is seen.
    last_loss: Instant,
    rtt: Duration,
    /// Smoothed fraction of packets lost, once a sample was taken.
    loss_rate: f64,
    loss_measured: bool,
    stream_rate: f64,
}

/// Measured loss at which every batch gets a second datagram copy: where
/// one copy and the stream are both lost often enough to show in p99.
pub const SECOND_COPY_LOSS: f64 = 0.012;

impl Redundancy {
    /// The decision for a link that starts at `now` with round trip `rtt`.
    pub fn new(
        mode: DatagramMode,
        capacity_bytes_per_sec: Option<f64>,
        now: Instant,
        rtt: Duration,
    ) -> Redundancy {
        Redundancy {
            mode,
            capacity: capacity_bytes_per_sec,
            last: None,
            last_loss: now,
            rtt,
            loss_rate: 0.0,
            loss_measured: false,
            stream_rate: 0.0,
        }
    }

    /// Follows a run-time change of `repl.datagrams`.
    pub fn set_mode(&mut self, mode: DatagramMode) {
        self.mode = mode;
    }

    /// Whether the mode and the link's loss call for copies now (batches
    /// cut while the sender is behind still go without): INFO's view.
    pub fn engaged(&self, now: Instant) -> bool {
        match self.mode {
            DatagramMode::Off => false,
            DatagramMode::On => true,
            DatagramMode::Auto => {
                self.rtt >= MIN_AUTO_RTT
                    && now.saturating_duration_since(self.last_loss) < LOSS_MEMORY
            }
        }
    }

    pub fn handle_sample(&mut self, sample: PathSample) {
        self.rtt = sample.rtt;
        if let Some(last) = self.last {
            if sample.lost_packets > last.lost_packets {
                self.last_loss = sample.at;
            }
            let sent = sample.sent_packets.saturating_sub(last.sent_packets);
            if sent >= 100 {
                let fraction =
                    sample.lost_packets.saturating_sub(last.lost_packets) as f64 / sent as f64;
                // Quick to rise (the first sample counts in full), slow to
                // fall: a second copy comes on within a second or two of
                // heavy loss and does not flap on a noisy sample.
                let alpha = if !self.loss_measured {
                    1.0
                } else if fraction > self.loss_rate {
                    0.5
                } else {
                    0.1
                };
                self.loss_rate += alpha * (fraction - self.loss_rate);
                self.loss_measured = true;
            }
            let secs = sample.at.saturating_duration_since(last.at).as_secs_f64();
            if secs > 0.0 {
                self.stream_rate =
                    sample.stream_bytes.saturating_sub(last.stream_bytes) as f64 / secs;
            }
        } else if sample.lost_packets > 0 {
            self.last_loss = sample.at;
        }
        self.last = Some(sample);
    }

    /// Smoothed fraction of packets lost on the link.
    pub fn loss_rate(&self) -> f64 {
        self.loss_rate
    }

    /// How many datagram copies the batch just cut gets (0, 1, or 2 when
    /// measured loss is at least [`SECOND_COPY_LOSS`]). `behind` says the
    /// sender has more to send after this batch, or the replica's acks lag
    /// well behind (an outage, or catch-up after one); `copies_queued` says
    /// the previous copies have not left yet.
    pub fn decide(&mut self, now: Instant, behind: bool, copies_queued: bool) -> usize {
        let copies = if self.loss_rate >= SECOND_COPY_LOSS {
            2
        } else {
            1
        };
        let room = !behind
            && !copies_queued
            && self
                .capacity
                .is_none_or(|c| self.stream_rate * (1 + copies) as f64 <= c * 0.5);
        if room && self.engaged(now) {
            copies
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::{Compressor, Decompressor};
    use super::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// A stream of SET commands cut into batches, compressed by one
    /// compressor: (raw stream, batches).
    fn stream_and_batches(rng: &mut StdRng, commands: usize) -> (Vec<u8>, Vec<Batch>) {
        let mut compressor = Compressor::new(1);
        let mut raw = Vec::new();
        let mut batches = Vec::new();
        let mut pending = Vec::new();
        for i in 0..commands {
            let value: String = (0..rng.random_range(5..400))
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            let cmd = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\nk{i}\r\n${}\r\n{value}\r\n",
                format!("k{i}").len(),
                value.len()
            );
            pending.extend_from_slice(cmd.as_bytes());
            if rng.random_bool(0.3) || i + 1 == commands {
                batches.push(compressor.compress(raw.len() as u64, &pending));
                raw.extend_from_slice(&pending);
                pending.clear();
            }
        }
        (raw, batches)
    }

    /// Delivers the stream (in order, with stalls) and datagram copies
    /// (lost, duplicated, reordered) through a reassembler and a
    /// decompressor; returns the bytes applied.
    fn deliver(seed: u64, loss: f64, dup: f64, mtu: usize) -> (Vec<u8>, Vec<u8>, ReassemblyStats) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (raw, batches) = stream_and_batches(&mut rng, 300);
        enum Event {
            Stream,
            Datagram(Vec<u8>),
        }
        // (arrival time, tiebreak, event)
        let mut events: Vec<(u64, u64, Event)> = Vec::new();
        let mut stream_clock = 0u64;
        let mut seq = 0u64;
        let mut parity = ParityEncoder::new(5, Duration::from_millis(10));
        let last = batches.len() - 1;
        for (i, b) in batches.iter().enumerate() {
            let sent = i as u64 * 10;
            // The stream is in order but stalls now and then (a lost packet
            // waiting for its retransmission holds back all behind it).
            if rng.random_bool(loss) {
                stream_clock = stream_clock.max(sent) + 200;
            }
            stream_clock = stream_clock.max(sent + 40);
            events.push((stream_clock, rng.random(), Event::Stream));
            let mut datagrams = Vec::new();
            for (n, piece) in fragment(b, mtu, &mut seq).unwrap_or_default() {
                datagrams.extend(parity.handle(Instant::now(), n, &piece));
                datagrams.push(piece);
            }
            datagrams.extend(parity.flush().filter(|_| i == last));
            for piece in datagrams {
                if rng.random_bool(loss) {
                    continue;
                }
                let copies = if rng.random_bool(dup) { 2 } else { 1 };
                for _ in 0..copies {
                    events.push((
                        sent + 35 + rng.random_range(0..30),
                        rng.random(),
                        Event::Datagram(piece.clone()),
                    ));
                }
            }
        }
        events.sort_by_key(|e| (e.0, e.1));
        // Reordering among datagrams arriving together.
        events.chunks_mut(7).for_each(|c| {
            if rng.random_bool(0.2) {
                c.shuffle(&mut rng)
            }
        });
        // ...but the stream itself stays in order: a stream event delivers
        // the next stream batch, whichever it was scheduled for.
        let mut stream: std::collections::VecDeque<Batch> = batches.into_iter().collect();
        let mut r = Reassembler::new(0, ReassemblyLimits::default());
        let mut d = Decompressor::new(0);
        let mut out = Vec::new();
        for (_, _, event) in events {
            match event {
                Event::Stream => r.handle_stream(stream.pop_front().unwrap()).unwrap(),
                Event::Datagram(bytes) => {
                    let _ = r.handle_datagram(&bytes);
                }
            }
            while let Some((batch, _)) = r.poll_batch() {
                out.extend_from_slice(d.decompress(&batch).expect("in-order batches decompress"));
            }
        }
        assert_eq!(r.buffered(), 0, "nothing held once the stream is through");
        (raw, out, r.stats())
    }

    #[test]
    fn any_loss_duplication_and_reordering_yields_the_exact_stream() {
        let mut recovered = 0;
        for seed in 0..60 {
            let loss = [0.0, 0.005, 0.02, 0.1, 0.5, 1.0][seed as usize % 6];
            let mtu = [300, 1200, 1452][seed as usize % 3];
            let (raw, out, stats) = deliver(seed, loss, 0.1, mtu);
            assert_eq!(out.len(), raw.len(), "seed {seed}");
            assert!(out == raw, "seed {seed}: applied bytes differ");
            assert_eq!(stats.rejected, 0, "seed {seed}");
            if loss == 0.0 {
                assert!(
                    stats.from_datagram > 0,
                    "seed {seed}: copies used when they arrive first"
                );
            }
            recovered += stats.recovered;
        }
        assert!(recovered > 0, "parity rebuilt some lost datagrams");
    }

    #[test]
    fn datagram_copies_bridge_a_stalled_stream() {
        let mut rng = StdRng::seed_from_u64(1);
        let (raw, batches) = stream_and_batches(&mut rng, 50);
        let mut r = Reassembler::new(0, ReassemblyLimits::default());
        let mut d = Decompressor::new(0);
        let mut out = Vec::new();
        // The stream's first batch is stuck; all copies arrive.
        let mut seq = 0;
        for b in &batches {
            for (_, piece) in fragment(b, 1200, &mut seq).unwrap() {
                r.handle_datagram(&piece).unwrap();
            }
            while let Some((b, source)) = r.poll_batch() {
                assert_eq!(source, Source::Datagram);
                out.extend_from_slice(d.decompress(&b).unwrap());
            }
        }
        assert_eq!(out, raw);
        // Then the stream delivers everything again: all duplicates.
        for b in batches.clone() {
            r.handle_stream(b).unwrap();
            assert!(r.poll_batch().is_none());
        }
        assert_eq!(r.stats().duplicates, batches.len() as u64);
    }

    #[test]
    fn corrupt_or_inconsistent_datagrams_are_discarded_not_applied() {
        let mut rng = StdRng::seed_from_u64(2);
        let (_, batches) = stream_and_batches(&mut rng, 20);
        let b = &batches[0];
        let pieces: Vec<Vec<u8>> = fragment(b, 190, &mut 0)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert!(pieces.len() > 1);
        let mut r = Reassembler::new(0, ReassemblyLimits::default());
        // A piece whose data was altered (same header): the whole payload
        // fails its checksum.
        let decode = |d: &[u8]| match protocol::decode_datagram(d) {
            Ok(Datagram::Fragment(f)) => f,
            other => panic!("{other:?}"),
        };
        let mut f = decode(&pieces[0]);
        f.data[0] ^= 0xff;
        r.handle_datagram(&protocol::encode_fragment(&f)).unwrap();
        for p in &pieces[1..] {
            let _ = r.handle_datagram(p);
        }
        assert!(r.poll_batch().is_none());
        assert!(r.stats().rejected >= 1);
        // Garbage and out-of-bounds headers.
        assert!(r.handle_datagram(b"").is_err());
        assert!(r.handle_datagram(&[1, 2, 3]).is_err());
        let mut bad = decode(&pieces[0]);
        bad.index = bad.count;
        assert_eq!(
            r.handle_datagram(&protocol::encode_fragment(&bad)),
            Err(FragmentError::Bounds)
        );
        bad.index = 0;
        bad.raw_len += 1;
        r.handle_datagram(&pieces[0]).unwrap();
        assert_eq!(
            r.handle_datagram(&protocol::encode_fragment(&bad)),
            Err(FragmentError::Inconsistent)
        );
        // The stream copy still goes through.
        r.handle_stream(b.clone()).unwrap();
        assert_eq!(
            r.poll_batch().map(|(b, s)| (b.start, s)),
            Some((0, Source::Stream))
        );
    }

    #[test]
    fn memory_is_bounded_while_a_batch_is_missing() {
        let mut rng = StdRng::seed_from_u64(3);
        let (_, batches) = stream_and_batches(&mut rng, 400);
        let limits = ReassemblyLimits {
            max_buffered_bytes: 4096,
            max_ahead: 1 << 20,
        };
        let mut r = Reassembler::new(0, limits);
        // The first batch never arrives by datagram.
        let mut seq = 0;
        for b in &batches[1..] {
            for (_, piece) in fragment(b, 1200, &mut seq).unwrap() {
                let _ = r.handle_datagram(&piece);
                assert!(r.buffered() <= 4096 + 1200);
            }
        }
        assert!(r.poll_batch().is_none());
        for b in batches.clone() {
            r.handle_stream(b).unwrap();
        }
        let mut n = 0;
        while r.poll_batch().is_some() {
            n += 1;
        }
        assert_eq!(n, batches.len());
    }

    #[test]
    fn parity_rebuilds_one_lost_datagram_per_group() {
        let mut rng = StdRng::seed_from_u64(4);
        let (raw, batches) = stream_and_batches(&mut rng, 200);
        let mut parity = ParityEncoder::new(4, Duration::from_millis(10));
        let mut seq = 0;
        let mut datagrams = Vec::new();
        for b in &batches {
            for (n, piece) in fragment(b, 300, &mut seq).unwrap() {
                // Parity first: the group's last member arrives after it.
                datagrams.extend(
                    parity
                        .handle(Instant::now(), n, &piece)
                        .map(|p| (u64::MAX, p)),
                );
                datagrams.push((n, piece));
            }
        }
        datagrams.extend(parity.flush().map(|p| (u64::MAX, p)));
        // Lose one fragment in every group of four; the stream never comes.
        let mut r = Reassembler::new(0, ReassemblyLimits::default());
        let mut d = Decompressor::new(0);
        let mut out = Vec::new();
        let victims: Vec<u64> = (0..=seq / 4).map(|_| rng.random_range(0..4)).collect();
        for (n, datagram) in &datagrams {
            if *n != u64::MAX && n % 4 == victims[(n / 4) as usize] {
                continue;
            }
            r.handle_datagram(datagram).unwrap();
            while let Some((b, _)) = r.poll_batch() {
                out.extend_from_slice(d.decompress(&b).unwrap());
            }
        }
        assert!(r.stats().recovered > 0);
        assert_eq!(r.stats().rejected, 0);
        assert!(out == raw, "every batch rebuilt from parity");
    }

    #[test]
    fn stream_gaps_break_the_link() {
        let mut r = Reassembler::new(100, ReassemblyLimits::default());
        let b = Batch {
            start: 120,
            raw_len: 10,
            crc32: 0,
            fresh: false,
            stored: false,
            payload: vec![],
        };
        assert_eq!(
            r.handle_stream(b),
            Err(ReassemblyError::StreamGap {
                expected: 100,
                got: 120
            })
        );
    }

    #[test]
    fn large_batches_are_not_copied() {
        let b = Batch {
            start: 0,
            raw_len: 1,
            crc32: 0,
            fresh: true,
            stored: false,
            payload: vec![0; 1400 * 70],
        };
        assert!(fragment(&b, 1452, &mut 0).is_none());
        assert!(fragment(&b, 100, &mut 0).is_none());
    }

    #[test]
    fn redundancy_follows_loss_and_backs_off_when_behind() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(80);
        let sample =
            |secs: u64, sent_packets: u64, lost_packets: u64, stream_bytes: u64| PathSample {
                at: t0 + Duration::from_secs(secs),
                rtt,
                sent_packets,
                lost_packets,
                stream_bytes,
            };
        let mut lan = Redundancy::new(DatagramMode::Auto, None, t0, Duration::from_micros(300));
        assert_eq!(
            lan.decide(t0, false, false),
            0,
            "a LAN link gets no copies in auto"
        );
        let mut auto = Redundancy::new(DatagramMode::Auto, Some(12.5e6), t0, rtt);
        auto.handle_sample(sample(0, 0, 0, 0));
        assert_eq!(
            auto.decide(t0, false, false),
            1,
            "a new link is presumed lossy"
        );
        assert_eq!(
            auto.decide(t0 + LOSS_MEMORY, false, false),
            0,
            "no loss seen for a while: no copies"
        );
        let t1 = t0 + Duration::from_secs(1);
        auto.handle_sample(sample(1, 1000, 2, 300_000));
        assert_eq!(auto.decide(t1, false, false), 1);
        assert!(auto.engaged(t1));
        assert_eq!(auto.decide(t1, true, false), 0, "catching up: stream only");
        assert_eq!(
            auto.decide(t1, false, true),
            0,
            "copies queueing: the link is full"
        );
        let t2 = t1 + Duration::from_secs(1);
        auto.handle_sample(sample(2, 2000, 2, 300_000 + 5_000_000));
        assert_eq!(
            auto.decide(t2, false, false),
            0,
            "stream uses most of the link"
        );
        let t3 = t2 + Duration::from_secs(1);
        auto.handle_sample(sample(3, 3000, 2, 5_600_000));
        assert_eq!(auto.decide(t3, false, false), 1);
        assert_eq!(
            auto.decide(t1 + LOSS_MEMORY, false, false),
            0,
            "loss forgotten"
        );
        // Heavy loss: a second copy.
        for i in 0..10 {
            auto.handle_sample(sample(4 + i, 4000 + 1000 * i, 52 + 50 * i, 5_900_000));
        }
        assert!(auto.loss_rate() >= SECOND_COPY_LOSS);
        assert_eq!(auto.decide(t0 + Duration::from_secs(14), false, false), 2);
        let mut on = Redundancy::new(DatagramMode::On, None, t0, Duration::ZERO);
        assert_eq!(on.decide(t0 + LOSS_MEMORY * 2, false, false), 1);
        let mut off = Redundancy::new(DatagramMode::Off, None, t0, rtt);
        off.handle_sample(sample(0, 100, 9, 0));
        assert_eq!(off.decide(t0, false, false), 0);
    }
}
