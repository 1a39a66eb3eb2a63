//! Node state: what every layer of a node shares — the dataset behind its
//! lock, settings, the log, role and replication facts, client registry,
//! counters — plus the clock and the shutdown signal. It sits below the
//! command handlers (`commands`) and the IO edges (`server`, `link`):
//! handlers read it and hand back [`actions::NodeAction`]s for anything
//! that needs a task or a socket; the edges carry those out after the
//! dataset lock is released.
//!
//! The dataset is one `Mutex`: a connection takes it once per batch of
//! pipelined commands, so a pipeline of N commands costs one lock
//! acquisition, and every command sees a consistent dataset (as Redis's
//! single thread gives).

pub mod actions;
pub mod apply;
pub mod blocking;
pub mod clients;
pub mod cmdstats;
pub mod eviction;
pub mod persistence;
pub mod pubsub;
pub mod role;
pub mod script_state;
pub mod scripts;
pub mod slowlog;
pub mod stats;

use crate::config::{Settings, Sources};
use crate::keyspace::Keyspace;
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

pub use actions::NodeAction;
pub use clients::ClientRegistry;
pub use stats::Stats;

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the dataset lock protects.
pub struct Data {
    pub keyspace: Keyspace,
    pub blocking: blocking::Blocking,
    pub pubsub: pubsub::PubSub,
    /// INFO's commandstats, latencystats and errorstats.
    pub cmdstats: cmdstats::CommandStats,
    /// EVAL's script cache and interpreter.
    pub scripts: scripts::Scripts,
    /// The replication stream, beside the data it describes.
    pub repl: crate::replication::ReplicationLog,
}

/// State shared by every task of a node.
pub struct Shared {
    pub data: Mutex<Data>,
    /// The log (the stream's bytes on disk), reachable without the dataset
    /// lock: client tasks and the log thread write it, senders read it.
    pub log: Arc<crate::replication::backlog::Backlog>,
    pub settings: RwLock<Settings>,
    /// The file `CONFIG REWRITE` writes, if the node was started with one.
    pub config_file: Option<std::path::PathBuf>,
    pub clients: ClientRegistry,
    pub stats: Stats,
    /// SLOWLOG's entries and LATENCY's events (locked only to record
    /// something slow or to read them).
    pub slowlog: Mutex<slowlog::SlowLog>,
    pub latency: Mutex<slowlog::LatencyMonitor>,
    /// ACL LOG: refused authentications and commands.
    pub acl_log: Mutex<crate::acl::AclLog>,
    /// A running script, as other clients see it (BUSY, SCRIPT KILL).
    pub script: Arc<script_state::ScriptState>,
    pub persistence: persistence::Persistence,
    /// How replicated units become dataset changes (the command table's
    /// entry point, handed in by whoever builds the node).
    pub applier: apply::NewApplier,
    pub run_id: String,
    pub started: Instant,
    /// The TCP port actually bound (differs from settings when 0 was asked).
    pub tcp_port: std::sync::atomic::AtomicU16,
    /// Role, upstream link, attached replicas.
    pub repl: crate::replication::Replication,
    /// The metrics port actually bound (0: none).
    pub metrics_port: std::sync::atomic::AtomicU16,
    /// ACL users (made by the command layer on first use) and their
    /// version, which clients compare with their own to notice changes.
    pub acl: RwLock<Option<crate::acl::Users>>,
    pub acl_version: std::sync::atomic::AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// The dataset lock, or `None` while a script past
    /// `busy-reply-threshold` holds it (callers answer BUSY or retry
    /// later instead of tying up a runtime thread).
    pub fn lock_unless_busy(&self) -> Option<parking_lot::MutexGuard<'_, Data>> {
        loop {
            if self.script.is_busy() {
                return None;
            }
            if let Some(g) = self.data.try_lock_for(std::time::Duration::from_millis(20)) {
                return Some(g);
            }
        }
    }

    pub fn new(settings: Settings, sources: &Sources, applier: apply::NewApplier) -> Arc<Shared> {
        let (shutdown, _) = watch::channel(false);
        let run_id: String = (0..40)
            .map(|_| format!("{:x}", rand::random_range(0..16u8)))
            .collect();
        let backlog = crate::replication::backlog::BacklogConfig::for_node(
            &settings.repl.backlog,
            &settings.dir,
        );
        let repl = crate::replication::ReplicationLog::new(backlog);
        let log = repl.log().clone();
        let mut keyspace = Keyspace::new();
        keyspace.set_access_policy(settings.access_policy());
        keyspace.set_track_changes(settings.notify_keyspace_events != 0);
        let stats = Stats::default();
        stats.apply_settings(&settings);
        Arc::new(Shared {
            data: Mutex::new(Data {
                keyspace,
                blocking: Default::default(),
                pubsub: Default::default(),
                cmdstats: Default::default(),
                scripts: Default::default(),
                repl,
            }),
            log,
            settings: RwLock::new(settings),
            config_file: sources.file.clone(),
            clients: ClientRegistry::default(),
            stats,
            script: Default::default(),
            persistence: Default::default(),
            applier,
            run_id,
            started: Instant::now(),
            tcp_port: Default::default(),
            repl: Default::default(),
            metrics_port: Default::default(),
            acl: RwLock::new(None),
            slowlog: Default::default(),
            latency: Default::default(),
            acl_log: Default::default(),
            acl_version: Default::default(),
            shutdown,
        })
    }

    /// The tracing span every task of this node runs in (node and region
    /// on every log line).
    /// Keeps the log from the oldest full-sync snapshot in transfer on
    /// (within `repl.backlog.max_disk`), so the stream can continue where
    /// the snapshot ends however long the transfer takes.
    pub fn pin_snapshot_transfers(&self) {
        let floor = match self.repl.snapshots.oldest_in_transfer() {
            Some(offset) => {
                let max_disk = self.settings.read().repl.backlog.max_disk;
                offset.max(self.log.end_offset().saturating_sub(max_disk))
            }
            None => u64::MAX,
        };
        self.log.set_transfer_floor(floor);
    }

    pub fn span(&self) -> tracing::Span {
        let s = self.settings.read();
        tracing::info_span!("quire", node = %s.node.name, region = %s.node.region)
    }

    /// Asks every task of the node to stop (SHUTDOWN, signals).
    pub fn begin_shutdown(&self) {
        // A running script ends at its next hook, so the node can stop.
        self.script.kill_for_shutdown();
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// WAITAOF's counts for the stream up to `target`: whether this node's
    /// log has fsynced it, and how many replicas report they have.
    pub fn aof_acknowledged(&self, target: u64) -> (bool, usize) {
        let local = self.log.durable() >= target;
        (local, self.repl.replicas.lock().fsynced(target))
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Resolves when `rx` reports shutdown.
pub async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
