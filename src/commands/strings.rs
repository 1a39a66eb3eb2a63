//! String commands: GET/SET and friends, counters, ranges.

use super::args::*;
use super::flags::*;
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::Value;
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "string";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("get", 2, READONLY | FAST, (1, 1, 1), "Returns the string value of a key.", "key", get),
    spec!(
        "set",
        -3,
        WRITE | DENYOOM,
        (1, 1, 1),
        "Sets the string value of a key, ignoring its type.",
        "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
        set
    ),
    spec!("setnx", 3, WRITE | DENYOOM | FAST, (1, 1, 1), "Set the string value of a key only when the key doesn't exist.", "key value", setnx),
    spec!("setex", 4, WRITE | DENYOOM, (1, 1, 1), "Sets the string value and expiration time of a key.", "key seconds value", setex),
    spec!("psetex", 4, WRITE | DENYOOM, (1, 1, 1), "Sets the string value and expiration time in milliseconds of a key.", "key milliseconds value", psetex),
    spec!("mget", -2, READONLY | FAST, (1, -1, 1), "Atomically returns the string values of one or more keys.", "key [key ...]", mget),
    spec!("mset", -3, WRITE | DENYOOM, (1, -1, 2), "Atomically creates or modifies the string values of one or more keys.", "key value [key value ...]", mset),
    spec!(
        "msetnx",
        -3,
        WRITE | DENYOOM,
        (1, -1, 2),
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        "key value [key value ...]",
        msetnx
    ),
    spec!("getset", 3, WRITE | DENYOOM | FAST, (1, 1, 1), "Returns the previous string value of a key after setting it to a new value.", "key value", getset),
    spec!("getdel", 2, WRITE | FAST, (1, 1, 1), "Returns the string value of a key after deleting the key.", "key", getdel),
    spec!(
        "getex",
        -2,
        WRITE | FAST,
        (1, 1, 1),
        "Returns the string value of a key after setting its expiration time.",
        "key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]",
        getex
    ),
    spec!("append", 3, WRITE | DENYOOM | FAST, (1, 1, 1), "Appends a string to the value of a key. Creates the key if it doesn't exist.", "key value", append),
    spec!("strlen", 2, READONLY | FAST, (1, 1, 1), "Returns the length of a string value.", "key", strlen),
    spec!("getrange", 4, READONLY, (1, 1, 1), "Returns a substring of the string stored at a key.", "key start end", getrange),
    spec!("substr", 4, READONLY, (1, 1, 1), "Returns a substring from a string value.", "key start end", getrange),
    spec!("lcs", -3, READONLY, (1, 2, 1), "Finds the longest common substring.", "key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]", lcs),
    spec!(
        "setrange",
        4,
        WRITE | DENYOOM,
        (1, 1, 1),
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        "key offset value",
        setrange
    ),
    spec!("incr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key", incr),
    spec!("decr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key", decr),
    spec!(
        "incrby",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "key increment",
        incrby
    ),
    spec!(
        "decrby",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        "key decrement",
        decrby
    ),
    spec!(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "key increment",
        incrbyfloat
    ),
];

/// Reads a string value; WRONGTYPE if the key holds another type.
pub(super) fn read(ctx: &mut ExecCtx, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    let now = ctx.now_ms;
    match ctx.db().get(key, now) {
        None => Ok(None),
        Some(v) => v.string_bytes().map(Some).ok_or(ERR_WRONGTYPE),
    }
}

fn bulk_or_null(v: Option<Bytes>) -> Frame {
    v.map(Frame::Bulk).unwrap_or(Frame::Null)
}

fn get(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(bulk_or_null(read(ctx, &args[1])?))
}

/// The expiry options shared by SET and GETEX.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expiry {
    None,
    At(i64),
    KeepTtl,
    Persist,
}

