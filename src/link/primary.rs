//! The primary's edge: accepts replica connections on the QUIC endpoint,
//! answers the handshake (partial or full resync), then drives the
//! [`Sender`] core: stream bytes and acks in, batches, datagram copies and
//! pings out.
//!
//! Every node runs this: a replica serves its own sub-replicas the bytes
//! it received, at the same offsets.

use crate::node::{unix_ms, wait_shutdown, Shared};
use crate::persist::SnapshotHeader;
use crate::replication::batch::{BatchPolicy, Cut};
use crate::replication::failover::{self, FailoverState};
use crate::replication::fastpath::PathSample;
use crate::replication::fullsync::{self, RateLimiter, ServedSnapshot};
use crate::replication::ids::Epoch;
use crate::replication::protocol::{self, Hello, MessageReader, PrimaryMessage, ReplicaMessage};
use crate::replication::sender::{OutOfOrder, Sender, SenderConfig};
use crate::replication::stream::Resync;
use crate::replication::tail::LinkCompressor;
use crate::replication::{AttachedReplica, ReplicaState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Bytes of snapshot per chunk message.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("{0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("unexpected message {0}")]
    Unexpected(String),
    #[error("snapshot task failed: {0}")]
    SnapshotTask(String),
    #[error("replica fell behind the backlog: {0}")]
    Compacted(#[from] crate::replication::backlog::Compacted),
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::persist::SnapshotError),
    #[error("{0}")]
    OutOfOrder(#[from] OutOfOrder),
}

/// Why this node turns a replica away; the text is sent to the replica
/// (its `quire_link_last_error`) and logged here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("protocol version {theirs} is not supported (this node speaks {ours})")]
    Version { theirs: u16, ours: u16 },
    #[error("replication cycle: the replica is this node's own upstream")]
    Cycle,
    #[error("not an allowed replica: the certificate names {names:?}, none of them in repl.allowed_replicas of this node")]
    NotAllowed { names: Vec<String> },
    #[error("this node is fenced: its epoch {ours} is older than the replica's ({theirs})")]
    Fenced { ours: Epoch, theirs: Epoch },
    /// The resync decision's reason (RUNBOOK D).
    #[error("{0}")]
    HoldsLostWrites(String),
    #[error("the snapshot transfer took {secs} s and the log moved past its offset {offset} (it now starts at {log_start}): the replica cannot keep up with a full sync at this write rate; raise repl.backlog.max_disk, or lift repl.snapshot_max_mbit / repl.snapshot_link_max_mbit")]
    SnapshotOverrun {
        secs: u64,
        offset: u64,
        log_start: u64,
    },
}

/// Accepts replica connections until shutdown.
pub async fn serve(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { handle(shared, incoming).await }.in_current_span());
                }
                None => break,
            },
            _ = wait_shutdown(&mut shutdown) => break,
        }
    }
    endpoint.close(0u32.into(), b"shutdown");
}

/// One incoming link, in a span naming the peer (and, once its hello
/// arrives, the replica's node, region and history).
async fn handle(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let peer = incoming.remote_address();
    let span = tracing::info_span!(
        "replica",
        %peer,
        node = tracing::field::Empty,
        region = tracing::field::Empty,
        replid = tracing::field::Empty
    );
    handle_in_span(shared, incoming).instrument(span).await
}

async fn handle_in_span(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            shared
                .repl
                .counters
                .rejected_links
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %e, "replication connection refused during the TLS handshake");
            return;
        }
    };
    match serve_replica(&shared, &conn).await {
        Ok(reason) => tracing::info!(reason, "replica link closed"),
        Err(e) => tracing::warn!(error = %e, "replica link closed"),
    }
    conn.close(0u32.into(), b"closed");
}

