//! Role changes as state transitions on the node: becoming a replica and
//! being promoted. They run under the dataset lock, so the next command
//! (even in the same pipeline) sees the new role; starting the link task
//! is the edge's part, handed back as a [`NodeAction`].

use super::{NodeAction, Shared};
use crate::keyspace::Keyspace;
use crate::replication::ids::Epoch;
use crate::replication::ReplicationLog;
use crate::replication::{failover, Upstream};

/// Makes this node a replica of `upstream` (REPLICAOF, `replicaof` at
/// start-up, fencing, planned failover): reads keep being served, expiry
/// waits for the upstream's DELs. Returns the link task to start.
#[must_use = "the link task only starts when the action is carried out"]
pub fn follow(
    shared: &Shared,
    keyspace: &mut Keyspace,
    log: &mut ReplicationLog,
    upstream: Upstream,
) -> NodeAction {
    tracing::info!(host = %upstream.host, port = upstream.port, "becoming a replica");
    keyspace.set_delete_expired(false);
    // Whatever this node lost, the upstream's copy is the one to keep.
    log.lost = None;
    let generation = shared.repl.set_upstream(Some(upstream.clone()));
    NodeAction::Follow {
        upstream,
        generation,
    }
}

/// Makes this replica a primary: a new history and a new epoch; the old
/// history stays valid up to here, so the other replicas (and the old
/// primary, once fenced) continue with a partial resync.
pub fn promote(
    shared: &Shared,
    keyspace: &mut Keyspace,
    log: &mut ReplicationLog,
    epoch: Option<Epoch>,
) {
    shared.repl.set_upstream(None);
    log.promote();
    keyspace.set_delete_expired(true);
    let epoch = epoch.unwrap_or_else(|| failover::promoted_epoch(shared.repl.epoch()));
    let dir = shared.settings.read().dir.clone();
    shared.repl.observe_epoch(epoch, &dir);
    *shared.repl.fenced.lock() = None;
    tracing::info!(replid = %log.replid, replid2 = %log.replid2, offset = log.offset(), %epoch, "promoted to primary");
}
