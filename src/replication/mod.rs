//! Replication: a primary streams the effects of its writes to replicas
//! over QUIC; replicas apply them in order and acknowledge offsets.
//!
//! The sans-IO cores are [`stream`] (effects → bytes at offsets, PSYNC
//! decisions), [`backlog`], [`batch`] (when to cut, zstd streams),
//! [`tail`] (one compression for all links at the live tail), [`apply`]
//! (received bytes → atomic units), [`fastpath`] (datagram copies and their
//! in-order merge) and [`protocol`] (messages and their framing). [`primary`] and [`replica`] are the async edges that
//! drive them over quinn connections. This file holds the state both edges
//! and the commands share: the node's role, the upstream link's status,
//! and the table of attached replicas (acks, WAIT).

pub mod apply;
pub mod backlog;
pub mod batch;
pub mod failover;
pub mod fastpath;
pub mod fullsync;
pub mod ids;
pub mod protocol;
pub mod receiver;
pub mod sender;
#[cfg(test)]
mod sim;
pub mod stream;
pub mod tail;

pub use stream::ReplicationLog;

use crate::resp::Frame;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, watch, Notify};

/// Where a replica replicates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// Where an attached replica's sync stands (Redis's `slaveN:state=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Waiting for the snapshot of its full sync to be written.
    WaitBgsave,
    /// Receiving that snapshot.
    SendBulk,
    /// Streaming: counted by WAIT, WAITAOF and min-replicas.
    Online,
}

impl ReplicaState {
    /// Redis's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::WaitBgsave => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        }
    }
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this replica's link to its upstream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting to dial (after start-up or a failure).
    Connect,
    /// Dialling and handshaking.
    Connecting,
    /// Asked for history; receiving the answer (or a snapshot).
    Sync,
    /// Streaming.
    Connected,
}

impl LinkState {
    /// Redis's name for the state (`ROLE`, INFO).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A replica attached to this node, as INFO and WAIT see it.
#[derive(Debug, Clone)]
pub struct AttachedReplica {
    pub node: String,
    pub region: String,
    pub addr: SocketAddr,
    pub tcp_port: u16,
    /// The replica's own replication endpoint (for failover to it).
    pub repl_addr: String,
    pub state: ReplicaState,
    pub ack_offset: u64,
    /// What the replica has fsynced in its own log (WAITAOF).
    pub fsynced_offset: u64,
    pub last_ack: Instant,
    pub rtt_ms: u64,
    /// Whether batches to this replica currently get datagram copies.
    pub datagrams_active: bool,
    /// Smoothed fraction of packets lost on the link.
    pub loss_rate: f64,
    /// Whether the link sends the node's shared compressed stream (it is
    /// at the live tail) or compresses its own (catching up).
    pub shared_compression: bool,
    /// Whether its latest batches went stored (the stream did not shrink
    /// under zstd) rather than compressed.
    pub stored: bool,
    /// Closes the link (CLIENT KILL TYPE replica); the replica reconnects.
    pub kill: Arc<Notify>,
}

struct WaitRequest {
    client: u64,
    target: u64,
    numreplicas: usize,
    reply: oneshot::Sender<Frame>,
}

/// Replicas attached to this node and clients waiting for their acks.
#[derive(Default)]
pub struct ReplicaTable {
    next_id: u64,
    pub replicas: BTreeMap<u64, AttachedReplica>,
    waits: Vec<WaitRequest>,
}

impl ReplicaTable {
    pub fn add(&mut self, replica: AttachedReplica) -> u64 {
        self.next_id += 1;
        self.replicas.insert(self.next_id, replica);
        self.next_id
    }

    pub fn remove(&mut self, id: u64) {
        self.replicas.remove(&id);
    }

    /// Replicas that acknowledged at least `offset`.
    pub fn acked(&self, offset: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| r.state == ReplicaState::Online && r.ack_offset >= offset)
            .count()
    }