/// Reads the next message of type `T`, feeding `reader` from `recv`.
pub(super) async fn read_message<T: for<'de> serde::Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
    reader: &mut MessageReader,
    buf: &mut [u8],
) -> Result<Option<T>, LinkError> {
    loop {
        if let Some(m) = reader.poll_message()? {
            return Ok(Some(m));
        }
        match recv.read(buf).await? {
            Some(n) => reader.handle_bytes(&buf[..n]),
            None => return Ok(None),
        }
    }
}

/// Removes a replica from the table when its link ends, however it ends.
struct Attached<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.shared.repl.replicas.lock().remove(self.id);
    }
}

async fn serve_replica(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
) -> Result<&'static str, LinkError> {
    let (mut send, mut recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| LinkError::Timeout("handshake"))??;
    let mut reader = MessageReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    let first = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_message::<ReplicaMessage>(&mut recv, &mut reader, &mut buf),
    )
    .await
    .map_err(|_| LinkError::Timeout("handshake"))??;
    // Authentication (the CA signed it) is TLS's; authorization is the
    // name: checked before anything of the dataset or the node's state is
    // sent, for replicas and probes alike.
    let names = crate::transport::peer_names(conn);
    let allowed = shared.settings.read().repl.allowed_replicas.clone();
    if !crate::transport::certs::admitted(&allowed, &names) {
        shared
            .repl
            .counters
            .unauthorized_links
            .fetch_add(1, Ordering::Relaxed);
        let refusal = Refusal::NotAllowed { names };
        refuse(&mut send, &mut recv, &refusal).await;
        return Err(refusal.into());
    }
    let hello = match first {
        Some(ReplicaMessage::Hello(hello)) => hello,
        Some(ReplicaMessage::Probe { epoch }) => {
            send.write_all(&protocol::encode(&probe_reply(shared)))
                .await?;
            let _ = send.finish();
            // Let the reply reach the prober before the connection closes.
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, recv.read(&mut buf)).await;
            if epoch > shared.repl.epoch() {
                tracing::info!(%epoch, "probed by a node with a newer epoch");
            }
            return Ok("probe answered");
        }
        Some(other) => {
            return Err(LinkError::Unexpected(format!(
                "{other:?} (expected a hello)"
            )))
        }
        None => return Ok("closed before the hello"),
    };
    let span = tracing::Span::current();
    span.record("node", hello.node.as_str());
    span.record("region", hello.region.as_str());
    span.record("replid", hello.replid.as_str());
    if hello.version != protocol::PROTOCOL_VERSION {
        let refusal = Refusal::Version {
            theirs: hello.version,
            ours: protocol::PROTOCOL_VERSION,
        };
        refuse(&mut send, &mut recv, &refusal).await;
        return Err(refusal.into());
    }
    // Two nodes following each other would stream nothing forever: while
    // our link to our upstream works, that upstream cannot be our replica.
    if let Some(up) = shared.repl.upstream().filter(|_| shared.repl.link_up()) {
        let replica_addr = attached_replica(&hello, conn).repl_addr;
        if format!("{}:{}", up.host, up.port) == replica_addr {
            refuse(&mut send, &mut recv, &Refusal::Cycle).await;
            return Err(Refusal::Cycle.into());
        }
    }
    let my_epoch = shared.repl.epoch();
    if hello.epoch > my_epoch {
        let refusal = Refusal::Fenced {
            ours: my_epoch,
            theirs: hello.epoch,
        };
        refuse(&mut send, &mut recv, &refusal).await;
        if !shared.repl.is_replica() {
            // A replica has seen a promotion this primary missed.
            super::fence::demote(
                shared,
                crate::replication::failover::FenceDecision::Demote {
                    follow: hello.repl_addr.clone(),
                    epoch: hello.epoch,
                    divergence: None,
                },
                my_epoch,
            );
        }
        return Err(refusal.into());
    }
    let (decision, replid, generation) = {
        let data = shared.data.lock();
        let decision =
            match data
                .repl
                .resync_or_rewind(&hello.replid, hello.offset, hello.rewind_from)
            {
                // The operator chose this node's copy (RUNBOOK D).
                Resync::Refuse { reason } if shared.settings.read().repl.wipe_newer_replicas => {
                    Resync::Full {
                        reason: format!("{reason}; repl-wipe-newer-replicas is yes"),
                    }
                }
                decision => decision,
            };
        (decision, data.repl.replid.clone(), data.repl.generation)
    };
    let replica_info = attached_replica(&hello, conn);
    let repl_addr = replica_info.repl_addr.clone();
    // CLIENT KILL TYPE replica closes the link at whatever stage it is.
    let (kill, closing) = (replica_info.kill.clone(), conn.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = kill.notified() => {
                tracing::info!("replica link closed by CLIENT KILL");
                closing.close(0u32.into(), b"killed by CLIENT KILL");
            }
            _ = closing.closed() => {}
        }
    });
    let attached = Attached {
        shared,
        id: shared.repl.replicas.lock().add(replica_info),
    };
    // A snapshot transfer cut short resumes where it stopped, as long as
    // the stream after the snapshot is still in the backlog.
    let resumable = hello.resume.as_ref().and_then(|r| {
        let snapshot = shared.repl.snapshots.find(&r.id)?;
        (r.at <= snapshot.size && snapshot_usable(shared, &snapshot)).then_some((snapshot, r.at))
    });
    if let Resync::Refuse { reason } = &decision {
        tracing::error!(%reason, "refusing the replica: it holds writes this node lost");
        shared
            .repl
            .counters
            .resyncs_refused
            .fetch_add(1, Ordering::Relaxed);
        let refusal = Refusal::HoldsLostWrites(reason.clone());
        refuse(&mut send, &mut recv, &refusal).await;
        return Err(refusal.into());
    }
    let start = match (resumable, decision) {
        (Some((snapshot, at)), _) => {
            tracing::info!(id = %snapshot.id, at, size = snapshot.size, "resuming snapshot transfer");
            shared
                .repl
                .counters
                .snapshot_resumes_served
                .fetch_add(1, Ordering::Relaxed);
            set_state(shared, attached.id, ReplicaState::SendBulk);
            send_snapshot(shared, &mut send, &snapshot, at, "resuming a cut transfer").await?
        }
        (None, Resync::Continue { offset }) => {
            tracing::info!(offset, "partial resync accepted");
            shared
                .repl
                .counters
                .partial_syncs_ok
                .fetch_add(1, Ordering::Relaxed);
            send.write_all(&protocol::encode(&PrimaryMessage::Continue {
                replid,
                offset,
                epoch: my_epoch,
                tcp_port: shared.tcp_port.load(Ordering::Relaxed),
            }))
            .await?;
            offset
        }
        (None, Resync::Rewind { to }) => {
            tracing::warn!(
                fork = to,
                replica_offset = hello.offset,
                "the replica went on past where this history forked from it: it rewinds to the fork and continues partially"
            );
            send.write_all(&protocol::encode(&PrimaryMessage::Rewind {
                to,
                epoch: my_epoch,
                tcp_port: shared.tcp_port.load(Ordering::Relaxed),
            }))
            .await?;
            let _ = send.finish();
            // Until the replica has read it and closed.
            let _ = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut [0u8; 64])).await;
            return Ok("replica told to rewind to the fork");
        }
        (None, Resync::Full { reason } | Resync::Refuse { reason }) => {
            tracing::info!(%reason, "full resync");
            if hello.offset > 0 {
                shared
                    .repl
                    .counters
                    .partial_syncs_err
                    .fetch_add(1, Ordering::Relaxed);
            }
            shared
                .repl
                .counters
                .full_syncs_served
                .fetch_add(1, Ordering::Relaxed);
            set_state(shared, attached.id, ReplicaState::WaitBgsave);
            // One snapshot at a time: replicas asking meanwhile wait for it
            // and share it.
            let turn = shared.repl.snapshots.making.lock().await;
            let snapshot = match shared.repl.snapshots.newest(|s| snapshot_usable(shared, s)) {
                Some(existing) => {
                    tracing::info!(id = %existing.id, "sharing an existing snapshot");
                    existing
                }
                None => make_snapshot(shared).await?,
            };
            drop(turn);
            set_state(shared, attached.id, ReplicaState::SendBulk);
            send_snapshot(shared, &mut send, &snapshot, 0, &reason).await?
        }
    };
    set_state(shared, attached.id, ReplicaState::Online);
    let io = ReplicaIo {
        conn,
        send: &mut send,
        recv: &mut recv,
        reader,
    };
    stream(shared, io, &attached, &repl_addr, start, generation).await
}

