//! Set commands.

use super::args::*;
use super::flags::*;
use super::hash::{parse_rand_count, random_indexes};
use super::keys::{parse_cursor, parse_scan_options};
use super::typed::{read_set, write_set};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::{scan_positions, Blob, SetValue, Value};
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "set";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("sadd", -3, WRITE | DENYOOM | FAST, (1, 1, 1), "Adds one or more members to a set. Creates the key if it doesn't exist.", "key member [member ...]", sadd),
    spec!("srem", -3, WRITE | FAST, (1, 1, 1), "Removes one or more members from a set. Deletes the set if the last member was removed.", "key member [member ...]", srem),
    spec!("scard", 2, READONLY | FAST, (1, 1, 1), "Returns the number of members in a set.", "key", scard),
    spec!("sismember", 3, READONLY | FAST, (1, 1, 1), "Determines whether a member belongs to a set.", "key member", sismember),
    spec!("smismember", -3, READONLY | FAST, (1, 1, 1), "Determines whether multiple members belong to a set.", "key member [member ...]", smismember),
    spec!("smembers", 2, READONLY, (1, 1, 1), "Returns all members of a set.", "key", smembers),
    spec!(
        "spop",
        -2,
        WRITE | FAST,
        (1, 1, 1),
        "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.",
        "key [count]",
        spop
    ),
    spec!("srandmember", -2, READONLY, (1, 1, 1), "Get one or multiple random members from a set", "key [count]", srandmember),
    spec!("smove", 4, WRITE | FAST, (1, 2, 1), "Moves a member from one set to another.", "source destination member", smove),
    spec!("sinter", -2, READONLY, (1, -1, 1), "Returns the intersect of multiple sets.", "key [key ...]", sinter),
    spec!("sinterstore", -3, WRITE | DENYOOM, (1, -1, 1), "Stores the intersect of multiple sets in a key.", "destination key [key ...]", sinterstore),
    spec!("sunion", -2, READONLY, (1, -1, 1), "Returns the union of multiple sets.", "key [key ...]", sunion),
    spec!("sunionstore", -3, WRITE | DENYOOM, (1, -1, 1), "Stores the union of multiple sets in a key.", "destination key [key ...]", sunionstore),
    spec!("sdiff", -2, READONLY, (1, -1, 1), "Returns the difference of multiple sets.", "key [key ...]", sdiff),
    spec!("sdiffstore", -3, WRITE | DENYOOM, (1, -1, 1), "Stores the difference of multiple sets in a key.", "destination key [key ...]", sdiffstore),
    spec!(
        "sintercard",
        -3,
        READONLY | MOVABLE_KEYS,
        (0, 0, 0),
        "Returns the number of members of the intersect of multiple sets.",
        "numkeys key [key ...] [LIMIT limit]",
        sintercard
    ),
    spec!("sscan", -3, READONLY, (1, 1, 1), "Iterates over members of a set.", "key cursor [MATCH pattern] [COUNT count]", sscan),
];

fn sadd(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let set = write_set(ctx, &args[1], true)?.expect("created");
    let added = args[2..]
        .iter()
        .filter(|m| set.insert(Blob::new(m)))
        .count();
    ctx.modified(&args[1], added as u64);
    Ok(Frame::Integer(added as i64))
}

fn srem(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let Some(set) = write_set(ctx, &args[1], false)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..]
        .iter()
        .filter(|m| set.swap_remove(m.as_ref()))
        .count();
    if removed > 0 {
        ctx.modified(&args[1], removed as u64);
    }
    Ok(Frame::Integer(removed as i64))
}

fn scard(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_set(ctx, &args[1])?.map_or(0, |s| s.len()) as i64,
    ))
}

fn sismember(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_set(ctx, &args[1])?.is_some_and(|s| s.contains(args[2].as_ref())) as i64,
    ))
}

fn smismember(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let set = read_set(ctx, &args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| Frame::Integer(set.is_some_and(|s| s.contains(m.as_ref())) as i64))
            .collect(),
    ))
}

fn members(set: &SetValue) -> Vec<Frame> {
    set.iter().map(|m| Frame::Bulk(m.to_bytes())).collect()
}

fn smembers(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Set(
        read_set(ctx, &args[1])?.map(members).unwrap_or_default(),
    ))
}

fn spop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(ERR_SYNTAX);
    }
    let count = match args.get(2) {
        Some(c) => {
            let n =
                int(c).map_err(|_| Frame::error("ERR value is out of range, must be positive"))?;
            if n < 0 {
                return Err(Frame::error("ERR value is out of range, must be positive"));
            }
            Some(n as usize)
        }
        None => None,
    };
    let Some(set) = write_set(ctx, &args[1], false)? else {
        return Ok(if count.is_some() {
            Frame::Set(vec![])
        } else {
            Frame::Null
        });
    };
    let n = count.unwrap_or(1).min(set.len());
    let mut popped = Vec::with_capacity(n);
    let mut effect = vec![Bytes::from_static(b"SREM"), args[1].clone()];
    for _ in 0..n {
        let i = rand::random_range(0..set.len());
        if let Some(m) = set.swap_remove_index(i) {
            effect.push(m.to_bytes());
            popped.push(Frame::Bulk(m.to_bytes()));
        }
    }
    if n > 0 {
        ctx.modified(&args[1], n as u64);
        // The members were picked at random: replicate which ones.
        ctx.propagate(&effect);
    }
    Ok(match count {
        Some(_) => Frame::Set(popped),
        None => popped.pop().unwrap_or(Frame::Null),
    })
}

