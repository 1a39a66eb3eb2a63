//! Durability: snapshots (SAVE, BGSAVE, `save` rules, BGREWRITEAOF and
//! its automatic rule), the log thread that writes and fsyncs the log, and
//! crash recovery at start-up (the newest snapshot, then the log replayed
//! from its offset, unit by unit).
//!
//! A write is in the log's memory when its command returns (under the
//! dataset lock); its client task hands the bytes to the OS before the
//! reply goes out (`appendfsync everysec|no`), or waits until the log
//! thread has fsynced them (`always`, one fsync for every write that
//! arrived meanwhile). A process crash therefore never loses an
//! acknowledged write; a power loss loses at most the last second under
//! `everysec`.

use super::Shared;
use crate::config::{parse_save_rules, FsyncPolicy};
use crate::keyspace::Keyspace;
use crate::persist::{self, SnapshotError, SnapshotHeader};
use crate::replication::stream::{LostHistory, Meta};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SaveState {
    pub last_save_unix: i64,
    pub last_status_ok: bool,
    pub in_progress: bool,
    pub started: Option<Instant>,
    pub last_duration_secs: i64,
    pub saves: u64,
    pub last_size_bytes: u64,
}

impl Default for SaveState {
    fn default() -> Self {
        SaveState {
            last_save_unix: super::unix_ms() / 1000,
            last_status_ok: true,
            in_progress: false,
            started: None,
            last_duration_secs: -1,
            saves: 0,
            last_size_bytes: 0,
        }
    }
}

/// Progress of start-up recovery (INFO `loading_*`).
#[derive(Debug, Default, Clone)]
pub struct Loading {
    pub started_unix: i64,
    pub total_bytes: u64,
    pub loaded_bytes: u64,
    pub started: Option<Instant>,
}

/// Log compaction and fsync facts (INFO `aof_*`, metrics).
#[derive(Debug, Default)]
pub struct AofState {
    /// A snapshot was asked for as a rewrite (BGREWRITEAOF, automatic rule).
    pub rewrite_in_progress: bool,
    pub rewrite_scheduled: bool,
    pub rewrites: u64,
    pub last_rewrite_ok: bool,
    pub last_rewrite_secs: i64,
    pub consecutive_failures: u64,
    pub rewrite_started: Option<Instant>,
    /// Size of the snapshot the log continues (Redis's `aof_base_size`).
    pub base_size: u64,
}

#[derive(Default)]
pub struct FsyncStats {
    pub fsyncs: AtomicU64,
    pub total_us: AtomicU64,
    pub last_us: AtomicU64,
    pub max_us: AtomicU64,
    /// Fsyncs that took over 2 s (Redis's `aof_delayed_fsync`).
    pub delayed: AtomicU64,
}

#[derive(Default)]
pub struct Persistence {
    pub state: Mutex<SaveState>,
    /// Start-up recovery is running: commands get `-LOADING`.
    pub loading: AtomicBool,
    pub loading_progress: Mutex<Loading>,
    pub aof: Mutex<AofState>,
    pub fsync: FsyncStats,
    /// Wakes the log thread (`appendfsync always` writers).
    wake: Mutex<bool>,
    wake_cv: Condvar,
}

impl Persistence {
    /// Asks the log thread to write and fsync what is pending now.
    pub fn wake_log_thread(&self) {
        *self.wake.lock() = true;
        self.wake_cv.notify_one();
    }

    fn wait_for_work(&self, timeout: Duration) {
        let mut woken = self.wake.lock();
        if !*woken {
            self.wake_cv.wait_for(&mut woken, timeout);
        }
        *woken = false;
    }
}

/// The replication position a snapshot's data corresponds to, so that a
/// restarted node can ask its upstream to continue from there.
pub type ReplPosition = crate::replication::stream::StreamPosition;

fn header(shared: &Shared, position: ReplPosition) -> SnapshotHeader {
    SnapshotHeader {
        created_unix_ms: super::unix_ms(),
        repl_id: position.replid,
        repl_offset: position.offset,
        node: shared.settings.read().node.name.clone(),
        repl_db: position.db as u32,
    }
}

/// SAVE: writes the dataset now, holding the dataset lock (as Redis does).
pub fn save_blocking(
    shared: &Shared,
    ks: &mut Keyspace,
    position: ReplPosition,
) -> Result<(), SnapshotError> {
    let offset = position.offset;
    let path = shared.settings.read().snapshot_path();
    let started = Instant::now();
    let result = persist::save_to_file(&path, &ks.dbs, &header(shared, position), super::unix_ms());
    let mut state = shared.persistence.state.lock();
    state.last_status_ok = result.is_ok();
    match &result {
        Ok(size) => {
            snapshot_done(shared, offset, *size, true);
            ks.dirty = 0;
            state.last_save_unix = super::unix_ms() / 1000;
            state.last_duration_secs = started.elapsed().as_secs() as i64;
            state.saves += 1;
            state.last_size_bytes = *size;
            tracing::info!(path = %path.display(), bytes = size, "DB saved on disk");
        }
        Err(e) => tracing::error!(path = %path.display(), error = %e, "snapshot save failed"),
    }
    result.map(|_| ())
}

