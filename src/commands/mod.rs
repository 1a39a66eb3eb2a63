//! Commands: the table that describes them and the code that runs them.
//!
//! Each family file (`strings.rs`, `keys.rs`, ...) holds, for its commands,
//! the table rows ([`CommandSpec`]: name, arity, flags, key positions, docs)
//! and the handlers. A handler takes the execution context and the argument
//! vector and *returns* its reply, so client connections, `MULTI/EXEC`,
//! replication and unit tests all share [`execute`].
//!
//! The table is data: dispatch, `COMMAND` output, AUTH and pub/sub context
//! checks and write propagation read the flags, nothing re-lists commands
//! by name.
//!
//! Handlers see a narrow context ([`ExecCtx`]): the dataset parts, the
//! session, one clock reading, the node's state to read (and the few
//! facts they set, such as a role change), and a list of node actions for
//! what needs a task or a thread. They import nothing from the IO edges
//! (`server`, `link`), so each can be unit-tested with [`testing`] and no
//! runtime. The replicated stream comes in through [`stream_applier`],
//! the node's one entry point for applying units.

/// One row of the command table, in the family file's group `G`. Without a
/// key spec the command takes no keys (`(0, 0, 0)`).
macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $summary:literal, $syntax:literal, $run:expr) => {
        spec!($name, $arity, $flags, (0, 0, 0), $summary, $syntax, $run)
    };
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $summary:literal, $syntax:literal, $run:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: G,
            summary: $summary,
            syntax: $syntax,
            run: $run,
        }
    };
}

mod acl;
pub mod args;
mod bitmap;
pub mod blocking;
mod connection;
pub mod functions;
mod geo;
mod hash;
mod hyperloglog;
mod keys;
mod list;
mod longdouble;
mod lua_msgpack;
mod migrate;
mod notify;
pub mod pubsub;
pub mod replication;
pub mod scripting;
mod server;
pub mod session;
mod set;
mod slowlog;
mod sort;
mod stream;
mod strings;
mod tx;
mod typed;
mod zset;

pub use acl::new_clients_need_auth;

use crate::keyspace::{Db, Keyspace};
use crate::node::{NodeAction, Shared};
use crate::resp::Frame;
use blocking::Blocking;
use bytes::Bytes;
use pubsub::PubSub;
use std::collections::HashMap;
use std::sync::OnceLock;

pub use replication::waitaof_reply;
pub use session::Session;

/// Result of a handler: `Err` carries an error reply (so `?` works on
/// argument parsing); both sides are sent to the client as they are.
pub type CmdResult = Result<Frame, Frame>;
pub type Handler = fn(&mut ExecCtx, &[Bytes]) -> CmdResult;

/// Command flags, as Redis names them in `COMMAND INFO`.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    pub const NO_AUTH: u32 = 1 << 10;
    pub const NO_MULTI: u32 = 1 << 11;
    pub const MOVABLE_KEYS: u32 = 1 << 12;
    /// Allowed while a RESP2 client is in subscribed mode.
    pub const SUBSCRIBED_OK: u32 = 1 << 13;
    /// Not a write, but may change the data (PFCOUNT's cache): its
    /// effects replicate when it does.
    pub const MAY_REPLICATE: u32 = 1 << 14;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (NO_MULTI, "no_multi"),
        (MAY_REPLICATE, "may_replicate"),
        (MOVABLE_KEYS, "movablekeys"),
    ];
}

/// One row of the command table.
pub struct CommandSpec {
    /// Lower-case command name.
    pub name: &'static str,
    /// Redis arity: N = exactly N arguments (name included), -N = at least N.
    pub arity: i32,
    pub flags: u32,
    /// Key positions (first, last, step) as `COMMAND INFO` reports them;
    /// last = -1 means "to the end".
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub summary: &'static str,
    /// Argument syntax after the name, for `COMMAND DOCS` and help.
    pub syntax: &'static str,
    pub run: Handler,
}

