//! The replica's edge: the link task that dials the upstream, asks for the
//! history it lacks, loads a snapshot when it must, then drives the
//! [`Link`] core: received bytes and datagrams in, units applied through
//! the node's applier, acks out. After a broken link it reconnects with
//! the core's [`receiver::Backoff`] and asks to continue from the last
//! applied unit.

use super::discover::{discover, DiscoverError, Endpoint};
use super::primary::{read_message, LinkError};
use crate::node::apply::StreamApplier;
use crate::node::{role, NodeAction};
use crate::node::{unix_ms, wait_shutdown, Shared};
use crate::replication::apply::Units;
use crate::replication::fastpath::ReassemblyStats;
use crate::replication::fullsync::IncomingSnapshot;
use crate::replication::ids::Epoch;
use crate::replication::protocol::{self, Hello, MessageReader, PrimaryMessage, ReplicaMessage};
use crate::replication::receiver::{self, Link, LinkEvent, LinkFailure};
use crate::replication::LinkState;
use crate::replication::ReplicationLog;
use crate::replication::Upstream;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest snapshot a replica accepts into memory during a full sync.
const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// Why a link to the upstream ended. Every cause is followed by a
/// reconnect (with backoff) that asks to continue from the last applied
/// unit; INFO's `quire_link_last_error` shows the text.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Discover(#[from] DiscoverError),
    #[error("rewind to the fork failed: {0}")]
    Rewind(String),
    #[error("no replication endpoint (certificates missing?)")]
    NoEndpoint,
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("{0}")]
    Stream(#[from] LinkFailure),
    #[error("full resync: {0}")]
    Snapshot(#[from] TransferError),
    #[error(
        "this node's log writes are failing (disk full?): replication paused until they succeed"
    )]
    LogFailing,
}

/// The upstream's answer to the hello was not one this replica can go on
/// with.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("upstream continues at {offset}, we asked for {asked}")]
    WrongOffset { offset: u64, asked: u64 },
    #[error("upstream refused the link: {0}")]
    Refused(String),
    #[error("unexpected handshake reply {0}")]
    Unexpected(String),
}

/// A full-sync snapshot transfer that cannot go on; the reconnect resumes
/// it where the verified bytes end (or starts over when it must).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("snapshot of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("upstream resumed a snapshot transfer we do not hold")]
    UnknownTransfer,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot chunk at {0} failed verification; re-requesting")]
    BadChunk(u64),
    #[error("unexpected message during snapshot transfer: {0}")]
    Unexpected(String),
    #[error("upstream closed during the snapshot transfer")]
    Closed,
    #[error("snapshot refused, discarded: {0}")]
    Refused(String),
    #[error("snapshot header does not match the resync reply; discarded")]
    HeaderMismatch,
}

impl From<quinn::WriteError> for ReplicaError {
    fn from(e: quinn::WriteError) -> Self {
        ReplicaError::Link(e.into())
    }
}

impl From<protocol::ProtocolError> for ReplicaError {
    fn from(e: protocol::ProtocolError) -> Self {
        ReplicaError::Link(e.into())
    }
}

/// Makes this node a replica of `upstream` and starts the link task
/// (start-up `replicaof`, fencing, planned failover).
pub fn follow(
    shared: &Arc<Shared>,
    keyspace: &mut crate::keyspace::Keyspace,
    log: &mut ReplicationLog,
    upstream: Upstream,
) {
    if let NodeAction::Follow {
        upstream,
        generation,
    } = role::follow(shared, keyspace, log, upstream)
    {
        spawn_link(shared.clone(), upstream, generation);
    }
}

/// Starts the link task for the current role generation.
pub fn spawn_link(shared: Arc<Shared>, upstream: Upstream, generation: u64) {
    // Every line of this link carries the upstream and this node's history.
    let span = tracing::info_span!(
        parent: &shared.span(),
        "upstream",
        host = %upstream.host,
        port = upstream.port,
        replid = tracing::field::Empty
    );
    tokio::spawn(async move { run_link(shared, upstream, generation).await }.instrument(span));
}

