//! What a command handler asks of the node but cannot do itself: anything
//! that needs a task, a socket or a blocking thread. A handler decides and
//! changes node state under the dataset lock, then hands back a
//! [`NodeAction`]; the connection task carries it out once the lock is
//! released (`server::actions`). Handlers thus stay plain functions that
//! a unit test can call without a runtime.

use super::persistence::SnapshotJob;
use crate::replication::Upstream;
use crate::resp::Frame;
use tokio::sync::oneshot;

/// One piece of work a handler hands to the node's edge.
#[derive(Debug)]
pub enum NodeAction {
    /// Start the link task to `upstream` for the role generation the
    /// handler switched to (REPLICAOF host port).
    Follow { upstream: Upstream, generation: u64 },
    /// Drive the planned failover the handler recorded (FAILOVER).
    DriveFailover,
    /// Write a snapshot copied under the lock (BGSAVE, BGREWRITEAOF,
    /// CONFIG SET appendonly yes).
    WriteSnapshot(SnapshotJob),
    /// Answer WAITAOF on `reply` once the log has fsynced up to `target`
    /// (when `numlocal`) and `numreplicas` replicas report they have too
    /// (see `Shared::aof_acknowledged`).
    WaitAof {
        target: u64,
        numlocal: bool,
        numreplicas: usize,
        reply: oneshot::Sender<Frame>,
    },
    /// Rebuild the data from what is on disk, the snapshot and the log
    /// after it, as a restart would (DEBUG LOADAOF); answer on `reply`.
    ReloadFromDisk { reply: oneshot::Sender<Frame> },
}