fn srandmember(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(ERR_SYNTAX);
    }
    let count = match args.get(2) {
        Some(c) => Some(parse_rand_count(c)?),
        None => None,
    };
    let Some(set) = read_set(ctx, &args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(vec![])
        } else {
            Frame::Null
        });
    };
    match count {
        None => Ok(Frame::Bulk(
            set.get_index(rand::random_range(0..set.len()))
                .expect("non-empty")
                .to_bytes(),
        )),
        Some(c) => Ok(Frame::Array(
            random_indexes(set.len(), c)
                .into_iter()
                .map(|i| Frame::Bulk(set.get_index(i).expect("in range").to_bytes()))
                .collect(),
        )),
    }
}

fn smove(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let exists_in_src = match read_set(ctx, src)? {
        None => return Ok(Frame::Integer(0)),
        Some(s) => s.contains(member.as_ref()),
    };
    super::typed::check_type(ctx, dst, crate::keyspace::ValueKind::Set)?;
    if !exists_in_src {
        return Ok(Frame::Integer(0));
    }
    if src == dst {
        return Ok(Frame::Integer(1));
    }
    write_set(ctx, src, false)?
        .expect("exists")
        .swap_remove(member.as_ref());
    ctx.modified(src, 1);
    write_set(ctx, dst, true)?
        .expect("created")
        .insert(Blob::new(member));
    ctx.modified(dst, 1);
    Ok(Frame::Integer(1))
}

#[derive(Clone, Copy)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

/// Computes a set operation over `keys` (missing keys are empty sets).
fn combine(ctx: &mut ExecCtx, keys: &[Bytes], op: SetOp) -> Result<SetValue, Frame> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(read_set(ctx, key)?.cloned());
    }
    let mut result = SetValue::default();
    match op {
        SetOp::Union => {
            for s in sets.iter().flatten() {
                result.extend(s.iter().cloned());
            }
        }
        SetOp::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Ok(result);
            }
            let mut all: Vec<&SetValue> = sets.iter().flatten().collect();
            all.sort_by_key(|s| s.len());
            if let Some((first, rest)) = all.split_first() {
                result.extend(
                    first
                        .iter()
                        .filter(|m| rest.iter().all(|s| s.contains(*m)))
                        .cloned(),
                );
            }
        }
        SetOp::Diff => {
            if let Some(Some(first)) = sets.first() {
                result.extend(
                    first
                        .iter()
                        .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(*m)))
                        .cloned(),
                );
            }
        }
    }
    Ok(result)
}

fn store(ctx: &mut ExecCtx, dst: &[u8], result: SetValue) -> CmdResult {
    let len = result.len();
    let db = ctx.db();
    if result.is_empty() {
        db.remove(dst);
    } else {
        db.set(dst, Value::Set(Arc::new(result)), false);
    }
    ctx.modified(dst, 1);
    Ok(Frame::Integer(len as i64))
}

fn sinter(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Set(members(&combine(
        ctx,
        &args[1..],
        SetOp::Inter,
    )?)))
}

fn sunion(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Set(members(&combine(
        ctx,
        &args[1..],
        SetOp::Union,
    )?)))
}

fn sdiff(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Set(members(&combine(ctx, &args[1..], SetOp::Diff)?)))
}

fn sinterstore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let r = combine(ctx, &args[2..], SetOp::Inter)?;
    store(ctx, &args[1], r)
}

fn sunionstore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let r = combine(ctx, &args[2..], SetOp::Union)?;
    store(ctx, &args[1], r)
}

fn sdiffstore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let r = combine(ctx, &args[2..], SetOp::Diff)?;
    store(ctx, &args[1], r)
}

/// Parses `numkeys key... [LIMIT n]` (SINTERCARD, ZINTERCARD).
pub(super) fn parse_numkeys_limit(args: &[Bytes]) -> Result<(Vec<Bytes>, usize), Frame> {
    let numkeys = int(&args[0])?;
    if numkeys <= 0 {
        return Err(Frame::error("ERR numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 1 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys = args[1..=numkeys].to_vec();
    let rest = &args[numkeys + 1..];
    let limit = match rest.len() {
        0 => 0,
        2 if is(&rest[0], "limit") => {
            let n = int(&rest[1])?;
            if n < 0 {
                return Err(Frame::error("ERR LIMIT can't be negative"));
            }
            n as usize
        }
        _ => return Err(ERR_SYNTAX),
    };
    Ok((keys, limit))
}

fn sintercard(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (keys, limit) = parse_numkeys_limit(&args[1..])?;
    let n = combine(ctx, &keys, SetOp::Inter)?.len();
    Ok(Frame::Integer(
        if limit > 0 { n.min(limit) } else { n } as i64
    ))
}

fn sscan(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let opts = parse_scan_options(&args[3..], false)?;
    let Some(set) = read_set(ctx, &args[1])? else {
        return Ok(Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])]));
    };
    let mut out = Vec::new();
    let next = scan_positions(set.len(), cursor, opts.count, |i| {
        let m = set.get_index(i).expect("in range");
        if opts
            .pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, m, false))
        {
            out.push(Frame::Bulk(m.to_bytes()));
        }
    });
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}