/// Tells the replica why it is refused and gives it a moment to read that
/// before the connection closes.
async fn refuse(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, refusal: &Refusal) {
    send_refusal(send, refusal).await;
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), recv.read(&mut buf)).await;
}

/// This node's answer to a fencing probe.
pub(super) fn probe_reply(shared: &Shared) -> PrimaryMessage {
    let data = shared.data.lock();
    PrimaryMessage::ProbeReply {
        epoch: shared.repl.epoch(),
        is_primary: !shared.repl.is_replica(),
        upstream: shared
            .repl
            .upstream()
            .map(|u| format!("{}:{}", u.host, u.port)),
        replid: data.repl.replid.clone(),
        replid2: data.repl.replid2.clone(),
        second_offset: data.repl.second_offset,
    }
}

fn attached_replica(hello: &Hello, conn: &quinn::Connection) -> AttachedReplica {
    // A replica bound to a wildcard address is reachable where it dialled from.
    let repl_addr = match hello.repl_addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            std::net::SocketAddr::new(conn.remote_address().ip(), a.port()).to_string()
        }
        _ => hello.repl_addr.clone(),
    };
    AttachedReplica {
        node: hello.node.clone(),
        region: hello.region.clone(),
        addr: conn.remote_address(),
        tcp_port: hello.tcp_port,
        repl_addr,
        state: ReplicaState::WaitBgsave,
        ack_offset: 0,
        fsynced_offset: 0,
        last_ack: Instant::now(),
        rtt_ms: conn.rtt().as_millis() as u64,
        datagrams_active: false,
        loss_rate: 0.0,
        shared_compression: false,
        stored: false,
        kill: Arc::new(tokio::sync::Notify::new()),
    }
}