    /// Replicas that fsynced at least `offset` (WAITAOF).
    pub fn fsynced(&self, offset: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| r.state == ReplicaState::Online && r.fsynced_offset >= offset)
            .count()
    }

    /// Replicas whose last ack is at most `max_lag_secs` old.
    pub fn good(&self, max_lag_secs: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| {
                r.state == ReplicaState::Online && r.last_ack.elapsed().as_secs() <= max_lag_secs
            })
            .count()
    }

    pub fn handle_ack(&mut self, id: u64, offset: u64, fsynced: u64) {
        if let Some(r) = self.replicas.get_mut(&id) {
            r.ack_offset = r.ack_offset.max(offset);
            r.fsynced_offset = r.fsynced_offset.max(fsynced);
            r.last_ack = Instant::now();
        }
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            let n = self.acked(w.target);
            if n >= w.numreplicas {
                let w = self.waits.swap_remove(i);
                let _ = w.reply.send(Frame::Integer(n as i64));
            } else {
                i += 1;
            }
        }
    }

    pub fn add_wait(
        &mut self,
        client: u64,
        target: u64,
        numreplicas: usize,
    ) -> oneshot::Receiver<Frame> {
        let (reply, rx) = oneshot::channel();
        self.waits.push(WaitRequest {
            client,
            target,
            numreplicas,
            reply,
        });
        rx
    }

    /// Ends a client's WAIT (timeout): how many replicas reached its target.
    pub fn end_wait(&mut self, client: u64) -> Option<usize> {
        let i = self.waits.iter().position(|w| w.client == client)?;
        let w = self.waits.swap_remove(i);
        Some(self.acked(w.target))
    }
}

/// Status of this node's link to its upstream (replica side).
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub state: LinkState,
    pub last_io: Option<Instant>,
    pub down_since: Option<Instant>,
    pub sync_in_progress: bool,
    pub last_error: String,
    pub rtt_ms: u64,
    /// Upstream's offset and wall clock from its last ping.
    pub upstream_offset: u64,
    pub lag_ms: i64,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub snapshot_resumes: u64,
    /// Sessions with the upstream that ended in an error.
    pub failures: u64,
    /// The upstream's client port (from its handshake, or because the
    /// replica was pointed at it) and its replication port, once known:
    /// INFO and ROLE show the client port, as Sentinel expects.
    pub upstream_tcp_port: Option<u16>,
    pub upstream_repl_port: Option<u16>,
    /// Rewinds to a fork point (a demoted primary), and where the last
    /// one set its diverged writes aside.
    pub rewinds: u64,
    pub last_rewind: String,
    /// A rewind failed: this upstream gets no more offers of one.
    pub rewind_failed: bool,
    /// Why the upstream last answered with a full resync, and why the
    /// last full sync that failed did (kept after later successes).
    pub last_full_sync_reason: String,
    pub last_full_sync_failure: String,
    /// When the current session reached streaming (unix ms; 0 while down).
    pub up_since_unix_ms: i64,
}

impl Default for LinkStatus {
    fn default() -> Self {
        LinkStatus {
            state: LinkState::Connect,
            last_io: None,
            down_since: Some(Instant::now()),
            sync_in_progress: false,
            last_error: String::new(),
            rtt_ms: 0,
            upstream_offset: 0,
            lag_ms: 0,
            full_syncs: 0,
            partial_syncs: 0,
            snapshot_resumes: 0,
            failures: 0,
            upstream_tcp_port: None,
            upstream_repl_port: None,
            rewinds: 0,
            last_rewind: String::new(),
            rewind_failed: false,
            last_full_sync_reason: String::new(),
            last_full_sync_failure: String::new(),
            up_since_unix_ms: 0,
        }
    }
}

/// Counters for INFO (bytes on the wire vs stream bytes).
#[derive(Default)]
pub struct ReplCounters {
    /// Batch bytes every link wrote that its replica has not acknowledged
    /// yet (left out of `maxmemory`, as Redis its replicas' buffers).
    pub unacked_link_bytes: AtomicU64,
    pub sent_wire_bytes: AtomicU64,
    pub sent_raw_bytes: AtomicU64,
    pub received_wire_bytes: AtomicU64,
    pub received_raw_bytes: AtomicU64,
    pub full_syncs_served: AtomicU64,
    pub partial_syncs_ok: AtomicU64,
    pub partial_syncs_err: AtomicU64,
    pub rejected_links: AtomicU64,
    /// Links refused because the peer's name is not in
    /// `repl.allowed_replicas`.
    pub unauthorized_links: AtomicU64,
    /// Connections fed the stream in Redis's protocol (SYNC/PSYNC on the
    /// client port); while any is, PINGs go into the stream as keepalive.
    pub resp_feeds: AtomicU64,
    /// Replicas refused because a full sync would erase writes they hold
    /// and this node lost.
    pub resyncs_refused: AtomicU64,
    /// Snapshot bytes sent in full syncs (resumed transfers send only the
    /// rest).
    pub snapshot_bytes_sent: AtomicU64,
    pub snapshot_resumes_served: AtomicU64,
    pub last_snapshot_bytes: AtomicU64,
    /// Fast path, sending side: datagram bytes and batches copied, and
    /// copies not sent (queue full, or the peer refused datagrams).
    pub datagram_sent_bytes: AtomicU64,
    pub datagram_sent_batches: AtomicU64,
    pub datagram_dropped_batches: AtomicU64,
    /// Fast path, receiving side.
    pub datagram_received_bytes: AtomicU64,
    pub batches_via_stream: AtomicU64,
    pub batches_via_datagram: AtomicU64,
    pub batch_copies_discarded: AtomicU64,
    pub datagrams_rejected: AtomicU64,
    pub datagrams_recovered: AtomicU64,
    /// Batches sent on all links, and those this node compressed (fewer
    /// when replicas at the live tail share them).
    pub batches_sent: AtomicU64,
    pub batches_compressed: AtomicU64,
    /// Batches sent stored (incompressible stream), all links.
    pub batches_stored: AtomicU64,
    /// Full-sync snapshots written (shared by the replicas that asked
    /// while one was being written).
    pub snapshots_made: AtomicU64,
    /// Full syncs ended because the log moved past the snapshot during
    /// its transfer (max_disk reached).
    pub snapshot_overruns: AtomicU64,
}

