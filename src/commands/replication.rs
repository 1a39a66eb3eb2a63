//! Replication administration: REPLICAOF/SLAVEOF, WAIT, ROLE and INFO's
//! replication section, with Redis's field names and replies.

use super::args::*;
use super::blocking::BlockedWait;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::node::Shared;
use crate::node::{role, NodeAction};
use crate::replication::Upstream;
use crate::resp::Frame;
use bytes::Bytes;
use std::fmt::Write;
use std::sync::atomic::Ordering;

const G: &str = "server";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("replicaof", 3, ADMIN | NOSCRIPT | STALE, "Configures a server as replica of another, or promotes it to a master.", "host port", replicaof),
    spec!("slaveof", 3, ADMIN | NOSCRIPT | STALE, "Sets a Redis server as a replica of another, or promotes it to being a master.", "host port", replicaof),
    spec!(
        "waitaof",
        4,
        NOSCRIPT,
        "Blocks until all of the preceding write commands sent by the connection are written to the append-only file of the master and/or replicas.",
        "numlocal numreplicas timeout",
        waitaof
    ),
    spec!("wait", 3, NOSCRIPT, "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.", "numreplicas timeout", wait),
    spec!(
        "failover",
        -1,
        ADMIN | NOSCRIPT | STALE,
        "Starts a coordinated failover from a server to one of its replicas.",
        "[TO host port [FORCE]] [ABORT] [TIMEOUT milliseconds]",
        failover
    ),
    spec!("role", 1, NOSCRIPT | LOADING | STALE | FAST, "Returns the replication role.", "", role),
    spec!("sync", 1, ADMIN | NOSCRIPT | NO_MULTI, "An internal command used in replication.", "", sync),
    spec!("psync", -3, ADMIN | NOSCRIPT | NO_MULTI, "An internal command used in replication.", "replicationid offset", sync),
    spec!("replconf", -1, ADMIN | NOSCRIPT | LOADING | STALE, "An internal command for configuring the replication stream.", "", replconf),
];

/// Where a Redis-protocol replica (SYNC/PSYNC on the client port) starts:
/// a full copy of the data at `offset` (an RDB), or the stream from there.
pub struct FeedStart {
    pub replid: String,
    pub offset: u64,
    /// The stream's history at `offset` (the feed ends when it changes).
    pub history: u64,
    /// The data at `offset`, for a full sync; `None` continues partially.
    pub full: Option<crate::keyspace::Image>,
    /// The database in effect at `offset` (the RDB's `repl-stream-db`).
    pub db: usize,
    /// PSYNC (answered `+FULLRESYNC`/`+CONTINUE`) rather than old SYNC.
    pub psync: bool,
}

/// SYNC / PSYNC: this connection becomes a replica of this node in Redis's
/// protocol (a Redis replica, or a tool reading the stream). The offsets
/// are the log's, so a Redis replica's PSYNC continues partially while the
/// log holds its offset.
fn sync(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let repl = &ctx.node.repl;
    if repl.is_replica() && !repl.link_up() {
        return Err(Frame::error(
            "NOMASTERLINK Can't SYNC while not connected with my master",
        ));
    }
    let psync = args.len() == 3;
    let position = ctx.repl.position();
    let history = ctx.repl.log().history();
    let mut start = FeedStart {
        replid: position.replid.to_string(),
        offset: position.offset,
        history,
        full: None,
        db: position.db,
        psync,
    };
    if psync && args[1].as_ref() != b"?" {
        // Redis replicas ask for the next byte they need, counting from 1.
        let wanted = int(&args[2]).ok().filter(|o| *o > 0).map(|o| o as u64 - 1);
        let replid = crate::replication::ids::ReplId::from(text(&args[1]));
        if let Some(offset) = wanted {
            match ctx.repl.resync(&replid, offset) {
                crate::replication::stream::Resync::Continue { offset } => {
                    start.offset = offset;
                    ctx.session.feed = Some(start);
                    return Ok(Frame::NoReply);
                }
                crate::replication::stream::Resync::Refuse { reason } => {
                    return Err(Frame::error_owned(format!("ERR {reason}")));
                }
                _ => {}
            }
        }
    }
    if !repl.is_replica() {
        ctx.repl.force_select();
    }
    start.full = Some(ctx.keyspace.snapshot());
    ctx.session.feed = Some(start);
    Ok(Frame::NoReply)
}

