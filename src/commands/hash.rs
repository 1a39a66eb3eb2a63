//! Hash commands.

use super::args::*;
use super::flags::*;
use super::keys::{parse_cursor, parse_scan_options};
use super::typed::{read_hash, write_hash};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::{scan_positions, Blob};
use crate::resp::{Frame, Protocol};
use bytes::Bytes;

const G: &str = "hash";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "hset",
        -4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Creates or modifies the value of a field in a hash.",
        "key field value [field value ...]",
        hset
    ),
    spec!(
        "hmset",
        -4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Sets the values of multiple fields.",
        "key field value [field value ...]",
        hset
    ),
    spec!(
        "hsetnx",
        4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Sets the value of a field in a hash only when the field doesn't exist.",
        "key field value",
        hsetnx
    ),
    spec!(
        "hget",
        3,
        READONLY | FAST,
        (1, 1, 1),
        "Returns the value of a field in a hash.",
        "key field",
        hget
    ),
    spec!(
        "hmget",
        -3,
        READONLY | FAST,
        (1, 1, 1),
        "Returns the values of all fields in a hash.",
        "key field [field ...]",
        hmget
    ),
    spec!(
        "hdel",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        "Deletes one or more fields and their values from a hash.",
        "key field [field ...]",
        hdel
    ),
    spec!(
        "hlen",
        2,
        READONLY | FAST,
        (1, 1, 1),
        "Returns the number of fields in a hash.",
        "key",
        hlen
    ),
    spec!(
        "hstrlen",
        3,
        READONLY | FAST,
        (1, 1, 1),
        "Returns the length of the value of a field.",
        "key field",
        hstrlen
    ),
    spec!(
        "hexists",
        3,
        READONLY | FAST,
        (1, 1, 1),
        "Determines whether a field exists in a hash.",
        "key field",
        hexists
    ),
    spec!(
        "hkeys",
        2,
        READONLY,
        (1, 1, 1),
        "Returns all fields in a hash.",
        "key",
        hkeys
    ),
    spec!(
        "hvals",
        2,
        READONLY,
        (1, 1, 1),
        "Returns all values in a hash.",
        "key",
        hvals
    ),
    spec!(
        "hgetall",
        2,
        READONLY,
        (1, 1, 1),
        "Returns all fields and values in a hash.",
        "key",
        hgetall
    ),
    spec!(
        "hincrby",
        4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Increments the integer value of a field in a hash by a number.",
        "key field increment",
        hincrby
    ),
    spec!(
        "hincrbyfloat",
        4,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Increments the floating point value of a field by a number.",
        "key field increment",
        hincrbyfloat
    ),
    spec!(
        "hrandfield",
        -2,
        READONLY,
        (1, 1, 1),
        "Returns one or more random fields from a hash.",
        "key [count [WITHVALUES]]",
        hrandfield
    ),
    spec!(
        "hscan",
        -3,
        READONLY,
        (1, 1, 1),
        "Iterates over fields and values of a hash.",
        "key cursor [MATCH pattern] [COUNT count] [NOVALUES]",
        hscan
    ),
];

fn hset(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(super::wrong_arity(if is(&args[0], "hmset") {
            "hmset"
        } else {
            "hset"
        }));
    }
    let hash = write_hash(ctx, &args[1], true)?.expect("created");
    let mut added = 0;
    for pair in args[2..].chunks(2) {
        if hash
            .insert(Blob::new(&pair[0]), Blob::new(&pair[1]))
            .is_none()
        {
            added += 1;
        }
    }
    ctx.modified(&args[1], 1);
    Ok(if is(&args[0], "hmset") {
        Frame::ok()
    } else {
        Frame::Integer(added)
    })
}

fn hsetnx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if read_hash(ctx, &args[1])?.is_some_and(|h| h.contains_key(args[2].as_ref())) {
        return Ok(Frame::Integer(0));
    }
    write_hash(ctx, &args[1], true)?
        .expect("created")
        .insert(Blob::new(&args[2]), Blob::new(&args[3]));
    ctx.modified(&args[1], 1);
    Ok(Frame::Integer(1))
}

fn hget(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(read_hash(ctx, &args[1])?
        .and_then(|h| h.get(args[2].as_ref()))
        .map(|v| Frame::Bulk(v.to_bytes()))
        .unwrap_or(Frame::Null))
}

fn hmget(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let hash = read_hash(ctx, &args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|f| {
                hash.and_then(|h| h.get(f.as_ref()))
                    .map(|v| Frame::Bulk(v.to_bytes()))
                    .unwrap_or(Frame::Null)
            })
            .collect(),
    ))
}

fn hdel(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let Some(hash) = write_hash(ctx, &args[1], false)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..]
        .iter()
        .filter(|f| hash.swap_remove(f.as_ref()).is_some())
        .count();
    if removed > 0 {
        ctx.modified(&args[1], removed as u64);
    }
    Ok(Frame::Integer(removed as i64))
}

fn hlen(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_hash(ctx, &args[1])?.map_or(0, |h| h.len()) as i64,
    ))
}

fn hstrlen(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_hash(ctx, &args[1])?
            .and_then(|h| h.get(args[2].as_ref()))
            .map_or(0, |v| v.len()) as i64,
    ))
}

fn hexists(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_hash(ctx, &args[1])?.is_some_and(|h| h.contains_key(args[2].as_ref())) as i64,
    ))
}

