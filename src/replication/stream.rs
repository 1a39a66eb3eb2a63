//! The replication stream: the effects of writes, in execution order, as
//! RESP command bytes at byte offsets (Redis's `master_repl_offset`).
//!
//! The log lives under the dataset lock beside the keyspace, so the order of
//! bytes in the stream is the order in which writes changed the data. A
//! command is appended whole; a transaction is appended whole, wrapped in
//! MULTI/EXEC, so a replica applies it atomically. A replica forwards the
//! bytes it receives verbatim ([`ReplicationLog::append_raw`]): every node of
//! a replication group has the same bytes at the same offsets, which is what
//! lets a sub-replica be re-pointed at any of them with a partial resync.

use super::backlog::{Backlog, BacklogConfig, BacklogSizer, Compacted};
use crate::resp;
use std::sync::Arc;

pub use super::ids::ReplId;

/// Where a stream stands: its history, its end offset, and the database
/// in effect there (what a reader starting at that offset must assume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    pub replid: ReplId,
    pub offset: u64,
    pub db: usize,
}

/// How a replica's request for history is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// Partial: stream from this offset.
    Continue { offset: u64 },
    /// Full: the history asked for is not here.
    Full { reason: String },
    /// Neither: the replica holds acknowledged writes of this node's
    /// history that this node lost; a full sync would erase them.
    Refuse { reason: String },
    /// The replica went on past where this node's history forked from
    /// its own (a demoted primary with writes its successor never got)
    /// and can rebuild its data at the fork from its snapshot and log:
    /// it rewinds to `to`, sets the writes after it aside, and continues
    /// partially from there.
    Rewind { to: u64 },
}

/// Writes of a history this node acknowledged but no longer holds (it came
/// back behind what it had: log lost or cut short). A replica holding any
/// of them must not be overwritten by a full sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostHistory {
    pub replid: ReplId,
    /// This node holds the history up to here...
    pub recovered: u64,
    /// ...but had acknowledged up to here.
    pub acknowledged: u64,
}

struct TxStage {
    /// The SELECT of the first effect, which goes before MULTI (as Redis
    /// writes it).
    select: Vec<u8>,
    bytes: Vec<u8>,
    commands: usize,
    db_before: Option<usize>,
}

/// The node's replication stream: its history ids and the log that holds
/// its bytes. Lives under the dataset lock; the log itself is shared (its
/// IO happens outside that lock).
pub struct ReplicationLog {
    pub replid: ReplId,
    /// The previous history (after a promotion), valid up to
    /// `second_offset`.
    pub replid2: ReplId,
    pub second_offset: Option<u64>,
    backlog: Arc<Backlog>,
    config: BacklogConfig,
    /// The database the stream's reader has selected, as far as this
    /// node's own emissions are concerned (`None` forces a SELECT).
    stream_db: Option<usize>,
    /// The database in effect at the end of the stream (set by emissions
    /// and, on a replica, by the applier): a reader starting at the end
    /// offset must begin in it.
    pub end_db: usize,
    tx: Option<TxStage>,
    /// Bumped whenever the history is replaced (full sync, promotion), so
    /// senders streaming the old history stop.
    pub generation: u64,
    /// Write-rate tracking for outage-based sizing and INFO.
    pub sizer: BacklogSizer,
    /// Where this history began with an empty dataset, if the log holds it
    /// from there (a node that never took a snapshot replays from it).
    pub empty_at: Option<u64>,
    /// Acknowledged writes this node lost (see [`LostHistory`]).
    pub lost: Option<LostHistory>,
}

/// The replication ids that name the log's bytes, saved beside the
/// segment files so a restarted node knows which history they belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub replid: ReplId,
    pub replid2: ReplId,
    pub second_offset: Option<u64>,
    pub empty_at: Option<u64>,
}

impl Meta {
    fn path(config: &BacklogConfig) -> Option<std::path::PathBuf> {
        config.dir.as_ref().map(|d| d.join("meta"))
    }

