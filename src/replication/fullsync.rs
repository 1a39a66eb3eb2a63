//! Full sync by resumable snapshot files.
//!
//! The primary writes a point-in-time snapshot (the data at stream offset
//! X, copied without pausing writes — values are copy-on-write) to a file
//! under `dir/repl-snapshots/`, with a whole-file CRC32, and keeps it while
//! transfers use it and for `repl.snapshot_keep_secs` after, so a replica whose link broke can
//! ask for the rest from byte N and another replica can reuse it while X is
//! still in the backlog. The replica writes chunks to `dir/fullsync.part`
//! as they arrive, each verified; after the last byte it verifies the whole
//! file, loads it into a fresh keyspace and swaps it in. A bad chunk is not
//! written (the link is dropped and the chunk re-requested); a bad file is
//! deleted and never loaded. Beside the part file, `dir/fullsync.meta`
//! names the transfer, so a replica restarted mid-transfer asks for the
//! rest too (the part file's length is how far it got; the whole-file
//! checksum still decides whether the result is loaded).

use super::ids::ReplId;
use crate::keyspace::Image;
use crate::persist::{SnapshotError, SnapshotHeader, SnapshotWriter};
use parking_lot::Mutex;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A snapshot file the primary serves.
#[derive(Debug, Clone)]
pub struct ServedSnapshot {
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    pub crc32: u32,
    pub replid: ReplId,
    pub offset: u64,
    pub last_used: Instant,
    pub in_use: usize,
}

/// The primary's snapshot files.
#[derive(Default)]
pub struct SnapshotStore {
    files: Mutex<Vec<ServedSnapshot>>,
    /// Held while one link writes a snapshot: replicas asking for a full
    /// sync meanwhile wait for it and share it (one snapshot for a herd).
    pub making: tokio::sync::Mutex<()>,
    /// The total bandwidth budget of all snapshot transfers.
    pub total_rate: Mutex<RateLimiter>,
}

/// A token bucket (sans-IO): how long to wait before sending `n` bytes
/// keeps a transfer within `bytes_per_sec`, with bursts of a quarter
/// second. A rate of 0 is unlimited.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec,
            tokens: 0.0,
            last: None,
        }
    }

    /// Changes the rate (CONFIG SET), keeping what was earned.
    pub fn set_rate(&mut self, bytes_per_sec: u64) {
        self.bytes_per_sec = bytes_per_sec;
    }

    /// Takes `n` bytes' worth of tokens at `now`; returns how long the
    /// caller must wait before sending them.
    pub fn take(&mut self, now: Instant, n: usize) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let rate = self.bytes_per_sec as f64;
        let burst = rate / 4.0;
        let elapsed = self
            .last
            .map(|l| now.saturating_duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed * rate).min(burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

impl SnapshotStore {
    pub fn find(&self, id: &str) -> Option<ServedSnapshot> {
        self.files.lock().iter().find(|s| s.id == id).cloned()
    }

    /// The newest snapshot of history `replid` that `usable` accepts.
    pub fn newest(&self, usable: impl Fn(&ServedSnapshot) -> bool) -> Option<ServedSnapshot> {
        self.files
            .lock()
            .iter()
            .filter(|s| usable(s))
            .max_by_key(|s| s.offset)
            .cloned()
    }

    pub fn add(&self, snapshot: ServedSnapshot) {
        self.files.lock().push(snapshot);
    }

    pub fn acquire(&self, id: &str) {
        if let Some(s) = self.files.lock().iter_mut().find(|s| s.id == id) {
            s.in_use += 1;
            s.last_used = Instant::now();
        }
    }

    pub fn release(&self, id: &str) {
        if let Some(s) = self.files.lock().iter_mut().find(|s| s.id == id) {
            s.in_use = s.in_use.saturating_sub(1);
            s.last_used = Instant::now();
        }
    }

    /// Deletes files unused for longer than `keep` (cron).
    pub fn sweep(&self, keep: Duration) {
        self.files.lock().retain(|s| {
            let expired = s.in_use == 0 && s.last_used.elapsed() > keep;
            if expired {
                let _ = std::fs::remove_file(&s.path);
                tracing::info!(id = %s.id, "replication snapshot file expired");
            }
            !expired
        });
    }

    pub fn count(&self) -> usize {
        self.files.lock().len()
    }

    /// The oldest offset a snapshot in transfer continues from.
    pub fn oldest_in_transfer(&self) -> Option<u64> {
        self.files
            .lock()
            .iter()
            .filter(|s| s.in_use > 0)
            .map(|s| s.offset)
            .min()
    }
}

/// A writer that computes the CRC32 of everything written through it.
pub struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> CrcWriter<W> {
    pub fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `dbs` as snapshot file `id` in `dir` (blocking; run it on a
/// blocking thread). Returns (path, size, crc32).
pub fn write_snapshot_file(
    dir: &Path,
    id: &str,
    image: &Image,
    header: &SnapshotHeader,
    now_ms: i64,
) -> Result<(PathBuf, u64, u32), SnapshotError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{id}.snap"));
    let file = std::fs::File::create(&path)?;
    let mut writer = SnapshotWriter::new(
        CrcWriter::new(std::io::BufWriter::with_capacity(1 << 20, file)),
        header,
    )?;
    writer.write_image(&image.dbs, &image.functions, now_ms)?;
    let out = writer.finish()?;
    let (crc, len) = (out.crc.finalize(), out.len);
    out.inner.into_inner().map_err(|e| e.into_error())?;
    Ok((path, len, crc))
}

/// CRC32 of a whole file (blocking).
pub fn file_crc32(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Removes leftovers of earlier runs (start-up).
pub fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The replica's partly received snapshot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IncomingSnapshot {
    pub id: String,
    pub replid: ReplId,
    pub offset: u64,
    pub size: u64,
    pub crc32: u32,
    /// Bytes received so far (on disk: the part file's length).
    #[serde(skip)]
    pub received: u64,
    #[serde(skip)]
    pub path: PathBuf,
}

const PART_FILE: &str = "fullsync.part";
const META_FILE: &str = "fullsync.meta";

/// Where a replica in data directory `dir` keeps a transfer's bytes.
pub fn part_path(dir: &Path) -> PathBuf {
    dir.join(PART_FILE)
}

/// Records which transfer the part file in `dir` belongs to (atomically:
/// a torn record would name the wrong snapshot).
pub fn save_incoming(dir: &Path, incoming: &IncomingSnapshot) -> std::io::Result<()> {
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(incoming).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(META_FILE))
}

/// Forgets a transfer: its part file and its record.
pub fn discard_incoming(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(PART_FILE));
    let _ = std::fs::remove_file(dir.join(META_FILE));
}

