//! The replica's side of one replication link once the handshake has
//! answered, sans-IO (the `Link` core): received stream messages and
//! datagram copies in, whole units to apply, acks and failures out.
//!
//! The driver (`link::replica`) feeds it what the connection delivered
//! ([`Link::handle_message`], [`Link::handle_datagram`]) and what the node
//! did ([`Link::handle_applied`], [`Link::handle_fsynced`]); it takes
//! [`Link::poll_units`] to apply under the dataset lock, sends
//! [`Link::poll_ack`], acts on [`Link::poll_event`], and wakes up at
//! [`Link::poll_timeout`]. Decisions live here: which copy of a batch
//! counts (the first, in stream order), when an ack is due, whether the
//! upstream is fenced, when a silent link is dead, and whether a handover
//! may be taken.
//!
//! Invariants: units come out in stream order, each exactly once, whatever
//! mix of stream and datagram copies delivered them; the acked offset
//! never moves back.

use super::apply::{ApplyError, UnitSplitter, Units};
use super::batch::{BatchError, Decompressor};
use super::failover;
use super::fastpath::{
    FragmentError, Reassembler, ReassemblyError, ReassemblyLimits, ReassemblyStats,
};
use super::ids::Epoch;
use super::protocol::PrimaryMessage;
use std::time::{Duration, Instant};