fn set_state(shared: &Shared, id: u64, state: ReplicaState) {
    if let Some(r) = shared.repl.replicas.lock().replicas.get_mut(&id) {
        r.state = state;
    }
}

/// Whether a replica loading `snapshot` could continue with the stream
/// afterwards (its offset is still in the backlog of this history).
fn snapshot_usable(shared: &Shared, snapshot: &ServedSnapshot) -> bool {
    let data = shared.data.lock();
    matches!(
        data.repl.resync(&snapshot.replid, snapshot.offset),
        Resync::Continue { .. }
    )
}

/// Writes a point-in-time snapshot file. Writes go on meanwhile: they are
/// in the backlog after the snapshot's offset.
async fn make_snapshot(shared: &Arc<Shared>) -> Result<ServedSnapshot, LinkError> {
    let (dbs, position) = {
        let data = shared.data.lock();
        let position = data.repl.position();
        (data.keyspace.snapshot(), position)
    };
    let (replid, offset, stream_db) = (position.replid, position.offset, position.db as u32);
    // As for the stream: the snapshot leaves only once the writes it holds
    // are in the log on the OS's side.
    if shared
        .log
        .write_pending()
        .map_or(true, |written| written < offset)
    {
        return Err(LinkError::SnapshotTask(
            "the log cannot be written (disk full?): no snapshot until it can".into(),
        ));
    }
    let (dir, node) = {
        let s = shared.settings.read();
        (s.dir.join("repl-snapshots"), s.node.name.clone())
    };
    let id = format!("{}-{offset}-{:08x}", replid.short(), rand::random::<u32>());
    let header = SnapshotHeader {
        created_unix_ms: unix_ms(),
        repl_id: replid.to_string(),
        repl_offset: offset,
        node,
        repl_db: stream_db,
    };
    let started = Instant::now();
    let file_id = id.clone();
    let (path, size, crc32) = tokio::task::spawn_blocking(move || {
        fullsync::write_snapshot_file(&dir, &file_id, &dbs, &header, unix_ms())
    })
    .await
    .map_err(|e| LinkError::SnapshotTask(e.to_string()))??;
    tracing::info!(%id, offset, bytes = size, ms = started.elapsed().as_millis() as u64, "replication snapshot written");
    let snapshot = ServedSnapshot {
        id,
        path,
        size,
        crc32,
        replid,
        offset,
        last_used: Instant::now(),
        in_use: 0,
    };
    shared.repl.snapshots.add(snapshot.clone());
    shared
        .repl
        .counters
        .snapshots_made
        .fetch_add(1, Ordering::Relaxed);
    shared
        .repl
        .counters
        .last_snapshot_bytes
        .store(size, Ordering::Relaxed);
    Ok(snapshot)
}

