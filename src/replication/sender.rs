//! The primary's side of one replication link, sans-IO: when to cut a
//! batch, whether it also goes out as datagram copies and when each copy
//! leaves, when to ping, and whether a planned failover may hand over.
//!
//! The driver (`link::primary`) tells it what happened — the stream grew
//! ([`Sender::handle_stream_end`]), an ack arrived ([`Sender::handle_ack`]),
//! the path was sampled ([`Sender::handle_sample`]), a batch was written
//! ([`Sender::handle_batch`]) — and asks it what to do now:
//! [`Sender::poll_cut`], [`Sender::poll_datagrams`], [`Sender::poll_ping`],
//! and when to ask again, [`Sender::poll_timeout`]. It never reads a clock:
//! `now` is an argument, so the link's behaviour runs under simulated time
//! in tests (`replication::sim`).
//!
//! Invariants: offsets only grow; a batch covers exactly the bytes after
//! the previous one (`handle_batch` refuses anything else); a copy is never
//! sent before the stream copy of its batch (it is due `stagger` later, so
//! one lost packet cannot carry both).

use super::batch::{BatchPolicy, Batcher, Cut};
use super::fastpath::{self, DatagramMode, ParityEncoder, PathSample, Redundancy};
use super::protocol::Batch;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Fragment datagrams per parity datagram on the fast path: at 0.5 % loss
/// a group of 5 + 1 loses two (and cannot be rebuilt) about once in 2,000
/// groups, for 20 % more copy bytes.
pub const PARITY_GROUP: usize = 5;
/// Longest a parity group stays open waiting for more members.
pub const PARITY_MAX_WAIT: Duration = Duration::from_millis(10);
/// Acks lagging more than two round trips plus this mean the link is
/// down or catching up: no datagram copies then (they would only compete
/// with the stream's retransmissions).
pub const ACK_LAG_SLACK: Duration = Duration::from_millis(500);
/// Keep-alive and offset report interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Batches remembered for measuring ack lag (past it, new batches are
/// merged into the newest remembered one).
const MAX_IN_FLIGHT: usize = 4096;

/// How a link sends.
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    pub batch: BatchPolicy,
    pub datagrams: DatagramMode,
    /// The link's capacity in bytes per second, if configured.
    pub capacity_bytes_per_sec: Option<f64>,
    /// Delay of a batch's datagram copy after its stream copy.
    pub stagger: Duration,
}

/// Where the link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderState {
    /// Streaming batches as the stream grows.
    Streaming,
    /// Everything up to `offset` was sent and the failover target was told
    /// to take over; nothing more is sent.
    HandedOver { offset: u64 },
}

/// A batch the driver wrote that does not continue the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batch at {start} does not continue the stream at {expected}")]
pub struct OutOfOrder {
    pub start: u64,
    pub expected: u64,
}

/// The sending half of a link, without IO.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    state: SenderState,
    /// The next stream offset to send.
    sent: u64,
    /// The stream's end as last reported.
    end: u64,
    acked: u64,
    fsynced: u64,
    /// End offset, send time and payload bytes of batches not yet
    /// acknowledged.
    in_flight: VecDeque<(u64, Instant, u64)>,
    /// Payload bytes written but not yet acknowledged: what the transport
    /// and the replica may still hold of this link (the node leaves it out
    /// of `maxmemory`, as Redis its replicas' output buffers).
    unacked_bytes: u64,
    batcher: Batcher,
    /// When the batcher asked to be polled again.
    batch_due: Option<Instant>,
    redundancy: Redundancy,
    parity: ParityEncoder,
    next_fragment_seq: u64,
    rtt: Duration,
    max_datagram: Option<usize>,
    copies_backed_up: bool,
    /// Datagram copies by due time (a batch's second copy is due after
    /// the next batch's first one).
    copies: BTreeMap<(Instant, u64), Vec<Vec<u8>>>,
    copy_seq: u64,
    /// Batches that were given datagram copies.
    batches_copied: u64,
    next_ping: Instant,
}

