//! Generic key commands: existence, deletion, renaming, expiry, iteration,
//! databases.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::{AccessPolicy, ValueKind, DATABASES};
use crate::resp::Frame;
use bytes::Bytes;

const G: &str = "generic";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("del", -2, WRITE, (1, -1, 1), "Deletes one or more keys.", "key [key ...]", del),
    spec!("unlink", -2, WRITE | FAST, (1, -1, 1), "Asynchronously deletes one or more keys.", "key [key ...]", del),
    spec!("exists", -2, READONLY | FAST, (1, -1, 1), "Determines whether one or more keys exist.", "key [key ...]", exists),
    spec!(
        "touch",
        -2,
        READONLY | FAST,
        (1, -1, 1),
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        "key [key ...]",
        touch
    ),
    spec!("type", 2, READONLY | FAST, (1, 1, 1), "Determines the type of value stored at a key.", "key", type_),
    spec!("keys", 2, READONLY, (0, 0, 0), "Returns all key names that match a pattern.", "pattern", keys),
    spec!("scan", -2, READONLY, (0, 0, 0), "Iterates over the key names in the database.", "cursor [MATCH pattern] [COUNT count] [TYPE type]", scan),
    spec!("randomkey", 1, READONLY, (0, 0, 0), "Returns a random key name from the database.", "", randomkey),
    spec!("rename", 3, WRITE, (1, 2, 1), "Renames a key and overwrites the destination.", "key newkey", rename),
    spec!("renamenx", 3, WRITE | FAST, (1, 2, 1), "Renames a key only when the target key name doesn't exist.", "key newkey", renamenx),
    spec!("copy", -3, WRITE | DENYOOM, (1, 2, 1), "Copies the value of a key to a new key.", "source destination [DB destination-db] [REPLACE]", copy),
    spec!("move", 3, WRITE | FAST, (1, 1, 1), "Moves a key to another database.", "key db", move_),
    spec!("dump", 2, READONLY, (1, 1, 1), "Returns a serialized representation of the value stored at a key.", "key", dump),
    spec!(
        "restore",
        -4,
        WRITE | DENYOOM,
        (1, 1, 1),
        "Creates a key from the serialized representation of a value.",
        "key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]",
        restore
    ),
    spec!("dbsize", 1, READONLY | FAST, (0, 0, 0), "Returns the number of keys in the database.", "", dbsize),
    spec!("swapdb", 3, WRITE | FAST, (0, 0, 0), "Swaps two Redis databases.", "index1 index2", swapdb),
    spec!("flushdb", -1, WRITE, (0, 0, 0), "Remove all keys from the current database.", "[ASYNC | SYNC]", flushdb),
    spec!("flushall", -1, WRITE, (0, 0, 0), "Removes all keys from all databases.", "[ASYNC | SYNC]", flushall),
    spec!("expire", -3, WRITE | FAST, (1, 1, 1), "Sets the expiration time of a key in seconds.", "key seconds [NX | XX | GT | LT]", expire),
    spec!("pexpire", -3, WRITE | FAST, (1, 1, 1), "Sets the expiration time of a key in milliseconds.", "key milliseconds [NX | XX | GT | LT]", expire),
    spec!("expireat", -3, WRITE | FAST, (1, 1, 1), "Sets the expiration time of a key to a Unix timestamp.", "key unix-time-seconds [NX | XX | GT | LT]", expire),
    spec!(
        "pexpireat",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        "key unix-time-milliseconds [NX | XX | GT | LT]",
        expire
    ),
    spec!("ttl", 2, READONLY | FAST, (1, 1, 1), "Returns the expiration time in seconds of a key.", "key", ttl),
    spec!("pttl", 2, READONLY | FAST, (1, 1, 1), "Returns the expiration time in milliseconds of a key.", "key", ttl),
    spec!("expiretime", 2, READONLY | FAST, (1, 1, 1), "Returns the expiration time of a key as a Unix timestamp.", "key", ttl),
    spec!("pexpiretime", 2, READONLY | FAST, (1, 1, 1), "Returns the expiration time of a key as a Unix milliseconds timestamp.", "key", ttl),
    spec!("persist", 2, WRITE | FAST, (1, 1, 1), "Removes the expiration time of a key.", "key", persist),
    spec!("object", -2, READONLY, (2, 2, 1), "Returns internal information about a key (ENCODING, FREQ, IDLETIME, REFCOUNT).", "subcommand [key]", object),
];

fn del(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let mut removed = 0;
    for key in &args[1..] {
        if ctx.db().contains(key, now) && ctx.db().remove(key).is_some() {
            removed += 1;
        }
    }
    ctx.dirty(removed as u64);
    Ok(Frame::Integer(removed))
}

