//! The log: every byte of the replication stream, in order, on disk. It is
//! both the backlog replicas resume from after an outage (partial resync)
//! and the node's write-ahead log, replayed after a crash on top of the
//! newest snapshot.
//!
//! Bytes arrive in memory under the dataset lock ([`Backlog::append`], no
//! IO). They reach the segment files (`NNNN.seg`, named by the offset of
//! their first byte, which is the offset index) through
//! [`Backlog::write_pending`], called outside the dataset lock by whoever
//! needs them written — the client task before it acknowledges a write, or
//! the log thread — and become durable with [`Backlog::sync`]. Live
//! replicas read the recent bytes from memory; a replica catching up reads
//! older bytes from the files without holding any lock during the read.
//!
//! Invariants: the log holds exactly the stream bytes
//! `[start_offset, end_offset)`; `durable <= written <= end`; the bytes
//! `[written, end)` are in memory until written; segments are contiguous.
//! Trimming drops whole segments from the front once both the backlog's
//! capacity and the newest snapshot (`retain_from`) no longer need them. A
//! read outside the log is the typed answer [`Compacted`] ("that history is
//! gone, do a full sync").

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The requested offset is no longer (or not yet) in the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {requested} is outside the backlog [{start}, {end}]")]
pub struct Compacted {
    pub requested: u64,
    pub start: u64,
    pub end: u64,
}

/// What is wrong with the segment files found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("log segments are not contiguous: {file} starts at offset {found}, but the previous segment ends at {expected}")]
    Gap {
        file: String,
        expected: u64,
        found: u64,
    },
}

/// What reading a stretch of the log unit by unit found.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// Whole units (commands or transactions) read.
    pub units: u64,
    /// Where the whole units end: the stretch's end unless something is
    /// wrong.
    pub good_end: u64,
    pub problem: Option<LogProblem>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogProblem {
    /// The last unit is cut short (a crash mid-write).
    Torn,
    /// Malformed bytes after `good_end`, in `file` at byte `position`.
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },
}

/// What `quire log check` found in a log directory.
#[derive(Debug, Clone, PartialEq)]
pub struct LogCheck {
    pub start: u64,
    pub end: u64,
    pub segments: usize,
    pub walk: Walk,
}

/// Walks the segment files in `dir` unit by unit (offline: `quire log
/// check`).
pub fn check_dir(dir: &Path) -> Result<LogCheck, LogError> {
    let backlog = Backlog::new(
        0,
        BacklogConfig {
            capacity: u64::MAX,
            memory_bytes: 0,
            segment_bytes: u64::MAX,
            dir: Some(dir.to_path_buf()),
        },
    );
    let (start, end) = backlog.open_existing()?.unwrap_or((0, 0));
    let walk = backlog.walk(start, end, |_| {}).map_err(|c| LogError::Io {
        dir: dir.display().to_string(),
        source: std::io::Error::other(c.to_string()),
    })?;
    Ok(LogCheck {
        start,
        end,
        segments: backlog.segments(),
        walk,
    })
}

/// How a backlog is laid out.
#[derive(Debug, Clone)]
pub struct BacklogConfig {
    /// Bytes of history to keep for partial resyncs (at least; trimming is
    /// by whole segment).
    pub capacity: u64,
    /// Bytes of the tail also kept in memory.
    pub memory_bytes: usize,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
    /// Where segment files live; `None` keeps everything in memory.
    pub dir: Option<PathBuf>,
}

impl BacklogConfig {
    /// The backlog layout for a node whose data directory is `dir`.
    pub fn for_node(
        settings: &crate::config::BacklogSettings,
        dir: &std::path::Path,
    ) -> BacklogConfig {
        BacklogConfig {
            capacity: settings.size.min(settings.max_disk),
            memory_bytes: settings.memory as usize,
            segment_bytes: settings.segment_bytes,
            dir: Some(dir.join("backlog")),
        }
    }
}

impl BacklogConfig {
    pub fn memory(capacity: u64) -> BacklogConfig {
        BacklogConfig {
            capacity,
            memory_bytes: capacity as usize,
            segment_bytes: 64 << 20,
            dir: None,
        }
    }
}

/// One segment file: the stream bytes `[start, start + len)` written to it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub start: u64,
    pub len: u64,
    pub path: PathBuf,
}