async fn run_link(shared: Arc<Shared>, upstream: Upstream, generation: u64) {
    let mut role = shared.repl.role_generation.subscribe();
    let mut shutdown = shared.shutdown_signal();
    let mut backoff = receiver::Backoff::default();
    tracing::info!("replicating from upstream");
    loop {
        if *role.borrow() != generation || shared.is_shutting_down() {
            return;
        }
        let started = Instant::now();
        let full_before = shared.repl.link.lock().full_syncs;
        let result = tokio::select! {
            r = session(&shared, &upstream) => r,
            _ = shared.repl.kill_link.notified() => Ok("link closed by CLIENT KILL TYPE master"),
            _ = role.wait_for(|g| *g != generation) => return,
            _ = wait_shutdown(&mut shutdown) => return,
        };
        shared.repl.set_link_up(false);
        let (full_sync, streamed) = {
            let mut link = shared.repl.link.lock();
            let full_sync = link.sync_in_progress || link.full_syncs > full_before;
            let streamed = match link.up_since_unix_ms {
                0 => Duration::ZERO,
                since => Duration::from_millis((unix_ms() - since).max(0) as u64),
            };
            link.state = LinkState::Connect;
            link.sync_in_progress = false;
            link.up_since_unix_ms = 0;
            if let Err(e) = &result {
                link.last_error = e.to_string();
                link.failures += 1;
            }
            (full_sync, streamed)
        };
        backoff.streamed(streamed);
        let failed_full_sync =
            result.is_err() && full_sync && streamed <= receiver::BACKOFF_RESET_AFTER;
        if let (true, Err(e)) = (failed_full_sync, &result) {
            shared.repl.link.lock().last_full_sync_failure = e.to_string();
        }
        match result {
            Ok(reason) => tracing::info!(reason, "link to upstream closed"),
            Err(e) => {
                tracing::warn!(error = %e, "link to upstream failed")
            }
        }
        let delay = if failed_full_sync {
            let delay = backoff.after_failed_full_sync(rand::random_range(0.5..1.5));
            tracing::warn!(
                retry_in_ms = delay.as_millis() as u64,
                "full sync failed: backing off before the next one"
            );
            delay
        } else {
            backoff.next_delay(started.elapsed(), rand::random_range(0.5..1.0))
        };
        tokio::time::sleep(delay).await;
    }
}

async fn resolve(host: &str, port: u16, ipv4: bool) -> Result<SocketAddr, ReplicaError> {
    let target = format!("{host}:{port}");
    let addrs = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| ReplicaError::Resolve(format!("{target}: {e}")))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == ipv4)
        .or(addrs.first())
        .copied()
        .ok_or(ReplicaError::Resolve(target))
}

