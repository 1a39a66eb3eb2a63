//! A deterministic link harness, in the manner of quinn-proto's `Pair`:
//! the primary's [`Sender`] and the replica's [`Link`] joined by a
//! simulated network (latency, jitter that reorders datagrams, random
//! loss, cuts) under simulated time, driven exactly as `link::primary`
//! and `link::replica` drive them, and run to idle.
//!
//! The network is a model, not QUIC: stream messages arrive in order, a
//! lost stream packet arrives one retransmission timeout later and holds
//! back everything behind it (head-of-line blocking, which is what the
//! datagram copies are for); datagrams are lost or reordered
//! independently. A replica that hears nothing for its idle timeout drops
//! the connection (everything in flight is gone) and reconnects with its
//! backoff; the handshake continues from its applied offset, as the
//! primary's resync decision does for an offset still in the backlog.

use super::batch::{BatchPolicy, Compressor, Cut};
use super::fastpath::{DatagramMode, PathSample};
use super::ids::Epoch;
use super::protocol::{self, MessageReader, PrimaryMessage, ReplicaMessage};
use super::receiver::{Backoff, Link, LinkEvent, LinkFailure};
use super::sender::{Sender, SenderConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The simulated path between the two nodes.
#[derive(Debug, Clone)]
pub struct Path {
    /// One-way delay.
    pub latency: Duration,
    /// Extra one-way delay, uniform in [0, jitter), per datagram.
    pub jitter: Duration,
    /// Probability that a packet (stream message or datagram) is lost.
    pub loss: f64,
    /// Intervals during which nothing gets through.
    pub cuts: Vec<(Duration, Duration)>,
}

/// What the run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per write: simulated time from the write to its apply on the replica.
    pub latencies: Vec<Duration>,
    pub connections: u64,
    pub failures: Vec<String>,
    pub batches_via_datagram: u64,
    pub datagrams_sent: u64,
    /// Batches given copies while the sender's acks lagged past the
    /// threshold at which copies must stop (they would compete with the
    /// stream's retransmissions).
    pub batches_copied_while_behind: u64,
    pub max_ack_lag: Duration,
    /// The replica's applied bytes equal the primary's stream.
    pub identical: bool,
    pub resumed_at: Vec<u64>,
}

impl Outcome {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Messages in flight on one direction of the reliable stream, by arrival.
#[derive(Default)]
struct StreamQueue {
    queue: BTreeMap<(Instant, u64), Vec<u8>>,
    /// Arrival of the last message queued (order is kept).
    last_arrival: Option<Instant>,
    seq: u64,
}

struct Connection {
    sender: Sender,
    link: Link,
    compressor: Compressor,
    to_replica: StreamQueue,
    to_primary: StreamQueue,
    datagrams: BTreeMap<(Instant, u64), Vec<u8>>,
    replica_reader: MessageReader,
    primary_reader: MessageReader,
    started: Instant,
    sent_packets: u64,
    lost_packets: u64,
    stream_bytes: u64,
    next_sample: Instant,
}

/// The harness: one primary stream, one replica, the path between.
pub struct Pair {
    pub path: Path,
    pub config: SenderConfig,
    pub idle_timeout: Duration,
    /// The epochs the replica and the primary run at (a replica never
    /// follows an upstream with an older one).
    pub replica_epoch: Epoch,
    pub primary_epoch: Epoch,
    /// Stop reconnecting after this many failed links.
    pub max_failures: usize,
    rng: StdRng,
    t0: Instant,
    now: Instant,
    /// The primary's stream (its log) and when each write was made.
    stream: Vec<u8>,
    writes: Vec<(u64, Instant)>,
    /// What the replica applied, from offset 0.
    applied: Vec<u8>,
    applied_writes: usize,
    conn: Option<Connection>,
    reconnect_at: Option<Instant>,
    backoff: Backoff,
    outcome: Outcome,
    seq: u64,
}

/// A write of about 60 bytes of RESP (`SET key:N <value>`).
fn command(n: u64) -> Vec<u8> {
    let key = format!("key:{n}");
    let value = format!("value-{:020}", n * 7919);
    format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes()
}

impl Pair {
    pub fn new(path: Path, datagrams: DatagramMode, seed: u64) -> Pair {
        let t0 = Instant::now();
        Pair {
            path,
            config: SenderConfig {
                batch: BatchPolicy {
                    max_bytes: 64 * 1024,
                    max_delay: Duration::from_millis(2),
                },
                datagrams,
                capacity_bytes_per_sec: None,
                stagger: Duration::from_micros(300),
            },
            idle_timeout: Duration::from_secs(30),
            replica_epoch: Epoch(1),
            primary_epoch: Epoch(1),
            max_failures: usize::MAX,
            rng: StdRng::seed_from_u64(seed),
            t0,
            now: t0,
            stream: Vec::new(),
            writes: Vec::new(),
            applied: Vec::new(),
            applied_writes: 0,
            conn: None,
            reconnect_at: Some(t0),
            backoff: Backoff::default(),
            outcome: Outcome::default(),
            seq: 0,
        }
    }