impl CommandSpec {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The key arguments of a concrete invocation (for WATCH-style checks
    /// and replication routing).
    pub fn key_indexes(&self, argc: usize) -> impl Iterator<Item = usize> {
        let (first, last, step) = self.keys;
        let last = if last < 0 { argc as i32 + last } else { last };
        let range = if first <= 0 || step <= 0 {
            0..0
        } else {
            first..(last + 1).min(argc as i32)
        };
        range.step_by(step.max(1) as usize).map(|i| i as usize)
    }

    /// The key arguments of `args` (this command's invocation), also for
    /// the commands whose keys follow a `numkeys` argument (COMMAND
    /// GETKEYS); an empty list when `numkeys` is not a count that fits.
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        if !self.has(flags::MOVABLE_KEYS) {
            return self.key_indexes(args.len()).collect();
        }
        // Where numkeys is, and the fixed keys before it.
        let (numkeys_at, fixed): (usize, &[usize]) = match self.name {
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => (2, &[]),
            "zunionstore" | "zinterstore" | "zdiffstore" => (2, &[1]),
            "bzmpop" | "blmpop" => (2, &[]),
            _ => (1, &[]),
        };
        let n = args
            .get(numkeys_at)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.parse::<usize>().ok());
        match n {
            Some(n) if numkeys_at + n < args.len() => fixed
                .iter()
                .copied()
                .chain(numkeys_at + 1..numkeys_at + 1 + n)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Everything a handler may touch while the dataset lock is held.
pub struct ExecCtx<'a> {
    pub keyspace: &'a mut Keyspace,
    pub blocking: &'a mut Blocking,
    pub pubsub: &'a mut PubSub,
    pub cmdstats: &'a mut crate::node::cmdstats::CommandStats,
    pub scripts: &'a mut crate::node::scripts::Scripts,
    /// The node's state: settings, role, counters. Handlers read it, and
    /// change it in place only where the next command must see the change
    /// (CONFIG SET, a role change through `node::role`, FAILOVER's state);
    /// work that needs a task or a thread goes to `actions`. A plain
    /// reference, not an `Arc`: a handler cannot start anything.
    pub node: &'a Shared,
    pub session: &'a mut Session,
    /// Wall-clock milliseconds for this command (one value per command, so
    /// a command sees a single instant).
    pub now_ms: i64,
    /// The replication stream the effects of writes go to.
    pub repl: &'a mut crate::replication::ReplicationLog,
    /// Effects a handler chose to replicate instead of its own arguments
    /// (EXPIRE → PEXPIREAT, SPOP → SREM, ...); see [`ExecCtx::propagate`].
    pub effects: Option<Vec<Vec<Bytes>>>,
    /// Work for the node's edge, carried out after the dataset lock is
    /// released (start a link, write a snapshot, ...).
    pub actions: &'a mut Vec<NodeAction>,
}

impl<'a> ExecCtx<'a> {
    /// The client's selected database.
    pub fn db(&mut self) -> &mut Db {
        &mut self.keyspace.dbs[self.session.db]
    }

    /// Replicates `args` as (one of) this command's effects instead of the
    /// command itself: what the replica runs must give the same result
    /// there, later, without clocks or randomness.
    pub fn propagate<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let effect = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_ref()))
            .collect();
        self.effects.get_or_insert_with(Vec::new).push(effect);
    }

    /// Whether this command's effects go to the stream: not when they came
    /// from the stream, and not for local writes on a (writable) replica —
    /// its stream is its upstream's, byte for byte, as in Redis.
    fn propagates(&self) -> bool {
        !self.session.replicated && !self.node.repl.is_replica()
    }

    /// Writes the effects recorded with [`ExecCtx::propagate`] to the
    /// stream, as one transaction when there are several.
    fn flush_effects(&mut self) {
        let Some(effects) = self.effects.take() else {
            return;
        };
        if !self.propagates() {
            return;
        }
        let db = self.session.db;
        let wrap = effects.len() > 1;
        if wrap {
            self.repl.begin_tx();
        }
        for effect in &effects {
            self.repl.emit(db, effect);
        }
        if wrap {
            self.repl.end_tx();
        }
    }

    /// Keys found expired (and deleted) since the last call go to the
    /// stream as DELs, as Redis propagates lazy expiry.
    pub fn propagate_expired(&mut self) {
        if self.keyspace.dbs.iter().all(|d| d.expired.is_empty()) {
            return;
        }
        let expired = self.keyspace.drain_expired();
        self.dirty(expired.len() as u64);
        notify::expired(self, &expired);
        if self.propagates() {
            for (db, key) in &expired {
                self.repl.emit(*db, &[b"DEL".as_slice(), key.as_bytes()]);
            }
        }
    }

    /// Records `n` changes to the dataset (save rules, stats).
    pub fn dirty(&mut self, n: u64) {
        self.keyspace.dirty += n;
    }

    /// Bookkeeping after a handler changed `key` in the selected database:
    /// deletes it if it is now an empty collection, marks WATCHers dirty,
    /// counts `changes`, and wakes clients blocked on it.
    pub fn modified(&mut self, key: &[u8], changes: u64) {
        let now = self.now_ms;
        let db = self.session.db;
        let d = &mut self.keyspace.dbs[db];
        if d.peek(key, now).is_some_and(|v| v.is_empty_collection()) {
            d.remove(key);
        } else {
            d.signal_modified(key);
            self.blocking.signal(db, key);
        }
        self.keyspace.dirty += changes;
    }
}