async fn session(shared: &Arc<Shared>, upstream: &Upstream) -> Result<&'static str, ReplicaError> {
    let endpoint = shared
        .repl
        .endpoint
        .lock()
        .clone()
        .ok_or(ReplicaError::NoEndpoint)?;
    let local_v4 = endpoint.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    // Pointed at the upstream's client port (as Sentinel does), the link
    // goes to the replication endpoint it names.
    shared.repl.link.lock().state = LinkState::Connecting;
    let masterauth = shared.settings.read().masterauth.clone();
    let found = match discover(&upstream.host, upstream.port, &masterauth).await {
        // Something else on that TCP port that does not answer RESP: the
        // port may still be the replication endpoint (UDP).
        Err(DiscoverError::Failed { addr, reason }) => {
            tracing::debug!(%addr, %reason, "no RESP answer there; dialling it as the replication port");
            Endpoint::Direct
        }
        other => other?,
    };
    let repl_port = match found {
        Endpoint::ClientPort { repl_port } => {
            let mut link = shared.repl.link.lock();
            link.upstream_tcp_port = Some(upstream.port);
            link.upstream_repl_port = Some(repl_port);
            repl_port
        }
        Endpoint::Direct => {
            // Nothing on TCP there now; if that port was the upstream's
            // client port before (it is restarting, say), its replication
            // port is still the one it named.
            let link = shared.repl.link.lock();
            match (link.upstream_tcp_port, link.upstream_repl_port) {
                (Some(tcp), Some(repl)) if tcp == upstream.port => repl,
                _ => upstream.port,
            }
        }
    };
    let addr = resolve(&upstream.host, repl_port, local_v4).await?;
    // A rewind that failed once is not offered again to this upstream:
    // the next answer is a full sync.
    let rewind_from = if shared.repl.link.lock().rewind_failed {
        None
    } else {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || super::rewind::rewind_point(&shared))
            .await
            .ok()
            .flatten()
    };
    let (server_name, hello) =
        {
            let s = shared.settings.read();
            let name = if s.repl.upstream_name.is_empty() {
                upstream.host.clone()
            } else {
                s.repl.upstream_name.clone()
            };
            let position = shared.data.lock().repl.position();
            let (replid, offset) = (position.replid, position.offset);
            let repl_addr = format!(
                "{}:{}",
                s.repl_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default(),
                shared.repl.port.load(Ordering::Relaxed)
            );
            let hello =
                Hello {
                    version: protocol::PROTOCOL_VERSION,
                    node: s.node.name.clone(),
                    region: s.node.region.clone(),
                    tcp_port: shared.tcp_port.load(Ordering::Relaxed),
                    repl_addr,
                    replid,
                    offset,
                    resume: shared.repl.incoming.lock().as_ref().map(|i| {
                        protocol::SnapshotResume {
                            id: i.id.clone(),
                            at: i.received,
                        }
                    }),
                    epoch: shared.repl.epoch(),
                    rewind_from,
                };
            (name, hello)
        };
    tracing::Span::current().record("replid", hello.replid.as_str());
    let connecting = endpoint.connect(addr, &server_name)?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| LinkError::Timeout("connect"))??;
    let result = run_session(shared, &conn, hello).await;
    conn.close(0u32.into(), b"closed");
    result
}