    fn cut_at(&self, at: Instant) -> Option<Instant> {
        let since = at.saturating_duration_since(self.t0);
        self.path
            .cuts
            .iter()
            .find(|(from, to)| since >= *from && since < *to)
            .map(|(_, to)| self.t0 + *to)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Puts a message on the stream towards the replica (or, with
    /// `to_primary`, back): in order, lost packets retransmitted after a
    /// timeout, held back during a cut.
    fn send_stream(&mut self, to_primary: bool, message: Vec<u8>) {
        let now = self.now;
        let rto = self.path.latency * 3 + Duration::from_millis(10);
        let mut arrival = now + self.path.latency;
        let mut lost = 0u64;
        loop {
            let sent = arrival - self.path.latency;
            if let Some(end) = self.cut_at(sent) {
                arrival = end + self.path.latency;
                continue;
            }
            if self.rng.random_bool(self.path.loss) {
                lost += 1;
                arrival += rto;
                continue;
            }
            break;
        }
        let seq = self.next_seq();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.sent_packets += 1 + lost;
        conn.lost_packets += lost;
        let queue = if to_primary {
            &mut conn.to_primary
        } else {
            &mut conn.to_replica
        };
        let arrival = queue.last_arrival.map_or(arrival, |last| arrival.max(last));
        queue.last_arrival = Some(arrival);
        queue.seq = seq;
        queue.queue.insert((arrival, seq), message);
    }

    fn send_datagram(&mut self, datagram: Vec<u8>) {
        let now = self.now;
        let jitter = if self.path.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.path.jitter.mul_f64(self.rng.random_range(0.0..1.0))
        };
        let lost = self.cut_at(now).is_some() || self.rng.random_bool(self.path.loss);
        let seq = self.next_seq();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.sent_packets += 1;
        if lost {
            conn.lost_packets += 1;
            return;
        }
        conn.datagrams
            .insert((now + self.path.latency + jitter, seq), datagram);
    }

    /// Writes `count` commands, one every `interval`, then runs until the
    /// replica has everything and the link is quiet (or `limit` passes).
    pub fn run(mut self, count: u64, interval: Duration, limit: Duration) -> Outcome {
        let deadline = self.t0 + limit;
        let mut next_write = Some(self.t0 + interval);
        let mut written = 0u64;
        loop {
            if next_write.is_some_and(|at| at <= self.now) {
                self.writes.push((self.stream.len() as u64, self.now));
                self.stream.extend_from_slice(&command(written));
                written += 1;
                next_write = (written < count).then(|| self.now + interval);
            }
            self.step();
            if written == count && self.applied.len() == self.stream.len() && self.quiet() {
                break;
            }
            let next = [next_write, self.next_event()].into_iter().flatten().min();
            match next {
                Some(at) if at <= deadline => self.now = at.max(self.now),
                _ => break,
            }
        }
        self.outcome.identical = self.applied == self.stream;
        self.outcome
    }

    fn quiet(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.to_replica.queue.is_empty() && c.datagrams.is_empty())
    }