/// Replication state shared by a node's tasks.
pub struct Replication {
    is_replica: AtomicBool,
    link_up: AtomicBool,
    upstream: Mutex<Option<Upstream>>,
    pub link: Mutex<LinkStatus>,
    pub replicas: Mutex<ReplicaTable>,
    /// Woken when new bytes are in the log (senders wait on it).
    pub stream_ready: Notify,
    /// Woken on every replica ack (WAITAOF waits on it).
    pub acked: Notify,
    /// Batches compressed once for every link at the live tail.
    pub tail: Mutex<tail::SharedTail>,
    /// Bumped on every role change; the upstream link task of an older
    /// generation stops.
    pub role_generation: watch::Sender<u64>,
    pub endpoint: Mutex<Option<quinn::Endpoint>>,
    pub port: AtomicU16,
    pub counters: ReplCounters,
    /// Snapshot files this node serves to replicas.
    pub snapshots: fullsync::SnapshotStore,
    /// The snapshot this replica is receiving.
    pub incoming: Mutex<Option<fullsync::IncomingSnapshot>>,
    /// A received snapshot is being loaded.
    pub loading: AtomicBool,
    /// (offset, when) samples of the stream's end, to turn a replica's
    /// acknowledged offset into a lag in time.
    history: Mutex<std::collections::VecDeque<(u64, Instant)>>,
    /// The newest promotion epoch this node has seen (see `failover`).
    pub epoch: AtomicU64,
    pub failover: Mutex<failover::FailoverState>,
    /// Writes are refused while a planned failover hands over.
    pub writes_paused: AtomicBool,
    /// `min_replicas_to_write` and `min_replicas_max_lag`, mirrored here so
    /// the write path does not take the settings lock.
    pub min_replicas: AtomicU64,
    pub min_replicas_max_lag: AtomicU64,
    /// Writes are refused until the first round of fencing probes has
    /// answered (a restarted primary might have been replaced meanwhile).
    pub awaiting_fence_check: AtomicBool,
    /// Woken when a planned failover wants the target's sender to hand over.
    pub handover: Notify,
    /// Ends the current session with the upstream (CLIENT KILL TYPE
    /// master); the link reconnects.
    pub kill_link: Notify,
    /// What this node reported when it was fenced.
    pub fenced: Mutex<Option<FencedReport>>,
}

/// A fenced primary's account of the writes the group never saw.
#[derive(Debug, Clone, PartialEq)]
pub struct FencedReport {
    pub old_epoch: ids::Epoch,
    pub new_epoch: ids::Epoch,
    pub follow: String,
    pub divergence: Option<failover::Divergence>,
    pub commands: u64,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            is_replica: AtomicBool::new(false),
            link_up: AtomicBool::new(false),
            upstream: Mutex::new(None),
            link: Mutex::new(LinkStatus::default()),
            replicas: Mutex::new(ReplicaTable::default()),
            stream_ready: Notify::new(),
            acked: Notify::new(),
            tail: Mutex::new(tail::SharedTail::default()),
            role_generation: watch::channel(0).0,
            endpoint: Mutex::new(None),
            port: AtomicU16::new(0),
            counters: ReplCounters::default(),
            snapshots: Default::default(),
            incoming: Mutex::new(None),
            loading: AtomicBool::new(false),
            history: Mutex::new(std::collections::VecDeque::new()),
            epoch: AtomicU64::new(0),
            failover: Mutex::new(failover::FailoverState::None),
            writes_paused: AtomicBool::new(false),
            awaiting_fence_check: AtomicBool::new(false),
            min_replicas: AtomicU64::new(0),
            min_replicas_max_lag: AtomicU64::new(10),
            handover: Notify::new(),
            kill_link: Notify::new(),
            fenced: Mutex::new(None),
        }
    }
}

