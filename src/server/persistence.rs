//! Durability's edge: the log thread that writes and fsyncs the log, and
//! crash recovery at start-up (the newest snapshot, then the log replayed
//! from its offset, unit by unit). Snapshot operations and the facts INFO
//! reports are node state (`node::persistence`).
//!
//! A write is in the log's memory when its command returns (under the
//! dataset lock); its client task hands the bytes to the OS before the
//! reply goes out (`appendfsync everysec|no`), or waits until the log
//! thread has fsynced them (`always`, one fsync for every write that
//! arrived meanwhile). A process crash therefore never loses an
//! acknowledged write; a power loss loses at most the last second under
//! `everysec`.

use crate::config::FsyncPolicy;
use crate::node::{unix_ms, Shared};
use crate::persist::{self, SnapshotError};
use crate::replication::stream::{LostHistory, Meta, ReplId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::node::persistence::*;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot load the snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    Log(#[from] crate::replication::backlog::LogError),
    #[error("log is corrupt after offset {offset} ({file}, byte {position}): {reason}; the file is left untouched (`quire log check --dir DIR --fix` cuts the log there, losing what follows; or move the log directory aside to start from the snapshot alone)")]
    Corrupt {
        offset: u64,
        file: String,
        position: u64,
        reason: String,
    },
    #[error("log ends inside a record at offset {offset} ({file}); aof-load-truncated is off")]
    Truncated { offset: u64, file: String },
    #[error("log unreadable at offset {0}")]
    Unreadable(u64),
}

/// What start-up found to replay: the log bytes `[from, to)` on top of what
/// is loaded, continuing the history `meta`.
pub struct Replay {
    pub from: u64,
    pub to: u64,
    pub meta: Meta,
    pub db: usize,
}

/// The history and offset this node had handed to the OS, saved beside
/// (not inside) the log, so a node whose log is lost or cut short knows it
/// came back behind.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AcknowledgedState {
    pub replid: ReplId,
    pub offset: u64,
    pub lost: Option<LostHistory>,
}

const STATE_FILE: &str = "replication-state.json";