/// Parses `EX|PX|EXAT|PXAT n` at `args[i]`; returns the absolute deadline.
fn parse_expire_option(
    ctx: &ExecCtx,
    option: &[u8],
    value: &[u8],
    cmd: &str,
) -> Result<i64, Frame> {
    let invalid = || Frame::error_owned(format!("ERR invalid expire time in '{cmd}' command"));
    let n = int(value)?;
    if n <= 0 {
        return Err(invalid());
    }
    let at = if is(option, "ex") {
        n.checked_mul(1000)
            .and_then(|ms| ms.checked_add(ctx.now_ms))
    } else if is(option, "px") {
        n.checked_add(ctx.now_ms)
    } else if is(option, "exat") {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    at.ok_or_else(invalid)
}

/// Stores a string with an optional deadline; a deadline already past
/// deletes the key, as Redis does.
fn store(ctx: &mut ExecCtx, key: &[u8], value: &[u8], expiry: Expiry) {
    let now = ctx.now_ms;
    let db = ctx.db();
    match expiry {
        Expiry::At(at) if at <= now => {
            db.remove(key);
        }
        Expiry::At(at) => {
            db.set(key, Value::string(value), false);
            db.set_expire(key, at);
        }
        Expiry::KeepTtl => db.set(key, Value::string(value), true),
        Expiry::None | Expiry::Persist => db.set(key, Value::string(value), false),
    }
    ctx.dirty(1);
}

/// A relative or absolute TTL replicates as an absolute PXAT, so the key
/// expires at the same instant everywhere however late the replica applies
/// it; a deadline already past replicates as the DEL it caused.
fn propagate_deadline(ctx: &mut ExecCtx, key: &[u8], value: &[u8], expiry: Expiry) {
    if let Expiry::At(at) = expiry {
        if at <= ctx.now_ms {
            ctx.propagate(&[b"DEL".as_slice(), key]);
        } else {
            let at = at.to_string();
            ctx.propagate(&[b"SET".as_slice(), key, value, b"PXAT", at.as_bytes()]);
        }
    }
}

fn set(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut want_get) = (false, false, false);
    let mut expiry = Expiry::None;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        if is(opt, "nx") && !xx {
            nx = true;
        } else if is(opt, "xx") && !nx {
            xx = true;
        } else if is(opt, "get") {
            want_get = true;
        } else if is(opt, "keepttl") && expiry == Expiry::None {
            expiry = Expiry::KeepTtl;
        } else if (is(opt, "ex") || is(opt, "px") || is(opt, "exat") || is(opt, "pxat"))
            && expiry == Expiry::None
            && i + 1 < args.len()
        {
            expiry = Expiry::At(parse_expire_option(ctx, opt, &args[i + 1], "set")?);
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    let old = if want_get { read(ctx, key)? } else { None };
    let now = ctx.now_ms;
    let exists = ctx.db().contains(key, now);
    if (nx && exists) || (xx && !exists) {
        return Ok(if want_get {
            bulk_or_null(old)
        } else {
            Frame::Null
        });
    }
    store(ctx, key, value, expiry);
    propagate_deadline(ctx, key, value, expiry);
    Ok(if want_get {
        bulk_or_null(old)
    } else {
        Frame::ok()
    })
}

fn setnx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    if ctx.db().contains(&args[1], now) {
        return Ok(Frame::Integer(0));
    }
    store(ctx, &args[1], &args[2], Expiry::None);
    Ok(Frame::Integer(1))
}

fn setex(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let at = parse_expire_option(ctx, b"ex", &args[2], "setex")?;
    store(ctx, &args[1], &args[3], Expiry::At(at));
    propagate_deadline(ctx, &args[1], &args[3], Expiry::At(at));
    Ok(Frame::ok())
}

fn psetex(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let at = parse_expire_option(ctx, b"px", &args[2], "psetex")?;
    store(ctx, &args[1], &args[3], Expiry::At(at));
    propagate_deadline(ctx, &args[1], &args[3], Expiry::At(at));
    Ok(Frame::ok())
}

fn mget(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let db = ctx.db();
    let values = args[1..].iter().map(|k| match db.get(k, now) {
        Some(v) => v.string_bytes().map(Frame::Bulk).unwrap_or(Frame::Null),
        None => Frame::Null,
    });
    Ok(Frame::Array(values.collect()))
}

fn mset(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(super::wrong_arity(if is(&args[0], "msetnx") {
            "msetnx"
        } else {
            "mset"
        }));
    }
    for pair in args[1..].chunks(2) {
        store(ctx, &pair[0], &pair[1], Expiry::None);
    }
    Ok(Frame::ok())
}

fn msetnx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(super::wrong_arity("msetnx"));
    }
    let now = ctx.now_ms;
    if args[1..]
        .chunks(2)
        .any(|pair| ctx.db().contains(&pair[0], now))
    {
        return Ok(Frame::Integer(0));
    }
    mset(ctx, args)?;
    Ok(Frame::Integer(1))
}