fn families() -> impl Iterator<Item = &'static CommandSpec> {
    [
        strings::COMMANDS,
        bitmap::COMMANDS,
        hyperloglog::COMMANDS,
        geo::COMMANDS,
        scripting::COMMANDS,
        acl::COMMANDS,
        functions::COMMANDS,
        sort::COMMANDS,
        migrate::COMMANDS,
        slowlog::COMMANDS,
        keys::COMMANDS,
        server::COMMANDS,
        connection::COMMANDS,
        tx::COMMANDS,
        hash::COMMANDS,
        list::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        stream::COMMANDS,
        pubsub::COMMANDS,
        replication::COMMANDS,
    ]
    .into_iter()
    .flatten()
}

type Table = HashMap<&'static str, &'static CommandSpec, foldhash::fast::FixedState>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| families().map(|c| (c.name, c)).collect())
}

/// All commands, sorted by name (COMMAND, COMMAND LIST).
pub fn all_commands() -> Vec<&'static CommandSpec> {
    let mut v: Vec<_> = table().values().copied().collect();
    v.sort_by_key(|c| c.name);
    v
}

/// Finds a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (dst, src) in buf.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    table().get(lower).copied()
}

/// Redis's reply for a command name it does not know.
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let name = String::from_utf8_lossy(&args[0]);
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncate(&name, 128)
    );
    for arg in args.iter().skip(1).take(16) {
        msg.push_str(&format!(
            "'{}' ",
            truncate(&String::from_utf8_lossy(arg), 128)
        ));
    }
    Frame::error_owned(msg)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn wrong_arity(name: &str) -> Frame {
    Frame::error_owned(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Runs one client command with every check Redis makes before calling it:
/// lookup, arity, authentication, subscribed context, MULTI queueing.
pub fn execute(ctx: &mut ExecCtx, args: &[Bytes]) -> Frame {
    let ran_before = ctx.session.commands_processed;
    let reply = dispatch(ctx, args);
    // An error from before the handler ran is a rejection (Redis's
    // rejected_calls), counted against the command when it exists; the
    // handler's own errors are counted by `call`.
    if let Frame::Error(e) = &reply {
        if ctx.session.commands_processed == ran_before {
            ctx.cmdstats.error(e);
            ctx.session.error_replies += 1;
            if let Some(spec) = lookup(&args[0]) {
                ctx.cmdstats.rejected(spec.name);
            }
        }
    }
    reply
}

/// Refuses a command that may grow the dataset while memory is over
/// `maxmemory` (Redis's OOM rule; the stream's commands always apply).
pub(crate) fn check_memory(ctx: &ExecCtx, spec: &CommandSpec) -> Result<(), Frame> {
    if spec.has(flags::DENYOOM)
        && !ctx.session.replicated
        && !ctx.session.oom_exempt
        && ctx
            .node
            .stats
            .over_maxmemory
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(Frame::error(
            "OOM command not allowed when used memory > 'maxmemory'.",
        ));
    }
    Ok(())
}

/// Evicts keys if memory is over `maxmemory`, and records whether it
/// stays over with nothing to evict (what [`check_memory`] and scripts
/// read).
fn evict(ctx: &mut ExecCtx) {
    use crate::node::eviction::{perform, Outcome};
    use std::sync::atomic::Ordering;
    let outcome = perform(
        ctx.node,
        ctx.keyspace,
        ctx.repl,
        ctx.pubsub,
        ctx.now_ms,
        None,
    );
    let oom = outcome == Outcome::Fail;
    let flag = &ctx.node.stats.over_maxmemory;
    if flag.load(Ordering::Relaxed) != oom {
        flag.store(oom, Ordering::Release);
    }
}

fn dispatch(ctx: &mut ExecCtx, args: &[Bytes]) -> Frame {
    let Some(spec) = lookup(&args[0]) else {
        ctx.session.flag_multi_error();
        return unknown_command(args);
    };
    if !spec.arity_ok(args.len()) {
        ctx.session.flag_multi_error();
        return wrong_arity(spec.name);
    }
    if !ctx.session.authenticated && !spec.has(flags::NO_AUTH) {
        ctx.session.flag_multi_error();
        return Frame::error("NOAUTH Authentication required.");
    }
    if let Err(e) = acl::check(ctx, spec, args) {
        ctx.session.flag_multi_error();
        return e;
    }
    if !ctx.session.in_exec && !ctx.session.in_script && !ctx.session.replicated {
        evict(ctx);
    }
    if let Err(e) = check_memory(ctx, spec) {
        ctx.session.flag_multi_error();
        return e;
    }
    if ctx.session.in_subscribed_context() && !spec.has(flags::SUBSCRIBED_OK) {
        return Frame::error_owned(format!("ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", spec.name));
    }
    if !ctx.session.replicated {
        if let Err(e) = replication::check_write_allowed(ctx, spec) {
            ctx.session.flag_multi_error();
            return e;
        }
    }
    if ctx.session.multi.is_some()
        && !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        if spec.has(flags::NO_MULTI) {
            ctx.session.flag_multi_error();
            return Frame::error_owned("ERR Command not allowed inside a transaction".to_string());
        }
        ctx.session.queue(args.to_vec());
        return Frame::simple("QUEUED");
    }
    let reply = call(ctx, spec, args);
    // Inside a script (or EXEC) waiters are served when it ends.
    if ctx.blocking.has_ready() && !ctx.session.in_exec {
        blocking::serve_ready(ctx);
    }
    reply
}