impl Sender {
    /// A link that starts streaming at `start` at `now`, with the path's
    /// round trip as measured by the handshake.
    pub fn new(config: SenderConfig, start: u64, now: Instant, rtt: Duration) -> Sender {
        Sender {
            config,
            state: SenderState::Streaming,
            sent: start,
            end: start,
            acked: start,
            fsynced: 0,
            in_flight: VecDeque::new(),
            unacked_bytes: 0,
            batcher: Batcher::new(config.batch),
            batch_due: None,
            redundancy: Redundancy::new(config.datagrams, config.capacity_bytes_per_sec, now, rtt),
            parity: ParityEncoder::new(PARITY_GROUP, PARITY_MAX_WAIT),
            next_fragment_seq: 0,
            rtt,
            max_datagram: None,
            copies_backed_up: false,
            copies: BTreeMap::new(),
            copy_seq: 0,
            batches_copied: 0,
            // The first ping goes out at once: the replica learns the
            // upstream's offset, INFO the link's state.
            next_ping: now,
        }
    }

    pub fn state(&self) -> SenderState {
        self.state
    }

    /// The next offset to send (everything before it was written).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Payload bytes written and not yet acknowledged.
    pub fn unacked_bytes(&self) -> u64 {
        self.unacked_bytes
    }

    pub fn fsynced(&self) -> u64 {
        self.fsynced
    }

    /// Whether datagram copies are on for this link now (INFO).
    pub fn copies_engaged(&self, now: Instant) -> bool {
        self.redundancy.engaged(now)
    }

    /// Batches given datagram copies so far.
    pub fn batches_copied(&self) -> u64 {
        self.batches_copied
    }

    pub fn loss_rate(&self) -> f64 {
        self.redundancy.loss_rate()
    }

    /// The stream now ends at `end` (the driver reads it from the log).
    pub fn handle_stream_end(&mut self, end: u64) {
        self.end = self.end.max(end);
    }

    /// The replica has applied the stream up to `offset` and fsynced it to
    /// `fsynced`. Acks never move back.
    pub fn handle_ack(&mut self, offset: u64, fsynced: u64) {
        self.acked = self.acked.max(offset.min(self.sent));
        self.fsynced = self.fsynced.max(fsynced);
        while self
            .in_flight
            .front()
            .is_some_and(|(end, _, _)| *end <= self.acked)
        {
            if let Some((_, _, bytes)) = self.in_flight.pop_front() {
                self.unacked_bytes -= bytes;
            }
        }
    }

    /// A sample of the path (round trip, packets sent and lost, stream
    /// bytes), about once a second.
    pub fn handle_sample(&mut self, sample: PathSample) {
        self.rtt = sample.rtt;
        self.redundancy.handle_sample(sample);
    }

    /// What the connection can carry as datagrams now: the largest
    /// datagram (`None`: no datagrams), and whether earlier copies are
    /// still queued (the congestion window has no room for more).
    pub fn handle_path(&mut self, max_datagram: Option<usize>, copies_backed_up: bool) {
        self.max_datagram = max_datagram;
        self.copies_backed_up = copies_backed_up;
    }

    /// Follows a run-time change of `repl.datagrams`.
    pub fn set_datagram_mode(&mut self, mode: DatagramMode) {
        self.redundancy.set_mode(mode);
    }

    /// How long the oldest unacknowledged batch has been in flight.
    pub fn ack_lag(&self, now: Instant) -> Duration {
        self.in_flight.front().map_or(Duration::ZERO, |(_, at, _)| {
            now.saturating_duration_since(*at)
        })
    }

    /// Whether the next batch should be cut now: `Cut::Send(n)` bytes
    /// from [`Self::sent`], wait, or nothing to send.
    pub fn poll_cut(&mut self, now: Instant) -> Cut {
        if self.state != SenderState::Streaming {
            return Cut::Idle;
        }
        let cut = self
            .batcher
            .poll_cut(now, self.end.saturating_sub(self.sent));
        self.batch_due = match cut {
            Cut::WaitUntil(at) => Some(at),
            _ => None,
        };
        cut
    }

    /// Whether a batch is being coalesced (the sender will ask to be
    /// polled at its deadline; new stream bytes need not wake it sooner).
    pub fn coalescing(&self) -> bool {
        self.batch_due.is_some()
    }

