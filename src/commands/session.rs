//! Per-connection command state: selected database, protocol version,
//! authentication, transaction queue and watched keys.
//!
//! The connection task owns its `Session`; handlers get it through
//! `ExecCtx`. What other clients need to see (CLIENT LIST) is mirrored in
//! the shared [`ClientHandle`].

use crate::keyspace::{Blob, WatchFlag};
use crate::node::clients::ClientHandle;
use crate::resp::Protocol;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `CLIENT REPLY` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command only.
    Skip,
}

/// A transaction being queued between MULTI and EXEC.
#[derive(Debug, Default)]
pub struct MultiState {
    pub queued: Vec<Vec<Bytes>>,
    /// A queueing error happened: EXEC answers EXECABORT.
    pub failed: bool,
}

/// A key watched by this client (the database keeps the watch itself).
#[derive(Debug, Clone)]
pub struct WatchedKey {
    pub db: usize,
    pub key: Blob,
}

pub struct Session {
    pub handle: Arc<ClientHandle>,
    pub db: usize,
    pub proto: Protocol,
    pub authenticated: bool,
    pub multi: Option<MultiState>,
    pub watch_flag: WatchFlag,
    pub watched: Vec<WatchedKey>,
    pub reply_mode: ReplyMode,
    /// Close the connection once the current reply is written (QUIT,
    /// CLIENT KILL of self).
    pub close_after_reply: bool,
    /// Channels and patterns subscribed to (pub/sub).
    pub subscriptions: usize,
    /// True while EXEC runs queued commands (blocking commands don't block).
    pub in_exec: bool,
    /// True while a script runs (XREAD refuses BLOCK there, as Redis).
    pub in_script: bool,
    /// CLIENT NO-TOUCH ON: this client's reads leave LRU/LFU stamps alone.
    pub no_touch: bool,
    /// True while a script that may write over `maxmemory` calls a command
    /// (it is flagged allow-oom, or already wrote and cannot stop halfway).
    pub oom_exempt: bool,
    /// The ACL user the client runs as, and the users' version it was
    /// looked up at (None: look it up at the next command).
    pub user_name: String,
    pub user: Option<std::sync::Arc<crate::acl::User>>,
    pub acl_version: u64,
    /// The error this command replies with was counted already (a script
    /// failing with the error of a command it ran).
    pub error_counted: bool,
    pub subscriber: super::pubsub::Subscriber,
    /// Set by a blocking command that found nothing: the connection waits.
    pub blocked: Option<super::blocking::BlockedWait>,
    /// Counters kept locally and flushed to the shared stats per batch, so
    /// the hot path touches no shared cache line per command.
    pub commands_processed: u64,
    pub error_replies: u64,
    pub last_command: &'static str,
    /// The session that applies the upstream's stream on a replica: its
    /// writes are allowed on a read-only replica and are not re-propagated
    /// (the received bytes are forwarded verbatim instead).
    pub replicated: bool,
    /// Set by SYNC/PSYNC: the connection turns into a Redis-protocol
    /// replication feed from here (see `server::feed`).
    pub feed: Option<super::replication::FeedStart>,
}

impl Session {
    /// Records how many channels and patterns the client subscribes to
    /// (also on its handle: CLIENT LIST and KILL TYPE pubsub see it).
    pub fn set_subscriptions(&mut self, n: usize) {
        self.subscriptions = n;
        self.handle
            .subscriptions
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn new(
        handle: Arc<ClientHandle>,
        authenticated: bool,
        outbox: super::pubsub::Outbox,
    ) -> Session {
        Session {
            handle,
            db: 0,
            proto: Protocol::Resp2,
            authenticated,
            multi: None,
            watch_flag: Default::default(),
            watched: Vec::new(),
            reply_mode: ReplyMode::On,
            close_after_reply: false,
            subscriptions: 0,
            in_exec: false,
            in_script: false,
            no_touch: false,
            oom_exempt: false,
            user_name: "default".into(),
            user: None,
            acl_version: 0,
            error_counted: false,
            subscriber: super::pubsub::Subscriber::new(outbox),
            blocked: None,
            commands_processed: 0,
            error_replies: 0,
            last_command: "NULL",
            replicated: false,
            feed: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.handle.id
    }

    pub fn in_subscribed_context(&self) -> bool {
        self.subscriptions > 0 && self.proto == Protocol::Resp2
    }

    pub fn flag_multi_error(&mut self) {
        if let Some(m) = &mut self.multi {
            m.failed = true;
        }
    }

    pub fn queue(&mut self, args: Vec<Bytes>) {
        if let Some(m) = &mut self.multi {
            m.queued.push(args);
        }
    }

    pub fn select(&mut self, db: usize) {
        self.db = db;
        self.handle.db.store(db, Ordering::Relaxed);
    }

    /// True once any watched key was touched since WATCH.
    pub fn watch_dirty(&self) -> bool {
        self.watch_flag.load(Ordering::Acquire)
    }
}

impl Session {
    /// Encodes a reply unless `CLIENT REPLY OFF|SKIP` suppresses it. Push
    /// messages (subscribe confirmations) are always sent, as Redis sends
    /// them whatever the reply mode.
    pub fn write_reply(&mut self, reply: &crate::resp::Frame, out: &mut bytes::BytesMut) {
        use crate::resp::Frame;
        let is_push = match reply {
            Frame::Push(_) => true,
            Frame::Multiple(v) => !v.is_empty() && v.iter().all(|f| matches!(f, Frame::Push(_))),
            _ => false,
        };
        if is_push {
            crate::resp::encode(reply, self.proto, out);
            return;
        }
        match self.reply_mode {
            ReplyMode::On => crate::resp::encode(reply, self.proto, out),
            ReplyMode::Off => {}
            ReplyMode::Skip => self.reply_mode = ReplyMode::On,
        }
    }
}

impl Session {
    /// Moves the per-batch counters into the shared statistics.
    pub fn flush_stats(&mut self, stats: &crate::node::Stats) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.commands_processed > 0 {
            stats
                .commands_processed
                .fetch_add(self.commands_processed, Relaxed);
            stats.error_replies.fetch_add(self.error_replies, Relaxed);
            self.commands_processed = 0;
            self.error_replies = 0;
            *self.handle.last_command.lock() = self.last_command;
        }
    }
}