/// Applies one command of the upstream's stream on a replica. The stream
/// was produced by a node running the same table, so a command it does not
/// know is a version mismatch: logged and skipped, never a crash.
pub fn apply_replicated(ctx: &mut ExecCtx, args: &[Bytes]) {
    match lookup(&args[0]) {
        // Only data changes travel in the stream (blocking pops arrive as
        // the pop that happened): anything else does not belong there and
        // could block, sleep or save on the replica's behalf.
        Some(spec)
            if spec.has(flags::BLOCKING)
                || !(spec.has(flags::WRITE)
                    || spec.has(flags::MAY_REPLICATE)
                    || matches!(spec.name, "select" | "publish" | "spublish" | "ping")) =>
        {
            tracing::error!(
                command = spec.name,
                "replication stream carries a command that is not a write; skipped"
            );
        }
        Some(spec) if spec.arity_ok(args.len()) => {
            let reply = call(ctx, spec, args);
            if let Frame::Error(e) = &reply {
                tracing::warn!(command = spec.name, error = %e, "replicated command failed");
            }
        }
        _ => {
            tracing::error!(command = %String::from_utf8_lossy(&args[0]), "replication stream carries an unknown command; skipped")
        }
    }
}

/// The node's entry point for applying the replicated stream (see
/// `node::apply`): a session that is authenticated, may write on a
/// read-only replica, and does not re-propagate.
pub fn stream_applier(peer: std::net::SocketAddr) -> Box<dyn crate::node::apply::StreamApplier> {
    Box::new(ReplicatedSession(replicated_session(peer)))
}

/// A session that applies the upstream's stream.
pub fn replicated_session(peer: std::net::SocketAddr) -> Session {
    let handle = std::sync::Arc::new(crate::node::clients::ClientHandle::new(0, peer, peer));
    let (outbox, _) = tokio::sync::mpsc::channel(1);
    let mut session = Session::new(handle, true, outbox);
    session.replicated = true;
    session
}

struct ReplicatedSession(Session);

impl crate::node::apply::StreamApplier for ReplicatedSession {
    fn apply(
        &mut self,
        node: &Shared,
        data: &mut crate::node::Data,
        units: &crate::replication::apply::Units,
    ) {
        let mut actions = Vec::new();
        let mut ctx = ExecCtx {
            keyspace: &mut data.keyspace,
            blocking: &mut data.blocking,
            pubsub: &mut data.pubsub,
            cmdstats: &mut data.cmdstats,
            scripts: &mut data.scripts,
            node,
            session: &mut self.0,
            now_ms: crate::node::unix_ms(),
            repl: &mut data.repl,
            effects: None,
            actions: &mut actions,
        };
        for unit in &units.units {
            for args in &unit.commands {
                apply_replicated(&mut ctx, args);
            }
        }
        // Only data changes travel in the stream; none of them asks the
        // node for work.
        debug_assert!(actions.is_empty());
    }

    fn db(&self) -> usize {
        self.0.db
    }

    fn set_db(&mut self, db: usize) {
        self.0.db = db;
    }
}

