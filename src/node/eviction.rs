//! Keeping the dataset under `maxmemory` (Redis's `performEvictions`).
//!
//! Before each client command (and from the cron, for a round cut short
//! by its time limit) the node compares the allocator's count, less what
//! lives there only on its way to disk (the log's in-memory tail), with
//! the limit. Over it, keys chosen by the keyspace's sampled pool
//! ([`crate::keyspace::evict`]) are deleted one at a time, each measured
//! by the memory it gave back, until the node is under the limit or the
//! round's time is up. Each eviction goes to the stream as a DEL (UNLINK
//! under `lazyfree-lazy-eviction`), so replicas — which never evict on
//! their own — hold exactly the primary's keys.

use super::Shared;
use crate::keyspace::Keyspace;
use crate::replication::ReplicationLog;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a round of eviction reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Under the limit (or no limit applies).
    Under,
    /// Still over, but keys remain and the time ran out: the cron goes on.
    Running,
    /// Over, and nothing may be evicted: writes that grow the data are
    /// refused.
    Fail,
}

/// Memory that is left out of `maxmemory`: the log's in-memory tail,
/// what the replication links hold until their replicas acknowledge it
/// (Redis leaves out its backlog and replicas' output buffers), and what
/// evicted keys still hold because a snapshot in progress shares it
/// (Redis's fork leaves such pages out of `used_memory` too).
pub fn not_counted(shared: &Shared) -> u64 {
    shared.log.memory_footprint() as u64
        + shared
            .repl
            .counters
            .unacked_link_bytes
            .load(Ordering::Relaxed)
        + shared.stats.snapshot_pinned.load(Ordering::Relaxed)
}

/// The memory compared with `maxmemory`.
pub fn counted_memory(shared: &Shared) -> u64 {
    crate::memory::used().saturating_sub(not_counted(shared))
}

/// Evicts until what was over `maxmemory` is freed or `budget` is spent
/// (None: the settings' tenacity decides). Cheap when under the limit: one
/// load of the allocator's counter.
///
/// As Redis, the amount to free is fixed at the start. A key counts as
/// freed by the larger of what the allocator got back and its size
/// estimate: dropping a key whose value a snapshot still shares, or whose
/// table slot stays allocated for the next key, gives back little at
/// once, and measuring only that would evict key after key for nothing.
pub fn perform(
    shared: &Shared,
    keyspace: &mut Keyspace,
    repl: &mut ReplicationLog,
    pubsub: &super::pubsub::PubSub,
    now_ms: i64,
    budget: Option<Duration>,
) -> Outcome {
    let limit = shared.stats.maxmemory.load(Ordering::Relaxed);
    if limit == 0 || crate::memory::used() <= limit {
        return Outcome::Under;
    }
    let pinned = &shared.stats.snapshot_pinned;
    if !keyspace.snapshot_alive() && pinned.load(Ordering::Relaxed) != 0 {
        pinned.store(0, Ordering::Relaxed);
    }
    let counted = counted_memory(shared);
    if counted <= limit {
        return Outcome::Under;
    }
    let (policy, samples, time_limit, unlink, ignore) = {
        let s = shared.settings.read();
        (
            s.eviction_policy(),
            s.maxmemory_samples as usize,
            budget.or(s.eviction_time_limit()),
            s.lazyfree_lazy_eviction,
            s.replica_ignore_maxmemory,
        )
    };
    let is_replica = shared.repl.is_replica();
    if is_replica && ignore {
        return Outcome::Under;
    }
    let Some(policy) = policy else {
        return Outcome::Fail;
    };
    let to_free = counted - limit;
    let started = Instant::now();
    let (mut freed, mut evicted) = (0u64, 0u64);
    let outcome = loop {
        let before = crate::memory::used();
        let Some((db, key, bytes)) = keyspace.evict_one(policy, samples, now_ms) else {
            break Outcome::Fail;
        };
        let real = before.saturating_sub(crate::memory::used());
        let bytes = bytes as u64;
        freed += real.max(bytes);
        if keyspace.snapshot_alive() && bytes > real {
            pinned.fetch_add(bytes - real, Ordering::Relaxed);
        }
        evicted += 1;
        // Not the next command's change: the eviction's own event.
        keyspace.dbs[db].drain_changes();
        super::pubsub::notify_keyspace_event(
            shared,
            pubsub,
            crate::keyspace::notify::EVICTED,
            "evicted",
            db,
            key.as_bytes(),
        );
        if !is_replica {
            let verb: &[u8] = if unlink { b"UNLINK" } else { b"DEL" };
            repl.emit(db, &[verb, key.as_bytes()]);
        }
        if freed >= to_free {
            break Outcome::Under;
        }
        if evicted.is_multiple_of(16) && time_limit.is_some_and(|t| started.elapsed() > t) {
            break Outcome::Running;
        }
    };
    keyspace.dirty += evicted;
    shared
        .stats
        .evicted_keys
        .fetch_add(evicted, Ordering::Relaxed);
    outcome
}