/// REPLCONF, as a Redis replica sends it before PSYNC (listening-port,
/// capa, ip-address) and while streaming (ACK, which gets no reply).
fn replconf(_ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(ERR_SYNTAX);
    }
    let mut i = 1;
    while i < args.len() {
        let option = &args[i];
        if is(option, "ack") || is(option, "getack") {
            return Ok(Frame::NoReply);
        }
        if ![
            "listening-port",
            "ip-address",
            "capa",
            "rdb-only",
            "rdb-filter-only",
        ]
        .iter()
        .any(|o| is(option, o))
        {
            return Err(Frame::error_owned(format!(
                "ERR Unrecognized REPLCONF option: {}",
                text(option)
            )));
        }
        i += 2;
    }
    Ok(Frame::ok())
}

fn replicaof(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let shared: &Shared = ctx.node;
    if is(&args[1], "no") && is(&args[2], "one") {
        if shared.repl.is_replica() {
            promote(ctx);
        }
        return Ok(Frame::ok());
    }
    // Redis takes any integer here (0 included: the link just fails and
    // the node stays a replica whose link is down).
    let port = int(&args[2])?;
    let port = u16::try_from(port).map_err(|_| Frame::error("ERR Invalid master port"))?;
    let upstream = Upstream {
        host: text(&args[1]),
        port,
    };
    if shared.repl.is_upstream(&upstream.host, upstream.port) {
        return Ok(Frame::simple("OK Already connected to specified master"));
    }
    if shared.repl.endpoint.lock().is_none() {
        let s = shared.settings.read();
        return Err(Frame::error_owned(format!(
            "ERR replication is not available: no certificates for node '{}' in {} (see `quire certs init`)",
            s.node.name,
            s.repl.certs.display()
        )));
    }
    become_replica(ctx, upstream);
    Ok(Frame::ok())
}

fn become_replica(ctx: &mut ExecCtx, upstream: Upstream) {
    let start_link = role::follow(ctx.node, ctx.keyspace, ctx.repl, upstream);
    ctx.actions.push(start_link);
}

/// REPLICAOF NO ONE: the replica becomes a primary with a new history and
/// epoch; the old history stays valid up to here.
fn promote(ctx: &mut ExecCtx) {
    role::promote(ctx.node, ctx.keyspace, ctx.repl, None);
}