/// Calls a command's handler and does the bookkeeping every call shares,
/// including replication: keys found expired become DELs, then the
/// command's effects (its own arguments unless the handler replaced them)
/// go to the stream if it changed the data.
pub fn call(ctx: &mut ExecCtx, spec: &'static CommandSpec, args: &[Bytes]) -> Frame {
    ctx.session.last_command = spec.name;
    // A script's commands touch as its caller does.
    ctx.keyspace.set_no_touch(ctx.session.no_touch);
    let monitored = ctx.pubsub.has_monitors() && !ctx.session.replicated && !spec.has(flags::ADMIN);
    if monitored && spec.name != "exec" {
        pubsub::feed_monitors(ctx, args);
    }
    let dirty_before = ctx.keyspace.dirty;
    ctx.effects = None;
    let started = std::time::Instant::now();
    let reply = (spec.run)(ctx, args).unwrap_or_else(|e| e);
    let usec = started.elapsed().as_micros() as u64;
    let stat_name = match &reply {
        Frame::Error(e) if e.starts_with("ERR unknown subcommand") => spec.name,
        _ if args.len() > 1 && acl::is_container(spec.name) => {
            ctx.cmdstats.subcommand_name(spec.name, &args[1])
        }
        _ => spec.name,
    };
    ctx.cmdstats.called(stat_name, usec, reply.is_error());
    if slowlog::is_slow(ctx, usec) {
        slowlog::record(ctx, spec, args, usec);
    }
    ctx.session.commands_processed += 1;
    // Counted once: a script failing with the error of a command it ran
    // was counted when that command failed.
    let counted = std::mem::take(&mut ctx.session.error_counted);
    if let (Frame::Error(e), false, false) = (&reply, counted, ctx.session.replicated) {
        ctx.cmdstats.error(e);
        ctx.session.error_replies += 1;
    }
    let changed = ctx.keyspace.dirty > dirty_before;
    if changed && spec.has(flags::WRITE) && ctx.blocking.is_waiting() {
        // A key created or replaced by any write (RENAME, SORT STORE,
        // RESTORE, ...) may be what a blocked client waits for, as Redis
        // signals every key added to the database.
        let db = ctx.session.db;
        for i in spec.key_indexes(args.len()) {
            ctx.blocking.signal(db, &args[i]);
        }
    }
    ctx.propagate_expired();
    notify::after_call(ctx, spec, args);
    if monitored && spec.name == "exec" {
        // After the commands it ran, as Redis shows a transaction.
        pubsub::feed_monitors(ctx, args);
    }
    if ctx.effects.is_some() {
        ctx.flush_effects();
    } else if ctx.propagates()
        && ((changed && spec.has(flags::WRITE) && spec.name != "exec")
            || matches!(spec.name, "publish" | "spublish"))
    {
        ctx.repl.emit(ctx.session.db, args);
    }
    reply
}

/// Releases what a client holds in shared structures when it disconnects.
pub fn disconnect(data: &mut crate::node::Data, session: &mut Session) {
    tx::unwatch_all(&mut data.keyspace, session);
    data.blocking.unblock(session.id());
    data.pubsub
        .remove_client(session.id(), &mut session.subscriber);
    session.set_subscriptions(0);
}

/// Parses a blocking command's timeout (seconds, fractional allowed) into
/// a deadline; 0 means forever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<std::time::Instant>, Frame> {
    let secs = args::parse_f64(arg)
        .filter(|s| s.is_finite())
        .ok_or(Frame::error("ERR timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    Ok(Some(
        std::time::Instant::now() + std::time::Duration::from_secs_f64(secs.min(1e9)),
    ))
}

/// Blocks the client on `keys` unless it is inside EXEC (then the command
/// answers as if it had timed out, like Redis).
pub fn block_client(
    ctx: &mut ExecCtx,
    keys: &[Bytes],
    op: blocking::BlockOp,
    deadline: Option<std::time::Instant>,
) -> Frame {
    if ctx.session.in_exec {
        return op.timeout_reply();
    }
    let keys = keys.iter().map(|k| crate::keyspace::Blob::new(k)).collect();
    let wait = ctx
        .blocking
        .block(ctx.session.id(), ctx.session.db, keys, op, deadline);
    ctx.session.blocked = Some(wait);
    Frame::NoReply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for spec in families() {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase(), "{}", spec.name);
            assert!(spec.arity != 0, "{}", spec.name);
            assert!(
                !(spec.has(flags::WRITE) && spec.has(flags::READONLY)),
                "{}",
                spec.name
            );
            assert!(spec.name.len() <= 32);
        }
        let names: Vec<_> = families().map(|c| c.name).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len(), "duplicate command names");
        assert!(lookup(b"GeT").is_some());
    }

    #[test]
    fn key_positions() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_indexes(5).collect::<Vec<_>>(), vec![1, 3]);
        let del = lookup(b"del").unwrap();
        assert_eq!(del.key_indexes(4).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}

#[cfg(test)]
mod handler_tests;