/// The transfer an earlier run of a replica left in `dir`, if both files
/// are there and agree; anything else is discarded.
pub fn recover_incoming(dir: &Path) -> Option<IncomingSnapshot> {
    let recovered = (|| {
        let meta: IncomingSnapshot =
            serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).ok()?).ok()?;
        let received = std::fs::metadata(dir.join(PART_FILE)).ok()?.len();
        (received <= meta.size).then_some(IncomingSnapshot {
            received,
            path: dir.join(PART_FILE),
            ..meta
        })
    })();
    if recovered.is_none() {
        discard_incoming(dir);
    }
    recovered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_spaces_sends_to_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1_000_000);
        let mut at = t0;
        let mut waited = Duration::ZERO;
        // 4 MB at 1 MB/s: about 4 s of waiting, whatever the chunking.
        for _ in 0..64 {
            let wait = r.take(at, 62_500);
            waited += wait;
            at += wait;
        }
        assert!((3.7..4.1).contains(&waited.as_secs_f64()), "{waited:?}");
        assert_eq!(RateLimiter::new(0).take(t0, 1 << 30), Duration::ZERO);
    }

    #[test]
    fn an_interrupted_transfer_is_recovered_only_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recover_incoming(dir.path()).is_none());
        let incoming = IncomingSnapshot {
            id: "abc".into(),
            replid: ReplId::from("r".repeat(40)),
            offset: 7,
            size: 100,
            crc32: 9,
            received: 0,
            path: PathBuf::new(),
        };
        save_incoming(dir.path(), &incoming).unwrap();
        // A record without its part file is dropped.
        assert!(recover_incoming(dir.path()).is_none());
        assert!(!dir.path().join(META_FILE).exists());
        save_incoming(dir.path(), &incoming).unwrap();
        std::fs::write(part_path(dir.path()), [1u8; 40]).unwrap();
        let back = recover_incoming(dir.path()).unwrap();
        assert_eq!(
            (
                back.id.as_str(),
                back.offset,
                back.size,
                back.crc32,
                back.received
            ),
            ("abc", 7, 100, 9, 40)
        );
        // A part file longer than the snapshot (or a torn record) is dropped.
        std::fs::write(part_path(dir.path()), [1u8; 101]).unwrap();
        assert!(recover_incoming(dir.path()).is_none());
        assert!(!part_path(dir.path()).exists());
        save_incoming(dir.path(), &incoming).unwrap();
        std::fs::write(part_path(dir.path()), [1u8; 10]).unwrap();
        std::fs::write(dir.path().join(META_FILE), b"{\"id\":").unwrap();
        assert!(recover_incoming(dir.path()).is_none());
    }

    #[test]
    fn file_crc_matches_streamed_crc() {
        let dir = tempfile::tempdir().unwrap();
        let mut ks = crate::keyspace::Keyspace::new();
        for i in 0..1000 {
            ks.dbs[0].set(
                format!("k{i}").as_bytes(),
                crate::keyspace::Value::string(b"v"),
                false,
            );
        }
        let (path, size, crc) = write_snapshot_file(
            dir.path(),
            "s1",
            &ks.snapshot(),
            &SnapshotHeader::default(),
            0,
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        assert_eq!(file_crc32(&path).unwrap(), crc);
    }
}
