//! The in-memory dataset: 16 databases of typed values with expiry.
//!
//! A `Keyspace` is plain data behind the server's lock; commands reach it
//! through `commands::ExecCtx`. It knows nothing of sockets or time sources:
//! `now_ms` is always passed in.

mod blob;
mod db;
pub mod digest;
mod encoding;
pub mod evict;
pub mod functions;
pub mod geo;
mod glob;
pub mod hll;
pub mod notify;
pub mod rdb;
pub mod stream;
mod value;
pub mod zset;

pub use blob::Blob;
pub use db::{scan_positions, AccessPolicy, Change, Db, WatchFlag};
pub use encoding::EncodingLimits;
pub use evict::{EvictionPolicy, Rank, Victims};
pub use functions::Libraries;
pub use glob::glob_match;
pub use value::{
    canonical_i64, entry_bytes, HashValue, ListValue, Map, SetValue, Value, ValueKind,
};
pub use zset::ZSet;

/// Number of logical databases (`databases` in redis.conf).
pub const DATABASES: usize = 16;

/// What a snapshot holds: the databases and the function libraries.
#[derive(Clone, Default)]
pub struct Image {
    pub dbs: Vec<Db>,
    pub functions: Libraries,
    /// Held while the image lives (see [`Keyspace::snapshot_alive`]).
    pub pin: std::sync::Arc<()>,
}

pub struct Keyspace {
    pub dbs: Vec<Db>,
    /// Function libraries (not per database; FLUSHALL leaves them).
    pub functions: Libraries,
    /// Writes since the last successful save (Redis's `server.dirty`).
    pub dirty: u64,
    pub expired_keys: u64,
    /// Candidates for eviction, kept between rounds.
    pub eviction: evict::EvictionPool,
    /// Cloned into every snapshot taken, so the keyspace knows whether one
    /// still shares its values.
    snapshot_pin: std::sync::Arc<()>,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new()
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace {
            dbs: (0..DATABASES).map(|_| Db::new()).collect(),
            functions: Libraries::default(),
            dirty: 0,
            expired_keys: 0,
            eviction: Default::default(),
            snapshot_pin: Default::default(),
        }
    }

    /// Switches between primary (deletes expired keys) and replica (waits
    /// for the primary's DEL) behaviour.
    pub fn set_delete_expired(&mut self, delete: bool) {
        for db in &mut self.dbs {
            db.delete_expired = delete;
        }
    }

    /// Whether lookups update access stamps (CLIENT NO-TOUCH turns it
    /// off for its client's commands).
    pub fn set_no_touch(&mut self, no_touch: bool) {
        if self.dbs[0].no_touch != no_touch {
            for db in &mut self.dbs {
                db.no_touch = no_touch;
            }
        }
    }

    /// Turns the change log keyspace notifications read on or off.
    pub fn set_track_changes(&mut self, on: bool) {
        for db in &mut self.dbs {
            db.track_changes = on;
            if !on {
                db.drain_changes();
            }
        }
    }

    /// How every database keeps access stamps (from maxmemory-policy).
    pub fn set_access_policy(&mut self, policy: AccessPolicy) {
        for db in &mut self.dbs {
            db.access_policy = policy;
        }
    }

    /// A copy of the data at this instant, sharing values copy-on-write.
    pub fn snapshot(&self) -> Image {
        Image {
            dbs: self.dbs.clone(),
            functions: self.functions.clone(),
            pin: self.snapshot_pin.clone(),
        }
    }

    /// Whether a snapshot taken from this keyspace is still alive: values
    /// the keyspace drops meanwhile stay allocated until it ends.
    pub fn snapshot_alive(&self) -> bool {
        std::sync::Arc::strong_count(&self.snapshot_pin) > 1
    }

    /// Removes and returns the keys deleted by expiry since the last call,
    /// with their database index.
    pub fn drain_expired(&mut self) -> Vec<(usize, Blob)> {
        let mut out = Vec::new();
        for (i, db) in self.dbs.iter_mut().enumerate() {
            out.extend(db.expired.drain(..).map(|k| (i, k)));
        }
        self.expired_keys += out.len() as u64;
        out
    }

    pub fn total_keys(&self) -> usize {
        self.dbs.iter().map(Db::len).sum()
    }
}