/// Sends snapshot file bytes from `at`, in verified chunks; returns the
/// offset the stream continues from.
async fn send_snapshot(
    shared: &Arc<Shared>,
    send: &mut quinn::SendStream,
    snapshot: &ServedSnapshot,
    at: u64,
    reason: &str,
) -> Result<u64, LinkError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    shared.repl.snapshots.acquire(&snapshot.id);
    shared.pin_snapshot_transfers();
    let started = Instant::now();
    let result = async {
        let reply = PrimaryMessage::FullResync {
            replid: snapshot.replid.clone(),
            offset: snapshot.offset,
            snapshot_id: snapshot.id.clone(),
            snapshot_bytes: snapshot.size,
            file_crc32: snapshot.crc32,
            resume_at: at,
            epoch: shared.repl.epoch(),
            tcp_port: shared.tcp_port.load(Ordering::Relaxed),
            reason: reason.to_string(),
        };
        send.write_all(&protocol::encode(&reply)).await?;
        let mut file = tokio::fs::File::open(&snapshot.path)
            .await
            .map_err(|e| LinkError::Snapshot(e.into()))?;
        file.seek(std::io::SeekFrom::Start(at))
            .await
            .map_err(|e| LinkError::Snapshot(e.into()))?;
        let mut position = at;
        let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let mbit = |m: u64| m * 1_000_000 / 8;
        let (total_cap, link_cap) = {
            let s = shared.settings.read();
            (
                mbit(s.repl.snapshot_max_mbit),
                mbit(s.repl.snapshot_link_max_mbit),
            )
        };
        let mut link_rate = RateLimiter::new(link_cap);
        // Under a cap, chunks of at most an eighth of a second's budget.
        let chunk_bytes = match [total_cap, link_cap].into_iter().filter(|c| *c > 0).min() {
            Some(cap) => ((cap / 8) as usize).clamp(16 << 10, SNAPSHOT_CHUNK_BYTES),
            None => SNAPSHOT_CHUNK_BYTES,
        };
        let overrun = |shared: &Shared| {
            shared
                .repl
                .counters
                .snapshot_overruns
                .fetch_add(1, Ordering::Relaxed);
            Refusal::SnapshotOverrun {
                secs: started.elapsed().as_secs(),
                offset: snapshot.offset,
                log_start: shared.log.start_offset(),
            }
        };
        while position < snapshot.size {
            // Only max_disk can let the log go past the snapshot: stop
            // then, and say so, rather than let the replica load a
            // snapshot it cannot continue and loop.
            if !shared.log.covers(snapshot.offset) {
                return Err(overrun(shared).into());
            }
            let want = ((snapshot.size - position) as usize).min(chunk_bytes);
            // Within this link's and all transfers' budgets.
            let now = Instant::now();
            let wait = {
                let mut total = shared.repl.snapshots.total_rate.lock();
                total.set_rate(total_cap);
                total.take(now, want).max(link_rate.take(now, want))
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            file.read_exact(&mut buf[..want])
                .await
                .map_err(|e| LinkError::Snapshot(e.into()))?;
            let chunk = &buf[..want];
            let wire = protocol::encode(&PrimaryMessage::SnapshotChunk {
                at: position,
                crc32: crc32fast::hash(chunk),
                data: chunk.to_vec(),
            });
            send.write_all(&wire).await?;
            let counters = &shared.repl.counters;
            counters
                .sent_wire_bytes
                .fetch_add(wire.len() as u64, Ordering::Relaxed);
            counters
                .snapshot_bytes_sent
                .fetch_add(want as u64, Ordering::Relaxed);
            position += want as u64;
        }
        if !shared.log.covers(snapshot.offset) {
            return Err(overrun(shared).into());
        }
        Ok(snapshot.offset)
    }
    .await;
    shared.repl.snapshots.release(&snapshot.id);
    shared.pin_snapshot_transfers();
    if let Err(LinkError::Refused(refusal)) = &result {
        tracing::error!(reason = %refusal, "full sync cannot continue");
        refuse_stream(send, refusal).await;
    }
    result
}