fn exists(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let db = ctx.db();
    Ok(Frame::Integer(
        args[1..].iter().filter(|k| db.contains(k, now)).count() as i64,
    ))
}

fn touch(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let db = ctx.db();
    Ok(Frame::Integer(
        args[1..].iter().filter(|k| db.touch(k, now)).count() as i64,
    ))
}

fn type_(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    Ok(Frame::simple(
        ctx.db()
            .peek(&args[1], now)
            .map(|v| v.kind().name())
            .unwrap_or("none"),
    ))
}

fn keys(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let pattern = &args[1];
    let all = pattern.as_ref() == b"*";
    let out = ctx
        .db()
        .iter()
        .filter(|(_, _, exp)| !matches!(exp, Some(at) if *at <= now))
        .filter(|(k, _, _)| all || glob_match(pattern, k, false))
        .map(|(k, _, _)| Frame::Bulk(k.to_bytes()))
        .collect();
    Ok(Frame::Array(out))
}

/// Parses SCAN-family options (`MATCH`, `COUNT`, and `TYPE` when allowed).
pub(super) struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub kind: Option<Option<ValueKind>>,
}

pub(super) fn parse_cursor(arg: &[u8]) -> Result<u64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(Frame::error("ERR invalid cursor"))
}

pub(super) fn parse_scan_options(args: &[Bytes], allow_type: bool) -> Result<ScanOptions, Frame> {
    let mut opts = ScanOptions {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = 0;
    while i < args.len() {
        if is(&args[i], "count") && i + 1 < args.len() {
            let n = int(&args[i + 1])?;
            if n < 1 {
                return Err(ERR_SYNTAX);
            }
            opts.count = n as usize;
            i += 2;
        } else if is(&args[i], "match") && i + 1 < args.len() {
            opts.pattern = Some(args[i + 1].clone());
            i += 2;
        } else if allow_type && is(&args[i], "type") && i + 1 < args.len() {
            opts.kind = Some(ValueKind::from_name(&args[i + 1]));
            i += 2;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    Ok(opts)
}

fn scan(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[1])?;
    let opts = parse_scan_options(&args[2..], true)?;
    let now = ctx.now_ms;
    let mut found = Vec::new();
    let next = ctx.db().scan(cursor, opts.count, |key, value, expire| {
        if matches!(expire, Some(at) if at <= now) {
            return;
        }
        if let Some(kind) = opts.kind {
            if Some(value.kind()) != kind {
                return;
            }
        }
        if let Some(p) = &opts.pattern {
            if !glob_match(p, key, false) {
                return;
            }
        }
        found.push(Frame::Bulk(key.to_bytes()));
    });
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(found),
    ]))
}

fn randomkey(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    Ok(ctx
        .db()
        .random_key(now)
        .map(|k| Frame::Bulk(k.to_bytes()))
        .unwrap_or(Frame::Null))
}

fn rename_generic(ctx: &mut ExecCtx, args: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let now = ctx.now_ms;
    if !ctx.db().contains(src, now) {
        return Err(ERR_NO_SUCH_KEY);
    }
    if src == dst {
        return Ok(if nx { Frame::Integer(0) } else { Frame::ok() });
    }
    if nx && ctx.db().contains(dst, now) {
        return Ok(Frame::Integer(0));
    }
    let db = ctx.db();
    let (value, expire) = db.take(src).ok_or(ERR_NO_SUCH_KEY)?;
    db.set(dst, value, false);
    if let Some(at) = expire {
        db.set_expire(dst, at);
    }
    ctx.dirty(1);
    Ok(if nx { Frame::Integer(1) } else { Frame::ok() })
}

fn rename(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, false)
}

fn renamenx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, true)
}

pub(super) fn parse_db_index(arg: &[u8]) -> Result<usize, Frame> {
    let n = int(arg)?;
    if n < 0 || n as usize >= DATABASES {
        return Err(ERR_DB_RANGE);
    }
    Ok(n as usize)
}

fn copy(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let mut target_db = ctx.session.db;
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "replace") {
            replace = true;
            i += 1;
        } else if is(&args[i], "db") && i + 1 < args.len() {
            target_db = parse_db_index(&args[i + 1])?;
            i += 2;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    if target_db == ctx.session.db && src == dst {
        return Err(Frame::error(
            "ERR source and destination objects are the same",
        ));
    }
    let now = ctx.now_ms;
    let Some(value) = ctx.db().peek(src, now).cloned() else {
        return Ok(Frame::Integer(0));
    };
    let expire = ctx.db().expire_at(src);
    let target = &mut ctx.keyspace.dbs[target_db];
    if target.contains(dst, now) && !replace {
        return Ok(Frame::Integer(0));
    }
    target.set(dst, value, false);
    if let Some(at) = expire {
        target.set_expire(dst, at);
    }
    ctx.blocking.signal(target_db, dst);
    ctx.dirty(1);
    Ok(Frame::Integer(1))
}

