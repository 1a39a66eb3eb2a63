//! Snapshots as node operations (SAVE, BGSAVE, `save` rules, BGREWRITEAOF
//! and its automatic rule) and the persistence facts INFO reports. The log
//! thread and crash recovery are the server's edge (`server::persistence`).
//!
//! A background save is two steps: [`start_background_save`] marks it and
//! takes the copy-on-write copy of the dataset at this instant (under the
//! dataset lock, no IO), and [`SnapshotJob::write`] writes it, on a thread
//! of the caller's choosing: handlers hand the job back as a node action.
//!
//! A write is in the log's memory when its command returns (under the
//! dataset lock); its client task hands the bytes to the OS before the
//! reply goes out (`appendfsync everysec|no`), or waits until the log
//! thread has fsynced them (`always`, one fsync for every write that
//! arrived meanwhile). A process crash therefore never loses an
//! acknowledged write; a power loss loses at most the last second under
//! `everysec`.

use super::{unix_ms, Shared};
use crate::keyspace::Keyspace;
use crate::persist::{self, SnapshotError, SnapshotHeader};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64};
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
            last_save_unix: unix_ms() / 1000,
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

    pub(crate) fn wait_for_work(&self, timeout: Duration) {
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
        created_unix_ms: unix_ms(),
        repl_id: position.replid.to_string(),
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
    let result = persist::save_to_file(
        &path,
        &ks.dbs,
        &ks.functions,
        &header(shared, position),
        unix_ms(),
    );
    let mut state = shared.persistence.state.lock();
    state.last_status_ok = result.is_ok();
    match &result {
        Ok(size) => {
            snapshot_done(shared, offset, *size, true);
            ks.dirty = 0;
            state.last_save_unix = unix_ms() / 1000;
            state.last_duration_secs = started.elapsed().as_secs() as i64;
            state.saves += 1;
            state.last_size_bytes = *size;
            tracing::info!(path = %path.display(), bytes = size, "DB saved on disk");
        }
        Err(e) => tracing::error!(path = %path.display(), error = %e, "snapshot save failed"),
    }
    result.map(|_| ())
}

/// A point-in-time copy of the dataset on its way to the snapshot file.
#[must_use = "the snapshot is only written by SnapshotJob::write"]
pub struct SnapshotJob {
    image: crate::keyspace::Image,
    dirty_at_start: u64,
    path: std::path::PathBuf,
    offset: u64,
    header: SnapshotHeader,
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotJob")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish()
    }
}

/// BGSAVE's first step: marks a background save as running and copies the
/// dataset (values are shared copy-on-write, so this is cheap). `None` if
/// a background save is already running.
#[must_use = "the copy is only written by SnapshotJob::write"]
pub fn start_background_save(
    shared: &Shared,
    ks: &Keyspace,
    position: ReplPosition,
) -> Option<SnapshotJob> {
    {
        let mut state = shared.persistence.state.lock();
        if state.in_progress {
            return None;
        }
        state.in_progress = true;
        state.started = Some(Instant::now());
    }
    Some(SnapshotJob {
        image: ks.snapshot(),
        dirty_at_start: ks.dirty,
        path: shared.settings.read().snapshot_path(),
        offset: position.offset,
        header: header(shared, position),
    })
}

impl SnapshotJob {
    /// Writes the copy and records the outcome (INFO, LASTSAVE, the log's
    /// retention). Blocking IO: run it off the async workers.
    pub fn write(self, shared: &Shared) {
        let SnapshotJob {
            image,
            dirty_at_start,
            path,
            offset,
            header,
        } = self;
        let started = Instant::now();
        let result = persist::save_to_file(&path, &image.dbs, &image.functions, &header, unix_ms());
        drop(image);
        if let Ok(size) = &result {
            let mut data = shared.data.lock();
            data.keyspace.dirty = data.keyspace.dirty.saturating_sub(dirty_at_start);
            drop(data);
            snapshot_done(shared, offset, *size, false);
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
                state.last_save_unix = unix_ms() / 1000;
                state.last_duration_secs = started.elapsed().as_secs() as i64;
                state.saves += 1;
                state.last_size_bytes = size;
                tracing::info!(path = %path.display(), bytes = size, "background saving terminated with success");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "background saving failed")
            }
        }
    }
}

/// Whether a `save` rule is due: at least `changes` writes and `seconds`
/// elapsed since the last save. A failed save is retried after 5 seconds,
/// like Redis.
pub fn save_rule_due(shared: &Shared, dirty: u64, now_unix: i64) -> bool {
    let rules = shared.settings.read().save.clone();
    let state = shared.persistence.state.lock();
    if state.in_progress {
        return false;
    }
    let elapsed = now_unix - state.last_save_unix;
    if !state.last_status_ok && elapsed < 5 {
        return false;
    }
    rules
        .rules()
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
/// log before it can go. `None` when a save is already running (the
/// rewrite is then scheduled to follow it).
#[must_use = "the copy is only written by SnapshotJob::write"]
pub fn start_rewrite(
    shared: &Shared,
    ks: &Keyspace,
    position: ReplPosition,
) -> Option<SnapshotJob> {
    {
        // Marked first: the save may finish before the job is even run.
        let mut aof = shared.persistence.aof.lock();
        aof.rewrite_in_progress = true;
        aof.rewrite_started = Some(Instant::now());
    }
    let Some(job) = start_background_save(shared, ks, position) else {
        let mut aof = shared.persistence.aof.lock();
        aof.rewrite_in_progress = false;
        aof.rewrite_started = None;
        aof.rewrite_scheduled = true;
        return None;
    };
    shared.persistence.aof.lock().rewrite_scheduled = false;
    Some(job)
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