/// Writes the refusal and ends the stream.
async fn send_refusal(send: &mut quinn::SendStream, refusal: &Refusal) {
    let _ = send
        .write_all(&protocol::encode(&PrimaryMessage::Refused {
            reason: refusal.to_string(),
        }))
        .await;
    let _ = send.finish();
}

/// Tells the replica why its link ends, on a stream already past the
/// handshake.
async fn refuse_stream(send: &mut quinn::SendStream, refusal: &Refusal) {
    send_refusal(send, refusal).await;
    // Until the replica has read it (or gone): closing at once would
    // discard it.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
}

/// The connection and streams of one attached replica.
struct ReplicaIo<'a> {
    conn: &'a quinn::Connection,
    send: &'a mut quinn::SendStream,
    recv: &'a mut quinn::RecvStream,
    reader: MessageReader,
}

/// How this node's links send, from its settings.
fn sender_config(s: &crate::config::Settings) -> SenderConfig {
    SenderConfig {
        batch: BatchPolicy {
            max_bytes: s.repl.batch_max_bytes,
            max_delay: Duration::from_millis(s.repl.batch_max_delay_ms),
        },
        datagrams: s.repl.datagrams,
        capacity_bytes_per_sec: (s.link.bandwidth_mbit > 0)
            .then(|| s.link.bandwidth_mbit as f64 * 1e6 / 8.0),
        stagger: Duration::from_micros(s.repl.datagram_stagger_us),
    }
}