/// The state behind the short lock: offsets, the memory tail, the index.
#[derive(Debug)]
struct Inner {
    config: BacklogConfig,
    /// Bumped when the log is replaced by another history (reads naming an
    /// older one fail).
    history: u64,
    start_offset: u64,
    end_offset: u64,
    /// Bytes before this offset have been handed to the OS.
    written: u64,
    /// The most recent bytes; always includes `[written, end)`.
    memory: VecDeque<u8>,
    /// `[written, end)`, waiting for the next write.
    pending: Vec<u8>,
    segments: VecDeque<Segment>,
    /// Whether segment files are in use (a directory was given and works).
    disk: bool,
    /// Segments holding bytes at or after this offset are kept whatever
    /// the capacity (the log since the newest snapshot).
    retain_from: u64,
    /// Kept for snapshot transfers in flight: the stream continues from
    /// their offset once they are loaded (`u64::MAX`: none).
    transfer_floor: u64,
    /// The last write's error, while it lasts (full disk).
    write_error: Option<String>,
}

/// The file side, held by one writer at a time.
#[derive(Debug, Default)]
struct Io {
    /// The segment being appended to, and its start offset.
    file: Option<(u64, File)>,
    /// Closed segments not yet fsynced.
    unsynced: Vec<File>,
}

/// The node's log. Shared (`Arc`) between the dataset (appends), client
/// tasks and the log thread (writes, fsyncs) and replica senders (reads).
#[derive(Debug)]
pub struct Backlog {
    inner: Mutex<Inner>,
    io: Mutex<Io>,
    /// Mirrors `write_error.is_some()` for the write path's check.
    failing: std::sync::atomic::AtomicBool,
    durable: AtomicU64,
    durable_tx: tokio::sync::watch::Sender<u64>,
}

/// How a failed fsync is named in [`Backlog::write_error`].
const FSYNC_ERROR: &str = "fsync failed: ";

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

/// The segment files in `dir`, in offset order.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(start) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push(Segment {
            start,
            len: entry.metadata()?.len(),
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.start);
    Ok(segments)
}

impl Inner {
    /// Drops front segments no longer needed; returns their files to
    /// delete (outside the lock).
    fn trim(&mut self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        if self.disk {
            let keep_from = self
                .end_offset
                .saturating_sub(self.config.capacity)
                .min(self.retain_from)
                .min(self.transfer_floor);
            while self.segments.len() > 1 && self.segments[1].start <= keep_from {
                if let Some(seg) = self.segments.pop_front() {
                    removed.push(seg.path);
                }
            }
            self.start_offset = self
                .segments
                .front()
                .map(|s| s.start)
                .unwrap_or(self.written)
                .min(self.end_offset);
            if self.segments.is_empty() {
                // Nothing on disk yet: what memory holds is the history.
                self.start_offset = self.end_offset - self.memory.len() as u64;
            }
        } else {
            let excess = self
                .memory
                .len()
                .saturating_sub(self.config.capacity.max(1) as usize);
            self.memory.drain(..excess);
            self.start_offset = self.end_offset - self.memory.len() as u64;
        }
        removed
    }

    fn memory_start(&self) -> u64 {
        self.end_offset - self.memory.len() as u64
    }
}

fn remove_files(paths: Vec<PathBuf>) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a trimmed log segment");
        }
    }
}