async fn run_session(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    hello: Hello,
) -> Result<&'static str, ReplicaError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let asked = hello.offset;
    let our_replid = hello.replid.clone();
    send.write_all(&protocol::encode(&ReplicaMessage::Hello(hello)))
        .await?;
    let mut reader = MessageReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    shared.repl.link.lock().state = LinkState::Sync;
    let first = tokio::time::timeout(
        Duration::from_secs(60),
        read_message::<PrimaryMessage>(&mut recv, &mut reader, &mut buf),
    )
    .await
    .map_err(|_| LinkError::Timeout("handshake"))?
    .map_err(ReplicaError::Link)?;
    let start = match first {
        None => return Ok("upstream closed during the handshake"),
        Some(PrimaryMessage::Continue {
            replid,
            offset,
            epoch,
            tcp_port,
        }) => {
            check_epoch(shared, epoch)?;
            learn_client_port(shared, tcp_port);
            if offset != asked {
                return Err(HandshakeError::WrongOffset { offset, asked }.into());
            }
            let mut data = shared.data.lock();
            if replid != our_replid {
                // Continuing the previous history of a promoted node: adopt
                // its new id, keep ours as the secondary one.
                data.repl.adopt_replid(replid, offset);
            }
            drop(data);
            shared.repl.link.lock().partial_syncs += 1;
            tracing::info!(offset, "partial resync");
            offset
        }
        Some(PrimaryMessage::FullResync {
            replid,
            offset,
            snapshot_id,
            snapshot_bytes,
            file_crc32,
            resume_at,
            epoch,
            tcp_port,
            reason,
        }) => {
            check_epoch(shared, epoch)?;
            learn_client_port(shared, tcp_port);
            tracing::warn!(%reason, offset, asked, "the upstream answers with a full resync");
            shared.repl.link.lock().last_full_sync_reason = reason;
            let incoming = IncomingSnapshot {
                id: snapshot_id,
                replid,
                offset,
                size: snapshot_bytes,
                crc32: file_crc32,
                received: resume_at,
                path: PathBuf::new(),
            };
            receive_snapshot(shared, &mut recv, &mut reader, &mut buf, incoming).await?;
            offset
        }
        Some(PrimaryMessage::Refused { reason }) => {
            return Err(HandshakeError::Refused(reason).into())
        }
        Some(PrimaryMessage::Rewind {
            to,
            epoch,
            tcp_port,
        }) => {
            check_epoch(shared, epoch)?;
            learn_client_port(shared, tcp_port);
            let _ = send.finish();
            rewind_to(shared, to).await?;
            return Ok("rewound to the fork point; resuming");
        }
        Some(other) => return Err(HandshakeError::Unexpected(format!("{other:?}")).into()),
    };
    shared.repl.set_link_up(true);
    {
        let mut link = shared.repl.link.lock();
        link.state = LinkState::Connected;
        link.sync_in_progress = false;
        link.last_io = Some(Instant::now());
        link.last_error.clear();
        link.up_since_unix_ms = unix_ms();
        link.rtt_ms = conn.rtt().as_millis() as u64;
    }
    let idle_timeout = Duration::from_millis(shared.settings.read().repl.idle_timeout_ms);
    let mut link = Link::new(start, shared.repl.epoch(), idle_timeout, Instant::now());
    let mut counted = ReassemblyStats::default();
    let mut session = (shared.applier)(conn.remote_address());
    // Resume in the database the stream is in at our offset.
    session.set_db(shared.data.lock().repl.end_db);
    let mut durable = shared.log.watch_durable();
    let counters = &shared.repl.counters;
    loop {
        let wake_at = link.poll_timeout();
        tokio::select! {
            // WAITAOF on the primary counts our fsyncs: report them.
            changed = durable.changed() => {
                if changed.is_ok() {
                    link.handle_fsynced(fsynced_offset(shared));
                }
            }
            read = recv.read(&mut buf) => {
                let Some(n) = read.map_err(LinkError::from)? else { return Ok("upstream closed the stream") };
                reader.handle_bytes(&buf[..n]);
                counters.received_wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                shared.repl.link.lock().last_io = Some(Instant::now());
            }
            datagram = conn.read_datagram() => {
                let datagram = datagram?;
                counters.datagram_received_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                if let Err(e) = link.handle_datagram(Instant::now(), &datagram) {
                    let rejected = link.reassembly().rejected;
                    if rejected.is_power_of_two() {
                        tracing::warn!(reason = %e, rejected, "datagram copy discarded (the stream carries the batch)");
                    }
                }
                apply_ready(shared, &mut *session, &mut link)?;
            }
            _ = tokio::time::sleep_until(wake_at.into()) => {}
        }
        while let Some(message) = reader.poll_message::<PrimaryMessage>()? {
            let ping = matches!(message, PrimaryMessage::Ping { .. });
            link.handle_message(Instant::now(), message)?;
            apply_ready(shared, &mut *session, &mut link)?;
            if ping {
                let mut status = shared.repl.link.lock();
                status.upstream_offset = link.upstream_offset();
                status.lag_ms = link.lag_ms(unix_ms());
                status.rtt_ms = conn.rtt().as_millis() as u64;
            }
        }
        while let Some(event) = link.poll_event() {
            match event {
                LinkEvent::AdoptEpoch(epoch) => {
                    let dir = shared.settings.read().dir.clone();
                    shared.repl.observe_epoch(epoch, &dir);
                }
                LinkEvent::TakeOver { epoch, offset } => {
                    take_over(shared, epoch, offset)?;
                    let ack = ReplicaMessage::Ack {
                        offset,
                        fsynced: fsynced_offset(shared),
                    };
                    let _ = send.write_all(&protocol::encode(&ack)).await;
                    let _ = send.finish();
                    return Ok("took over as primary (planned failover)");
                }
            }
        }
        count_reassembly(shared, link.reassembly(), &mut counted);
        link.poll_idle(Instant::now())?;
        if reader.buffered() == 0 {
            if let Some((offset, fsynced)) = link.poll_ack(Instant::now()) {
                send.write_all(&protocol::encode(&ReplicaMessage::Ack { offset, fsynced }))
                    .await?;
            }
        }
    }
}