    fn next_event(&self) -> Option<Instant> {
        let Some(c) = &self.conn else {
            return self.reconnect_at;
        };
        [
            c.sender.poll_timeout(),
            Some(c.link.poll_timeout()),
            c.to_replica.queue.keys().next().map(|k| k.0),
            c.to_primary.queue.keys().next().map(|k| k.0),
            c.datagrams.keys().next().map(|k| k.0),
            Some(c.next_sample),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything due at `now`, in the order the drivers do it.
    fn step(&mut self) {
        if self.conn.is_none() {
            if self.reconnect_at.is_some_and(|at| at <= self.now) {
                self.connect();
            }
            return;
        }
        if let Err(failure) = self.replica_side() {
            self.fail(failure);
            return;
        }
        self.primary_side();
    }

    /// The handshake: one round trip when the path is up (the primary
    /// continues from the replica's applied offset), else a timeout.
    fn connect(&mut self) {
        self.reconnect_at = None;
        let rtt = self.path.latency * 2;
        if self.cut_at(self.now).is_some() || self.cut_at(self.now + rtt).is_some() {
            let delay = self.backoff.next_delay(Duration::ZERO, 1.0);
            self.reconnect_at =
                Some(self.now + Duration::from_secs(10).min(self.idle_timeout) + delay);
            self.outcome.failures.push("connect timed out".into());
            return;
        }
        self.now += rtt;
        let start = self.applied.len() as u64;
        self.outcome.connections += 1;
        self.outcome.resumed_at.push(start);
        self.conn = Some(Connection {
            sender: Sender::new(self.config, start, self.now, rtt),
            link: Link::new(start, self.replica_epoch, self.idle_timeout, self.now),
            compressor: Compressor::new(1),
            to_replica: StreamQueue::default(),
            to_primary: StreamQueue::default(),
            datagrams: BTreeMap::new(),
            replica_reader: MessageReader::new(),
            primary_reader: MessageReader::new(),
            started: self.now,
            sent_packets: 0,
            lost_packets: 0,
            stream_bytes: 0,
            next_sample: self.now + Duration::from_secs(1),
        });
    }

    fn fail(&mut self, failure: LinkFailure) {
        let conn = self.conn.take().expect("connected");
        self.outcome.failures.push(failure.to_string());
        let lasted = self.now.saturating_duration_since(conn.started);
        if self.outcome.failures.len() < self.max_failures {
            self.reconnect_at = Some(self.now + self.backoff.next_delay(lasted, 1.0));
        }
    }

    fn replica_side(&mut self) -> Result<(), LinkFailure> {
        let now = self.now;
        let conn = self.conn.as_mut().expect("connected");
        while let Some(entry) = conn
            .to_replica
            .queue
            .first_entry()
            .filter(|e| e.key().0 <= now)
        {
            conn.replica_reader.handle_bytes(&entry.remove());
        }
        let mut messages = Vec::new();
        while let Some(m) = conn
            .replica_reader
            .poll_message::<PrimaryMessage>()
            .expect("well-formed")
        {
            messages.push(m);
        }
        let mut datagrams = Vec::new();
        while let Some(entry) = conn.datagrams.first_entry().filter(|e| e.key().0 <= now) {
            datagrams.push(entry.remove());
        }
        for datagram in datagrams {
            let conn = self.conn.as_mut().expect("connected");
            let _ = conn.link.handle_datagram(now, &datagram);
            self.apply()?;
        }
        for message in messages {
            self.conn
                .as_mut()
                .expect("connected")
                .link
                .handle_message(now, message)?;
            self.apply()?;
        }
        let conn = self.conn.as_mut().expect("connected");
        if let Some(LinkEvent::TakeOver { .. }) = conn.link.poll_event() {
            return Err(LinkFailure::Unexpected(
                "handover in a simulation without failover",
            ));
        }
        conn.link.poll_idle(now)?;
        if let Some((offset, fsynced)) = conn.link.poll_ack(now) {
            let ack = protocol::encode(&ReplicaMessage::Ack { offset, fsynced });
            self.send_stream(true, ack);
        }
        Ok(())
    }

    /// Applies what the link has in order, as `link::replica` does under
    /// the dataset lock.
    fn apply(&mut self) -> Result<(), LinkFailure> {
        let conn = self.conn.as_mut().expect("connected");
        while let Some(units) = conn.link.poll_units()? {
            self.applied.extend_from_slice(&units.raw);
            conn.link.recycle(units.raw);
        }
        let applied = self.applied.len() as u64;
        conn.link.handle_applied(applied)?;
        let stats = conn.link.reassembly();
        self.outcome.batches_via_datagram =
            self.outcome.batches_via_datagram.max(stats.from_datagram);
        while self.applied_writes < self.writes.len()
            && self.writes[self.applied_writes].0 < applied
        {
            self.outcome
                .latencies
                .push(self.now - self.writes[self.applied_writes].1);
            self.applied_writes += 1;
        }
        Ok(())
    }

    fn primary_side(&mut self) {
        let now = self.now;
        let end = self.stream.len() as u64;
        let conn = self.conn.as_mut().expect("connected");
        while let Some(entry) = conn
            .to_primary
            .queue
            .first_entry()
            .filter(|e| e.key().0 <= now)
        {
            conn.primary_reader.handle_bytes(&entry.remove());
        }
        while let Some(ReplicaMessage::Ack { offset, fsynced }) = conn
            .primary_reader
            .poll_message::<ReplicaMessage>()
            .expect("well-formed")
        {
            conn.sender.handle_ack(offset, fsynced);
        }
        if now >= conn.next_sample {
            conn.next_sample = now + Duration::from_secs(1);
            conn.sender.handle_sample(PathSample {
                at: now,
                rtt: self.path.latency * 2,
                sent_packets: conn.sent_packets,
                lost_packets: conn.lost_packets,
                stream_bytes: conn.stream_bytes,
            });
        }
        conn.sender.handle_stream_end(end);
        conn.sender.handle_path(Some(1200), false);
        let lag = conn.sender.ack_lag(now);
        self.outcome.max_ack_lag = self.outcome.max_ack_lag.max(lag);
        loop {
            let conn = self.conn.as_mut().expect("connected");
            let Cut::Send(n) = conn.sender.poll_cut(now) else {
                break;
            };
            let from = conn.sender.sent() as usize;
            let batch = conn
                .compressor
                .compress(from as u64, &self.stream[from..from + n]);
            let wire = protocol::encode_batch(&batch);
            conn.stream_bytes += wire.len() as u64;
            let behind =
                conn.sender.ack_lag(now) > self.path.latency * 4 + super::sender::ACK_LAG_SLACK;
            let copied = conn.sender.batches_copied();
            conn.sender.handle_batch(now, &batch).expect("in order");
            if behind && conn.sender.batches_copied() > copied {
                self.outcome.batches_copied_while_behind += 1;
            }
            self.send_stream(false, wire);
        }
        loop {
            let conn = self.conn.as_mut().expect("connected");
            let Some(datagrams) = conn.sender.poll_datagrams(now) else {
                break;
            };
            for datagram in datagrams {
                self.outcome.datagrams_sent += 1;
                self.send_datagram(datagram);
            }
        }
        let conn = self.conn.as_mut().expect("connected");
        if let Some(offset) = conn.sender.poll_ping(now) {
            let ping = protocol::encode(&PrimaryMessage::Ping {
                offset,
                unix_ms: 0,
                epoch: self.primary_epoch,
            });
            self.send_stream(false, ping);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(latency_ms: u64, loss: f64) -> Path {
        Path {
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::ZERO,
            loss,
            cuts: Vec::new(),
        }
    }

    #[test]
    fn batching_deadline_bounds_latency_on_a_clean_link() {
        let out = Pair::new(path(20, 0.0), DatagramMode::Off, 1).run(
            2_000,
            Duration::from_micros(250),
            Duration::from_secs(60),
        );
        assert!(out.identical);
        assert_eq!(out.connections, 1);
        // One way plus at most the batching delay.
        assert!(
            out.percentile(1.0) <= Duration::from_millis(22),
            "max {:?}",
            out.percentile(1.0)
        );
        assert!(out.percentile(0.0) >= Duration::from_millis(20));
        assert_eq!(out.datagrams_sent, 0);
    }

    #[test]
    fn half_a_percent_loss_delivers_everything_once_and_copies_cut_the_tail() {
        let lossy = Path {
            jitter: Duration::from_millis(2),
            ..path(40, 0.005)
        };
        let run = |mode| {
            Pair::new(lossy.clone(), mode, 7).run(
                20_000,
                Duration::from_micros(500),
                Duration::from_secs(120),
            )
        };
        let stream_only = run(DatagramMode::Off);
        let with_copies = run(DatagramMode::Auto);
        for out in [&stream_only, &with_copies] {
            assert!(out.identical, "{:?}", out.failures);
            assert_eq!(out.connections, 1, "{:?}", out.failures);
        }
        assert!(with_copies.batches_via_datagram > 0);
        assert_eq!(stream_only.datagrams_sent, 0);
        // Head-of-line blocking behind a lost packet costs the stream a
        // retransmission timeout; a copy arrives on time.
        let (p999_stream, p999_copies) =
            (stream_only.percentile(0.999), with_copies.percentile(0.999));
        assert!(
            p999_stream >= Duration::from_millis(100),
            "stream-only p99.9 {p999_stream:?}"
        );
        assert!(
            p999_copies * 2 < p999_stream,
            "p99.9 with copies {p999_copies:?} vs stream only {p999_stream:?}"
        );
    }

    #[test]
    fn a_cut_longer_than_the_idle_timeout_reconnects_and_resumes_where_it_applied() {
        let mut cut = path(40, 0.0);
        cut.cuts = vec![(Duration::from_secs(5), Duration::from_secs(50))];
        let out = Pair::new(cut, DatagramMode::On, 3).run(
            60_000,
            Duration::from_millis(1),
            Duration::from_secs(300),
        );
        assert!(out.identical, "{:?}", out.failures);
        assert!(
            out.failures
                .iter()
                .any(|f| f.starts_with("nothing heard from the upstream")),
            "{:?}",
            out.failures
        );
        assert!(out.connections >= 2);
        // The second connection continued from where the replica had applied.
        assert!(out.resumed_at[1] > 0 && out.resumed_at[1] < 60_000 * 60);
        // Acks lagged for the whole cut; no copies went out meanwhile.
        assert!(
            out.max_ack_lag >= Duration::from_secs(29),
            "{:?}",
            out.max_ack_lag
        );
        assert_eq!(out.batches_copied_while_behind, 0);
        assert!(out.datagrams_sent > 0, "copies before and after the cut");
        // Written during the cut, applied once the link is back.
        assert!(out.percentile(1.0) >= Duration::from_secs(30));
    }

    #[test]
    fn a_short_cut_rides_on_the_same_connection() {
        let mut cut = path(40, 0.0);
        cut.cuts = vec![(Duration::from_secs(2), Duration::from_secs(4))];
        let out = Pair::new(cut, DatagramMode::Auto, 5).run(
            10_000,
            Duration::from_millis(1),
            Duration::from_secs(60),
        );
        assert!(out.identical, "{:?}", out.failures);
        assert_eq!(out.connections, 1, "{:?}", out.failures);
        assert!(out.failures.is_empty());
    }

    #[test]
    fn acks_lag_one_round_trip_on_a_clean_link() {
        let out = Pair::new(path(25, 0.0), DatagramMode::Off, 2).run(
            5_000,
            Duration::from_micros(400),
            Duration::from_secs(60),
        );
        assert!(out.identical);
        // One way for the batch, one back for its ack, plus the batching
        // delay: never more on a clean path.
        assert!(
            out.max_ack_lag >= Duration::from_millis(45),
            "{:?}",
            out.max_ack_lag
        );
        assert!(
            out.max_ack_lag <= Duration::from_millis(53),
            "{:?}",
            out.max_ack_lag
        );
    }

    #[test]
    fn a_replica_refuses_an_upstream_with_an_older_epoch() {
        let mut pair = Pair::new(path(10, 0.0), DatagramMode::Off, 4);
        pair.replica_epoch = Epoch(3);
        pair.primary_epoch = Epoch(2);
        pair.max_failures = 2;
        let out = pair.run(1_000, Duration::from_millis(1), Duration::from_secs(30));
        assert!(
            !out.identical,
            "a fenced upstream's stream is not applied to the end"
        );
        assert_eq!(out.failures.len(), 2, "{:?}", out.failures);
        assert!(
            out.failures
                .iter()
                .all(|f| f.contains("upstream is fenced")),
            "{:?}",
            out.failures
        );
    }

    #[test]
    fn runs_are_deterministic() {
        let lossy = Path {
            jitter: Duration::from_millis(3),
            ..path(30, 0.01)
        };
        let a = Pair::new(lossy.clone(), DatagramMode::Auto, 11).run(
            3_000,
            Duration::from_micros(700),
            Duration::from_secs(60),
        );
        let b = Pair::new(lossy, DatagramMode::Auto, 11).run(
            3_000,
            Duration::from_micros(700),
            Duration::from_secs(60),
        );
        assert_eq!(a.latencies, b.latencies);
        assert_eq!(a.datagrams_sent, b.datagrams_sent);
    }
}
