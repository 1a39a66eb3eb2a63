//! The registry of clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, ...);
//! the commands that block and serve them are in `commands::blocking`.
//!
//! A blocking command that finds nothing registers a [`Waiter`] and its
//! connection waits on a oneshot channel. Writes that may satisfy a waiter
//! mark the key ready; after the writing command finishes, `commands::blocking::serve_ready`
//! hands elements to waiters in the order they blocked (FIFO per key), doing
//! the pop on each waiter's behalf under the same lock, so a woken client
//! always gets its element and no other client can steal it.

use crate::keyspace::stream::StreamId;
use crate::keyspace::Blob;
use crate::resp::Frame;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;
use tokio::sync::oneshot;

/// What a blocked client wants done once a key has data.
#[derive(Debug, Clone)]
pub enum BlockOp {
    /// BLPOP/BRPOP (`mpop` false) and BLMPOP (`mpop` true).
    ListPop {
        left: bool,
        count: usize,
        mpop: bool,
    },
    /// BLMOVE/BRPOPLPUSH.
    ListMove {
        from_left: bool,
        dest: Blob,
        to_left: bool,
    },
    /// BZPOPMIN/BZPOPMAX (`mpop` false) and BZMPOP (`mpop` true).
    ZPop { min: bool, count: usize, mpop: bool },
    /// XREAD BLOCK: entries above `ids[i]` of the i-th key.
    XRead {
        ids: Vec<StreamId>,
        count: usize,
        resp3: bool,
    },
    /// XREADGROUP BLOCK with `>`: new entries for `consumer`.
    XReadGroup {
        group: Blob,
        consumer: Blob,
        noack: bool,
        count: usize,
        resp3: bool,
    },
}

impl BlockOp {
    /// Reply when the timeout passes.
    pub fn timeout_reply(&self) -> Frame {
        match self {
            BlockOp::ListMove { .. } => Frame::Null,
            _ => Frame::NullArray,
        }
    }

    pub(crate) fn wants_list(&self) -> bool {
        matches!(self, BlockOp::ListPop { .. } | BlockOp::ListMove { .. })
    }

    /// XREAD and XREADGROUP waiters: each waits for its own ID, so every
    /// one on a ready key is tried, not only the first.
    pub(crate) fn is_stream(&self) -> bool {
        matches!(self, BlockOp::XRead { .. } | BlockOp::XReadGroup { .. })
    }
}

pub(crate) struct Waiter {
    pub(crate) db: usize,
    pub(crate) keys: Vec<Blob>,
    pub(crate) op: BlockOp,
    pub(crate) reply: oneshot::Sender<Frame>,
}

/// The connection's side of a block: where the reply arrives and until when.
pub struct BlockedWait {
    pub reply: oneshot::Receiver<Frame>,
    pub deadline: Option<Instant>,
    pub timeout_reply: Frame,
    /// Computes the reply at timeout instead of `timeout_reply` (WAIT
    /// answers with how many replicas got there in time).
    pub on_timeout: Option<TimeoutReply>,
}

/// Computes a blocked command's reply when its deadline passes.
pub type TimeoutReply = Box<dyn FnOnce(&super::Shared) -> Frame + Send>;

#[derive(Default)]
pub struct Blocking {
    pub(crate) by_key: HashMap<(usize, Blob), VecDeque<u64>>,
    pub(crate) waiters: HashMap<u64, Waiter>,
    pub(crate) ready: Vec<(usize, Blob)>,
    pub(crate) ready_set: HashSet<(usize, Blob)>,
}

impl Blocking {
    pub fn blocked_clients(&self) -> usize {
        self.waiters.len()
    }

    /// Registers `client` as waiting on `keys`; returns its side of the wait.
    pub fn block(
        &mut self,
        client: u64,
        db: usize,
        keys: Vec<Blob>,
        op: BlockOp,
        deadline: Option<Instant>,
    ) -> BlockedWait {
        self.unblock(client);
        let (tx, rx) = oneshot::channel();
        for key in &keys {
            self.by_key
                .entry((db, key.clone()))
                .or_default()
                .push_back(client);
        }
        let timeout_reply = op.timeout_reply();
        self.waiters.insert(
            client,
            Waiter {
                db,
                keys,
                op,
                reply: tx,
            },
        );
        BlockedWait {
            reply: rx,
            deadline,
            timeout_reply,
            on_timeout: None,
        }
    }

    /// Removes a client's registration (timeout, disconnect). Returns false
    /// if it was not blocked (already served).
    pub fn unblock(&mut self, client: u64) -> bool {
        self.take_waiter(client).is_some()
    }

    pub(crate) fn take_waiter(&mut self, client: u64) -> Option<Waiter> {
        let w = self.waiters.remove(&client)?;
        for key in &w.keys {
            let slot = (w.db, key.clone());
            if let Some(queue) = self.by_key.get_mut(&slot) {
                queue.retain(|&c| c != client);
                if queue.is_empty() {
                    self.by_key.remove(&slot);
                }
            }
        }
        Some(w)
    }

    /// Notes that `key` may now satisfy waiters (cheap when none wait).
    pub fn signal(&mut self, db: usize, key: &[u8]) {
        if self.by_key.is_empty() {
            return;
        }
        let slot = (db, Blob::new(key));
        if self.by_key.contains_key(&slot) && self.ready_set.insert(slot.clone()) {
            self.ready.push(slot);
        }
    }

    /// Notes every key waited on in `db` (SWAPDB brought new data).
    pub fn signal_db(&mut self, db: usize) {
        let slots: Vec<_> = self
            .by_key
            .keys()
            .filter(|(d, _)| *d == db)
            .cloned()
            .collect();
        for slot in slots {
            if self.ready_set.insert(slot.clone()) {
                self.ready.push(slot);
            }
        }
    }

    pub fn is_waiting(&self) -> bool {
        !self.by_key.is_empty()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}
