//! Transactions: MULTI/EXEC/DISCARD with optimistic locking by WATCH.
//!
//! Queued commands were checked (lookup, arity) when queued; EXEC runs them
//! back to back under the dataset lock, so no other client interleaves.
//! A watched key modified (or expired) since WATCH makes EXEC return a null
//! array without running anything.

use super::flags::*;
use super::session::{MultiState, WatchedKey};
use super::{CmdResult, CommandSpec, ExecCtx, Session};
use crate::keyspace::{Blob, Keyspace};
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::atomic::Ordering;

const G: &str = "transactions";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        (0, 0, 0),
        "Starts a transaction.",
        "",
        multi
    ),
    spec!(
        "exec",
        1,
        NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        "Executes all commands in a transaction.",
        "",
        exec
    ),
    spec!(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        (0, 0, 0),
        "Discards a transaction.",
        "",
        discard
    ),
    spec!(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST,
        (1, -1, 1),
        "Monitors changes to keys to determine the execution of a transaction.",
        "key [key ...]",
        watch
    ),
    spec!(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        (0, 0, 0),
        "Forgets about watched keys of a transaction.",
        "",
        unwatch
    ),
];

fn multi(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    if ctx.session.multi.is_some() {
        return Err(Frame::error("ERR MULTI calls can not be nested"));
    }
    ctx.session.multi = Some(MultiState::default());
    Ok(Frame::ok())
}

fn discard(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    if ctx.session.multi.take().is_none() {
        return Err(Frame::error("ERR DISCARD without MULTI"));
    }
    unwatch_all(ctx.keyspace, ctx.session);
    Ok(Frame::ok())
}

fn watched_key_expired(ctx: &ExecCtx) -> bool {
    ctx.session.watched.iter().any(|w| {
        ctx.keyspace.dbs[w.db].watched_key_expired(&w.key, &ctx.session.watch_flag, ctx.now_ms)
    })
}

fn exec(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    let Some(multi) = ctx.session.multi.take() else {
        return Err(Frame::error("ERR EXEC without MULTI"));
    };
    if multi.failed {
        unwatch_all(ctx.keyspace, ctx.session);
        return Err(Frame::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    if ctx.session.watch_dirty() || watched_key_expired(ctx) {
        unwatch_all(ctx.keyspace, ctx.session);
        return Ok(Frame::NullArray);
    }
    unwatch_all(ctx.keyspace, ctx.session);
    // What changed since queueing (min-replicas, a stale link, a role
    // change) refuses the whole transaction, as Redis re-checks at EXEC.
    for args in &multi.queued {
        if let Some(spec) = super::lookup(&args[0]) {
            let allowed = super::check_memory(ctx, spec)
                .and_then(|()| super::replication::check_write_allowed(ctx, spec));
            if let Err(Frame::Error(e)) = allowed {
                return Err(Frame::error_owned(format!(
                    "EXECABORT Transaction discarded because of: {e}"
                )));
            }
        }
    }
    ctx.session.in_exec = true;
    ctx.repl.begin_tx();
    let mut replies = Vec::with_capacity(multi.queued.len());
    for args in &multi.queued {
        let reply = match super::lookup(&args[0]) {
            Some(spec) => super::call(ctx, spec, args),
            None => super::unknown_command(args),
        };
        replies.push(reply);
    }
    ctx.session.in_exec = false;
    ctx.repl.end_tx();
    Ok(Frame::Array(replies))
}

fn watch(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if ctx.session.multi.is_some() {
        return Err(Frame::error("ERR WATCH inside MULTI is not allowed"));
    }
    let db = ctx.session.db;
    for key in &args[1..] {
        if ctx
            .session
            .watched
            .iter()
            .any(|w| w.db == db && w.key.as_bytes() == key.as_ref())
        {
            continue;
        }
        ctx.keyspace.dbs[db].watch(key, &ctx.session.watch_flag, ctx.now_ms);
        ctx.session.watched.push(WatchedKey {
            db,
            key: Blob::new(key),
        });
    }
    Ok(Frame::ok())
}

fn unwatch(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    unwatch_all(ctx.keyspace, ctx.session);
    Ok(Frame::ok())
}

/// Drops every WATCH of a client and clears its dirty flag.
pub fn unwatch_all(keyspace: &mut Keyspace, session: &mut Session) {
    for w in session.watched.drain(..) {
        keyspace.dbs[w.db].unwatch(&w.key, &session.watch_flag);
    }
    session.watch_flag.store(false, Ordering::Release);
}