    /// The driver wrote `batch` on the stream at `now` (cut by this
    /// sender, or one another link on the shared tail cut first). Decides
    /// its datagram copies and schedules them.
    pub fn handle_batch(&mut self, now: Instant, batch: &Batch) -> Result<(), OutOfOrder> {
        if batch.start != self.sent {
            return Err(OutOfOrder {
                start: batch.start,
                expected: self.sent,
            });
        }
        let raw_len = batch.raw_len as u64;
        self.sent += raw_len;
        self.end = self.end.max(self.sent);
        let full = self.in_flight.len() == MAX_IN_FLIGHT;
        let bytes = batch.payload.len() as u64;
        self.unacked_bytes += bytes;
        match self.in_flight.back_mut() {
            // Too many unacknowledged batches (a long outage): the newest
            // joins the one before it, keeping that one's older send time,
            // so the lag measured once it is the oldest errs long.
            Some(last) if full => {
                last.0 = self.sent;
                last.2 += bytes;
            }
            _ => self.in_flight.push_back((self.sent, now, bytes)),
        }
        self.batcher.handle_sent(now, self.end - self.sent);
        self.batch_due = None;
        let behind = self.end > self.sent || self.ack_lag(now) > self.rtt * 2 + ACK_LAG_SLACK;
        let wanted = self.redundancy.decide(now, behind, self.copies_backed_up);
        let Some(max) = self.max_datagram.filter(|_| wanted > 0) else {
            return Ok(());
        };
        let Some(pieces) = fastpath::fragment(batch, max, &mut self.next_fragment_seq) else {
            return Ok(());
        };
        self.batches_copied += 1;
        let mut first = Vec::with_capacity(pieces.len() + 1);
        for (seq, piece) in &pieces {
            first.push(piece.clone());
            first.extend(self.parity.handle(now, *seq, piece));
        }
        self.schedule(now + self.config.stagger, first);
        if wanted > 1 {
            self.schedule(
                now + self.config.stagger * 3,
                pieces.into_iter().map(|(_, p)| p).collect(),
            );
        }
        Ok(())
    }

    fn schedule(&mut self, at: Instant, datagrams: Vec<Vec<u8>>) {
        self.copy_seq += 1;
        self.copies.insert((at, self.copy_seq), datagrams);
    }

    /// The next batch copy due at `now`, if any: its datagrams, to be sent
    /// together. A parity group left open past its wait is closed first,
    /// so the last copies before a lull are covered.
    pub fn poll_datagrams(&mut self, now: Instant) -> Option<Vec<Vec<u8>>> {
        if let Some(parity) = self.parity.poll_flush(now) {
            self.schedule(now + self.config.stagger, vec![parity]);
        }
        let due = self.copies.first_entry().filter(|e| e.key().0 <= now)?;
        Some(due.remove())
    }

    /// The offset to report in a keep-alive: when streaming starts, then
    /// once a second.
    pub fn poll_ping(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_ping || matches!(self.state, SenderState::HandedOver { .. }) {
            return None;
        }
        self.next_ping = now + PING_INTERVAL;
        Some(self.sent)
    }

    /// A planned failover to this link's replica: hands over once every
    /// byte of the stream was sent. Returns the offset to hand over at.
    pub fn poll_handover(&mut self) -> Option<u64> {
        if self.state == SenderState::Streaming && self.sent >= self.end {
            self.state = SenderState::HandedOver { offset: self.sent };
            return Some(self.sent);
        }
        None
    }

    /// When to call the `poll_*` methods again at the latest (new stream
    /// bytes and acks are reported as they happen).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.batch_due,
            self.parity.deadline(),
            self.copies.keys().next().map(|k| k.0),
            (!matches!(self.state, SenderState::HandedOver { .. })).then_some(self.next_ping),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::batch::Compressor;

    fn config(datagrams: DatagramMode) -> SenderConfig {
        SenderConfig {
            batch: BatchPolicy {
                max_bytes: 1000,
                max_delay: Duration::from_millis(2),
            },
            datagrams,
            capacity_bytes_per_sec: None,
            stagger: Duration::from_micros(300),
        }
    }