/// Rebuilds the data at the fork point the upstream named.
async fn rewind_to(shared: &Arc<Shared>, to: u64) -> Result<(), ReplicaError> {
    let asked = shared.data.lock().repl.offset();
    tracing::warn!(
        fork = to,
        offset = asked,
        "this node went on past the fork of the upstream's history: rewinding to the fork from its snapshot and log"
    );
    let started = Instant::now();
    let task = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || super::rewind::rewind(&shared, to))
    };
    let rewound = match task
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(rewound) => rewound,
        Err(e) => {
            shared.repl.link.lock().rewind_failed = true;
            tracing::error!(error = %e, "rewind failed: asking for a full sync instead");
            return Err(ReplicaError::Rewind(e));
        }
    };
    let aside = rewound
        .aside
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    tracing::error!(
        fork = to,
        from_snapshot = rewound.from_snapshot,
        commands = rewound.diverged_commands,
        bytes = rewound.diverged_bytes,
        set_aside = %aside,
        ms = started.elapsed().as_millis() as u64,
        "REWOUND: the writes this node took after the fork never reached the new primary; they are no longer applied and are kept in the file named"
    );
    let mut link = shared.repl.link.lock();
    link.rewinds += 1;
    link.last_rewind = format!(
        "to={to} from={} commands={} bytes={} aside={aside}",
        rewound.from_snapshot, rewound.diverged_commands, rewound.diverged_bytes
    );
    Ok(())
}

/// Records the upstream's client port from its handshake (INFO's
/// `master_port`, what Sentinel compares with its view).
fn learn_client_port(shared: &Shared, tcp_port: u16) {
    if tcp_port != 0 {
        shared.repl.link.lock().upstream_tcp_port = Some(tcp_port);
    }
}

/// Planned failover: promotes this replica once it has applied the stream
/// up to the handover offset (checked again under the dataset lock).
fn take_over(shared: &Shared, epoch: Epoch, offset: u64) -> Result<(), LinkFailure> {
    let mut guard = shared.data.lock();
    let data = &mut *guard;
    let applied = data.repl.offset();
    if applied != offset {
        return Err(LinkFailure::HandoverMismatch { offset, applied });
    }
    role::promote(shared, &mut data.keyspace, &mut data.repl, Some(epoch));
    Ok(())
}

/// Applies the units the link has in order (from either copy); the link
/// learns the node's new offset.
fn apply_ready(
    shared: &Arc<Shared>,
    session: &mut dyn StreamApplier,
    link: &mut Link,
) -> Result<(), ReplicaError> {
    // While this node's own log cannot be written (full disk), applying
    // more would only pile the stream up in memory: the link is dropped
    // and retried, resuming from what was applied once writes succeed.
    if shared.log.is_failing() {
        return Err(ReplicaError::LogFailing);
    }
    let mut applied = None;
    while let Some(units) = link.poll_units()? {
        shared
            .repl
            .counters
            .received_raw_bytes
            .fetch_add(units.raw.len() as u64, Ordering::Relaxed);
        let (raw, offset) = apply_units(shared, session, units);
        applied = offset.or(applied);
        link.recycle(raw);
    }
    if let Some(offset) = applied {
        link.handle_applied(offset)?;
    }
    Ok(())
}

/// Adds the reassembly counters gained since `counted` to the node's.
fn count_reassembly(shared: &Shared, now: ReassemblyStats, counted: &mut ReassemblyStats) {
    let c = &shared.repl.counters;
    c.batches_via_stream
        .fetch_add(now.from_stream - counted.from_stream, Ordering::Relaxed);
    c.batches_via_datagram
        .fetch_add(now.from_datagram - counted.from_datagram, Ordering::Relaxed);
    c.batch_copies_discarded
        .fetch_add(now.duplicates - counted.duplicates, Ordering::Relaxed);
    c.datagrams_rejected
        .fetch_add(now.rejected - counted.rejected, Ordering::Relaxed);
    c.datagrams_recovered
        .fetch_add(now.recovered - counted.recovered, Ordering::Relaxed);
    *counted = now;
}

