//! The replication backlog: the most recent bytes of the stream, kept so a
//! replica that reconnects — after a WAN outage of minutes, or a restart —
//! continues from its offset instead of copying the whole data set again.
//!
//! Every byte goes to append-only segment files on disk (`NNNN.seg`, named
//! by the offset of their first byte, which is the offset index: a read
//! finds its segment by binary search and its position by subtraction); the
//! most recent bytes are also kept in memory, where live replicas read
//! them. Trimming drops whole segments from the front once more than the
//! capacity is kept. Without a directory (unit tests) the backlog is
//! memory only.
//!
//! Invariant: the backlog holds exactly the stream bytes
//! `[start_offset, end_offset)`. A read outside is the typed answer
//! [`Compacted`] ("that history is gone, do a full sync").

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The requested offset is no longer (or not yet) in the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {requested} is outside the backlog [{start}, {end}]")]
pub struct Compacted {
    pub requested: u64,
    pub start: u64,
    pub end: u64,
}

/// How a backlog is laid out.
#[derive(Debug, Clone)]
pub struct BacklogConfig {
    /// Bytes of history to keep (at least; trimming is by whole segment).
    pub capacity: u64,
    /// Bytes of the tail also kept in memory.
    pub memory_bytes: usize,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
    /// Where segment files live; `None` keeps everything in memory.
    pub dir: Option<PathBuf>,
}

impl BacklogConfig {
    pub fn memory(capacity: u64) -> BacklogConfig {
        BacklogConfig { capacity, memory_bytes: capacity as usize, segment_bytes: 64 << 20, dir: None }
    }
}

#[derive(Debug)]
struct Segment {
    start: u64,
    len: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
}