impl Backlog {
    /// An empty log whose next byte will be at `offset`. Segment files
    /// already in the directory are left alone until [`Backlog::reset`] or
    /// [`Backlog::open_existing`] decides about them.
    pub fn new(offset: u64, config: BacklogConfig) -> Backlog {
        let disk = match &config.dir {
            Some(dir) => match std::fs::create_dir_all(dir) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "log directory unusable; keeping the log in memory only (no crash recovery)");
                    false
                }
            },
            None => false,
        };
        let inner = Inner {
            config,
            history: 0,
            start_offset: offset,
            end_offset: offset,
            written: offset,
            memory: VecDeque::new(),
            pending: Vec::new(),
            segments: VecDeque::new(),
            disk,
            retain_from: u64::MAX,
            transfer_floor: u64::MAX,
            write_error: None,
        };
        Backlog {
            inner: Mutex::new(inner),
            io: Mutex::new(Io::default()),
            failing: Default::default(),
            durable: AtomicU64::new(offset),
            durable_tx: tokio::sync::watch::channel(offset).0,
        }
    }

    /// Replaces the log with an empty one at `offset` (a new history: full
    /// sync installed, or start-up without a usable log); removes the old
    /// segment files.
    pub fn reset(&self, offset: u64) {
        let mut io = self.io.lock();
        io.file = None;
        io.unsynced.clear();
        let mut inner = self.inner.lock();
        let removed: Vec<PathBuf> = inner.segments.drain(..).map(|s| s.path).collect();
        inner.history += 1;
        inner.start_offset = offset;
        inner.end_offset = offset;
        inner.written = offset;
        inner.memory.clear();
        inner.pending.clear();
        inner.write_error = None;
        self.failing.store(false, Ordering::Release);
        let dir = inner.config.dir.clone().filter(|_| inner.disk);
        drop(inner);
        remove_files(removed);
        if let Some(dir) = &dir {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Some(dir) = dir {
            // Leftovers from an earlier run that no index listed.
            if let Ok(stale) = list_segments(&dir) {
                remove_files(stale.into_iter().map(|s| s.path).collect());
            }
        }
        drop(io);
        self.publish_durable(offset, true);
    }

    /// Takes over the segment files in the directory as the log (start-up).
    /// Returns the range they hold, `None` when there are none. A gap
    /// between segments is an error naming the file; nothing is changed.
    pub fn open_existing(&self) -> Result<Option<(u64, u64)>, LogError> {
        let mut inner = self.inner.lock();
        let Some(dir) = inner.config.dir.clone().filter(|_| inner.disk) else {
            return Ok(None);
        };
        let io_err = |source| LogError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let segments = list_segments(&dir).map_err(io_err)?;
        for w in segments.windows(2) {
            if w[0].start + w[0].len != w[1].start {
                return Err(LogError::Gap {
                    file: w[1].path.display().to_string(),
                    expected: w[0].start + w[0].len,
                    found: w[1].start,
                });
            }
        }
        let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
            return Ok(None);
        };
        let (start, end) = (first.start, last.start + last.len);
        inner.history += 1;
        inner.segments = segments.into();
        inner.start_offset = start;
        inner.end_offset = end;
        inner.written = end;
        inner.memory.clear();
        inner.pending.clear();
        drop(inner);
        *self.io.lock() = Io::default();
        self.publish_durable(end, true);
        Ok(Some((start, end)))
    }

    /// Moves the segment files found at start-up out of the way (into
    /// `<dir>.discarded-<unix ms>` beside the log directory) instead of
    /// deleting them: they hold writes the node could not replay (another
    /// history, or a gap after the snapshot), kept for the operator.
    pub fn set_aside(&self, unix_ms: i64) -> std::io::Result<Option<PathBuf>> {
        let mut io = self.io.lock();
        io.file = None;
        io.unsynced.clear();
        let mut inner = self.inner.lock();
        let Some(dir) = inner.config.dir.clone().filter(|_| inner.disk) else {
            return Ok(None);
        };
        inner.segments.clear();
        let mut name = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".discarded-{unix_ms}"));
        let aside = dir.with_file_name(name);
        std::fs::rename(&dir, &aside)?;
        std::fs::create_dir_all(&dir)?;
        Ok(Some(aside))
    }

    /// Cuts the log back to `offset` (a torn last record, or bytes past a
    /// snapshot the node will not replay). Bytes after it are removed from
    /// the files.
    pub fn truncate(&self, offset: u64) -> std::io::Result<()> {
        let mut io = self.io.lock();
        io.file = None;
        let mut inner = self.inner.lock();
        if offset >= inner.end_offset {
            return Ok(());
        }
        let offset = offset.max(inner.start_offset);
        let mut removed = Vec::new();
        while inner.segments.len() > 1 && inner.segments.back().is_some_and(|s| s.start >= offset) {
            removed.extend(inner.segments.pop_back().map(|s| s.path));
        }
        if let Some(seg) = inner.segments.back_mut() {
            if seg.start + seg.len > offset {
                OpenOptions::new()
                    .write(true)
                    .open(&seg.path)?
                    .set_len(offset - seg.start)?;
                seg.len = offset - seg.start;
            }
        }
        let keep = (inner.end_offset - offset) as usize;
        let memory_keep = inner.memory.len().saturating_sub(keep);
        inner.memory.truncate(memory_keep);
        inner.end_offset = offset;
        inner.written = inner.written.min(offset);
        inner.pending.clear();
        inner.history += 1;
        drop(inner);
        remove_files(removed);
        drop(io);
        self.publish_durable(self.durable().min(offset), true);
        Ok(())
    }

    /// Which history the log holds now (see [`Backlog::read`]).
    pub fn history(&self) -> u64 {
        self.inner.lock().history
    }

    pub fn start_offset(&self) -> u64 {
        self.inner.lock().start_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.inner.lock().end_offset
    }

    /// Bytes of history held.
    pub fn len(&self) -> u64 {
        let inner = self.inner.lock();
        inner.end_offset - inner.start_offset
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> u64 {
        self.inner.lock().config.capacity
    }

    pub fn memory_len(&self) -> usize {
        self.inner.lock().memory.len()
    }

    /// Heap bytes the memory tail holds (its capacity).
    pub fn memory_footprint(&self) -> usize {
        self.inner.lock().memory.capacity()
    }

    /// Bytes in segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.lock().segments.iter().map(|s| s.len).sum()
    }

    pub fn segments(&self) -> usize {
        self.inner.lock().segments.len()
    }

    /// Whether the log has files (crash recovery possible).
    pub fn on_disk(&self) -> bool {
        self.inner.lock().disk
    }

    /// Bytes handed to the OS (survive a process crash).
    pub fn written(&self) -> u64 {
        self.inner.lock().written
    }

    /// Bytes fsynced (survive a power loss).
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Follows the durable offset (WAITAOF, `appendfsync always`).
    pub fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable_tx.subscribe()
    }

    /// Whether the last write failed (writes are refused meanwhile).
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// The last write's error while writes fail (e.g. the disk is full).
    pub fn write_error(&self) -> Option<String> {
        self.inner.lock().write_error.clone()
    }

    pub fn set_capacity(&self, capacity: u64) {
        let mut inner = self.inner.lock();
        inner.config.capacity = capacity.max(1);
        if !inner.disk {
            inner.config.memory_bytes = inner.config.capacity as usize;
        }
    }

    /// Keeps every segment holding bytes at or after `offset` (the newest
    /// snapshot's offset: replaying from it needs them); `u64::MAX` lifts
    /// the constraint.
    pub fn set_retain_from(&self, offset: u64) {
        self.inner.lock().retain_from = offset;
    }

    /// Keeps the stream from `offset` on while full-sync snapshots of
    /// that offset are in transfer (`u64::MAX` lifts it): a slow transfer
    /// must not find its continuation trimmed away when it ends.
    pub fn set_transfer_floor(&self, offset: u64) {
        self.inner.lock().transfer_floor = offset;
    }

    /// Bytes a restart would replay: those at or after the newest
    /// snapshot's offset.
    pub fn bytes_since_snapshot(&self) -> u64 {
        let inner = self.inner.lock();
        inner.end_offset
            - inner
                .retain_from
                .clamp(inner.start_offset, inner.end_offset)
    }

    /// Adds stream bytes (under the dataset lock: memory only, no IO).
    pub fn append(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        inner.memory.extend(data);
        inner.end_offset += data.len() as u64;
        if inner.disk {
            inner.pending.extend_from_slice(data);
            let keep = inner
                .config
                .memory_bytes
                .max((inner.end_offset - inner.written) as usize);
            let excess = inner.memory.len().saturating_sub(keep);
            inner.memory.drain(..excess);
        } else {
            inner.written = inner.end_offset;
            let _ = inner.trim();
        }
    }

    /// Writes the pending bytes to the segment files (outside the dataset
    /// lock; one writer at a time, so concurrent callers are served by
    /// whoever goes first). Returns the offset written up to. On error the
    /// bytes stay pending and are written by a later call.
    pub fn write_pending(&self) -> std::io::Result<u64> {
        let mut io = self.io.lock();
        let (from, chunk, roll, dir, history) = {
            let mut inner = self.inner.lock();
            if !inner.disk || inner.pending.is_empty() {
                return Ok(inner.written);
            }
            let chunk = std::mem::take(&mut inner.pending);
            let roll = io.file.is_none()
                || inner
                    .segments
                    .back()
                    .is_none_or(|s| s.len >= inner.config.segment_bytes);
            (
                inner.written,
                chunk,
                roll,
                inner.config.dir.clone().unwrap_or_default(),
                inner.history,
            )
        };
        let result = self.write_chunk(&mut io, from, &chunk, roll, &dir);
        let mut inner = self.inner.lock();
        if inner.history != history {
            return Ok(inner.written);
        }
        match result {
            Ok(new_segment) => {
                if let Some(path) = new_segment {
                    if inner.segments.back().is_none_or(|s| s.start != from) {
                        inner.segments.push_back(Segment {
                            start: from,
                            len: 0,
                            path,
                        });
                    }
                }
                if let Some(seg) = inner.segments.back_mut() {
                    seg.len += chunk.len() as u64;
                }
                inner.written = from + chunk.len() as u64;
                // A failed fsync is cleared only by a good fsync.
                if inner
                    .write_error
                    .as_deref()
                    .is_some_and(|e| !e.starts_with(FSYNC_ERROR))
                {
                    inner.write_error = None;
                    self.failing.store(false, Ordering::Release);
                    tracing::warn!(offset = inner.written, "log writes succeed again");
                }
                let removed = inner.trim();
                let written = inner.written;
                drop(inner);
                drop(io);
                remove_files(removed);
                Ok(written)
            }
            Err(e) => {
                let mut back = chunk;
                back.extend_from_slice(&inner.pending);
                inner.pending = back;
                if inner.write_error.is_none() {
                    tracing::error!(offset = from, error = %e, "log write failed; writes are refused until it succeeds");
                }
                if !inner
                    .write_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(FSYNC_ERROR))
                {
                    inner.write_error = Some(e.to_string());
                }
                self.failing.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Writes `chunk` at `from`, opening a new segment first when `roll`.
    /// A failed write is cut back off the file so a retry appends cleanly.
    fn write_chunk(
        &self,
        io: &mut Io,
        from: u64,
        chunk: &[u8],
        roll: bool,
        dir: &Path,
    ) -> std::io::Result<Option<PathBuf>> {
        let mut new_segment = None;
        if roll || io.file.is_none() {
            let path = segment_path(dir, from);
            let reuse = io.file.as_ref().is_some_and(|(start, _)| *start == from);
            if !reuse {
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                if let Some((_, old)) = io.file.replace((from, file)) {
                    io.unsynced.push(old);
                }
                // The directory entry must survive a power loss too.
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            new_segment = Some(path);
        }
        let (_, file) = io.file.as_mut().expect("opened above");
        let before = file.metadata()?.len();
        if let Err(e) = file.write_all(chunk) {
            let _ = file.set_len(before);
            if new_segment.is_some() && before == 0 {
                io.file = None;
                let _ = std::fs::remove_file(segment_path(dir, from));
            }
            return Err(e);
        }
        Ok(new_segment)
    }

    /// Fsyncs what has been written; publishes the new durable offset. The
    /// fsync runs on duplicated descriptors outside the writer's lock, so
    /// writes go on meanwhile (the next fsync covers them).
    pub fn sync(&self) -> std::io::Result<u64> {
        let (target, mut files, closed) = {
            let mut io = self.io.lock();
            let target = self.inner.lock().written;
            if target <= self.durable() {
                return Ok(self.durable());
            }
            let mut files: Vec<File> = io.unsynced.drain(..).collect();
            let closed = files.len();
            if let Some((_, f)) = &io.file {
                files.push(f.try_clone()?);
            }
            (target, files, closed)
        };
        if let Some(e) = files.iter().find_map(|f| f.sync_data().err()) {
            // Nothing counts as durable past the last good fsync, and writes
            // are refused (MISCONF) until an fsync succeeds again; the closed
            // segments are fsynced again next time.
            files.truncate(closed);
            self.io.lock().unsynced.extend(files);
            let mut inner = self.inner.lock();
            if inner.write_error.is_none() {
                tracing::error!(error = %e, "log fsync failed; writes are refused until an fsync succeeds");
            }
            inner.write_error = Some(format!("{FSYNC_ERROR}{e}"));
            self.failing.store(true, Ordering::Release);
            return Err(e);
        }
        let mut inner = self.inner.lock();
        if inner
            .write_error
            .as_deref()
            .is_some_and(|e| e.starts_with(FSYNC_ERROR))
        {
            inner.write_error = None;
            self.failing.store(false, Ordering::Release);
            tracing::warn!(offset = target, "log fsync succeeds again");
        }
        drop(inner);
        self.publish_durable(target, false);
        Ok(target)
    }

    /// Without fsync (`appendfsync no`, or no files): what is written
    /// counts as durable as far as this node can tell.
    pub fn mark_written_durable(&self) {
        let written = self.written();
        if written > self.durable() {
            self.publish_durable(written, false);
        }
    }

    fn publish_durable(&self, offset: u64, force: bool) {
        if force {
            self.durable.store(offset, Ordering::Release);
        } else {
            self.durable.fetch_max(offset, Ordering::AcqRel);
        }
        self.durable_tx.send_replace(self.durable());
    }

    /// Whether a replica needing `offset` next can be served from here.
    pub fn covers(&self, offset: u64) -> bool {
        let inner = self.inner.lock();
        offset >= inner.start_offset && offset <= inner.end_offset
    }

    /// Up to `max` bytes starting at `from`, of history `history` (fewer at
    /// a segment boundary; callers read again). Reads of older bytes open
    /// their segment file and read it outside every lock.
    pub fn read(&self, history: u64, from: u64, max: usize) -> Result<Vec<u8>, Compacted> {
        let (seg, within, take) = {
            let inner = self.inner.lock();
            let compacted = Compacted {
                requested: from,
                start: inner.start_offset,
                end: inner.end_offset,
            };
            if inner.history != history || from < inner.start_offset || from > inner.end_offset {
                return Err(compacted);
            }
            let memory_start = inner.memory_start();
            if from >= memory_start {
                let skip = (from - memory_start) as usize;
                let take = (inner.memory.len() - skip).min(max);
                return Ok(inner.memory.range(skip..skip + take).copied().collect());
            }
            let i = inner
                .segments
                .partition_point(|s| s.start <= from)
                .saturating_sub(1);
            let Some(seg) = inner.segments.get(i).cloned() else {
                return Err(compacted);
            };
            let within = from - seg.start;
            let take = (seg.len.saturating_sub(within))
                .min(max as u64)
                .min(memory_start - from) as usize;
            (seg, within, take)
        };
        use std::os::unix::fs::FileExt;
        let mut out = vec![0u8; take];
        match File::open(&seg.path).and_then(|f| f.read_exact_at(&mut out, within)) {
            Ok(()) => Ok(out),
            Err(e) => {
                tracing::warn!(error = %e, offset = from, file = %seg.path.display(), "log segment read failed");
                let inner = self.inner.lock();
                Err(Compacted {
                    requested: from,
                    start: inner.start_offset,
                    end: inner.end_offset,
                })
            }
        }
    }

    /// Drops segments neither the capacity nor the newest snapshot needs
    /// (cron, after a snapshot; outside the dataset lock).
    pub fn trim(&self) {
        let _io = self.io.lock();
        let removed = self.inner.lock().trim();
        remove_files(removed);
    }

    /// Reads `[from, to)` of the log unit by unit, handing each run of whole
    /// units to `apply` (start-up replay, `quire log check`). Stops at the
    /// first malformed unit; a unit cut short at `to` is reported torn.
    pub fn walk(
        &self,
        from: u64,
        to: u64,
        mut apply: impl FnMut(&super::apply::Units),
    ) -> Result<Walk, Compacted> {
        let history = self.history();
        let mut splitter = super::apply::UnitSplitter::new();
        let mut walk = Walk {
            units: 0,
            good_end: from,
            problem: None,
        };
        let mut at = from;
        while at < to {
            let chunk = self.read(history, at, ((to - at) as usize).min(1 << 20))?;
            if chunk.is_empty() {
                return Err(Compacted {
                    requested: at,
                    start: self.start_offset(),
                    end: self.end_offset(),
                });
            }
            let unit_start = at - splitter.pending_bytes() as u64;
            match splitter.handle_bytes(&chunk) {
                Ok(units) => {
                    walk.units += units.units.len() as u64;
                    apply(&units);
                    splitter.recycle(units.raw);
                }
                Err(e) => {
                    // Whole units end here; what follows is malformed.
                    walk.good_end = unit_start + splitter.good_bytes() as u64;
                    let (file, position) = self.locate(walk.good_end).unwrap_or_default();
                    walk.problem = Some(LogProblem::Corrupt {
                        file,
                        position,
                        reason: e.to_string(),
                    });
                    return Ok(walk);
                }
            }
            at += chunk.len() as u64;
        }
        walk.good_end = to - splitter.pending_bytes() as u64;
        if walk.good_end < to {
            walk.problem = Some(LogProblem::Torn);
        }
        Ok(walk)
    }

    /// The segment holding `offset` and the position in it (error reports).
    pub fn locate(&self, offset: u64) -> Option<(PathBuf, u64)> {
        let inner = self.inner.lock();
        let i = inner
            .segments
            .partition_point(|s| s.start <= offset)
            .checked_sub(1)?;
        let seg = &inner.segments[i];
        Some((seg.path.clone(), offset - seg.start))
    }
}

/// Tracks the stream's write rate to size the backlog for an outage of a
/// given length (sans-IO: time is passed in).
#[derive(Debug)]
pub struct BacklogSizer {
    /// Bytes per second for the last `buckets.len()` seconds (ring).
    buckets: Vec<u64>,
    current_second: i64,
    last_offset: u64,
}

/// Seconds over which the current rate is averaged.
const RATE_WINDOW_SECS: usize = 10;
/// Seconds of history the peak is taken over.
const PEAK_HISTORY_SECS: usize = 600;

impl Default for BacklogSizer {
    fn default() -> Self {
        BacklogSizer {
            buckets: vec![0; PEAK_HISTORY_SECS],
            current_second: 0,
            last_offset: 0,
        }
    }
}

impl BacklogSizer {
    /// Records that the stream's end is at `offset` at `now_ms`.
    pub fn handle_offset(&mut self, now_ms: i64, offset: u64) {
        let second = now_ms.div_euclid(1000);
        if self.current_second == 0 {
            self.current_second = second;
            self.last_offset = offset;
        }
        while self.current_second < second {
            self.current_second += 1;
            let slot = self.slot(self.current_second);
            self.buckets[slot] = 0;
            if second - self.current_second > PEAK_HISTORY_SECS as i64 {
                self.current_second = second - PEAK_HISTORY_SECS as i64;
            }
        }
        let slot = self.slot(second);
        self.buckets[slot] += offset.saturating_sub(self.last_offset);
        self.last_offset = offset;
    }

    /// The stream jumped to `offset` (new history): not a write.
    pub fn rebase(&mut self, offset: u64) {
        self.last_offset = offset;
    }

    fn slot(&self, second: i64) -> usize {
        second.rem_euclid(self.buckets.len() as i64) as usize
    }

    /// Average bytes/s over the last complete seconds.
    pub fn current_rate(&self) -> f64 {
        let sum: u64 = (1..=RATE_WINDOW_SECS as i64)
            .map(|back| self.buckets[self.slot(self.current_second - back)])
            .sum();
        sum as f64 / RATE_WINDOW_SECS as f64
    }

    /// Highest `RATE_WINDOW_SECS`-average seen in the history.
    pub fn peak_rate(&self) -> f64 {
        let n = self.buckets.len();
        let mut window: u64 = (0..RATE_WINDOW_SECS).map(|i| self.buckets[i]).sum();
        let mut best = window;
        for i in RATE_WINDOW_SECS..n + RATE_WINDOW_SECS {
            window = window + self.buckets[i % n] - self.buckets[(i - RATE_WINDOW_SECS) % n];
            best = best.max(window);
        }
        (best as f64 / RATE_WINDOW_SECS as f64).max(self.current_rate())
    }
}

/// Backlog bytes needed to ride out `outage_secs` at `rate` bytes/s.
pub fn plan_bytes(rate_bytes_per_sec: f64, outage_secs: f64, safety: f64) -> u64 {
    (rate_bytes_per_sec * outage_secs * safety).ceil() as u64
}

/// The effective capacity: a fixed size, or — when an outage tolerance is
/// configured — what the peak write rate needs, never below the fixed size
/// and never above the disk budget.
pub fn effective_capacity(
    size: u64,
    outage_secs: Option<f64>,
    peak_rate: f64,
    max_disk: u64,
) -> u64 {
    let wanted = match outage_secs {
        Some(t) => size.max(plan_bytes(peak_rate, t, SAFETY_FACTOR)),
        None => size,
    };
    wanted.min(max_disk.max(1))
}

/// Headroom over the measured peak when sizing for an outage.
pub const SAFETY_FACTOR: f64 = 1.5;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn disk_config(
        dir: &Path,
        capacity: u64,
        memory_bytes: usize,
        segment_bytes: u64,
    ) -> BacklogConfig {
        BacklogConfig {
            capacity,
            memory_bytes,
            segment_bytes,
            dir: Some(dir.to_path_buf()),
        }
    }

    proptest! {
        #[test]
        fn reads_equal_what_was_written(chunks in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..50), any::<bool>()), 0..40), cap in 1u64..300, from_frac in 0.0f64..=1.0, max in 1usize..400, on_disk: bool) {
            let dir = tempfile::tempdir().unwrap();
            let config = BacklogConfig { capacity: cap, memory_bytes: 17, segment_bytes: 23, dir: on_disk.then(|| dir.path().to_path_buf()) };
            let backlog = Backlog::new(1000, config);
            let history = backlog.history();
            let mut all = Vec::new();
            for (c, write) in &chunks {
                backlog.append(c);
                all.extend_from_slice(c);
                if *write {
                    backlog.write_pending().unwrap();
                }
            }
            let end = 1000 + all.len() as u64;
            prop_assert_eq!(backlog.end_offset(), end);
            prop_assert!(backlog.len() >= cap.min(all.len() as u64));
            let start = backlog.start_offset();
            let from = start + ((end - start) as f64 * from_frac) as u64;
            let mut got = Vec::new();
            let mut at = from;
            while at < end && got.len() < max {
                let piece = backlog.read(history, at, max - got.len()).unwrap();
                prop_assert!(!piece.is_empty());
                at += piece.len() as u64;
                got.extend(piece);
            }
            let i = (from - 1000) as usize;
            prop_assert_eq!(&got[..], &all[i..(i + max).min(all.len())]);
            if start > 1000 {
                prop_assert!(backlog.read(history, start - 1, max).is_err());
            }
            prop_assert!(backlog.read(history, end + 1, max).is_err());
            prop_assert!(backlog.read(history + 1, from, max).is_err(), "another history");
        }
    }

    #[test]
    fn files_hold_every_written_byte_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), 1 << 20, 10, 100);
        let backlog = Backlog::new(500, config.clone());
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for piece in data.chunks(70) {
            backlog.append(piece);
            backlog.write_pending().unwrap();
        }
        assert_eq!(backlog.written(), 1500);
        assert_eq!(backlog.sync().unwrap(), 1500);
        drop(backlog);
        let reopened = Backlog::new(0, config);
        assert_eq!(reopened.open_existing().unwrap(), Some((500, 1500)));
        let h = reopened.history();
        assert_eq!(reopened.read(h, 650, 50).unwrap(), &data[150..200]);
        reopened.truncate(1200).unwrap();
        assert_eq!(reopened.end_offset(), 1200);
        reopened.append(b"next");
        reopened.write_pending().unwrap();
        let h = reopened.history();
        assert_eq!(reopened.read(h, 1198, 2).unwrap(), [data[698], data[699]]);
        let total: u64 = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.len)
            .sum();
        assert_eq!(total, 704, "the truncated bytes are gone from the files");
    }

    #[test]
    fn a_log_set_aside_keeps_its_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("backlog");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(segment_path(&dir, 0), b"abc").unwrap();
        let backlog = Backlog::new(0, disk_config(&dir, 1 << 20, 10, 100));
        assert_eq!(backlog.open_existing().unwrap(), Some((0, 3)));
        let aside = backlog.set_aside(42).unwrap().unwrap();
        assert_eq!(aside, root.path().join("backlog.discarded-42"));
        assert_eq!(std::fs::read(segment_path(&aside, 0)).unwrap(), b"abc");
        backlog.reset(7);
        backlog.append(b"new");
        backlog.write_pending().unwrap();
        assert_eq!(list_segments(&dir).unwrap().len(), 1);
        assert_eq!(
            std::fs::read(segment_path(&aside, 0)).unwrap(),
            b"abc",
            "reset leaves the set-aside files alone"
        );
    }

    #[test]
    fn a_gap_between_segments_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 0), b"abc").unwrap();
        std::fs::write(segment_path(dir.path(), 10), b"def").unwrap();
        let backlog = Backlog::new(0, disk_config(dir.path(), 1 << 20, 10, 100));
        let err = backlog.open_existing().unwrap_err().to_string();
        assert!(
            err.contains("00000000000000000010.seg") && err.contains("ends at 3"),
            "{err}"
        );
    }

    #[test]
    fn trims_whole_segments_keeping_capacity_and_the_snapshot_tail() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = Backlog::new(0, disk_config(dir.path(), 250, 50, 100));
        backlog.set_retain_from(300);
        for _ in 0..100 {
            backlog.append(&[7u8; 10]);
            backlog.write_pending().unwrap();
        }
        assert!(
            backlog.start_offset() <= 300,
            "bytes since the snapshot are kept: {}",
            backlog.start_offset()
        );
        backlog.set_retain_from(u64::MAX);
        backlog.append(&[7u8; 10]);
        backlog.write_pending().unwrap();
        assert!(
            backlog.len() >= 250 && backlog.len() < 360,
            "{}",
            backlog.len()
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            backlog.segments()
        );
    }

    #[test]
    fn unwritten_bytes_stay_in_memory_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let backlog = Backlog::new(0, disk_config(dir.path(), 1 << 20, 4, 1 << 20));
        backlog.append(b"0123456789");
        assert_eq!(
            backlog.memory_len(),
            10,
            "nothing written yet: all in memory"
        );
        assert_eq!(
            backlog.read(backlog.history(), 0, 100).unwrap(),
            b"0123456789"
        );
        backlog.write_pending().unwrap();
        backlog.append(b"ab");
        assert!(backlog.memory_len() <= 4);
        assert_eq!(
            backlog.read(backlog.history(), 0, 100).unwrap(),
            b"01234567",
            "from the file, up to what memory holds"
        );
        assert_eq!(
            backlog.read(backlog.history(), 8, 100).unwrap(),
            b"89ab",
            "the rest from memory"
        );
        assert_eq!(backlog.durable(), 0);
        backlog.write_pending().unwrap();
        backlog.sync().unwrap();
        assert_eq!(backlog.durable(), 12);
    }

    #[test]
    fn sizer_tracks_rate_and_peak() {
        let mut s = BacklogSizer::default();
        let mut offset = 0;
        let t0 = 1_000_000_000i64;
        for sec in 0..30 {
            offset += if sec < 15 { 10_000 } else { 1_000 };
            s.handle_offset((t0 + sec) * 1000, offset);
        }
        s.handle_offset((t0 + 30) * 1000, offset);
        assert!(
            (s.current_rate() - 1000.0).abs() < 1.0,
            "{}",
            s.current_rate()
        );
        assert!((s.peak_rate() - 10_000.0).abs() < 1.0, "{}", s.peak_rate());
        assert_eq!(
            effective_capacity(1000, Some(60.0), s.peak_rate(), u64::MAX),
            900_000
        );
        assert_eq!(
            effective_capacity(1000, Some(60.0), s.peak_rate(), 5000),
            5000
        );
        assert_eq!(
            effective_capacity(1000, None, s.peak_rate(), u64::MAX),
            1000
        );
    }
}