/// Checks the upstream's epoch in its handshake reply: refuses an older
/// one (it has been replaced by a promotion this node knows about),
/// adopts a newer one.
fn check_epoch(shared: &Shared, upstream_epoch: Epoch) -> Result<(), LinkFailure> {
    if let Some(epoch) = receiver::epoch_decision(shared.repl.epoch(), upstream_epoch)? {
        let dir = shared.settings.read().dir.clone();
        shared.repl.observe_epoch(epoch, &dir);
    }
    Ok(())
}

/// What this replica reports as fsynced: its log's durable offset when the
/// log is its write-ahead log, else nothing.
fn fsynced_offset(shared: &Shared) -> u64 {
    if shared.settings.read().appendonly {
        shared.log.durable()
    } else {
        0
    }
}

/// Applies complete units under the dataset lock, forwarding their bytes
/// into this node's own log (for sub-replicas, later promotion and crash
/// recovery), then hands them to the OS outside the lock. Hands back the
/// units' byte buffer for reuse and the node's offset after them (`None`
/// when there was nothing to apply).
pub fn apply_units(
    shared: &Arc<Shared>,
    session: &mut dyn StreamApplier,
    units: Units,
) -> (Vec<u8>, Option<u64>) {
    if units.units.is_empty() {
        return (units.raw, None);
    }
    let offset = {
        let mut guard = shared.data.lock();
        session.apply(shared, &mut guard, &units);
        guard.repl.append_raw(&units.raw);
        guard.repl.end_db = session.db();
        guard.repl.offset()
    };
    if let Err(e) = shared.log.write_pending() {
        tracing::debug!(error = %e, "log write failed; the log thread retries");
    }
    // Sub-replicas get what the log has handed to the OS.
    shared.repl.stream_ready.notify_waiters();
    (units.raw, Some(offset))
}

/// Applies units read back from this node's own log at start-up (their
/// bytes are in the log already).
pub fn apply_replayed(shared: &Shared, session: &mut dyn StreamApplier, units: &Units) {
    if units.units.is_empty() {
        return;
    }
    let mut guard = shared.data.lock();
    session.apply(shared, &mut guard, units);
}