#[derive(Debug)]
pub struct Backlog {
    config: BacklogConfig,
    start_offset: u64,
    end_offset: u64,
    memory: VecDeque<u8>,
    disk: Option<Disk>,
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

impl Backlog {
    /// An empty backlog whose next byte will be at `offset`; any segment
    /// files already in the directory are removed.
    pub fn new(offset: u64, config: BacklogConfig) -> Backlog {
        let disk = config.dir.as_ref().and_then(|dir| {
            let prepared = std::fs::create_dir_all(dir).and_then(|_| remove_segments(dir));
            match prepared {
                Ok(()) => Some(Disk { dir: dir.clone(), segments: VecDeque::new(), writer: None }),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "backlog directory unusable; keeping the backlog in memory only");
                    None
                }
            }
        });
        let mut backlog = Backlog { config, start_offset: offset, end_offset: offset, memory: VecDeque::new(), disk };
        if backlog.disk.is_none() {
            backlog.config.memory_bytes = backlog.config.capacity as usize;
        }
        backlog
    }

    /// Reopens the segments in `config.dir` and keeps the history up to
    /// `offset` (bytes after it belong to writes the restarted node no
    /// longer has). Returns `None` when the files do not cover `offset`.
    pub fn recover(offset: u64, config: BacklogConfig) -> Option<Backlog> {
        let dir = config.dir.clone()?;
        let mut segments: Vec<Segment> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let start = name.strip_suffix(".seg")?.parse::<u64>().ok()?;
                let len = e.metadata().ok()?.len();
                Some(Segment { start, len, path: e.path() })
            })
            .collect();
        segments.sort_by_key(|s| s.start);
        // Contiguous run only.
        let contiguous = segments.windows(2).all(|w| w[0].start + w[0].len == w[1].start);
        let first = segments.first()?.start;
        let last = segments.last().map(|s| s.start + s.len)?;
        if !contiguous || offset < first || offset > last {
            return None;
        }
        let mut kept = VecDeque::new();
        for mut seg in segments {
            if seg.start > offset || (seg.start == offset && seg.start != first) {
                let _ = std::fs::remove_file(&seg.path);
                continue;
            }
            if seg.start + seg.len > offset {
                let file = OpenOptions::new().write(true).open(&seg.path).ok()?;
                file.set_len(offset - seg.start).ok()?;
                seg.len = offset - seg.start;
            }
            kept.push_back(seg);
        }
        let writer = kept.back().and_then(|s| OpenOptions::new().append(true).open(&s.path).ok()).map(|f| BufWriter::with_capacity(64 * 1024, f));
        let backlog = Backlog { start_offset: first, end_offset: offset, memory: VecDeque::new(), disk: Some(Disk { dir, segments: kept, writer }), config };
        Some(backlog)
    }

    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Bytes of history held.
    pub fn len(&self) -> u64 {
        self.end_offset - self.start_offset
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> u64 {
        self.config.capacity
    }

    pub fn memory_len(&self) -> usize {
        self.memory.len()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map(|d| d.segments.iter().map(|s| s.len).sum()).unwrap_or(0)
    }

    pub fn segments(&self) -> usize {
        self.disk.as_ref().map(|d| d.segments.len()).unwrap_or(0)
    }

    pub fn config(&self) -> &BacklogConfig {
        &self.config
    }

    pub fn set_capacity(&mut self, capacity: u64) {
        self.config.capacity = capacity.max(1);
        if self.disk.is_none() {
            self.config.memory_bytes = self.config.capacity as usize;
        }
        self.trim();
    }

    pub fn append(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.memory.extend(data);
        if self.memory.len() > self.config.memory_bytes {
            let excess = self.memory.len() - self.config.memory_bytes;
            self.memory.drain(..excess);
        }
        let end = self.end_offset;
        self.end_offset += data.len() as u64;
        if let Err(e) = self.append_disk(end, data) {
            tracing::error!(error = %e, "backlog segment write failed; keeping the backlog in memory only from here");
            self.disk = None;
            self.config.memory_bytes = self.config.capacity as usize;
            self.start_offset = self.end_offset - self.memory.len() as u64;
        }
        self.trim();
    }

    fn append_disk(&mut self, at: u64, data: &[u8]) -> std::io::Result<()> {
        let segment_bytes = self.config.segment_bytes;
        let Some(disk) = &mut self.disk else { return Ok(()) };
        let roll = disk.segments.back().is_none_or(|s| s.len >= segment_bytes) || disk.writer.is_none();
        if roll {
            if let Some(mut w) = disk.writer.take() {
                w.flush()?;
            }
            let path = segment_path(&disk.dir, at);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            disk.writer = Some(BufWriter::with_capacity(64 * 1024, file));
            disk.segments.push_back(Segment { start: at, len: 0, path });
        }
        disk.writer.as_mut().expect("opened above").write_all(data)?;
        disk.segments.back_mut().expect("pushed above").len += data.len() as u64;
        Ok(())
    }

    fn trim(&mut self) {
        match &mut self.disk {
            Some(disk) => {
                while disk.segments.len() > 1 && self.end_offset - disk.segments[1].start >= self.config.capacity {
                    if let Some(seg) = disk.segments.pop_front() {
                        let _ = std::fs::remove_file(&seg.path);
                    }
                }
                self.start_offset = disk.segments.front().map(|s| s.start).unwrap_or(self.end_offset);
            }
            None => self.start_offset = self.end_offset - self.memory.len() as u64,
        }
    }

    /// Pushes buffered segment bytes to the OS (cron, shutdown).
    pub fn flush(&mut self) {
        if let Some(w) = self.disk.as_mut().and_then(|d| d.writer.as_mut()) {
            let _ = w.flush();
        }
    }

    /// Whether a replica needing `offset` next can be served from here.
    pub fn covers(&self, offset: u64) -> bool {
        offset >= self.start_offset && offset <= self.end_offset
    }

    /// Up to `max` bytes starting at `from` (fewer at a segment boundary;
    /// callers read again).
    pub fn read(&mut self, from: u64, max: usize) -> Result<Vec<u8>, Compacted> {
        let compacted = Compacted { requested: from, start: self.start_offset, end: self.end_offset };
        if !self.covers(from) {
            return Err(compacted);
        }
        let memory_start = self.end_offset - self.memory.len() as u64;
        if from >= memory_start {
            let skip = (from - memory_start) as usize;
            let take = (self.memory.len() - skip).min(max);
            let (a, b) = self.memory.as_slices();
            let mut out = Vec::with_capacity(take);
            if skip < a.len() {
                let end = (skip + take).min(a.len());
                out.extend_from_slice(&a[skip..end]);
                out.extend_from_slice(&b[..take - (end - skip)]);
            } else {
                let s = skip - a.len();
                out.extend_from_slice(&b[s..s + take]);
            }
            return Ok(out);
        }
        self.read_disk(from, max.min((memory_start - from) as usize)).map_err(|e| {
            tracing::error!(error = %e, offset = from, "backlog segment read failed");
            compacted
        })
    }

    fn read_disk(&mut self, from: u64, max: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let Some(disk) = &mut self.disk else { return Err(std::io::Error::other("no segments")) };
        if let Some(w) = disk.writer.as_mut() {
            w.flush()?;
        }
        let i = disk.segments.partition_point(|s| s.start <= from).saturating_sub(1);
        let seg = &disk.segments[i];
        let within = from - seg.start;
        let take = (seg.len - within).min(max as u64) as usize;
        let mut out = vec![0u8; take];
        File::open(&seg.path)?.read_exact_at(&mut out, within)?;
        Ok(out)
    }
}