/// BGSAVE: copies the dataset (values are shared copy-on-write, so this is
/// cheap) and writes it on a blocking thread. Returns false if a background
/// save is already running.
pub fn start_background_save(shared: &Arc<Shared>, ks: &Keyspace, position: ReplPosition) -> bool {
    {
        let mut state = shared.persistence.state.lock();
        if state.in_progress {
            return false;
        }
        state.in_progress = true;
        state.started = Some(Instant::now());
    }
    let dbs = ks.snapshot();
    let dirty_at_start = ks.dirty;
    let path = shared.settings.read().snapshot_path();
    let offset = position.offset;
    let header = header(shared, position);
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = persist::save_to_file(&path, &dbs, &header, super::unix_ms());
        drop(dbs);
        if let Ok(size) = &result {
            let mut data = shared.data.lock();
            data.keyspace.dirty = data.keyspace.dirty.saturating_sub(dirty_at_start);
            drop(data);
            snapshot_done(&shared, offset, *size, false);
        } else {
            let mut aof = shared.persistence.aof.lock();
            if aof.rewrite_in_progress {
                aof.rewrite_in_progress = false;
                aof.last_rewrite_ok = false;
                aof.consecutive_failures += 1;
            }
        }
        let mut state = shared.persistence.state.lock();
        state.in_progress = false;
        state.started = None;
        state.last_status_ok = result.is_ok();
        match result {
            Ok(size) => {
                state.last_save_unix = super::unix_ms() / 1000;
                state.last_duration_secs = started.elapsed().as_secs() as i64;
                state.saves += 1;
                state.last_size_bytes = size;
                tracing::info!(path = %path.display(), bytes = size, "background saving terminated with success");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "background saving failed")
            }
        }
    });
    true
}

/// Whether a `save` rule is due: at least `changes` writes and `seconds`
/// elapsed since the last save. A failed save is retried after 5 seconds,
/// like Redis.
pub fn save_rule_due(shared: &Shared, dirty: u64, now_unix: i64) -> bool {
    let rules = parse_save_rules(&shared.settings.read().save).unwrap_or_default();
    let state = shared.persistence.state.lock();
    if state.in_progress {
        return false;
    }
    let elapsed = now_unix - state.last_save_unix;
    if !state.last_status_ok && elapsed < 5 {
        return false;
    }
    rules
        .iter()
        .any(|r| dirty >= r.changes && elapsed >= r.seconds as i64 && dirty > 0)
}

/// A snapshot taken at `offset` is on disk: the log before it is no longer
/// needed for recovery (only, maybe, for partial resyncs).
fn snapshot_done(shared: &Shared, offset: u64, size: u64, under_data_lock: bool) {
    let appendonly = shared.settings.read().appendonly;
    if appendonly {
        shared.log.set_retain_from(offset);
    }
    if !under_data_lock {
        shared.log.trim();
    }
    let mut aof = shared.persistence.aof.lock();
    aof.base_size = size;
    if aof.rewrite_in_progress {
        aof.rewrite_in_progress = false;
        aof.rewrites += 1;
        aof.last_rewrite_ok = true;
        aof.consecutive_failures = 0;
        aof.last_rewrite_secs = aof
            .rewrite_started
            .take()
            .map(|s| s.elapsed().as_secs() as i64)
            .unwrap_or(0);
        tracing::info!(
            offset,
            bytes = size,
            "log compacted: the snapshot replaces the log before its offset"
        );
    }
}

/// BGREWRITEAOF: a snapshot that the log continues from, after which the
/// log before it can go. False when one is already running (it is then
/// scheduled to follow).
pub fn start_rewrite(shared: &Arc<Shared>, ks: &Keyspace, position: ReplPosition) -> bool {
    {
        // Marked first: the save may finish before this returns.
        let mut aof = shared.persistence.aof.lock();
        aof.rewrite_in_progress = true;
        aof.rewrite_started = Some(Instant::now());
    }
    if !start_background_save(shared, ks, position) {
        let mut aof = shared.persistence.aof.lock();
        aof.rewrite_in_progress = false;
        aof.rewrite_started = None;
        aof.rewrite_scheduled = true;
        return false;
    }
    shared.persistence.aof.lock().rewrite_scheduled = false;
    true
}

/// Whether the automatic rewrite rule is due (Redis's
/// `auto-aof-rewrite-percentage` / `-min-size`, on log growth since the
/// last snapshot).
pub fn rewrite_due(shared: &Shared) -> bool {
    let (appendonly, percentage, min_size) = {
        let s = shared.settings.read();
        (
            s.appendonly,
            s.auto_aof_rewrite_percentage,
            s.auto_aof_rewrite_min_size,
        )
    };
    if !appendonly || shared.persistence.state.lock().in_progress {
        return false;
    }
    if shared.persistence.aof.lock().rewrite_scheduled {
        return true;
    }
    if percentage == 0 {
        return false;
    }
    // As Redis's aof_current_size: the snapshot plus the log after it.
    let snapshot = shared.persistence.aof.lock().base_size;
    let current = snapshot + shared.log.bytes_since_snapshot();
    let base = snapshot.max(1);
    current >= min_size && (current - base.min(current)) * 100 / base >= percentage
}

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
    pub replid: String,
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
    let snapshot_at = header
        .as_ref()
        .filter(|h| !h.repl_id.is_empty())
        .map(|h| (h.repl_id.clone(), h.repl_offset, h.repl_db as usize));
    let continues = |m: &Meta, replid: &str, offset: u64| {
        m.replid == replid || (m.replid2 == replid && m.second_offset.is_some_and(|s| offset <= s))
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
                let aside = log.set_aside(super::unix_ms()).map_err(log_io)?;
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
        started_unix: super::unix_ms() / 1000,
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
    let mut session = crate::replication::replica::replicated_session(
        "127.0.0.1:0".parse().expect("literal address"),
    );
    session.db = plan.db;
    shared.data.lock().keyspace.set_delete_expired(false);
    let mut loaded = 0u64;
    let mut last_report = Instant::now();
    let walk = log
        .walk(plan.from, plan.to, |units| {
            crate::replication::replica::apply_replayed(shared, &mut session, units);
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
        data.repl.resume(plan.meta, session.db);
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
        failing = log.write_pending().is_err();
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