fn getset(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let old = read(ctx, &args[1])?;
    store(ctx, &args[1], &args[2], Expiry::None);
    Ok(bulk_or_null(old))
}

fn getdel(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let old = read(ctx, &args[1])?;
    if old.is_some() {
        ctx.db().remove(&args[1]);
        ctx.dirty(1);
    }
    Ok(bulk_or_null(old))
}

fn getex(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let mut expiry = Expiry::None;
    let mut i = 2;
    while i < args.len() {
        let opt = &args[i];
        if is(opt, "persist") && expiry == Expiry::None {
            expiry = Expiry::Persist;
        } else if (is(opt, "ex") || is(opt, "px") || is(opt, "exat") || is(opt, "pxat"))
            && expiry == Expiry::None
            && i + 1 < args.len()
        {
            expiry = Expiry::At(parse_expire_option(ctx, opt, &args[i + 1], "getex")?);
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    let Some(value) = read(ctx, key)? else {
        return Ok(Frame::Null);
    };
    let now = ctx.now_ms;
    match expiry {
        Expiry::At(at) if at <= now => {
            ctx.db().remove(key);
            ctx.dirty(1);
            ctx.propagate(&[b"DEL".as_slice(), key]);
        }
        Expiry::At(at) => {
            ctx.db().set_expire(key, at);
            ctx.dirty(1);
            let at = at.to_string();
            ctx.propagate(&[b"PEXPIREAT".as_slice(), key, at.as_bytes()]);
        }
        Expiry::Persist if ctx.db().persist(key) => {
            ctx.dirty(1);
            ctx.propagate(&[b"PERSIST".as_slice(), key]);
        }
        _ => {}
    }
    Ok(Frame::Bulk(value))
}

pub(super) fn max_len(ctx: &ExecCtx) -> u64 {
    ctx.node.settings.read().proto_max_bulk_len
}

/// Gives mutable access to a string's bytes as a growable buffer,
/// creating an empty string if the key is missing.
pub(super) fn string_buffer<'a>(
    ctx: &'a mut ExecCtx,
    key: &[u8],
) -> Result<&'a mut Vec<u8>, Frame> {
    let now = ctx.now_ms;
    let db = ctx.db();
    match db.get_mut(key, now) {
        Some(Value::Raw(_)) => {}
        Some(v) => {
            let bytes = v.with_string(|s| s.to_vec()).ok_or(ERR_WRONGTYPE)?;
            *v = Value::Raw(Arc::new(bytes));
        }
        None => db.set(key, Value::Raw(Arc::new(Vec::new())), false),
    }
    match db.get_mut(key, now) {
        Some(Value::Raw(buf)) => Ok(Arc::make_mut(buf)),
        _ => Err(ERR_WRONGTYPE),
    }
}

fn append(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let current = match ctx.db().peek(&args[1], now) {
        Some(v) => v.string_len().ok_or(ERR_WRONGTYPE)?,
        None => 0,
    };
    if (current + args[2].len()) as u64 > max_len(ctx) {
        return Err(ERR_STRING_TOO_LONG);
    }
    let buf = string_buffer(ctx, &args[1])?;
    buf.extend_from_slice(&args[2]);
    let len = buf.len();
    ctx.db().signal_modified(&args[1]);
    ctx.dirty(1);
    Ok(Frame::Integer(len as i64))
}

fn strlen(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    match ctx.db().get(&args[1], now) {
        None => Ok(Frame::Integer(0)),
        Some(v) => Ok(Frame::Integer(v.string_len().ok_or(ERR_WRONGTYPE)? as i64)),
    }
}

fn getrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (mut start, mut end) = (int(&args[2])?, int(&args[3])?);
    let Some(value) = read(ctx, &args[1])? else {
        return Ok(Frame::bulk(""));
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Ok(Frame::bulk(""));
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Ok(Frame::bulk(""));
    }
    Ok(Frame::Bulk(value.slice(start as usize..=end as usize)))
}

fn setrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let offset = int(&args[2])?;
    if offset < 0 {
        return Err(Frame::error("ERR offset is out of range"));
    }
    let offset = offset as usize;
    let value = &args[3];
    let now = ctx.now_ms;
    let current = match ctx.db().peek(&args[1], now) {
        Some(v) => Some(v.string_len().ok_or(ERR_WRONGTYPE)?),
        None => None,
    };
    if value.is_empty() {
        return Ok(Frame::Integer(current.unwrap_or(0) as i64));
    }
    if (offset as u64).saturating_add(value.len() as u64) > max_len(ctx) {
        return Err(ERR_STRING_TOO_LONG);
    }
    let buf = string_buffer(ctx, &args[1])?;
    if buf.len() < offset + value.len() {
        buf.resize(offset + value.len(), 0);
    }
    buf[offset..offset + value.len()].copy_from_slice(value);
    let len = buf.len();
    ctx.db().signal_modified(&args[1]);
    ctx.dirty(1);
    Ok(Frame::Integer(len as i64))
}

