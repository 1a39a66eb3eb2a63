//! Rewinding a demoted primary to where its successor's history forked.
//!
//! A primary replaced by a promotion (Sentinel's, or `REPLICAOF NO ONE` on
//! a replica) usually went on a little past the fork: the writes its
//! replicas had not received when it died, and whatever it took after it
//! came back before it was told to follow (Sentinel's own hello messages
//! among them). Its successor cannot continue that history, and a full
//! sync would ship the whole dataset across the WAN. Its log is its
//! write-ahead log, though: it rebuilds its data at the fork from its
//! newest snapshot and the log up to there, writes the commands after the
//! fork to `DIR/diverged-<ms>-<fork>-<end>.aof` (a RESP stream an operator
//! can read, or feed back with `redis-cli --pipe`), cuts the log at the
//! fork, and asks again: a partial resync.

use super::fence::count_commands;
use super::replica::apply_replayed;
use crate::node::{unix_ms, Shared};
use crate::persist::{self, SnapshotError};
use crate::replication::ids::ReplId;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why a rewind could not be done (the replica then asks again without
/// offering one, and takes a full sync).
#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    #[error("cannot read the snapshot to rewind from: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("the snapshot (offset {snapshot}) and log (up to {end}) cannot rebuild offset {to}")]
    NotCovered { snapshot: u64, to: u64, end: u64 },
    #[error("cannot set the diverged writes aside in {path}: {source}")]
    Aside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot cut the log at {to}: {source}")]
    Truncate { to: u64, source: std::io::Error },
    #[error("the log is unreadable at {0} while rewinding")]
    Unreadable(u64),
}

/// What a rewind did.
#[derive(Debug, Clone)]
pub struct Rewound {
    /// Where the rebuild started: the snapshot's offset, or where the
    /// history began from an empty dataset.
    pub from_snapshot: u64,
    /// Commands after the fork, set aside (not applied any more).
    pub diverged_commands: u64,
    pub diverged_bytes: u64,
    pub aside: Option<PathBuf>,
}

/// What the data is rebuilt from: the snapshot file, or nothing at all
/// when the history began from an empty dataset and the log still holds
/// it from there.
enum Base {
    Snapshot(persist::SnapshotHeader),
    Empty(u64),
}

impl Base {
    fn offset(&self) -> u64 {
        match self {
            Base::Snapshot(h) => h.repl_offset,
            Base::Empty(at) => *at,
        }
    }
}

/// The oldest offset of this node's history at which it can rebuild its
/// data: its snapshot's, when the snapshot is of this history and the log
/// continues it. Offered in the hello.
pub fn rewind_point(shared: &Shared) -> Option<u64> {
    let path = shared.settings.read().snapshot_path();
    let header = persist::read_header(&path).ok();
    let data = shared.data.lock();
    base(&data.repl, header).map(|b| b.offset())
}

fn base(
    log: &crate::replication::ReplicationLog,
    header: Option<persist::SnapshotHeader>,
) -> Option<Base> {
    let held = |at: u64| log.log().start_offset() <= at && at <= log.offset();
    if let Some(header) = header {
        let replid = ReplId::from(header.repl_id.as_str());
        let at = header.repl_offset;
        let in_history = replid == log.replid
            || (replid == log.replid2 && log.second_offset.is_some_and(|s| at <= s));
        if !header.repl_id.is_empty() && in_history && held(at) {
            return Some(Base::Snapshot(header));
        }
    }
    log.empty_at.filter(|at| held(*at)).map(Base::Empty)
}

/// Rebuilds the data at offset `to` (blocking IO: run off the runtime's
/// workers). Clients get `-LOADING` meanwhile.
pub fn rewind(shared: &Arc<Shared>, to: u64) -> Result<Rewound, RewindError> {
    let (path, dir) = {
        let s = shared.settings.read();
        (s.snapshot_path(), s.dir.clone())
    };
    let loaded = match persist::read_header(&path) {
        Ok(_) => Some(persist::load_from_file(&path)?),
        Err(_) => None,
    };
    let (header, dbs) = match loaded {
        Some((header, dbs, _)) => (Some(header), dbs),
        None => (None, crate::keyspace::Image::default()),
    };
    shared.persistence.loading.store(true, Ordering::Release);
    // Once the data or the log is touched, a failure leaves them partly
    // rebuilt: clients keep getting -LOADING until the full sync that
    // follows has replaced them.
    let mut touched = false;
    let result = (|| {
        let (from, db, diverged_commands, diverged_bytes, aside) = {
            let mut guard = shared.data.lock();
            let data = &mut *guard;
            let end = data.repl.offset();
            let base = base(&data.repl, header);
            let from = base.as_ref().map(Base::offset).unwrap_or(u64::MAX);
            if from > to || to > end {
                return Err(RewindError::NotCovered {
                    snapshot: from,
                    to,
                    end,
                });
            }
            let commands = count_commands(&mut data.repl, to, end);
            let aside = set_aside(&data.repl, &dir, to, end)?;
            touched = true;
            let db = match base {
                Some(Base::Snapshot(h)) => {
                    persist::install(&mut data.keyspace, dbs);
                    h.repl_db as usize
                }
                _ => {
                    for db in data.keyspace.dbs.iter_mut() {
                        db.clear();
                    }
                    data.keyspace.functions.clear();
                    0
                }
            };
            data.keyspace.set_delete_expired(false);
            shared
                .log
                .truncate(to)
                .map_err(|source| RewindError::Truncate { to, source })?;
            (from, db, commands, end - to, aside)
        };
        let mut session = (shared.applier)(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        session.set_db(db);
        let walk = shared
            .log
            .walk(from, to, |units| {
                apply_replayed(shared, &mut *session, units)
            })
            .map_err(|c| RewindError::Unreadable(c.requested))?;
        if walk.good_end != to || walk.problem.is_some() {
            return Err(RewindError::Unreadable(walk.good_end));
        }
        let mut data = shared.data.lock();
        data.keyspace.dirty = 0;
        data.repl.rewound(to, session.db());
        Ok(Rewound {
            from_snapshot: from,
            diverged_commands,
            diverged_bytes,
            aside,
        })
    })();
    if result.is_ok() || !touched {
        shared.persistence.loading.store(false, Ordering::Release);
    }
    result
}

/// Writes the stream `[to, end)` to a file beside the data, fsynced, before
/// the log loses it.
fn set_aside(
    log: &crate::replication::ReplicationLog,
    dir: &std::path::Path,
    to: u64,
    end: u64,
) -> Result<Option<PathBuf>, RewindError> {
    if end <= to {
        return Ok(None);
    }
    let path = dir.join(format!("diverged-{}-{to}-{end}.aof", unix_ms()));
    let aside = |source| RewindError::Aside {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::create(&path).map_err(aside)?;
    let mut at = to;
    while at < end {
        let bytes = log
            .read(at, ((end - at) as usize).min(1 << 20))
            .map_err(|c| RewindError::Unreadable(c.requested))?;
        if bytes.is_empty() {
            return Err(RewindError::Unreadable(at));
        }
        file.write_all(&bytes).map_err(aside)?;
        at += bytes.len() as u64;
    }
    file.sync_all().map_err(aside)?;
    Ok(Some(path))
}