impl Replication {
    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Acquire)
    }

    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    pub fn set_link_up(&self, up: bool) {
        self.link_up.store(up, Ordering::Release);
        let mut link = self.link.lock();
        if up {
            link.down_since = None;
        } else if link.down_since.is_none() {
            link.down_since = Some(Instant::now());
        }
    }

    pub fn upstream(&self) -> Option<Upstream> {
        self.upstream.lock().clone()
    }

    /// The upstream's client port as far as known (else the port this
    /// node was pointed at): INFO's `master_port`, ROLE.
    pub fn upstream_client_port(&self) -> Option<u16> {
        let up = self.upstream()?;
        Some(self.link.lock().upstream_tcp_port.unwrap_or(up.port))
    }

    /// Whether `host:port` names the current upstream, by the port it was
    /// given, its client port or its replication port.
    pub fn is_upstream(&self, host: &str, port: u16) -> bool {
        let Some(up) = self.upstream() else {
            return false;
        };
        let link = self.link.lock();
        up.host.eq_ignore_ascii_case(host)
            && (up.port == port
                || link.upstream_tcp_port == Some(port)
                || link.upstream_repl_port == Some(port))
    }

    /// Records a role change; returns the new generation.
    pub fn set_upstream(&self, upstream: Option<Upstream>) -> u64 {
        self.is_replica.store(upstream.is_some(), Ordering::Release);
        *self.upstream.lock() = upstream;
        self.set_link_up(false);
        let mut link = self.link.lock();
        let (full, partial, resumes, failures) = (
            link.full_syncs,
            link.partial_syncs,
            link.snapshot_resumes,
            link.failures,
        );
        *link = LinkStatus {
            full_syncs: full,
            partial_syncs: partial,
            snapshot_resumes: resumes,
            failures,
            rewinds: link.rewinds,
            last_rewind: std::mem::take(&mut link.last_rewind),
            last_full_sync_reason: std::mem::take(&mut link.last_full_sync_reason),
            last_full_sync_failure: std::mem::take(&mut link.last_full_sync_failure),
            ..LinkStatus::default()
        };
        drop(link);
        let mut generation = 0;
        self.role_generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        generation
    }

    /// Records the stream's end at `now` (cron, 10 times a second).
    pub fn record_offset(&self, offset: u64, now: Instant) {
        let mut h = self.history.lock();
        if h.back().is_none_or(|(o, _)| *o != offset) {
            h.push_back((offset, now));
            while h.len() > 36_000 {
                h.pop_front();
            }
        }
    }

    /// How long ago the first byte after `acked` was written (0 when
    /// nothing is outstanding), at the cron's resolution.
    pub fn lag_ms_at(&self, acked: u64, current: u64) -> u64 {
        if acked >= current {
            return 0;
        }
        let h = self.history.lock();
        let i = h.partition_point(|(o, _)| *o <= acked);
        h.get(i)
            .map(|(_, t)| t.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }

    /// Mirrors the settings the write path checks.
    pub fn refresh(&self, settings: &crate::config::Settings) {
        self.min_replicas
            .store(settings.min_replicas_to_write as u64, Ordering::Release);
        self.min_replicas_max_lag
            .store(settings.min_replicas_max_lag, Ordering::Release);
    }

    pub fn epoch(&self) -> ids::Epoch {
        ids::Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// Sets the epoch loaded at start-up.
    pub fn set_epoch(&self, epoch: ids::Epoch) {
        self.epoch.store(epoch.0, Ordering::Release);
    }

    /// Raises the epoch to at least `epoch`, saving it in `dir`.
    pub fn observe_epoch(&self, epoch: ids::Epoch, dir: &std::path::Path) {
        if self.epoch.fetch_max(epoch.0, Ordering::AcqRel) < epoch.0 {
            failover::save_epoch(dir, epoch);
            tracing::info!(%epoch, "replication epoch advanced");
        }
    }

    pub fn generation(&self) -> u64 {
        *self.role_generation.borrow()
    }
}