/// FAILOVER (Redis 6.2): pause writes, wait until the target replica has
/// everything, tell it to take over, then follow it.
fn failover(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    use crate::replication::failover::FailoverState;
    let (mut to, mut force, mut abort, mut timeout_ms) = (None, false, false, 0i64);
    let mut i = 1;
    while i < args.len() {
        if is(&args[i], "to") && i + 2 < args.len() {
            let port = int(&args[i + 2])
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or(Frame::error("ERR Invalid master port"))?;
            to = Some((text(&args[i + 1]), port as u16));
            i += 3;
        } else if is(&args[i], "force") {
            force = true;
            i += 1;
        } else if is(&args[i], "abort") {
            abort = true;
            i += 1;
        } else if is(&args[i], "timeout") && i + 1 < args.len() {
            timeout_ms = int(&args[i + 1])?;
            if timeout_ms <= 0 {
                return Err(Frame::error("ERR FAILOVER timeout must be greater than 0"));
            }
            i += 2;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let repl = &ctx.node.repl;
    if abort {
        if to.is_some() || force || timeout_ms > 0 {
            return Err(ERR_SYNTAX);
        }
        let mut state = repl.failover.lock();
        return match &*state {
            FailoverState::None => Err(Frame::error("ERR No failover in progress.")),
            FailoverState::WaitingForSync { .. } => {
                *state = FailoverState::None;
                repl.writes_paused.store(false, Ordering::Release);
                Ok(Frame::ok())
            }
            FailoverState::InProgress { .. } => Err(Frame::error(
                "ERR Failover is already handing over and cannot be aborted.",
            )),
        };
    }
    if repl.is_replica() {
        return Err(Frame::error(
            "ERR FAILOVER is not valid when server is a replica.",
        ));
    }
    if force && (to.is_none() || timeout_ms == 0) {
        return Err(Frame::error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        ));
    }
    if *repl.failover.lock() != FailoverState::None {
        return Err(Frame::error("ERR FAILOVER already in progress."));
    }
    let target = {
        let table = repl.replicas.lock();
        let online = table
            .replicas
            .values()
            .filter(|r| r.state == crate::replication::ReplicaState::Online);
        match &to {
            Some((host, port)) => online
                .filter(|r| {
                    (r.addr.ip().to_string() == *host
                        || host == "localhost"
                        || r.repl_addr.starts_with(&format!("{host}:")))
                        && (r.tcp_port == *port || r.repl_addr.ends_with(&format!(":{port}")))
                })
                .map(|r| r.repl_addr.clone())
                .next()
                .ok_or(Frame::error(
                    "ERR FAILOVER target HOST and PORT is not a replica.",
                ))?,
            None => online
                .max_by_key(|r| r.ack_offset)
                .map(|r| r.repl_addr.clone())
                .ok_or(Frame::error("ERR FAILOVER requires connected replicas."))?,
        }
    };
    let deadline_ms = if timeout_ms > 0 {
        ctx.now_ms + timeout_ms
    } else {
        0
    };
    *repl.failover.lock() = FailoverState::WaitingForSync {
        target: target.clone(),
        offset: ctx.repl.offset(),
        deadline_ms,
        force,
    };
    repl.writes_paused.store(true, Ordering::Release);
    tracing::info!(%target, offset = ctx.repl.offset(), "failover started: writes paused");
    ctx.actions.push(NodeAction::DriveFailover);
    Ok(Frame::ok())
}

fn wait(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if ctx.node.repl.is_replica() {
        return Err(Frame::error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated."));
    }
    let numreplicas = int(&args[1])?.max(0) as usize;
    let timeout_ms = int(&args[2])?;
    if timeout_ms < 0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    let target = ctx.repl.offset();
    let client = ctx.session.id();
    let mut table = ctx.node.repl.replicas.lock();
    let acked = table.acked(target);
    if acked >= numreplicas || ctx.session.in_exec {
        return Ok(Frame::Integer(acked as i64));
    }
    let reply = table.add_wait(client, target, numreplicas);
    drop(table);
    let deadline = (timeout_ms > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64));
    ctx.session.blocked = Some(BlockedWait {
        reply,
        deadline,
        timeout_reply: Frame::Integer(acked as i64),
        on_timeout: Some(Box::new(move |shared: &Shared| {
            let mut table = shared.repl.replicas.lock();
            let n = table
                .end_wait(client)
                .unwrap_or_else(|| table.acked(target));
            Frame::Integer(n as i64)
        })),
    });
    Ok(Frame::NoReply)
}

/// WAITAOF (Redis 7.2): until this node's log has fsynced the stream up to
/// here (`numlocal` 1) and `numreplicas` replicas report they have fsynced
/// it in theirs. Replies `[local, replicas]`, as far as they got.
fn waitaof(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if ctx.node.repl.is_replica() {
        return Err(Frame::error("ERR WAITAOF cannot be used with replica instances. Please also note that writes to replicas are just local and are not propagated."));
    }
    let numlocal = int(&args[1])?;
    let numreplicas = int(&args[2])?.max(0) as usize;
    let timeout_ms = int(&args[3])?;
    if timeout_ms < 0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    let numlocal = numlocal > 0;
    if numlocal && !ctx.node.settings.read().appendonly {
        return Err(Frame::error(
            "ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.",
        ));
    }
    let target = ctx.repl.offset();
    let counts = move |node: &Shared| node.aof_acknowledged(target);
    let now = counts(ctx.node);
    if ((now.0 || !numlocal) && now.1 >= numreplicas) || ctx.session.in_exec {
        return Ok(waitaof_reply(now));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    ctx.actions.push(NodeAction::WaitAof {
        target,
        numlocal,
        numreplicas,
        reply: tx,
    });
    let deadline = (timeout_ms > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64));
    ctx.session.blocked = Some(BlockedWait {
        reply: rx,
        deadline,
        timeout_reply: waitaof_reply(now),
        on_timeout: Some(Box::new(move |node: &Shared| waitaof_reply(counts(node)))),
    });
    Ok(Frame::NoReply)
}

/// WAITAOF's reply: `[local fsynced (0|1), replicas that fsynced]`.
pub fn waitaof_reply((local, replicas): (bool, usize)) -> Frame {
    Frame::Array(vec![
        Frame::Integer(local as i64),
        Frame::Integer(replicas as i64),
    ])
}

fn role(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    let shared = ctx.node;
    let offset = ctx.repl.offset() as i64;
    if let Some(up) = shared.repl.upstream() {
        let state = if shared.repl.link_up() {
            "connected"
        } else {
            shared.repl.link.lock().state.as_str()
        };
        return Ok(Frame::Array(vec![
            Frame::bulk("slave"),
            Frame::bulk(up.host),
            Frame::Integer(shared.repl.upstream_client_port().unwrap_or(up.port) as i64),
            Frame::bulk(state),
            Frame::Integer(offset),
        ]));
    }
    let table = shared.repl.replicas.lock();
    let replicas = table
        .replicas
        .values()
        .map(|r| {
            Frame::Array(vec![
                Frame::bulk(r.addr.ip().to_string()),
                Frame::bulk(r.tcp_port.to_string()),
                Frame::bulk(r.ack_offset.to_string()),
            ])
        })
        .collect();
    Ok(Frame::Array(vec![
        Frame::bulk("master"),
        Frame::Integer(offset),
        Frame::Array(replicas),
    ]))
}

/// Refuses writes the replication settings forbid, with Redis's errors:
/// writes on a read-only replica, anything but stale-safe commands while a
/// replica's link is down and stale data is not to be served, and writes
/// without enough healthy replicas (`min-replicas-to-write`).
pub(super) fn check_write_allowed(ctx: &ExecCtx, spec: &CommandSpec) -> Result<(), Frame> {
    let repl = &ctx.node.repl;
    if ctx.node.persistence.loading.load(Ordering::Acquire)
        && (!spec.has(LOADING) || spec.has(WRITE) || spec.name == "publish")
    {
        return Err(Frame::error(
            "LOADING Redis is loading the dataset in memory",
        ));
    }
    if spec.has(WRITE) && ctx.node.log.is_failing() {
        let error = ctx.node.log.write_error().unwrap_or_default();
        let error = error
            .rfind(" (os error")
            .map(|i| &error[..i])
            .unwrap_or(&error);
        return Err(Frame::error_owned(format!(
            "MISCONF Errors writing to the AOF file: {error}"
        )));
    }
    if repl.is_replica() {
        let s = ctx.node.settings.read();
        if spec.has(WRITE) && s.replica_read_only {
            return Err(Frame::error(
                "READONLY You can't write against a read only replica.",
            ));
        }
        if !s.replica_serve_stale_data && repl.loading.load(Ordering::Acquire) && !spec.has(STALE) {
            return Err(Frame::error(
                "LOADING Redis is loading the dataset in memory",
            ));
        }
        if !s.replica_serve_stale_data && !repl.link_up() && !spec.has(STALE) {
            return Err(Frame::error(
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ));
        }
        return Ok(());
    }
    if spec.has(WRITE) && repl.awaiting_fence_check.load(Ordering::Acquire) {
        return Err(Frame::error(
            "TRYAGAIN Checking the replication peers for a newer primary before accepting writes",
        ));
    }
    if spec.has(WRITE) && repl.writes_paused.load(Ordering::Acquire) {
        return Err(Frame::error(
            "TRYAGAIN Failover in progress: writes are paused until the new primary takes over",
        ));
    }
    if spec.has(WRITE) && !enough_good_replicas(ctx) {
        return Err(Frame::error(
            "NOREPLICAS Not enough good replicas to write.",
        ));
    }
    Ok(())
}

/// Whether `min-replicas-to-write` is met (always, when it is 0).
pub(super) fn enough_good_replicas(ctx: &ExecCtx) -> bool {
    let repl = &ctx.node.repl;
    let min = repl.min_replicas.load(Ordering::Acquire);
    min == 0
        || repl
            .replicas
            .lock()
            .good(repl.min_replicas_max_lag.load(Ordering::Acquire))
            >= min as usize
}

/// INFO's `replication` section.
pub fn info_section(ctx: &ExecCtx, out: &mut String) {
    let shared = ctx.node;
    let repl = &shared.repl;
    let log = &*ctx.repl;
    let offset = log.offset();
    let settings = shared.settings.read();
    out.push_str("# Replication\r\n");
    match repl.upstream() {
        Some(up) => {
            let link = repl.link.lock().clone();
            let _ = write!(
                out,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{offset}\r\nslave_repl_offset:{offset}\r\nslave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:1\r\n",
                up.host,
                link.upstream_tcp_port.unwrap_or(up.port),
                if repl.link_up() { "up" } else { "down" },
                link.last_io.map(|t| t.elapsed().as_secs() as i64).unwrap_or(-1),
                link.sync_in_progress as u8,
                settings.replica_priority,
                settings.replica_read_only as u8,
            );
            if let Some(incoming) = repl.incoming.lock().as_ref() {
                let _ = write!(
                    out,
                    "master_sync_total_bytes:{}\r\nmaster_sync_read_bytes:{}\r\nmaster_sync_left_bytes:{}\r\n",
                    incoming.size,
                    incoming.received,
                    incoming.size - incoming.received
                );
            }
            if let Some(since) = link.down_since {
                let _ = write!(
                    out,
                    "master_link_down_since_seconds:{}\r\n",
                    since.elapsed().as_secs()
                );
            }
            let _ = write!(
                out,
                "quire_link_state:{}\r\nquire_link_rtt_ms:{}\r\nquire_link_lag_ms:{}\r\nquire_upstream_offset:{}\r\nquire_lag_bytes:{}\r\nquire_full_syncs:{}\r\nquire_partial_syncs:{}\r\nquire_snapshot_resumes:{}\r\nquire_link_failures:{}\r\nquire_loading:{}\r\nquire_rewinds:{}\r\nquire_last_rewind:{}\r\nquire_last_full_sync_reason:{}\r\nquire_last_full_sync_failure:{}\r\nquire_link_up_since_ms:{}\r\nquire_link_last_error:{}\r\n",
                link.state,
                link.rtt_ms,
                link.lag_ms,
                link.upstream_offset,
                link.upstream_offset.saturating_sub(offset),
                link.full_syncs,
                link.partial_syncs,
                link.snapshot_resumes,
                link.failures,
                repl.loading.load(Ordering::Relaxed) as u8,
                link.rewinds,
                link.last_rewind,
                link.last_full_sync_reason.replace(['\r', '\n'], " "),
                link.last_full_sync_failure.replace(['\r', '\n'], " "),
                link.up_since_unix_ms,
                link.last_error.replace(['\r', '\n'], " "),
            );
        }
        None => out.push_str("role:master\r\n"),
    }
    let table = repl.replicas.lock();
    let _ = write!(out, "connected_slaves:{}\r\n", table.replicas.len());
    if settings.min_replicas_to_write > 0 {
        let _ = write!(
            out,
            "min_slaves_good_slaves:{}\r\n",
            table.good(settings.min_replicas_max_lag)
        );
    }
    for (i, r) in table.replicas.values().enumerate() {
        let _ = write!(
            out,
            "slave{i}:ip={},port={},state={},offset={},lag={},fsynced={},node={},region={},rtt_ms={},lag_bytes={},lag_ms={},datagrams={},loss_pct={:.2},compression={},compress_mode={}\r\n",
            r.addr.ip(),
            r.tcp_port,
            r.state,
            r.ack_offset,
            r.last_ack.elapsed().as_secs(),
            r.fsynced_offset,
            r.node,
            r.region,
            r.rtt_ms,
            offset.saturating_sub(r.ack_offset),
            repl.lag_ms_at(r.ack_offset, offset),
            if r.datagrams_active { "on" } else { "off" },
            r.loss_rate * 100.0,
            if r.shared_compression { "shared" } else { "own" },
            if r.stored { "stored" } else { "zstd" },
        );
    }
    drop(table);
    let backlog = log.log();
    let (first, histlen, memory, disk, segments) = (
        backlog.start_offset(),
        backlog.len(),
        backlog.memory_len(),
        backlog.disk_bytes(),
        backlog.segments(),
    );
    let covered = log.outage_seconds_covered();
    let _ = write!(
        out,
        "master_failover_state:{}\r\nquire_epoch:{}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{offset}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\nquire_backlog_last_byte_offset:{}\r\nquire_backlog_memory_bytes:{memory}\r\nquire_backlog_disk_bytes:{disk}\r\nquire_backlog_segments:{segments}\r\nquire_write_rate_bytes_per_sec:{:.0}\r\nquire_write_rate_peak_bytes_per_sec:{:.0}\r\nquire_backlog_outage_seconds_covered:{}\r\n",
        repl.failover.lock().name(),
        repl.epoch(),
        log.replid,
        log.replid2,
        log.second_offset.map(|o| o as i64).unwrap_or(-1),
        1,
        log.capacity(),
        offset.saturating_sub(1).max(first),
        log.sizer.current_rate(),
        log.sizer.peak_rate(),
        if covered.is_finite() { format!("{covered:.0}") } else { "inf".to_string() },
    );
    if let Some(f) = repl.fenced.lock().as_ref() {
        let (from, to) = f
            .divergence
            .as_ref()
            .map(|d| (d.from as i64, d.to as i64))
            .unwrap_or((-1, -1));
        let _ = write!(
            out,
            "quire_fenced:1\r\nquire_fenced_old_epoch:{}\r\nquire_fenced_new_epoch:{}\r\nquire_fenced_follow:{}\r\nquire_fenced_writes:{}\r\nquire_fenced_from_offset:{from}\r\nquire_fenced_to_offset:{to}\r\n",
            f.old_epoch, f.new_epoch, f.follow, f.commands
        );
    } else {
        out.push_str("quire_fenced:0\r\n");
    }
    let c = &repl.counters;
    let sent_wire = c.sent_wire_bytes.load(Ordering::Relaxed);
    let sent_raw = c.sent_raw_bytes.load(Ordering::Relaxed);
    let recv_wire = c.received_wire_bytes.load(Ordering::Relaxed);
    let recv_raw = c.received_raw_bytes.load(Ordering::Relaxed);
    let ratio = |raw: u64, wire: u64| {
        if wire == 0 {
            0.0
        } else {
            raw as f64 / wire as f64
        }
    };
    let _ = write!(
        out,
        "quire_node:{}\r\nquire_region:{}\r\nquire_repl_port:{}\r\nquire_sent_wire_bytes:{sent_wire}\r\nquire_sent_stream_bytes:{sent_raw}\r\nquire_sent_compression_ratio:{:.2}\r\nquire_received_wire_bytes:{recv_wire}\r\nquire_received_stream_bytes:{recv_raw}\r\nquire_received_compression_ratio:{:.2}\r\nquire_rejected_links:{}\r\nquire_unauthorized_links:{}\r\nquire_allowed_replicas:{}\r\nquire_resyncs_refused:{}\r\nquire_snapshot_bytes_sent:{}\r\nquire_snapshot_last_bytes:{}\r\nquire_snapshot_resumes_served:{}\r\nquire_snapshot_files:{}\r\nquire_snapshots_made:{}\r\nquire_snapshot_overruns:{}\r\n",
        settings.node.name,
        settings.node.region,
        repl.port.load(Ordering::Relaxed),
        ratio(sent_raw, sent_wire),
        ratio(recv_raw, recv_wire),
        c.rejected_links.load(Ordering::Relaxed),
        c.unauthorized_links.load(Ordering::Relaxed),
        allowed_replicas(&settings.repl.allowed_replicas),
        c.resyncs_refused.load(Ordering::Relaxed),
        c.snapshot_bytes_sent.load(Ordering::Relaxed),
        c.last_snapshot_bytes.load(Ordering::Relaxed),
        c.snapshot_resumes_served.load(Ordering::Relaxed),
        repl.snapshots.count(),
        c.snapshots_made.load(Ordering::Relaxed),
        c.snapshot_overruns.load(Ordering::Relaxed),
    );
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let dg_sent = load(&c.datagram_sent_bytes);
    let _ = write!(
        out,
        "quire_datagrams:{}\r\nquire_datagram_sent_bytes:{dg_sent}\r\nquire_datagram_sent_batches:{}\r\nquire_datagram_dropped_batches:{}\r\nquire_datagram_overhead:{:.3}\r\nquire_datagram_received_bytes:{}\r\nquire_batches_via_stream:{}\r\nquire_batches_via_datagram:{}\r\nquire_batch_copies_discarded:{}\r\nquire_datagrams_rejected:{}\r\nquire_datagrams_recovered:{}\r\n",
        settings.repl.datagrams,
        load(&c.datagram_sent_batches),
        load(&c.datagram_dropped_batches),
        if sent_wire == 0 { 0.0 } else { dg_sent as f64 / sent_wire as f64 },
        load(&c.datagram_received_bytes),
        load(&c.batches_via_stream),
        load(&c.batches_via_datagram),
        load(&c.batch_copies_discarded),
        load(&c.datagrams_rejected),
        load(&c.datagrams_recovered),
    );
    // Compression shared between the links at the live tail.
    let _ = write!(
        out,
        "quire_batches_sent:{}\r\nquire_batches_compressed:{}\r\nquire_batches_stored:{}\r\n",
        load(&c.batches_sent),
        load(&c.batches_compressed),
        load(&c.batches_stored)
    );
}

/// INFO's view of `repl.allowed_replicas`.
fn allowed_replicas(list: &[String]) -> String {
    if list.is_empty() {
        "open".into()
    } else {
        list.join(",")
    }
}