/// Acks go out at least this often (the primary's WAIT and lag figures).
pub const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a link had to be dropped. Each cause leads to a reconnect with a
/// resync from the last applied offset; the text is INFO's
/// `quire_link_last_error`.
#[derive(Debug, thiserror::Error)]
pub enum LinkFailure {
    #[error("upstream is fenced: its epoch {theirs} is older than ours ({ours})")]
    Fenced { theirs: Epoch, ours: Epoch },
    #[error("nothing heard from the upstream for {0:?}")]
    Idle(Duration),
    #[error("upstream sent a batch out of order: {0}")]
    Reassembly(#[from] ReassemblyError),
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    #[error("stream: {0}")]
    Apply(#[from] ApplyError),
    #[error("handover at {offset} but applied {applied}")]
    HandoverMismatch { offset: u64, applied: u64 },
    #[error("unexpected message on a streaming link: {0}")]
    Unexpected(&'static str),
    #[error("upstream ended the link: {0}")]
    Refused(String),
}

/// What the driver must do besides applying units and sending acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The upstream's epoch is newer than ours: record it (fencing).
    AdoptEpoch(Epoch),
    /// Planned failover: everything up to the handover offset is applied;
    /// take over as primary with this epoch, ack, close the link.
    TakeOver { epoch: Epoch, offset: u64 },
}

/// The receiving half of a link, without IO.
pub struct Link {
    epoch: Epoch,
    idle_timeout: Duration,
    last_heard: Instant,
    reassembler: Reassembler,
    decompressor: Decompressor,
    splitter: UnitSplitter,
    applied: u64,
    fsynced: u64,
    acked: Option<(u64, u64)>,
    next_ack: Instant,
    ack_due: bool,
    upstream_offset: u64,
    /// The upstream's wall clock at its last ping, for lag in ms.
    upstream_ping_ms: Option<i64>,
    events: Vec<LinkEvent>,
    handover: Option<(Epoch, u64)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("epoch", &self.epoch)
            .field("applied", &self.applied)
            .field("fsynced", &self.fsynced)
            .field("upstream_offset", &self.upstream_offset)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link whose stream starts at `start`, on a node at `epoch`; a link
    /// silent for `idle_timeout` is dead.
    pub fn new(start: u64, epoch: Epoch, idle_timeout: Duration, now: Instant) -> Link {
        Link {
            epoch,
            idle_timeout,
            last_heard: now,
            reassembler: Reassembler::new(start, ReassemblyLimits::default()),
            decompressor: Decompressor::new(start),
            splitter: UnitSplitter::new(),
            applied: start,
            fsynced: 0,
            acked: None,
            next_ack: now + ACK_INTERVAL,
            ack_due: true,
            upstream_offset: start,
            upstream_ping_ms: None,
            events: Vec::new(),
            handover: None,
        }
    }

    /// Where the stream is applied to (as the driver reported).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The upstream's offset at its last ping.
    pub fn upstream_offset(&self) -> u64 {
        self.upstream_offset
    }

    /// Lag behind the upstream in milliseconds at `now_ms`: 0 when caught
    /// up with its last ping, else the age of that ping.
    pub fn lag_ms(&self, now_ms: i64) -> i64 {
        match self.upstream_ping_ms {
            Some(sent) if self.applied < self.upstream_offset => (now_ms - sent).max(0),
            _ => 0,
        }
    }

    pub fn reassembly(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    /// One message from the upstream's stream, received at `now` (its
    /// wall clock `now_ms`, for the ping's lag).
    pub fn handle_message(
        &mut self,
        now: Instant,
        message: PrimaryMessage,
    ) -> Result<(), LinkFailure> {
        self.last_heard = now;
        match message {
            PrimaryMessage::Batch(batch) => self.reassembler.handle_stream(batch)?,
            PrimaryMessage::Ping {
                offset,
                unix_ms,
                epoch,
            } => {
                // The epoch rides the stream too: an upstream replaced
                // since the handshake is left at once.
                self.check_epoch(epoch)?;
                self.upstream_offset = offset;
                self.upstream_ping_ms = Some(unix_ms);
                self.ack_due = true;
            }
            PrimaryMessage::Handover { epoch, offset } => {
                self.handover = Some((epoch, offset));
                self.poll_handover()?;
            }
            PrimaryMessage::Continue { .. } => return Err(LinkFailure::Unexpected("continue")),
            PrimaryMessage::FullResync { .. } => {
                return Err(LinkFailure::Unexpected("full resync"))
            }
            PrimaryMessage::SnapshotChunk { .. } => {
                return Err(LinkFailure::Unexpected("snapshot chunk"))
            }
            PrimaryMessage::Refused { reason } => return Err(LinkFailure::Refused(reason)),
            PrimaryMessage::Rewind { .. } => return Err(LinkFailure::Unexpected("rewind")),
            PrimaryMessage::ProbeReply { .. } => {
                return Err(LinkFailure::Unexpected("probe reply"))
            }
        }
        Ok(())
    }

    /// A datagram copy received at `now`. A bad copy is only counted (the
    /// stream carries the batch anyway): the error is for the log.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), FragmentError> {
        self.last_heard = now;
        self.reassembler.handle_datagram(datagram)
    }

    /// Checks an upstream's epoch: refuses an older one (it has been
    /// replaced by a promotion this node knows about), adopts a newer one.
    pub fn check_epoch(&mut self, upstream: Epoch) -> Result<(), LinkFailure> {
        if !failover::may_follow(self.epoch, upstream) {
            return Err(LinkFailure::Fenced {
                theirs: upstream,
                ours: self.epoch,
            });
        }
        if upstream > self.epoch {
            self.epoch = upstream;
            self.events.push(LinkEvent::AdoptEpoch(upstream));
        }
        Ok(())
    }

    /// The next run of whole units to apply, from whichever copies arrived
    /// first, in stream order. Hand the buffer back with [`Self::recycle`].
    pub fn poll_units(&mut self) -> Result<Option<Units>, LinkFailure> {
        let Some((batch, _)) = self.reassembler.poll_batch() else {
            return Ok(None);
        };
        let raw = self.decompressor.decompress(&batch)?;
        let units = self.splitter.handle_bytes(raw)?;
        Ok(Some(units))
    }

    /// Reuses an applied run's byte buffer.
    pub fn recycle(&mut self, raw: Vec<u8>) {
        self.splitter.recycle(raw);
    }

    /// The node has applied the stream up to `offset`.
    pub fn handle_applied(&mut self, offset: u64) -> Result<(), LinkFailure> {
        if offset > self.applied {
            self.applied = offset;
            self.ack_due = true;
        }
        self.poll_handover()
    }

    /// The node's log has fsynced up to `offset` (WAITAOF counts it).
    pub fn handle_fsynced(&mut self, offset: u64) {
        if offset > self.fsynced {
            self.fsynced = offset;
            self.ack_due = true;
        }
    }

    fn poll_handover(&mut self) -> Result<(), LinkFailure> {
        let Some((epoch, offset)) = self.handover else {
            return Ok(());
        };
        if self.applied == offset {
            self.handover = None;
            self.events.push(LinkEvent::TakeOver { epoch, offset });
        } else if self.applied > offset || !self.reassembler.has_next() {
            // Nothing more can arrive before the handover (the primary
            // stopped sending): the offsets disagree.
            return Err(LinkFailure::HandoverMismatch {
                offset,
                applied: self.applied,
            });
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// The ack to send now, as `(applied, fsynced)`: after progress, or
    /// once a second so the primary sees the link alive.
    pub fn poll_ack(&mut self, now: Instant) -> Option<(u64, u64)> {
        let tick = now >= self.next_ack;
        let current = (self.applied, self.fsynced);
        if !(tick || (self.ack_due && self.acked != Some(current))) {
            return None;
        }
        self.ack_due = false;
        if tick {
            self.next_ack = now + ACK_INTERVAL;
        }
        self.acked = Some(current);
        Some(current)
    }

    /// A link silent for the idle timeout is dead.
    pub fn poll_idle(&self, now: Instant) -> Result<(), LinkFailure> {
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= self.idle_timeout {
            return Err(LinkFailure::Idle(silent));
        }
        Ok(())
    }

    /// When to poll again at the latest.
    pub fn poll_timeout(&self) -> Instant {
        self.next_ack.min(self.last_heard + self.idle_timeout)
    }
}

/// A replica at epoch `ours` hearing an upstream at `theirs`: refused if
/// older (that upstream was replaced by a promotion this node knows of),
/// `Some(theirs)` to adopt if newer.
pub fn epoch_decision(ours: Epoch, theirs: Epoch) -> Result<Option<Epoch>, LinkFailure> {
    if !failover::may_follow(ours, theirs) {
        return Err(LinkFailure::Fenced { theirs, ours });
    }
    Ok((theirs > ours).then_some(theirs))
}

/// The replica's reconnect policy: jittered exponential backoff from 50 ms,
/// capped at one second, back to the start after a link that lasted. A
/// full sync that fails (the transfer, or the stream right after it) backs
/// off on its own, longer scale: from one second, doubling to a minute,
/// jittered by ±50%, so a herd of replicas that lost their history
/// together does not hammer its primary with full syncs in lock step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    full_next: Duration,
}

/// First retry delay after a failed full sync.
pub const FULL_SYNC_BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay between full-sync attempts.
pub const FULL_SYNC_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// First retry delay.
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest delay between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A link up this long counts as healthy: the next failure retries fast.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
            full_next: FULL_SYNC_BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt, after a session that lasted
    /// `lasted`; `jitter` in [0.5, 1) spreads replicas that failed together.
    pub fn next_delay(&mut self, lasted: Duration, jitter: f64) -> Duration {
        if lasted > BACKOFF_RESET_AFTER {
            self.next = BACKOFF_START;
        }
        let delay = self.next.mul_f64(jitter.clamp(0.5, 1.0));
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// The delay after a session that took a full sync and failed before
    /// its stream lasted; `jitter` in [0.5, 1.5).
    pub fn after_failed_full_sync(&mut self, jitter: f64) -> Duration {
        let delay = self.full_next.mul_f64(jitter.clamp(0.5, 1.5));
        self.full_next = (self.full_next * 2).min(FULL_SYNC_BACKOFF_MAX);
        delay
    }

    /// A session streamed long enough after its sync: full syncs count as
    /// healthy again.
    pub fn streamed(&mut self, lasted: Duration) {
        if lasted > BACKOFF_RESET_AFTER {
            self.full_next = FULL_SYNC_BACKOFF_START;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::batch::Compressor;

    #[test]
    fn failed_full_syncs_back_off_exponentially_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| b.after_failed_full_sync(1.0)).collect();
        assert_eq!(delays[0], FULL_SYNC_BACKOFF_START);
        assert_eq!(delays[1], FULL_SYNC_BACKOFF_START * 2);
        assert_eq!(*delays.last().unwrap(), FULL_SYNC_BACKOFF_MAX);
        // Replicas failing together spread over [0.5, 1.5) of the step.
        let mut a = Backoff::default();
        let mut c = Backoff::default();
        assert!(a.after_failed_full_sync(0.5) * 2 < c.after_failed_full_sync(1.49) * 2);
        // A stream that lasted resets the scale; a short one does not.
        b.streamed(Duration::from_secs(1));
        assert_eq!(b.after_failed_full_sync(1.0), FULL_SYNC_BACKOFF_MAX);
        b.streamed(BACKOFF_RESET_AFTER * 2);
        assert_eq!(b.after_failed_full_sync(1.0), FULL_SYNC_BACKOFF_START);
    }

    #[test]
    fn units_come_out_once_from_either_copy_and_acks_follow_progress() {
        let t0 = Instant::now();
        let mut link = Link::new(0, Epoch(1), Duration::from_secs(30), t0);
        assert_eq!(
            link.poll_ack(t0),
            Some((0, 0)),
            "the first ack tells the upstream where we are"
        );
        assert_eq!(link.poll_ack(t0), None);
        let command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let batch = Compressor::new(1).compress(0, command);
        link.handle_message(t0, PrimaryMessage::Batch(batch.clone()))
            .unwrap();
        let units = link.poll_units().unwrap().expect("a unit");
        assert_eq!(units.units.len(), 1);
        link.recycle(units.raw);
        assert!(link.poll_units().unwrap().is_none());
        // The stream is contiguous: a batch that does not continue it is a fault.
        assert!(matches!(
            link.handle_message(t0, PrimaryMessage::Batch(batch)),
            Err(LinkFailure::Reassembly(_))
        ));
        link.handle_applied(command.len() as u64).unwrap();
        assert_eq!(link.poll_ack(t0), Some((command.len() as u64, 0)));
        link.handle_fsynced(command.len() as u64);
        assert_eq!(
            link.poll_ack(t0),
            Some((command.len() as u64, command.len() as u64))
        );
        assert_eq!(
            link.poll_ack(t0 + ACK_INTERVAL),
            Some((command.len() as u64, command.len() as u64))
        );
    }

    #[test]
    fn an_older_epoch_is_refused_and_a_newer_one_adopted() {
        let t0 = Instant::now();
        let mut link = Link::new(0, Epoch(5), Duration::from_secs(30), t0);
        let ping = |epoch| PrimaryMessage::Ping {
            offset: 0,
            unix_ms: 0,
            epoch: Epoch(epoch),
        };
        assert!(matches!(
            link.handle_message(t0, ping(4)),
            Err(LinkFailure::Fenced {
                theirs: Epoch(4),
                ours: Epoch(5)
            })
        ));
        link.handle_message(t0, ping(7)).unwrap();
        assert_eq!(link.poll_event(), Some(LinkEvent::AdoptEpoch(Epoch(7))));
        link.handle_message(t0, ping(7)).unwrap();
        assert_eq!(link.poll_event(), None);
    }

    #[test]
    fn silence_past_the_idle_timeout_kills_the_link() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(3);
        let mut link = Link::new(0, Epoch(1), idle, t0);
        assert!(link.poll_idle(t0 + Duration::from_secs(2)).is_ok());
        link.handle_datagram(t0 + Duration::from_secs(2), b"garbage")
            .unwrap_err();
        assert!(
            link.poll_idle(t0 + Duration::from_secs(4)).is_ok(),
            "a datagram counts as heard"
        );
        assert!(matches!(
            link.poll_idle(t0 + Duration::from_secs(5)),
            Err(LinkFailure::Idle(_))
        ));
        assert!(link.poll_timeout() <= t0 + Duration::from_secs(5));
    }

    #[test]
    fn handover_waits_for_the_last_batch_then_takes_over() {
        let t0 = Instant::now();
        let mut link = Link::new(0, Epoch(1), Duration::from_secs(30), t0);
        let command = b"*1\r\n$4\r\nPING\r\n";
        let batch = Compressor::new(1).compress(0, command);
        link.handle_message(t0, PrimaryMessage::Batch(batch))
            .unwrap();
        link.handle_message(
            t0,
            PrimaryMessage::Handover {
                epoch: Epoch(2),
                offset: command.len() as u64,
            },
        )
        .unwrap();
        assert_eq!(link.poll_event(), None, "not before the batch is applied");
        let units = link.poll_units().unwrap().unwrap();
        link.recycle(units.raw);
        link.handle_applied(command.len() as u64).unwrap();
        assert_eq!(
            link.poll_event(),
            Some(LinkEvent::TakeOver {
                epoch: Epoch(2),
                offset: command.len() as u64
            })
        );
        let mut late = Link::new(10, Epoch(1), Duration::from_secs(30), t0);
        assert!(matches!(
            late.handle_message(
                t0,
                PrimaryMessage::Handover {
                    epoch: Epoch(2),
                    offset: 5
                }
            ),
            Err(LinkFailure::HandoverMismatch {
                offset: 5,
                applied: 10
            })
        ));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_healthy_link() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(10);
        assert_eq!(b.next_delay(short, 1.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(short, 1.0), Duration::from_millis(100));
        for _ in 0..10 {
            b.next_delay(short, 1.0);
        }
        assert_eq!(b.next_delay(short, 1.0), BACKOFF_MAX);
        assert_eq!(
            b.next_delay(Duration::from_secs(6), 0.5),
            Duration::from_millis(25)
        );
    }
}
