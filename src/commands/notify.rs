//! Keyspace notifications for what a command changed. Handlers only mark
//! the keys they change (`Db::signal_modified`, which WATCH relies on
//! too); when notifications are on the databases record those keys, and
//! after each write [`after_call`] names the event as Redis does for that
//! command (`lpush`, `rename_from`, `expire`, `del` when a collection
//! emptied, `new` for a created key) and publishes it.

use super::{CommandSpec, ExecCtx};
use crate::keyspace::notify::*;
use crate::node::pubsub::notify_keyspace_event;
use bytes::Bytes;
use std::sync::atomic::Ordering;

/// The class of a command's events, from its group.
fn class_of(group: &str) -> u32 {
    match group {
        "string" | "bitmap" | "hyperloglog" => STRING,
        "list" => LIST,
        "set" => SET,
        "sorted-set" | "geo" => ZSET,
        "hash" => HASH,
        "stream" => STREAM,
        _ => GENERIC,
    }
}

fn direction(arg: Option<&Bytes>, left: &'static str, right: &'static str) -> &'static str {
    match arg {
        Some(a) if a.eq_ignore_ascii_case(b"right") || a.eq_ignore_ascii_case(b"max") => right,
        _ => left,
    }
}

/// The event a command fires for a key it changed: `first` is whether
/// the key is the command's first key (the source of a move).
fn event_for(spec: &CommandSpec, args: &[Bytes], first: bool) -> (&'static str, u32) {
    let c = class_of(spec.group);
    let named = |e: &'static str| (e, c);
    match spec.name {
        "del" | "unlink" | "getdel" => ("del", GENERIC),
        "expire" | "pexpire" | "expireat" | "pexpireat" => ("expire", GENERIC),
        "persist" => ("persist", GENERIC),
        "rename" | "renamenx" if first => ("rename_from", GENERIC),
        "rename" | "renamenx" => ("rename_to", GENERIC),
        "copy" => ("copy_to", GENERIC),
        "restore" => ("restore", GENERIC),
        "sort" => ("sortstore", LIST),
        "set" | "setnx" | "setex" | "psetex" | "getset" | "mset" | "msetnx" | "bitop" => {
            ("set", STRING)
        }
        "getex" => ("expire", GENERIC),
        "incr" | "incrby" | "decr" | "decrby" => ("incrby", STRING),
        "bitfield" => ("setbit", STRING),
        "pfmerge" => ("pfadd", STRING),
        "lpushx" => named("lpush"),
        "rpushx" => named("rpush"),
        "blpop" => named("lpop"),
        "brpop" => named("rpop"),
        "rpoplpush" | "brpoplpush" if first => named("rpop"),
        "rpoplpush" | "brpoplpush" => named("lpush"),
        "lmove" if first => named(direction(args.get(3), "lpop", "rpop")),
        "lmove" => named(direction(args.get(4), "lpush", "rpush")),
        "blmove" if first => named(direction(args.get(3), "lpop", "rpop")),
        "blmove" => named(direction(args.get(4), "lpush", "rpush")),
        "lmpop" | "blmpop" => {
            let numkeys_at = if spec.name == "lmpop" { 1 } else { 2 };
            let n = super::args::parse_i64(&args[numkeys_at])
                .unwrap_or(0)
                .max(0) as usize;
            named(direction(args.get(numkeys_at + 1 + n), "lpop", "rpop"))
        }
        "smove" if first => named("srem"),
        "smove" => named("sadd"),
        "hmset" | "hsetnx" => named("hset"),
        "zadd" if args.iter().any(|a| a.eq_ignore_ascii_case(b"incr")) => named("zincr"),
        "zincrby" => named("zincr"),
        "bzpopmin" => named("zpopmin"),
        "bzpopmax" => named("zpopmax"),
        "zmpop" | "bzmpop" => {
            let numkeys_at = if spec.name == "zmpop" { 1 } else { 2 };
            let n = super::args::parse_i64(&args[numkeys_at])
                .unwrap_or(0)
                .max(0) as usize;
            named(direction(
                args.get(numkeys_at + 1 + n),
                "zpopmin",
                "zpopmax",
            ))
        }
        "geoadd" => named("zadd"),
        "xgroup" => match args.get(1).map(|a| a.to_ascii_lowercase()) {
            Some(sub) if sub == b"create" => named("xgroup-create"),
            Some(sub) if sub == b"setid" => named("xgroup-setid"),
            Some(sub) if sub == b"destroy" => named("xgroup-destroy"),
            Some(sub) if sub == b"createconsumer" => named("xgroup-createconsumer"),
            _ => named("xgroup-delconsumer"),
        },
        "xreadgroup" => named("xgroup-createconsumer"),
        other => named(other),
    }
}