/// Streams batches from `start` until the link or the node ends. The
/// [`Sender`] core decides what goes out when; this loop moves the bytes
/// (stream, datagrams, acks) and keeps the timers.
async fn stream(
    shared: &Arc<Shared>,
    io: ReplicaIo<'_>,
    replica: &Attached<'_>,
    repl_addr: &str,
    start: u64,
    generation: u64,
) -> Result<&'static str, LinkError> {
    let ReplicaIo {
        conn,
        send,
        recv,
        mut reader,
    } = io;
    let id = replica.id;
    let (config, level) = {
        let s = shared.settings.read();
        (sender_config(&s), s.repl.compression_level)
    };
    let log_history = {
        let data = shared.data.lock();
        if data.repl.generation != generation {
            return Ok("the replication history was replaced (resync or promotion)");
        }
        shared.log.history()
    };
    let mut sender = Sender::new(config, start, Instant::now(), conn.rtt());
    let mut unacked = UnackedGauge::new(&shared.repl.counters.unacked_link_bytes);
    let mut compressor = LinkCompressor::new(level);
    // False once the connection refused a datagram for good.
    let mut datagrams_usable = true;
    let mut stream_wire = 0u64;
    let mut last_stored = false;
    let mut shutdown = shared.shutdown_signal();
    let mut buf = vec![0u8; 16 * 1024];
    let counters = &shared.repl.counters;
    loop {
        let notified = shared.repl.stream_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let handover = shared.repl.handover.notified();
        tokio::pin!(handover);
        handover.as_mut().enable();
        let (end, current_generation) = {
            let data = shared.data.lock();
            (data.repl.offset(), data.repl.generation)
        };
        // Only what the log has handed to the OS goes to replicas: a
        // primary killed before writing a batch cannot leave a replica
        // ahead of the history it comes back with.
        let end = end.min(shared.log.written());
        if current_generation != generation {
            return Ok("the replication history was replaced (resync or promotion)");
        }
        sender.handle_stream_end(end);
        let max_datagram = conn.max_datagram_size().filter(|_| datagrams_usable);
        sender.handle_path(max_datagram, copies_backed_up(conn));
        // A planned failover pauses writes for its whole course: only then
        // is its state worth a lock.
        let failover_state = if shared.repl.writes_paused.load(Ordering::Acquire) {
            shared.repl.failover.lock().clone()
        } else {
            FailoverState::None
        };
        if let FailoverState::InProgress { target } = &failover_state {
            if target == repl_addr {
                if let Some(offset) = sender.poll_handover() {
                    let epoch = failover::promoted_epoch(shared.repl.epoch());
                    send.write_all(&protocol::encode(&PrimaryMessage::Handover {
                        epoch,
                        offset,
                    }))
                    .await?;
                    tracing::info!(target = %target, offset, %epoch, "handed over to the failover target");
                    // Wait for its last ack (or the link to close).
                    let _ = tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await;
                    return Ok("handed over (planned failover)");
                }
            }
        }
        let now = Instant::now();
        // A batch another link on the shared stream already cut goes out
        // at once; otherwise the sender decides.
        let ready = if sender.sent() < end {
            compressor.ready(&mut shared.repl.tail.lock(), generation, sender.sent())
        } else {
            None
        };
        let batch = match ready {
            Some(batch) => Some(batch),
            None => match sender.poll_cut(now) {
                Cut::Send(n) => {
                    let next = compressor.next_batch(
                        &mut shared.repl.tail.lock(),
                        generation,
                        sender.sent(),
                        n,
                        |at, n| shared.log.read(log_history, at, n),
                    )?;
                    if next.compressed {
                        counters.batches_compressed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(next.batch)
                }
                Cut::WaitUntil(_) | Cut::Idle => None,
            },
        };
        if let Some(batch) = batch {
            if batch.stored {
                counters.batches_stored.fetch_add(1, Ordering::Relaxed);
            }
            if batch.stored != last_stored {
                last_stored = batch.stored;
                tracing::info!(
                    mode = if last_stored { "stored" } else { "zstd" },
                    "stream compression mode changed (batches did not shrink / shrink again)"
                );
            }
            let wire = protocol::encode_batch(&batch);
            send.write_all(&wire).await?;
            stream_wire += wire.len() as u64;
            sender.handle_batch(Instant::now(), &batch)?;
            unacked.set(sender.unacked_bytes());
            let raw_len = batch.raw_len as u64;
            counters
                .sent_wire_bytes
                .fetch_add(wire.len() as u64, Ordering::Relaxed);
            counters
                .sent_raw_bytes
                .fetch_add(raw_len, Ordering::Relaxed);
            counters.batches_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        while let Some(copy) = sender.poll_datagrams(now) {
            datagrams_usable &= send_copy(conn, counters, copy);
        }
        if let Some(offset) = sender.poll_ping(now) {
            sender.set_datagram_mode(shared.settings.read().repl.datagrams);
            let path = conn.stats().path;
            sender.handle_sample(PathSample {
                at: now,
                rtt: conn.rtt(),
                sent_packets: path.sent_packets,
                lost_packets: path.lost_packets,
                stream_bytes: stream_wire,
            });
            if let Some(r) = shared.repl.replicas.lock().replicas.get_mut(&id) {
                r.rtt_ms = conn.rtt().as_millis() as u64;
                r.datagrams_active = sender.copies_engaged(now);
                r.shared_compression = compressor.on_shared_stream();
                r.stored = last_stored;
                r.loss_rate = sender.loss_rate();
            }
            let epoch = shared.repl.epoch();
            send.write_all(&protocol::encode(&PrimaryMessage::Ping {
                offset,
                unix_ms: unix_ms(),
                epoch,
            }))
            .await?;
        }
        let timer_at = sender.poll_timeout();
        let timer = async {
            match timer_at {
                // Precise: the batching delay bounds latency (tokio's
                // timer would stretch 2 ms to 2-3).
                Some(at) => crate::timer::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // While a batch is being coalesced, new writes wait for its
        // deadline instead of waking the loop one by one.
        let coalescing = sender.coalescing();
        tokio::select! {
            _ = &mut notified, if !coalescing => {}
            _ = &mut handover => {}
            _ = timer => {}
            read = recv.read(&mut buf) => {
                let Some(n) = read? else { return Ok("replica closed the stream") };
                reader.handle_bytes(&buf[..n]);
                while let Some(message) = reader.poll_message::<ReplicaMessage>()? {
                    match message {
                        ReplicaMessage::Ack { offset, fsynced } => {
                            sender.handle_ack(offset, fsynced);
                            unacked.set(sender.unacked_bytes());
                            shared.repl.replicas.lock().handle_ack(id, offset, fsynced);
                            shared.repl.acked.notify_waiters();
                        }
                        other => return Err(LinkError::Unexpected(format!("{other:?}"))),
                    }
                }
            }
            _ = wait_shutdown(&mut shutdown) => return Ok("shutdown"),
        }
    }
}

/// Copies still waiting in quinn's queue mean the congestion window has no
/// room for them: later ones are skipped until it drains.
fn copies_backed_up(conn: &quinn::Connection) -> bool {
    conn.datagram_send_buffer_space() < crate::transport::DATAGRAM_SEND_BUFFER / 2
}

/// Puts one batch copy on the connection; false once the connection
/// cannot carry datagrams any more.
fn send_copy(
    conn: &quinn::Connection,
    c: &crate::replication::ReplCounters,
    pieces: Vec<Vec<u8>>,
) -> bool {
    if copies_backed_up(conn) {
        c.datagram_dropped_batches.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    for piece in pieces {
        let len = piece.len() as u64;
        match conn.send_datagram(piece.into()) {
            Ok(()) => c.datagram_sent_bytes.fetch_add(len, Ordering::Relaxed),
            // The path MTU shrank since the batch was cut (black-hole
            // detection): this copy is lost, later ones are cut smaller.
            Err(quinn::SendDatagramError::TooLarge) => {
                c.datagram_dropped_batches.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(e) => {
                tracing::warn!(reason = %e, "datagram copies stopped on this link");
                c.datagram_dropped_batches.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
    }
    c.datagram_sent_batches.fetch_add(1, Ordering::Relaxed);
    true
}

/// One link's share of the node's unacknowledged link bytes, withdrawn
/// when the link ends.
struct UnackedGauge<'a> {
    total: &'a std::sync::atomic::AtomicU64,
    mine: u64,
}

impl<'a> UnackedGauge<'a> {
    fn new(total: &'a std::sync::atomic::AtomicU64) -> Self {
        UnackedGauge { total, mine: 0 }
    }

    fn set(&mut self, bytes: u64) {
        if bytes >= self.mine {
            self.total.fetch_add(bytes - self.mine, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.mine - bytes, Ordering::Relaxed);
        }
        self.mine = bytes;
    }
}

impl Drop for UnackedGauge<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}