fn remove_segments(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
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
        BacklogSizer { buckets: vec![0; PEAK_HISTORY_SECS], current_second: 0, last_offset: 0 }
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
        let sum: u64 = (1..=RATE_WINDOW_SECS as i64).map(|back| self.buckets[self.slot(self.current_second - back)]).sum();
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
pub fn effective_capacity(size: u64, outage_secs: Option<f64>, peak_rate: f64, max_disk: u64) -> u64 {
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

    proptest! {
        #[test]
        fn reads_equal_what_was_written(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..40), cap in 1u64..300, from_frac in 0.0f64..=1.0, max in 1usize..400, on_disk: bool) {
            let dir = tempfile::tempdir().unwrap();
            let config = BacklogConfig { capacity: cap, memory_bytes: 17, segment_bytes: 23, dir: on_disk.then(|| dir.path().to_path_buf()) };
            let mut backlog = Backlog::new(1000, config);
            let mut all = Vec::new();
            for c in &chunks {
                backlog.append(c);
                all.extend_from_slice(c);
            }
            let end = 1000 + all.len() as u64;
            prop_assert_eq!(backlog.end_offset(), end);
            prop_assert!(backlog.len() >= cap.min(all.len() as u64));
            let start = backlog.start_offset();
            let from = start + ((end - start) as f64 * from_frac) as u64;
            // Read everything from `from` in pieces.
            let mut got = Vec::new();
            let mut at = from;
            while at < end && got.len() < max {
                let piece = backlog.read(at, max - got.len()).unwrap();
                prop_assert!(!piece.is_empty());
                at += piece.len() as u64;
                got.extend(piece);
            }
            let i = (from - 1000) as usize;
            prop_assert_eq!(&got[..], &all[i..(i + max).min(all.len())]);
            if start > 1000 {
                prop_assert!(backlog.read(start - 1, max).is_err());
            }
            prop_assert!(backlog.read(end + 1, max).is_err());
        }
    }

    #[test]
    fn recover_truncates_to_the_snapshot_offset() {
        let dir = tempfile::tempdir().unwrap();
        let config = BacklogConfig { capacity: 1 << 20, memory_bytes: 10, segment_bytes: 100, dir: Some(dir.path().to_path_buf()) };
        let mut backlog = Backlog::new(500, config.clone());
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        backlog.append(&data);
        backlog.flush();
        drop(backlog);
        let mut recovered = Backlog::recover(1200, config.clone()).expect("covers");
        assert_eq!((recovered.start_offset(), recovered.end_offset()), (500, 1200));
        assert_eq!(recovered.read(650, 100).unwrap(), &data[150..250]);
        recovered.append(b"next");
        assert_eq!(recovered.read(1198, 10).unwrap(), [data[698], data[699]], "disk part first");
        assert_eq!(recovered.read(1200, 10).unwrap(), b"next");
        drop(recovered);
        assert!(Backlog::recover(100, config.clone()).is_none(), "before the history");
        assert!(Backlog::recover(5000, config).is_none(), "after the history");
    }

    #[test]
    fn trims_whole_segments_keeping_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let config = BacklogConfig { capacity: 250, memory_bytes: 50, segment_bytes: 100, dir: Some(dir.path().to_path_buf()) };
        let mut backlog = Backlog::new(0, config);
        for _ in 0..100 {
            backlog.append(&[7u8; 10]);
        }
        assert!(backlog.len() >= 250 && backlog.len() < 350, "{}", backlog.len());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), backlog.segments());
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
        assert!((s.current_rate() - 1000.0).abs() < 1.0, "{}", s.current_rate());
        assert!((s.peak_rate() - 10_000.0).abs() < 1.0, "{}", s.peak_rate());
        assert_eq!(effective_capacity(1000, Some(60.0), s.peak_rate(), u64::MAX), 900_000);
        assert_eq!(effective_capacity(1000, Some(60.0), s.peak_rate(), 5000), 5000);
        assert_eq!(effective_capacity(1000, None, s.peak_rate(), u64::MAX), 1000);
    }
}