/// Whether `args` sets a TTL along with the value (SET EX, SETEX).
fn sets_ttl(spec: &CommandSpec, args: &[Bytes]) -> bool {
    match spec.name {
        "setex" | "psetex" => true,
        "set" => args[3..].iter().any(|a| {
            ["ex", "px", "exat", "pxat"]
                .iter()
                .any(|o| a.eq_ignore_ascii_case(o.as_bytes()))
        }),
        _ => false,
    }
}

/// Publishes the events of the keys `spec` changed. Cheap when
/// notifications are off: one atomic load.
pub(super) fn after_call(ctx: &mut ExecCtx, spec: &CommandSpec, args: &[Bytes]) {
    let first_key = spec.key_indexes(args.len()).next().map(|i| args[i].clone());
    let home = ctx.session.db;
    let ttl = sets_ttl(spec, args);
    publish_changes(ctx, |db, key| {
        let first = first_key.as_ref().is_some_and(|k| k.as_ref() == key);
        let (event, class) = match spec.name {
            "move" if db == home => ("move_from", GENERIC),
            "move" => ("move_to", GENERIC),
            _ => event_for(spec, args, first),
        };
        (event, class, ttl)
    });
}

/// Publishes what a blocked client's pop served from `key` changed:
/// `pop` on the source, `push` on the destination of a move.
pub(super) fn after_served(
    ctx: &mut ExecCtx,
    source: &[u8],
    pop: &'static str,
    push: &'static str,
    class: u32,
) {
    publish_changes(ctx, |_, key| {
        (if key == source { pop } else { push }, class, false)
    });
}

/// Drains every database's change log and publishes one event per key,
/// in the order first changed: `new` first for a created key, the event
/// `name` gives, `expire` after a value set with a TTL, and `del` when
/// the change left the key gone (a collection emptied).
fn publish_changes(
    ctx: &mut ExecCtx,
    mut name: impl FnMut(usize, &[u8]) -> (&'static str, u32, bool),
) {
    if ctx.node.stats.notify_flags.load(Ordering::Relaxed) == 0 {
        return;
    }
    if !ctx.keyspace.dbs[0].track_changes {
        // Switched on by CONFIG SET (or the databases were replaced).
        ctx.keyspace.set_track_changes(true);
        return;
    }
    for db in 0..ctx.keyspace.dbs.len() {
        let changes = ctx.keyspace.dbs[db].drain_changes();
        if changes.is_empty() {
            continue;
        }
        let mut seen: Vec<crate::keyspace::Change> = Vec::with_capacity(changes.len());
        for c in changes {
            match seen.iter_mut().find(|s| s.key == c.key) {
                Some(s) => s.created |= c.created,
                None => seen.push(c),
            }
        }
        for change in seen {
            let key = change.key.as_bytes();
            let (mut event, class, ttl) = name(db, key);
            if event.is_empty() {
                continue;
            }
            let exists = ctx.keyspace.dbs[db].peek_stored(key).is_some();
            if !exists && event == "expire" {
                // An expiry in the past deletes the key: Redis says `del`.
                event = "del";
            }
            if change.created && exists {
                notify_keyspace_event(ctx.node, ctx.pubsub, NEW, "new", db, key);
            }
            let class = if event == "del" { GENERIC } else { class };
            notify_keyspace_event(ctx.node, ctx.pubsub, class, event, db, key);
            if exists && ttl {
                notify_keyspace_event(ctx.node, ctx.pubsub, GENERIC, "expire", db, key);
            }
            if !exists && !matches!(event, "del" | "rename_from" | "move_from") {
                notify_keyspace_event(ctx.node, ctx.pubsub, GENERIC, "del", db, key);
            }
        }
    }
}

/// Publishes `expired` for keys deleted by expiry.
pub fn expired(ctx: &ExecCtx, keys: &[(usize, crate::keyspace::Blob)]) {
    for (db, key) in keys {
        notify_keyspace_event(
            ctx.node,
            ctx.pubsub,
            EXPIRED,
            "expired",
            *db,
            key.as_bytes(),
        );
    }
}