    /// The ids saved in the log directory, if any.
    pub fn read(config: &BacklogConfig) -> Option<Meta> {
        let text = std::fs::read_to_string(Self::path(config)?).ok()?;
        let mut lines = text.lines();
        let replid = ReplId::from(lines.next()?);
        let replid2 = ReplId::from(lines.next()?);
        let second_offset = lines.next()?.parse::<u64>().ok();
        let empty_at = lines.next().and_then(|l| l.parse::<u64>().ok());
        Some(Meta {
            replid,
            replid2,
            second_offset,
            empty_at,
        })
    }

    fn write(&self, config: &BacklogConfig) {
        let Some(path) = Self::path(config) else {
            return;
        };
        let opt = |o: Option<u64>| o.map(|o| o.to_string()).unwrap_or("-".into());
        let text = format!(
            "{}\n{}\n{}\n{}\n",
            self.replid,
            self.replid2,
            opt(self.second_offset),
            opt(self.empty_at)
        );
        if let Err(e) = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
            .and_then(|_| crate::persist::write_atomically(&path, text.as_bytes()))
        {
            tracing::warn!(error = %e, "cannot save the log's replication ids");
        }
    }
}

impl ReplicationLog {
    /// A stream with a fresh history at offset 0. Files are not touched
    /// until start-up recovery decides ([`ReplicationLog::start_history`],
    /// [`ReplicationLog::resume`]).
    pub fn new(config: BacklogConfig) -> ReplicationLog {
        ReplicationLog {
            replid: ReplId::random(),
            replid2: ReplId::none(),
            second_offset: None,
            backlog: Arc::new(Backlog::new(0, config.clone())),
            config,
            stream_db: None,
            end_db: 0,
            tx: None,
            generation: 0,
            sizer: BacklogSizer::default(),
            empty_at: None,
            lost: None,
        }
    }

    fn save_meta(&self) {
        Meta {
            replid: self.replid.clone(),
            replid2: self.replid2.clone(),
            second_offset: self.second_offset,
            empty_at: self.empty_at,
        }
        .write(&self.config);
    }

    /// The log's ids as saved in its directory.
    pub fn saved_meta(&self) -> Option<Meta> {
        Meta::read(&self.config)
    }