    #[test]
    fn a_lone_write_goes_at_once_and_a_burst_is_batched_within_the_delay() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(DatagramMode::Off), 0, t0, Duration::from_millis(40));
        assert_eq!(s.poll_ping(t0), Some(0), "a ping as the link starts");
        assert_eq!(s.poll_ping(t0), None);
        assert_eq!(s.poll_cut(t0), Cut::Idle);
        s.handle_stream_end(10);
        assert_eq!(s.poll_cut(t0), Cut::Send(10));
        let mut c = Compressor::new(1);
        s.handle_batch(t0, &c.compress(0, &[b'x'; 10])).unwrap();
        s.handle_stream_end(30);
        let Cut::WaitUntil(at) = s.poll_cut(t0) else {
            panic!("coalesces right after a send")
        };
        assert!(at <= t0 + Duration::from_millis(2));
        assert_eq!(s.poll_timeout(), Some(at));
        assert_eq!(s.poll_cut(at), Cut::Send(20));
        let out_of_order = c.compress(5, &[b'y'; 20]);
        assert_eq!(
            s.handle_batch(at, &out_of_order),
            Err(OutOfOrder {
                start: 5,
                expected: 10
            })
        );
    }

    #[test]
    fn copies_follow_their_stream_copy_and_stop_while_behind() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(DatagramMode::On), 0, t0, Duration::from_millis(40));
        let _ = s.poll_ping(t0);
        s.handle_path(Some(1200), false);
        let mut c = Compressor::new(1);
        s.handle_stream_end(100);
        assert_eq!(s.poll_cut(t0), Cut::Send(100));
        s.handle_batch(t0, &c.compress(0, &[b'a'; 100])).unwrap();
        assert_eq!(s.poll_datagrams(t0), None, "not before the stagger");
        let due = s.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_micros(300));
        assert_eq!(s.poll_datagrams(due).map(|d| d.len()), Some(1));
        // More stream waiting after this batch: no copy for it.
        s.handle_stream_end(3000);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(s.poll_cut(t1), Cut::Send(1000));
        s.handle_batch(t1, &c.compress(100, &[b'b'; 1000])).unwrap();
        assert_eq!(s.poll_datagrams(t1 + Duration::from_millis(1)), None);
    }

    #[test]
    fn ack_lag_is_the_age_of_the_oldest_unacked_batch() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(DatagramMode::Off), 0, t0, Duration::from_millis(40));
        let mut c = Compressor::new(1);
        s.handle_stream_end(10);
        let _ = s.poll_cut(t0);
        s.handle_batch(t0, &c.compress(0, &[1; 10])).unwrap();
        s.handle_stream_end(20);
        let t1 = t0 + Duration::from_millis(5);
        let _ = s.poll_cut(t1 + Duration::from_millis(5));
        s.handle_batch(t1, &c.compress(10, &[2; 10])).unwrap();
        let t2 = t0 + Duration::from_millis(100);
        assert_eq!(s.ack_lag(t2), Duration::from_millis(100));
        s.handle_ack(10, 0);
        assert_eq!(s.ack_lag(t2), Duration::from_millis(95));
        s.handle_ack(5, 0);
        assert_eq!(s.acked(), 10, "acks never move back");
        s.handle_ack(20, 20);
        assert_eq!(s.ack_lag(t2), Duration::ZERO);
    }

    #[test]
    fn a_long_outage_keeps_the_in_flight_record_bounded() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(DatagramMode::Off), 0, t0, Duration::from_millis(40));
        let mut c = Compressor::new(1);
        for i in 0..(MAX_IN_FLIGHT as u64 + 100) {
            let at = t0 + Duration::from_millis(i);
            s.handle_stream_end((i + 1) * 10);
            s.handle_batch(at, &c.compress(i * 10, &[7; 10])).unwrap();
        }
        assert_eq!(s.in_flight.len(), MAX_IN_FLIGHT);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            s.ack_lag(later),
            Duration::from_secs(60),
            "the oldest send time is kept"
        );
        s.handle_ack(s.sent(), 0);
        assert_eq!(s.ack_lag(later), Duration::ZERO);
    }

    #[test]
    fn hands_over_only_once_everything_was_sent() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(DatagramMode::Off), 0, t0, Duration::from_millis(1));
        s.handle_stream_end(10);
        assert_eq!(s.poll_handover(), None);
        let _ = s.poll_cut(t0);
        s.handle_batch(t0, &Compressor::new(1).compress(0, &[0; 10]))
            .unwrap();
        assert_eq!(s.poll_handover(), Some(10));
        assert_eq!(s.state(), SenderState::HandedOver { offset: 10 });
        s.handle_stream_end(20);
        assert_eq!(s.poll_cut(t0), Cut::Idle, "nothing after the handover");
        assert_eq!(s.poll_ping(t0 + Duration::from_secs(5)), None);
    }
}