fn hkeys(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Array(
        read_hash(ctx, &args[1])?
            .map(|h| h.keys().map(|k| Frame::Bulk(k.to_bytes())).collect())
            .unwrap_or_default(),
    ))
}

fn hvals(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Array(
        read_hash(ctx, &args[1])?
            .map(|h| h.values().map(|v| Frame::Bulk(v.to_bytes())).collect())
            .unwrap_or_default(),
    ))
}

fn hgetall(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Map(
        read_hash(ctx, &args[1])?
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (Frame::Bulk(k.to_bytes()), Frame::Bulk(v.to_bytes())))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

fn hincrby(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let delta = int(&args[3])?;
    let current = match read_hash(ctx, &args[1])?.and_then(|h| h.get(args[2].as_ref())) {
        Some(v) => parse_i64(v).ok_or(Frame::error("ERR hash value is not an integer"))?,
        None => 0,
    };
    let next = current.checked_add(delta).ok_or(ERR_OVERFLOW)?;
    write_hash(ctx, &args[1], true)?
        .expect("created")
        .insert(Blob::new(&args[2]), Blob::new(next.to_string().as_bytes()));
    ctx.modified(&args[1], 1);
    Ok(Frame::Integer(next))
}

fn hincrbyfloat(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    use super::longdouble::{incr, IncrError};
    // The increment is checked first, as Redis does.
    incr(None, &args[3]).map_err(|e| match e {
        IncrError::NotFloat => ERR_NOT_FLOAT,
        IncrError::NanOrInfinity => Frame::error("ERR value is NaN or Infinity"),
    })?;
    let current = read_hash(ctx, &args[1])?
        .and_then(|h| h.get(args[2].as_ref()))
        .map(|v| v.to_vec());
    let text = incr(current.as_deref(), &args[3]).map_err(|e| match e {
        IncrError::NotFloat => Frame::error("ERR hash value is not a float"),
        IncrError::NanOrInfinity => ERR_NAN,
    })?;
    write_hash(ctx, &args[1], true)?
        .expect("created")
        .insert(Blob::new(&args[2]), Blob::new(text.as_bytes()));
    ctx.modified(&args[1], 1);
    // Float arithmetic may round differently elsewhere: replicate the result.
    ctx.propagate(&[b"HSET".as_slice(), &args[1], &args[2], text.as_bytes()]);
    Ok(Frame::bulk(text))
}

/// Picks `count` random indexes out of `len` as Redis's *RANDMEMBER/
/// *RANDFIELD do: distinct for a positive count, with repeats for a
/// negative one.
pub(super) fn random_indexes(len: usize, count: i64) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    if count < 0 {
        let n = count.unsigned_abs().min(1 << 30) as usize;
        return (0..n).map(|_| rand::random_range(0..len)).collect();
    }
    let n = (count as usize).min(len);
    if n == len {
        return (0..len).collect();
    }
    rand::seq::index::sample(&mut rand::rng(), len, n).into_vec()
}

/// Parses the optional count argument of *RANDMEMBER/*RANDFIELD.
pub(super) fn parse_rand_count(arg: &[u8]) -> Result<i64, Frame> {
    let n = int(arg)?;
    if n < -(i64::MAX / 2) {
        return Err(Frame::error_owned(format!(
            "ERR value is out of range, value must between {} and {}",
            -(i64::MAX / 2),
            i64::MAX / 2
        )));
    }
    Ok(n)
}

fn hrandfield(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let with_values = match args.len() {
        2 | 3 => false,
        4 if is(&args[3], "withvalues") => true,
        _ => return Err(ERR_SYNTAX),
    };
    let count = if args.len() >= 3 {
        Some(parse_rand_count(&args[2])?)
    } else {
        None
    };
    let proto = ctx.session.proto;
    let Some(hash) = read_hash(ctx, &args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(vec![])
        } else {
            Frame::Null
        });
    };
    let Some(count) = count else {
        let i = rand::random_range(0..hash.len());
        return Ok(Frame::Bulk(
            hash.get_index(i).expect("in range").0.to_bytes(),
        ));
    };
    let mut out = Vec::new();
    for i in random_indexes(hash.len(), count) {
        let (f, v) = hash.get_index(i).expect("in range");
        if with_values && proto == Protocol::Resp3 {
            out.push(Frame::Array(vec![
                Frame::Bulk(f.to_bytes()),
                Frame::Bulk(v.to_bytes()),
            ]));
        } else {
            out.push(Frame::Bulk(f.to_bytes()));
            if with_values {
                out.push(Frame::Bulk(v.to_bytes()));
            }
        }
    }
    Ok(Frame::Array(out))
}

fn hscan(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let mut rest = args[3..].to_vec();
    let novalues = rest.last().is_some_and(|a| is(a, "novalues"));
    if novalues {
        rest.pop();
    }
    let opts = parse_scan_options(&rest, false)?;
    let Some(hash) = read_hash(ctx, &args[1])? else {
        return Ok(Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])]));
    };
    let mut out = Vec::new();
    let next = scan_positions(hash.len(), cursor, opts.count, |i| {
        let (f, v) = hash.get_index(i).expect("in range");
        if opts
            .pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, f, false))
        {
            out.push(Frame::Bulk(f.to_bytes()));
            if !novalues {
                out.push(Frame::Bulk(v.to_bytes()));
            }
        }
    });
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}