fn read_state(dir: &std::path::Path) -> Option<AcknowledgedState> {
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

fn write_state(dir: &std::path::Path, state: &AcknowledgedState) {
    if let Ok(bytes) = serde_json::to_vec(state) {
        if let Err(e) = persist::write_atomically(&dir.join(STATE_FILE), &bytes) {
            tracing::warn!(error = %e, "cannot record the acknowledged log position");
        }
    }
}

/// Start-up, first part (before the port opens): loads the newest snapshot
/// and opens the log; decides what of the log to replay. A damaged
/// snapshot or a gap between log segments refuses the start.
pub fn load_at_startup(shared: &Shared) -> Result<Option<Replay>, RecoveryError> {
    let (path, appendonly) = {
        let s = shared.settings.read();
        (s.snapshot_path(), s.appendonly)
    };
    let started = Instant::now();
    let snapshot = if path.exists() {
        Some(persist::load_from_file(&path)?)
    } else {
        None
    };
    let mut guard = shared.data.lock();
    let data = &mut *guard;
    let mut header = None;
    if let Some((h, dbs, keys)) = snapshot {
        persist::install(&mut data.keyspace, dbs);
        data.keyspace.dirty = 0;
        shared.persistence.aof.lock().base_size =
            std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::info!(path = %path.display(), keys, ms = started.elapsed().as_millis() as u64, "DB loaded from disk");
        header = Some(h);
    }
    let log = shared.log.clone();
    let log_dir = shared
        .settings
        .read()
        .dir
        .join("backlog")
        .display()
        .to_string();
    let log_io = |source| {
        RecoveryError::Log(crate::replication::backlog::LogError::Io {
            dir: log_dir.clone(),
            source,
        })
    };
    let range = log.open_existing()?;
    let meta = data.repl.saved_meta();
    let snapshot_at = header.as_ref().filter(|h| !h.repl_id.is_empty()).map(|h| {
        (
            ReplId::from(h.repl_id.as_str()),
            h.repl_offset,
            h.repl_db as usize,
        )
    });
    let continues = |m: &Meta, replid: &ReplId, offset: u64| {
        m.replid == *replid
            || (m.replid2 == *replid && m.second_offset.is_some_and(|s| offset <= s))
    };
    let plan = match (&snapshot_at, range, meta) {
        (Some((replid, offset, db)), Some((start, end)), Some(meta))
            if continues(&meta, replid, *offset) && (start..=end).contains(offset) =>
        {
            if appendonly {
                log.set_retain_from(*offset);
                Some(Replay {
                    from: *offset,
                    to: end,
                    meta,
                    db: *db,
                })
            } else if meta.replid == *replid {
                // The log only serves partial resyncs: keep it up to the
                // snapshot, which is all the data has.
                log.truncate(*offset).map_err(log_io)?;
                data.repl.resume(meta, *db);
                tracing::info!(
                    start,
                    end = offset,
                    "replication backlog recovered from disk (appendonly no: not replayed)"
                );
                None
            } else {
                data.repl.reset(replid.clone(), *offset, *db);
                None
            }
        }
        (None, Some((start, end)), Some(meta)) if appendonly && meta.empty_at == Some(start) => {
            log.set_retain_from(start);
            Some(Replay {
                from: start,
                to: end,
                meta,
                db: 0,
            })
        }
        (_, range, _) => {
            if let Some((start, end)) = range {
                let aside = log.set_aside(unix_ms()).map_err(log_io)?;
                let aside = aside.map(|p| p.display().to_string()).unwrap_or_default();
                tracing::warn!(start, end, moved_to = %aside, "the log does not continue the snapshot (another history, or a gap after it): starting a new log from the snapshot; the old one is kept aside");
            }
            match &snapshot_at {
                Some((replid, offset, db)) => data.repl.reset(replid.clone(), *offset, *db),
                // No snapshot: a new history from an empty dataset. A
                // snapshot without a replication position: the log
                // starts after it.
                None => data.repl.start_history(0, header.is_none()),
            }
            let retain = snapshot_at.as_ref().map_or(0, |(_, offset, _)| *offset);
            log.set_retain_from(if appendonly { retain } else { u64::MAX });
            None
        }
    };
    // Loading until the node has replayed its log and taken up its role
    // (`Node::run` clears it): clients get -LOADING meanwhile.
    shared.persistence.loading.store(true, Ordering::Release);
    let total = plan.as_ref().map(|p| p.to - p.from).unwrap_or(0);
    *shared.persistence.loading_progress.lock() = Loading {
        started_unix: unix_ms() / 1000,
        total_bytes: total,
        loaded_bytes: 0,
        started: Some(Instant::now()),
    };
    if plan.is_none() {
        drop(guard);
        check_acknowledged(shared);
    }
    Ok(plan)
}

/// Start-up, second part (while clients get `-LOADING`, until `Node::run`
/// has started the node's role): replays the log
/// from the snapshot's offset, one unit (command or MULTI/EXEC) at a time
/// under the dataset lock, as a replica applies its upstream's stream. A
/// torn last unit is cut off (`aof-load-truncated`); anything malformed
/// before refuses the start, naming the file and position.
pub fn replay(shared: &Arc<Shared>, plan: Replay) -> Result<(), RecoveryError> {
    use crate::replication::backlog::LogProblem;
    let log = shared.log.clone();
    let started = Instant::now();
    tracing::info!(
        from = plan.from,
        to = plan.to,
        bytes = plan.to - plan.from,
        "replaying the log"
    );
    let mut session = (shared.applier)(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    session.set_db(plan.db);
    shared.data.lock().keyspace.set_delete_expired(false);
    let mut loaded = 0u64;
    let mut last_report = Instant::now();
    let walk = log
        .walk(plan.from, plan.to, |units| {
            crate::link::replica::apply_replayed(shared, &mut *session, units);
            loaded += units.raw.len() as u64;
            shared.persistence.loading_progress.lock().loaded_bytes = loaded;
            if last_report.elapsed() > Duration::from_secs(2) {
                last_report = Instant::now();
                tracing::info!(loaded, total = plan.to - plan.from, "replaying the log");
            }
        })
        .map_err(|c| RecoveryError::Unreadable(c.requested))?;
    let end = walk.good_end;
    match walk.problem {
        None => {}
        Some(LogProblem::Corrupt {
            file,
            position,
            reason,
        }) => {
            return Err(RecoveryError::Corrupt {
                offset: end,
                file: file.display().to_string(),
                position,
                reason,
            });
        }
        Some(LogProblem::Torn) => {
            let file = log
                .locate(end)
                .map(|(p, _)| p.display().to_string())
                .unwrap_or_default();
            if !shared.settings.read().aof_load_truncated {
                return Err(RecoveryError::Truncated { offset: end, file });
            }
            tracing::warn!(offset = end, bytes = plan.to - end, file = %file, "the log ends inside a record (a crash mid-write): cut back to the last whole unit");
            log.truncate(end)
                .map_err(|_| RecoveryError::Unreadable(end))?;
        }
    }
    let units_applied = walk.units;
    {
        let mut data = shared.data.lock();
        let is_replica = shared.repl.is_replica() || !shared.settings.read().replicaof.is_empty();
        data.keyspace.set_delete_expired(!is_replica);
        data.keyspace.dirty = 0;
        data.repl.resume(plan.meta, session.db());
    }
    tracing::info!(
        units = units_applied,
        bytes = end - plan.from,
        offset = end,
        ms = started.elapsed().as_millis() as u64,
        "log replayed: DB loaded from the snapshot and the log"
    );
    check_acknowledged(shared);
    Ok(())
}

/// Compares what was recovered with what this node had acknowledged before
/// it stopped. Behind (log lost or cut short): the node starts a new
/// history (so its new writes never share offsets with the ones it lost)
/// and remembers the loss, so no full sync from it erases a replica that
/// still holds those writes.
fn check_acknowledged(shared: &Shared) {
    let dir = shared.settings.read().dir.clone();
    let Some(state) = read_state(&dir) else {
        return;
    };
    let mut data = shared.data.lock();
    let repl = &mut data.repl;
    if let Some(lost) = state.lost.clone() {
        repl.lost = Some(lost);
    }
    if state.replid.is_empty() {
        return;
    }
    let end = repl.offset();
    let recovered = if repl.replid == state.replid {
        Some(end)
    } else if repl.replid2 == state.replid {
        repl.second_offset.map(|s| s.min(end))
    } else {
        None
    };
    let behind = match recovered {
        Some(r) => r < state.offset,
        // Another history: behind if the recorded one had any writes.
        None => state.offset > 0,
    };
    if !behind {
        return;
    }
    let recovered = recovered.unwrap_or(0);
    if !shared.settings.read().replicaof.is_empty() || shared.repl.is_replica() {
        // A replica behind just resyncs from where it is: its upstream has
        // the writes.
        tracing::warn!(replid = %state.replid, acknowledged = state.offset, recovered, "this replica came back behind what it had applied; its upstream will resend the rest");
        return;
    }
    tracing::error!(
        replid = %state.replid,
        acknowledged = state.offset,
        recovered,
        "this node came back behind what it had acknowledged (log lost or cut short): it will not serve a full sync to a replica holding those writes; see deploy/RUNBOOK.md"
    );
    if repl.replid == state.replid {
        repl.promote();
    }
    repl.lost = Some(LostHistory {
        replid: state.replid.clone(),
        recovered,
        acknowledged: state.offset,
    });
    let next = AcknowledgedState {
        replid: repl.replid.clone(),
        offset: end,
        lost: repl.lost.clone(),
    };
    drop(data);
    write_state(&dir, &next);
}

/// The log thread: writes what client tasks left pending, fsyncs by the
/// `appendfsync` policy (group commit under `always`), retries after write
/// errors, and records the acknowledged position once a second.
pub fn run_log_thread(shared: Arc<Shared>) {
    let log = shared.log.clone();
    let mut last_sync = Instant::now();
    let mut last_state = AcknowledgedState::default();
    let mut last_state_at = Instant::now();
    let mut failing = false;
    loop {
        let policy = shared.settings.read().appendfsync;
        let wait = match policy {
            _ if failing => Duration::from_secs(1),
            FsyncPolicy::Always => Duration::from_millis(100),
            _ => Duration::from_secs(1)
                .saturating_sub(last_sync.elapsed())
                .max(Duration::from_millis(10)),
        };
        shared.persistence.wait_for_work(wait);
        let stopping = shared.is_shutting_down();
        let written_before = log.written();
        failing = log.write_pending().is_err();
        if log.written() > written_before {
            // Senders stream only bytes the log has handed to the OS.
            shared.repl.stream_ready.notify_waiters();
        }
        let due = match policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Everysec => last_sync.elapsed() >= Duration::from_secs(1) || stopping,
            FsyncPolicy::No => false,
        };
        if !failing && log.on_disk() && due && log.written() > log.durable() {
            let t = Instant::now();
            match log.sync() {
                Ok(_) => {
                    let us = t.elapsed().as_micros() as u64;
                    let f = &shared.persistence.fsync;
                    f.fsyncs.fetch_add(1, Ordering::Relaxed);
                    f.total_us.fetch_add(us, Ordering::Relaxed);
                    f.last_us.store(us, Ordering::Relaxed);
                    f.max_us.fetch_max(us, Ordering::Relaxed);
                    if us > 2_000_000 {
                        f.delayed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(ms = us / 1000, "log fsync is taking too long (disk busy?)");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "log fsync failed");
                    failing = true;
                }
            }
            last_sync = Instant::now();
        } else if policy == FsyncPolicy::No || !log.on_disk() {
            log.mark_written_durable();
            last_sync = Instant::now();
        } else if due {
            last_sync = Instant::now();
        }
        if last_state_at.elapsed() >= Duration::from_secs(1) || stopping {
            last_state_at = Instant::now();
            record_acknowledged(&shared, &mut last_state);
        }
        if stopping {
            return;
        }
    }
}

fn record_acknowledged(shared: &Shared, last: &mut AcknowledgedState) {
    if shared.persistence.loading.load(Ordering::Acquire) {
        return;
    }
    let (replid, lost) = {
        let data = shared.data.lock();
        (data.repl.replid.clone(), data.repl.lost.clone())
    };
    let state = AcknowledgedState {
        replid,
        offset: shared.log.written(),
        lost,
    };
    if state != *last {
        write_state(&shared.settings.read().dir, &state);
        *last = state;
    }
}

/// Holds a client's replies until its writes are as durable as the policy
/// promises: handed to the OS (`everysec`, `no`), or fsynced (`always`).
pub async fn make_durable(shared: &Shared, target: u64) {
    let log = &shared.log;
    let policy = shared.settings.read().appendfsync;
    if policy == FsyncPolicy::Always && log.on_disk() {
        let history = log.history();
        let mut rx = log.watch_durable();
        // Let every client whose request is ready run first, as Redis's
        // event loop does before its fsync: one fsync then covers them all.
        tokio::task::yield_now().await;
        if log.durable() >= target {
            return;
        }
        shared.persistence.wake_log_thread();
        loop {
            let durable = *rx.borrow_and_update();
            if durable >= target || log.history() != history || rx.changed().await.is_err() {
                return;
            }
        }
    }
    if log.written() >= target {
        return;
    }
    // Let the other clients' batches in first: one write covers them all.
    tokio::task::yield_now().await;
    if log.written() < target {
        let _ = log.write_pending();
    }
}

/// DEBUG LOADAOF: flushes the log, then rebuilds the data from the
/// snapshot and the log after it, exactly as crash recovery does, holding
/// the dataset lock throughout (clients wait, as Redis blocks). Refused,
/// the data untouched, when the log does not continue the snapshot (or,
/// without one, does not reach back to the empty start).
pub fn reload_from_disk(shared: &Arc<Shared>) -> Result<(), String> {
    let log = shared.log.clone();
    log.write_pending()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    log.sync()
        .map_err(|e| format!("cannot fsync the log: {e}"))?;
    let path = shared.settings.read().snapshot_path();
    let snapshot = if path.exists() {
        Some(
            persist::load_from_file(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?,
        )
    } else {
        None
    };
    let mut guard = shared.data.lock();
    let data = &mut *guard;
    let (start, end) = (log.start_offset(), log.end_offset());
    let meta = data.repl.saved_meta();
    let (from, db, dbs) = match snapshot {
        Some((h, dbs, _))
            if (data.repl.replid == *h.repl_id.as_str()
                || (data.repl.replid2 == *h.repl_id.as_str()
                    && data.repl.second_offset.is_some_and(|s| h.repl_offset <= s)))
                && (start..=end).contains(&h.repl_offset) =>
        {
            (h.repl_offset, h.repl_db as usize, dbs)
        }
        _ if meta.as_ref().is_some_and(|m| m.empty_at == Some(start)) => {
            (start, 0, crate::keyspace::Image::default())
        }
        _ => {
            return Err(
                "the log does not continue the snapshot on disk (or reach back to an empty start): nothing to rebuild the data from"
                    .into(),
            )
        }
    };
    let mut fresh = crate::keyspace::Keyspace::new();
    persist::install(&mut fresh, dbs);
    fresh.set_access_policy(shared.settings.read().access_policy());
    fresh.set_delete_expired(false);
    let live = std::mem::replace(&mut data.keyspace, fresh);
    let mut session = (shared.applier)(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    session.set_db(db);
    let walk = log.walk(from, end, |units| session.apply(shared, data, units));
    let failed = match walk {
        Err(c) => Some(format!("the log cannot be read at {}", c.requested)),
        Ok(w) if w.good_end != end => Some(format!("the log is damaged at offset {}", w.good_end)),
        Ok(_) => None,
    };
    if let Some(reason) = failed {
        // Nothing lost: the data in memory is put back.
        data.keyspace = live;
        return Err(reason);
    }
    let is_replica = shared.repl.is_replica();
    data.keyspace.set_delete_expired(!is_replica);
    data.keyspace.dirty = 0;
    // The blocked clients and watches of the old data see its keys vanish.
    for db in &live.dbs {
        db.signal_all_watched();
    }
    tracing::warn!(
        from,
        to = end,
        "data reloaded from the snapshot and the log (DEBUG LOADAOF)"
    );
    Ok(())
}