/// The value in Redis's DUMP format (RDB encoding, version, CRC64), so
/// it can be RESTOREd into Redis as well.
fn dump(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    Ok(match ctx.db().get(&args[1], now) {
        Some(v) => Frame::bulk(crate::keyspace::rdb::dump(v)),
        None => Frame::Null,
    })
}

fn restore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None, None);
    let mut i = 4;
    while i < args.len() {
        let more = i + 1 < args.len();
        if is(&args[i], "replace") {
            replace = true;
        } else if is(&args[i], "absttl") {
            absttl = true;
        } else if is(&args[i], "idletime") && more && freq.is_none() {
            let secs = int(&args[i + 1])?;
            if secs < 0 {
                return Err(Frame::error("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(secs);
            i += 1;
        } else if is(&args[i], "freq") && more && idle.is_none() {
            let f = int(&args[i + 1])?;
            if !(0..=255).contains(&f) {
                return Err(Frame::error(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(f);
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    let ttl = int(&args[2])?;
    if ttl < 0 {
        return Err(Frame::error("ERR Invalid TTL value, must be >= 0"));
    }
    let now = ctx.now_ms;
    if !replace && ctx.db().contains(key, now) {
        return Err(Frame::error("BUSYKEY Target key name already exists."));
    }
    let value =
        crate::keyspace::rdb::restore(&args[3]).map_err(|e| Frame::error_owned(e.to_string()))?;
    let at = match ttl {
        0 => None,
        t if absttl => Some(t),
        t => Some(t.saturating_add(now)),
    };
    if at.is_some_and(|at| at <= now) {
        // Already expired: nothing is created; a replaced key is deleted.
        if replace && ctx.db().remove(key).is_some() {
            ctx.dirty(1);
            ctx.propagate(&[&b"DEL"[..], key]);
        }
        return Ok(Frame::ok());
    }
    ctx.db().set(key, value, false);
    if let Some(at) = at {
        ctx.db().set_expire(key, at);
    }
    ctx.db()
        .set_access(key, idle.map(|s| s as u64), freq.map(|f| f as u8), now);
    ctx.modified(key, 1);
    // The replica gets the absolute deadline (as Redis rewrites it).
    let mut effect: Vec<Bytes> = args.to_vec();
    if let Some(at) = at {
        effect[2] = Bytes::from(at.to_string());
        if !absttl {
            effect.push(Bytes::from_static(b"ABSTTL"));
        }
    }
    ctx.propagate(&effect);
    Ok(Frame::ok())
}

fn move_(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let target_db = parse_db_index(&args[2])?;
    if target_db == ctx.session.db {
        return Err(Frame::error(
            "ERR source and destination objects are the same",
        ));
    }
    let now = ctx.now_ms;
    let key = &args[1];
    if !ctx.db().contains(key, now) || ctx.keyspace.dbs[target_db].contains(key, now) {
        return Ok(Frame::Integer(0));
    }
    let (value, expire) = ctx.db().take(key).ok_or(ERR_NO_SUCH_KEY)?;
    let target = &mut ctx.keyspace.dbs[target_db];
    target.set(key, value, false);
    if let Some(at) = expire {
        target.set_expire(key, at);
    }
    ctx.blocking.signal(target_db, key);
    ctx.dirty(1);
    Ok(Frame::Integer(1))
}

fn dbsize(ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(ctx.db().len() as i64))
}

fn swapdb(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let a = parse_i64(&args[1]).ok_or(Frame::error("ERR invalid first DB index"))?;
    let b = parse_i64(&args[2]).ok_or(Frame::error("ERR invalid second DB index"))?;
    if a < 0 || b < 0 || a as usize >= DATABASES || b as usize >= DATABASES {
        return Err(ERR_DB_RANGE);
    }
    let (a, b) = (a as usize, b as usize);
    if a != b {
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = ctx.keyspace.dbs.split_at_mut(hi);
        left[lo].swap_data(&mut right[0], ctx.now_ms);
        ctx.blocking.signal_db(a);
        ctx.blocking.signal_db(b);
        ctx.dirty(1);
    }
    Ok(Frame::ok())
}

fn flush_mode_ok(args: &[Bytes]) -> Result<(), Frame> {
    match args.len() {
        1 => Ok(()),
        2 if is(&args[1], "async") || is(&args[1], "sync") => Ok(()),
        _ => Err(ERR_SYNTAX),
    }
}

fn flushdb(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    flush_mode_ok(args)?;
    let removed = ctx.db().clear();
    // XREADGROUP waiters learn that their stream went away.
    ctx.blocking.signal_db(ctx.session.db);
    ctx.dirty(removed as u64 + 1);
    Ok(Frame::ok())
}

fn flushall(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    flush_mode_ok(args)?;
    let removed: usize = ctx.keyspace.dbs.iter_mut().map(|db| db.clear()).sum();
    for db in 0..ctx.keyspace.dbs.len() {
        ctx.blocking.signal_db(db);
    }
    ctx.dirty(removed as u64 + 1);
    Ok(Frame::ok())
}

fn expire(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = &args[1];
    let n = int(&args[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(Frame::error_owned(format!(
                "ERR Unsupported option {}",
                text(opt)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let invalid = || Frame::error_owned(format!("ERR invalid expire time in '{name}' command"));
    let now = ctx.now_ms;
    let at = match name.as_str() {
        "expire" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        "pexpire" => n.checked_add(now),
        "expireat" => n.checked_mul(1000),
        _ => Some(n),
    }
    .ok_or_else(invalid)?;
    let db = ctx.db();
    if !db.contains(key, now) {
        return Ok(Frame::Integer(0));
    }
    let current = db.expire_at(key);
    let allowed = match current {
        _ if !(nx || xx || gt || lt) => true,
        None => nx || lt,
        Some(cur) => (!nx) && (!gt || at > cur) && (!lt || at < cur),
    };
    if !allowed {
        return Ok(Frame::Integer(0));
    }
    if at <= now {
        db.remove(key);
        ctx.propagate(&[b"DEL".as_slice(), key]);
    } else {
        db.set_expire(key, at);
        let at = at.to_string();
        ctx.propagate(&[b"PEXPIREAT".as_slice(), key, at.as_bytes()]);
    }
    ctx.dirty(1);
    Ok(Frame::Integer(1))
}

fn ttl(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let now = ctx.now_ms;
    let db = ctx.db();
    if db.get(&args[1], now).is_none() {
        return Ok(Frame::Integer(-2));
    }
    let Some(at) = db.expire_at(&args[1]) else {
        return Ok(Frame::Integer(-1));
    };
    let remaining = (at - now).max(0);
    Ok(Frame::Integer(match name.as_str() {
        "ttl" => (remaining + 500) / 1000,
        "pttl" => remaining,
        "expiretime" => at / 1000,
        _ => at,
    }))
}

fn persist(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let db = ctx.db();
    if !db.contains(&args[1], now) || !db.persist(&args[1]) {
        return Ok(Frame::Integer(0));
    }
    ctx.dirty(1);
    Ok(Frame::Integer(1))
}

fn object(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    if is(sub, "help") && args.len() == 2 {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Print this help.",
        ];
        return Ok(Frame::Array(
            lines.iter().map(|l| Frame::simple(l)).collect(),
        ));
    }
    if args.len() != 3 {
        return Err(unknown_subcommand(sub, "OBJECT"));
    }
    let now = ctx.now_ms;
    let value = ctx.db().peek(&args[2], now).cloned();
    if is(sub, "encoding") {
        Ok(value
            .map(|v| Frame::bulk(v.encoding(&ctx.node.settings.read().encoding)))
            .unwrap_or(Frame::Null))
    } else if is(sub, "refcount") {
        // Redis shares the integers 0-9999 (OBJ_SHARED_REFCOUNT).
        Ok(match value {
            Some(crate::keyspace::Value::Int(n)) if (0..10_000).contains(&n) => {
                Frame::Integer(i32::MAX as i64)
            }
            Some(_) => Frame::Integer(1),
            None => Frame::Null,
        })
    } else if is(sub, "idletime") {
        let lfu = matches!(ctx.db().access_policy, AccessPolicy::Lfu { .. });
        match value {
            None => Ok(Frame::Null),
            Some(_) if lfu => Err(Frame::error("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")),
            Some(_) => Ok(Frame::Integer(ctx.db().idle_secs(&args[2], now).unwrap_or(0) as i64)),
        }
    } else if is(sub, "freq") {
        let lfu = matches!(ctx.db().access_policy, AccessPolicy::Lfu { .. });
        match value {
            None => Ok(Frame::Null),
            Some(_) if !lfu => Err(Frame::error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")),
            Some(_) => Ok(Frame::Integer(ctx.db().freq(&args[2], now).unwrap_or(0) as i64)),
        }
    } else {
        Err(unknown_subcommand(sub, "OBJECT"))
    }
}

/// Redis's reply for an unknown subcommand of a container command.
/// A HELP subcommand's reply: its lines as status replies.
pub(super) fn help_reply(lines: &[&str]) -> Frame {
    Frame::Array(
        lines
            .iter()
            .map(|l| Frame::Simple(std::borrow::Cow::Owned(l.to_string())))
            .collect(),
    )
}

pub(super) fn unknown_subcommand(sub: &[u8], container: &str) -> Frame {
    Frame::error_owned(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        container
    ))
}
