//! When and how snapshots are taken: SAVE (blocking), BGSAVE (a
//! point-in-time copy written by a background thread while clients keep
//! being served), `save` rules, and loading at start-up.

use super::Shared;
use crate::config::parse_save_rules;
use crate::keyspace::Keyspace;
use crate::persist::{self, SnapshotError, SnapshotHeader};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

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
        SaveState { last_save_unix: super::unix_ms() / 1000, last_status_ok: true, in_progress: false, started: None, last_duration_secs: -1, saves: 0, last_size_bytes: 0 }
    }
}

#[derive(Default)]
pub struct Persistence {
    pub state: Mutex<SaveState>,
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
pub fn save_blocking(shared: &Shared, ks: &mut Keyspace, position: ReplPosition) -> Result<(), SnapshotError> {
    let path = shared.settings.read().snapshot_path();
    let started = Instant::now();
    let result = persist::save_to_file(&path, &ks.dbs, &header(shared, position), super::unix_ms());
    let mut state = shared.persistence.state.lock();
    state.last_status_ok = result.is_ok();
    match &result {
        Ok(size) => {
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
    let header = header(shared, position);
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = persist::save_to_file(&path, &dbs, &header, super::unix_ms());
        drop(dbs);
        if result.is_ok() {
            let mut data = shared.data.lock();
            data.keyspace.dirty = data.keyspace.dirty.saturating_sub(dirty_at_start);
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
            Err(e) => tracing::error!(path = %path.display(), error = %e, "background saving failed"),
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
    rules.iter().any(|r| dirty >= r.changes && elapsed >= r.seconds as i64 && dirty > 0)
}

/// Loads the snapshot file if there is one. A missing file is an empty
/// dataset; a damaged one is an error and nothing is loaded.
pub fn load_at_startup(shared: &Shared) -> Result<u64, SnapshotError> {
    let path = shared.settings.read().snapshot_path();
    if !path.exists() {
        return Ok(0);
    }
    let started = Instant::now();
    let (header, dbs, keys) = persist::load_from_file(&path)?;
    let mut data = shared.data.lock();
    persist::install(&mut data.keyspace, dbs);
    data.keyspace.dirty = 0;
    if !header.repl_id.is_empty() {
        data.repl.restore(header.repl_id.clone(), header.repl_offset, header.repl_db as usize);
        tracing::info!(replid = %header.repl_id, offset = header.repl_offset, "replication position restored from the snapshot");
    }
    tracing::info!(path = %path.display(), keys, ms = started.elapsed().as_millis() as u64, "DB loaded from disk");
    Ok(keys)
}