fn io_error<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> TransferError + 'a {
    move |source| TransferError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Receives a snapshot file (from its start, or from where an earlier
/// attempt stopped), verifies it whole, loads it and swaps it in.
async fn receive_snapshot(
    shared: &Arc<Shared>,
    recv: &mut quinn::RecvStream,
    reader: &mut MessageReader,
    buf: &mut [u8],
    mut incoming: IncomingSnapshot,
) -> Result<(), ReplicaError> {
    use std::io::Write;
    if incoming.size > MAX_SNAPSHOT_BYTES {
        return Err(TransferError::TooLarge {
            size: incoming.size,
            limit: MAX_SNAPSHOT_BYTES,
        }
        .into());
    }
    let dir = shared.settings.read().dir.clone();
    incoming.path = crate::replication::fullsync::part_path(&dir);
    let resuming = incoming.received > 0;
    if resuming {
        let previous = shared.repl.incoming.lock().clone();
        let matches = previous.as_ref().is_some_and(|p| {
            p.id == incoming.id && p.received == incoming.received && p.size == incoming.size
        });
        if !matches {
            *shared.repl.incoming.lock() = None;
            crate::replication::fullsync::discard_incoming(&dir);
            return Err(TransferError::UnknownTransfer.into());
        }
        shared.repl.link.lock().snapshot_resumes += 1;
        tracing::info!(id = %incoming.id, at = incoming.received, size = incoming.size, "full resync: resuming snapshot transfer");
    } else {
        tracing::info!(id = %incoming.id, offset = incoming.offset, bytes = incoming.size, "full resync: receiving snapshot");
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!resuming)
        .open(&incoming.path)
        .map_err(io_error("opening", &incoming.path))?;
    file.set_len(incoming.received)
        .map_err(io_error("truncating", &incoming.path))?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(incoming.received))
        .map_err(io_error("seeking in", &incoming.path))?;
    // A restart mid-transfer resumes it too.
    crate::replication::fullsync::save_incoming(&dir, &incoming)
        .map_err(io_error("recording the snapshot transfer in", &dir))?;
    *shared.repl.incoming.lock() = Some(incoming.clone());
    shared.repl.link.lock().sync_in_progress = true;
    let started = Instant::now();
    while incoming.received < incoming.size {
        match read_message::<PrimaryMessage>(recv, reader, buf)
            .await
            .map_err(ReplicaError::Link)?
        {
            Some(PrimaryMessage::SnapshotChunk { at, crc32, data }) => {
                if at != incoming.received
                    || crc32fast::hash(&data) != crc32
                    || incoming.received + data.len() as u64 > incoming.size
                {
                    // Not written: the reconnect asks for this chunk again.
                    return Err(TransferError::BadChunk(at).into());
                }
                file.write_all(&data)
                    .map_err(io_error("writing the snapshot to", &incoming.path))?;
                incoming.received += data.len() as u64;
                if let Some(i) = shared.repl.incoming.lock().as_mut() {
                    i.received = incoming.received;
                }
            }
            Some(other) => return Err(TransferError::Unexpected(format!("{other:?}")).into()),
            None => return Err(TransferError::Closed.into()),
        }
    }
    file.sync_all()
        .map_err(io_error("syncing", &incoming.path))?;
    drop(file);
    *shared.repl.incoming.lock() = None;
    let path = incoming.path.clone();
    shared.repl.loading.store(true, Ordering::Release);
    let loaded = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let crc = crate::replication::fullsync::file_crc32(&path).map_err(|e| e.to_string())?;
        if crc != incoming.crc32 {
            return Err(format!(
                "whole-file checksum mismatch ({crc:08x} != {:08x})",
                incoming.crc32
            ));
        }
        crate::persist::load_from_file(&path).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| TransferError::Refused(format!("loading task failed: {e}")).into())
    .and_then(|r| r.map_err(|e| TransferError::Refused(e).into()));
    let result = match loaded {
        Ok((header, dbs, keys))
            if incoming.replid == *header.repl_id.as_str()
                && header.repl_offset == incoming.offset =>
        {
            // The received file becomes this node's snapshot: crash
            // recovery replays the log from its offset.
            let (snapshot_path, appendonly) = {
                let s = shared.settings.read();
                (s.snapshot_path(), s.appendonly)
            };
            let kept = std::fs::rename(&incoming.path, &snapshot_path);
            if let Err(e) = &kept {
                tracing::warn!(error = %e, path = %snapshot_path.display(), "cannot keep the received snapshot; recovery needs the next save");
            }
            let mut data = shared.data.lock();
            crate::persist::install(&mut data.keyspace, dbs);
            data.keyspace.set_delete_expired(false);
            data.repl.reset(
                incoming.replid.clone(),
                incoming.offset,
                header.repl_db as usize,
            );
            shared.log.set_retain_from(if appendonly && kept.is_ok() {
                incoming.offset
            } else {
                u64::MAX
            });
            drop(data);
            if kept.is_ok() {
                shared.persistence.aof.lock().base_size = incoming.size;
            }
            shared.repl.link.lock().full_syncs += 1;
            // Replaces whatever a failed rewind left half rebuilt.
            shared.persistence.loading.store(false, Ordering::Release);
            tracing::info!(
                offset = incoming.offset,
                keys,
                ms = started.elapsed().as_millis() as u64,
                "full resync: snapshot loaded"
            );
            Ok(())
        }
        Ok(_) => Err(TransferError::HeaderMismatch.into()),
        Err(e) => Err(e),
    };
    crate::replication::fullsync::discard_incoming(&dir);
    shared.repl.loading.store(false, Ordering::Release);
    result
}