fn incr_by(ctx: &mut ExecCtx, key: &[u8], delta: i64) -> CmdResult {
    let now = ctx.now_ms;
    let db = ctx.db();
    let current = match db.get_mut(key, now) {
        None => 0,
        Some(Value::Int(n)) => *n,
        Some(v) => {
            let parsed = v.with_string(parse_i64).ok_or(ERR_WRONGTYPE)?;
            parsed.ok_or(ERR_NOT_INT)?
        }
    };
    let next = current.checked_add(delta).ok_or(ERR_OVERFLOW)?;
    db.set(key, Value::Int(next), true);
    ctx.dirty(1);
    Ok(Frame::Integer(next))
}

fn incr(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], 1)
}

fn decr(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], -1)
}

fn incrby(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], int(&args[2])?)
}

fn decrby(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let delta = int(&args[2])?;
    incr_by(
        ctx,
        &args[1],
        delta
            .checked_neg()
            .ok_or(Frame::error("ERR decrement would overflow"))?,
    )
}

fn incrbyfloat(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let current = read(ctx, &args[1])?;
    let text = super::longdouble::incr(current.as_deref(), &args[2]).map_err(|e| match e {
        super::longdouble::IncrError::NotFloat => ERR_NOT_FLOAT,
        super::longdouble::IncrError::NanOrInfinity => ERR_NAN,
    })?;
    ctx.db().set(&args[1], Value::string(text.as_bytes()), true);
    ctx.dirty(1);
    // Float arithmetic may round differently elsewhere: replicate the result.
    ctx.propagate(&[b"SET".as_slice(), &args[1], text.as_bytes(), b"KEEPTTL"]);
    Ok(Frame::bulk(text))
}

/// LCS: the longest common subsequence of two strings by Redis's dynamic
/// programming table, with its backtracking (so IDX ranges come out in
/// Redis's order: from the ends of the strings backwards).
fn lcs(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let err_type = Frame::error("ERR The specified keys must contain string values");
    let a = read(ctx, &args[1])
        .map_err(|_| err_type.clone())?
        .unwrap_or_default();
    let b = read(ctx, &args[2])
        .map_err(|_| err_type)?
        .unwrap_or_default();
    let (mut get_len, mut get_idx, mut with_match_len, mut min_match_len) =
        (false, false, false, 0u64);
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "idx") {
            get_idx = true;
        } else if is(&args[i], "len") {
            get_len = true;
        } else if is(&args[i], "withmatchlen") {
            with_match_len = true;
        } else if is(&args[i], "minmatchlen") && i + 1 < args.len() {
            min_match_len = int(&args[i + 1])?.max(0) as u64;
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    if get_len && get_idx {
        return Err(Frame::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > max_len(ctx) {
        return Err(Frame::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let width = blen + 1;
    let mut table = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen];
    if get_len {
        return Ok(Frame::Integer(total as i64));
    }
    let mut result = vec![0u8; total as usize];
    let mut idx = total as usize;
    let mut matches = Vec::new();
    // `a_start == alen` means no range is open.
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0, 0, 0);
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let len = (a_end - a_start + 1) as u64;
            if get_idx && (min_match_len == 0 || len >= min_match_len) {
                let mut m = vec![
                    Frame::Array(vec![
                        Frame::Integer(a_start as i64),
                        Frame::Integer(a_end as i64),
                    ]),
                    Frame::Array(vec![
                        Frame::Integer(b_start as i64),
                        Frame::Integer(b_end as i64),
                    ]),
                ];
                if with_match_len {
                    m.push(Frame::Integer(len as i64));
                }
                matches.push(Frame::Array(m));
            }
            a_start = alen;
        }
    }
    Ok(if get_idx {
        Frame::Map(vec![
            (Frame::bulk("matches"), Frame::Array(matches)),
            (Frame::bulk("len"), Frame::Integer(total as i64)),
        ])
    } else {
        Frame::bulk(result)
    })
}