    /// The shared log, and the history it holds now (for reads outside the
    /// dataset lock).
    pub fn log(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// A brand-new history at `offset`: the log is emptied and records
    /// everything from here. `from_empty`: the dataset is empty here, so
    /// replaying the log from here rebuilds it (no snapshot needed).
    pub fn start_history(&mut self, offset: u64, from_empty: bool) {
        self.reset(ReplId::random(), offset, 0);
        self.empty_at = from_empty.then_some(offset);
        self.save_meta();
    }

    /// Continues a history recovered at start-up: the log's files are
    /// already open and replayed up to their end.
    pub fn resume(&mut self, meta: Meta, db: usize) {
        self.replid = meta.replid;
        self.replid2 = meta.replid2;
        self.second_offset = meta.second_offset;
        self.empty_at = meta.empty_at;
        self.end_db = db;
        self.stream_db = None;
        self.tx = None;
        self.generation += 1;
        self.sizer.rebase(self.offset());
        self.save_meta();
    }

    /// Sizes the backlog for outages (cron). No IO.
    pub fn tick(&mut self, now_ms: i64, size: u64, outage_secs: Option<f64>, max_disk: u64) {
        self.sizer.handle_offset(now_ms, self.offset());
        let capacity =
            super::backlog::effective_capacity(size, outage_secs, self.sizer.peak_rate(), max_disk);
        if self.config.capacity != capacity {
            self.config.capacity = capacity;
            self.backlog.set_capacity(capacity);
        }
    }

    /// The offset of the next byte (`master_repl_offset`).
    pub fn offset(&self) -> u64 {
        self.backlog.end_offset()
    }

    /// (replid, offset, db) for snapshot headers.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            replid: self.replid.clone(),
            offset: self.offset(),
            db: self.end_db,
        }
    }

    /// The backlog's effective capacity (fixed, or sized for an outage).
    pub fn capacity(&self) -> u64 {
        self.config.capacity
    }

    /// How many seconds of outage the backlog covers at the current write
    /// rate: a replica cut off now is trimmed past after `capacity` more
    /// bytes.
    pub fn outage_seconds_covered(&self) -> f64 {
        let rate = self.sizer.current_rate();
        if rate <= 0.0 {
            f64::INFINITY
        } else {
            self.config.capacity as f64 / rate
        }
    }

    /// Restores a history (full sync installed): the stream continues at
    /// `offset` of `replid`, with an empty log.
    pub fn reset(&mut self, replid: ReplId, offset: u64, db: usize) {
        self.end_db = db;
        self.replid = replid;
        self.replid2 = ReplId::none();
        self.second_offset = None;
        self.empty_at = None;
        self.backlog.reset(offset);
        self.stream_db = None;
        self.tx = None;
        self.generation += 1;
        self.sizer.rebase(offset);
        self.save_meta();
    }

    /// A replica becomes a primary: a new history starts here, and the old
    /// one stays acceptable up to this offset (PSYNC2), so the other
    /// replicas of the old primary continue with a partial resync.
    pub fn promote(&mut self) {
        let offset = self.offset();
        self.replid2 = std::mem::replace(&mut self.replid, ReplId::random());
        self.second_offset = Some(offset);
        self.stream_db = None;
        self.generation += 1;
        self.save_meta();
    }

    /// A replica continuing from a promoted upstream's previous history:
    /// the upstream's new id becomes ours, ours stays valid up to `offset`
    /// for our own sub-replicas.
    pub fn adopt_replid(&mut self, replid: ReplId, offset: u64) {
        self.replid2 = std::mem::replace(&mut self.replid, replid);
        self.second_offset = Some(offset);
        self.save_meta();
    }

    /// Records one write effect, executed in database `db`.
    pub fn emit<A: AsRef<[u8]>>(&mut self, db: usize, args: &[A]) {
        let mut out = Vec::with_capacity(64);
        if self.stream_db != Some(db) {
            let db_text = db.to_string();
            let select = [b"SELECT".as_slice(), db_text.as_bytes()];
            match &mut self.tx {
                Some(tx) if tx.commands == 0 => resp::encode_request(&select, &mut tx.select),
                _ => resp::encode_request(&select, &mut out),
            }
            self.stream_db = Some(db);
        }
        self.end_db = db;
        resp::encode_request(args, &mut out);
        match &mut self.tx {
            Some(tx) => {
                tx.bytes.extend_from_slice(&out);
                tx.commands += 1;
            }
            None => self.backlog.append(&out),
        }
    }

    /// Makes the next effect select its database explicitly (a reader
    /// joins the stream here, as Redis does when a replica attaches).
    pub fn force_select(&mut self) {
        self.stream_db = None;
    }

    /// Records a command that belongs to no database (the keepalive PING
    /// Redis primaries feed their replicas).
    pub fn emit_global<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        if self.tx.is_some() {
            return;
        }
        let mut out = Vec::with_capacity(16);
        resp::encode_request(args, &mut out);
        self.backlog.append(&out);
    }

    /// Whether effects are being collected into a transaction.
    pub fn in_tx(&self) -> bool {
        self.tx.is_some()
    }

    /// Starts collecting the effects of an EXEC.
    pub fn begin_tx(&mut self) {
        if self.tx.is_none() {
            self.tx = Some(TxStage {
                select: Vec::new(),
                bytes: Vec::new(),
                commands: 0,
                db_before: self.stream_db,
            });
        }
    }

    /// Appends the collected transaction: wrapped in MULTI/EXEC when it
    /// holds more than one effect.
    pub fn end_tx(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        match tx.commands {
            0 => self.stream_db = tx.db_before,
            1 => {
                let mut out = tx.select;
                out.extend_from_slice(&tx.bytes);
                self.backlog.append(&out);
            }
            _ => {
                let mut out = tx.select;
                out.reserve(tx.bytes.len() + 32);
                resp::encode_request(&[b"MULTI".as_slice()], &mut out);
                out.extend_from_slice(&tx.bytes);
                resp::encode_request(&[b"EXEC".as_slice()], &mut out);
                self.backlog.append(&out);
            }
        }
    }

    /// The log was cut back to `offset` (a rewind): the stream continues
    /// there, in database `db`.
    pub fn rewound(&mut self, offset: u64, db: usize) {
        debug_assert_eq!(self.offset(), offset);
        self.end_db = db;
        self.stream_db = None;
        self.tx = None;
        self.generation += 1;
        self.sizer.rebase(offset);
        self.save_meta();
    }

    /// Appends bytes received from this node's upstream, unchanged.
    pub fn append_raw(&mut self, bytes: &[u8]) {
        self.backlog.append(bytes);
        // The upstream's SELECTs are in the bytes; if this node is promoted
        // its own first write must select explicitly.
        self.stream_db = None;
    }

    /// The PSYNC decision for a replica holding `replid` up to `offset`
    /// that can rebuild its data at any offset from `rewind_from` on (its
    /// snapshot's, when its log continues it).
    pub fn resync_or_rewind(
        &self,
        replid: &ReplId,
        offset: u64,
        rewind_from: Option<u64>,
    ) -> Resync {
        let decision = self.resync(replid, offset);
        let Resync::Full { .. } = decision else {
            return decision;
        };
        match (self.second_offset, rewind_from) {
            (Some(fork), Some(from))
                if *replid == self.replid2
                    && offset > fork
                    && from <= fork
                    && self.backlog.covers(fork) =>
            {
                Resync::Rewind { to: fork }
            }
            _ => decision,
        }
    }

    /// The PSYNC decision for a replica holding `replid` up to `offset`.
    pub fn resync(&self, replid: &ReplId, offset: u64) -> Resync {
        if let Some(lost) = self
            .lost
            .as_ref()
            .filter(|l| l.replid == *replid && offset > l.recovered)
        {
            return Resync::Refuse {
                reason: format!(
                    "the replica holds history {replid} up to {offset}, past what this node recovered ({}; it had acknowledged {}): a full sync would erase acknowledged writes",
                    lost.recovered, lost.acknowledged
                ),
            };
        }
        let current = *replid == self.replid;
        if current && offset > self.offset() {
            return Resync::Refuse { reason: format!("the replica is ahead of this node in its own history ({offset} > {}): a full sync would erase writes", self.offset()) };
        }
        let known =
            current || (*replid == self.replid2 && self.second_offset.is_some_and(|s| offset <= s));
        if !known {
            return Resync::Full {
                reason: format!(
                    "replication id {replid} is not {} or a valid {}",
                    self.replid, self.replid2
                ),
            };
        }
        if !self.backlog.covers(offset) {
            return Resync::Full {
                reason: format!(
                    "offset {offset} is outside the backlog [{}, {}]",
                    self.backlog.start_offset(),
                    self.backlog.end_offset()
                ),
            };
        }
        Resync::Continue { offset }
    }

    /// Up to `max` stream bytes from `from` (tests and tools; senders read
    /// through [`ReplicationLog::log`] outside the dataset lock).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<u8>, Compacted> {
        self.backlog.read(self.backlog.history(), from, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &mut ReplicationLog, from: u64) -> String {
        String::from_utf8(log.read(from, usize::MAX).unwrap()).unwrap()
    }

    #[test]
    fn every_write_is_recorded() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(1024));
        log.emit(0, &["SET", "k", "v"]);
        assert_eq!(
            text(&mut log, 0),
            "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
    }

    #[test]
    fn select_only_when_db_changes() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(1024));
        log.emit(0, &["DEL", "a"]);
        let after_first = log.offset();
        log.emit(0, &["DEL", "b"]);
        log.emit(3, &["DEL", "c"]);
        assert_eq!(text(&mut log, after_first), "*2\r\n$3\r\nDEL\r\n$1\r\nb\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$3\r\nDEL\r\n$1\r\nc\r\n");
    }

    #[test]
    fn transactions_wrapped_only_when_needed() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(1024));
        log.emit(0, &["DEL", "x"]);
        let start = log.offset();
        log.begin_tx();
        log.emit(0, &["INCR", "a"]);
        log.emit(0, &["INCR", "b"]);
        log.end_tx();
        assert!(text(&mut log, start).starts_with("*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR"));
        assert!(text(&mut log, start).ends_with("*1\r\n$4\r\nEXEC\r\n"));
        let start = log.offset();
        log.begin_tx();
        log.emit(0, &["INCR", "a"]);
        log.end_tx();
        assert_eq!(text(&mut log, start), "*2\r\n$4\r\nINCR\r\n$1\r\na\r\n");
        log.begin_tx();
        log.end_tx();
        assert_eq!(
            log.offset(),
            start + 21,
            "an empty transaction adds nothing"
        );
    }

    #[test]
    fn a_replica_ahead_of_this_node_is_never_overwritten() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(1024));
        log.reset(ReplId::from("a".repeat(40)), 100, 0);
        assert!(
            matches!(
                log.resync(&ReplId::from("a".repeat(40)), 150),
                Resync::Refuse { .. }
            ),
            "ahead in our own history"
        );
        log.lost = Some(LostHistory {
            replid: ReplId::from("b".repeat(40)),
            recovered: 40,
            acknowledged: 90,
        });
        assert!(
            matches!(
                log.resync(&ReplId::from("b".repeat(40)), 60),
                Resync::Refuse { .. }
            ),
            "holds writes we lost"
        );
        assert!(
            matches!(
                log.resync(&ReplId::from("b".repeat(40)), 40),
                Resync::Full { .. }
            ),
            "holds nothing we lost"
        );
    }

    #[test]
    fn a_demoted_primary_past_the_fork_rewinds_when_it_can() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(1 << 16));
        let old = log.replid.clone();
        log.emit(0, &["SET", "k", "v"]);
        let fork = log.offset();
        log.promote();
        log.emit(0, &["SET", "k", "w"]);
        // The old primary went on to fork + 40 after it was replaced.
        assert_eq!(
            log.resync_or_rewind(&old, fork + 40, Some(0)),
            Resync::Rewind { to: fork }
        );
        assert!(
            matches!(
                log.resync_or_rewind(&old, fork + 40, None),
                Resync::Full { .. }
            ),
            "no snapshot and log to rebuild from"
        );
        assert!(
            matches!(
                log.resync_or_rewind(&old, fork + 40, Some(fork + 1)),
                Resync::Full { .. }
            ),
            "its snapshot is past the fork"
        );
        assert_eq!(
            log.resync_or_rewind(&old, fork, Some(0)),
            Resync::Continue { offset: fork },
            "at the fork: a plain partial resync"
        );
        let other = ReplId::from("c".repeat(40));
        assert!(matches!(
            log.resync_or_rewind(&other, fork + 40, Some(0)),
            Resync::Full { .. }
        ));
    }

    #[test]
    fn resync_decisions() {
        let mut log = ReplicationLog::new(BacklogConfig::memory(64));
        let id = log.replid.clone();
        assert_eq!(log.resync(&id, 0), Resync::Continue { offset: 0 });
        for _ in 0..10 {
            log.emit(0, &["SET", "key", "value"]);
        }
        assert!(
            matches!(log.resync(&id, 0), Resync::Full { .. }),
            "trimmed history"
        );
        let end = log.offset();
        assert_eq!(log.resync(&id, end), Resync::Continue { offset: end });
        assert!(matches!(
            log.resync(&ReplId::from("f".repeat(40)), end),
            Resync::Full { .. }
        ));
        log.promote();
        assert_eq!(
            log.resync(&id, end),
            Resync::Continue { offset: end },
            "old history up to the promotion"
        );
        log.emit(0, &["SET", "k", "v"]);
        assert!(
            matches!(log.resync(&id, log.offset()), Resync::Full { .. }),
            "old id past the promotion point"
        );
    }
}
