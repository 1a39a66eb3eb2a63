//! Sorted set commands, over the skip list in `keyspace::zset`.

use super::args::*;
use super::blocking::BlockOp;
use super::flags::*;
use super::hash::{parse_rand_count, random_indexes};
use super::keys::{parse_cursor, parse_scan_options};
use super::list::normalize_range;
use super::set::parse_numkeys_limit;
use super::typed::{read_zset, write_zset};
use super::{block_client, parse_timeout, CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::zset::{LexBound, ScoreBound};
use crate::keyspace::{scan_positions, Blob, Map, Value, ZSet};
use crate::resp::{format_double, Frame, Protocol};
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "sorted-set";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("zadd", -4, WRITE | DENYOOM | FAST, (1, 1, 1), "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", "key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]", zadd),
    spec!("zincrby", 4, WRITE | DENYOOM | FAST, (1, 1, 1), "Increments the score of a member in a sorted set.", "key increment member", zincrby),
    spec!("zrem", -3, WRITE | FAST, (1, 1, 1), "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", "key member [member ...]", zrem),
    spec!("zcard", 2, READONLY | FAST, (1, 1, 1), "Returns the number of members in a sorted set.", "key", zcard),
    spec!("zscore", 3, READONLY | FAST, (1, 1, 1), "Returns the score of a member in a sorted set.", "key member", zscore),
    spec!("zmscore", -3, READONLY | FAST, (1, 1, 1), "Returns the score of one or more members in a sorted set.", "key member [member ...]", zmscore),
    spec!("zcount", 4, READONLY | FAST, (1, 1, 1), "Returns the count of members in a sorted set that have scores within a range.", "key min max", zcount),
    spec!("zlexcount", 4, READONLY | FAST, (1, 1, 1), "Returns the number of members in a sorted set within a lexicographical range.", "key min max", zlexcount),
    spec!("zrank", -3, READONLY | FAST, (1, 1, 1), "Returns the index of a member in a sorted set ordered by ascending scores.", "key member [WITHSCORE]", zrank),
    spec!("zrevrank", -3, READONLY | FAST, (1, 1, 1), "Returns the index of a member in a sorted set ordered by descending scores.", "key member [WITHSCORE]", zrank),
    spec!("zrange", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a range of indexes.", "key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]", zrange),
    spec!("zrangebyscore", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a range of scores.", "key min max [WITHSCORES] [LIMIT offset count]", zrange),
    spec!("zrevrangebyscore", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a range of scores in reverse order.", "key max min [WITHSCORES] [LIMIT offset count]", zrange),
    spec!("zrangebylex", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a lexicographical range.", "key min max [LIMIT offset count]", zrange),
    spec!("zrevrangebylex", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a lexicographical range in reverse order.", "key max min [LIMIT offset count]", zrange),
    spec!("zrevrange", -4, READONLY, (1, 1, 1), "Returns members in a sorted set within a range of indexes in reverse order.", "key start stop [WITHSCORES]", zrange),
    spec!("zrangestore", -5, WRITE | DENYOOM, (1, 2, 1), "Stores a range of members from sorted set in a key.", "dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]", zrange),
    spec!("zpopmin", -2, WRITE | FAST, (1, 1, 1), "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count]", zpopmin),
    spec!("zpopmax", -2, WRITE | FAST, (1, 1, 1), "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count]", zpopmax),
    spec!("bzpopmin", -3, WRITE | NOSCRIPT | FAST | BLOCKING, (1, -2, 1), "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "key [key ...] timeout", bzpopmin),
    spec!("bzpopmax", -3, WRITE | NOSCRIPT | FAST | BLOCKING, (1, -2, 1), "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise. Deletes the sorted set if the last element was popped.", "key [key ...] timeout", bzpopmax),
    spec!("zmpop", -4, WRITE | MOVABLE_KEYS, (0, 0, 0), "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", "numkeys key [key ...] MIN | MAX [COUNT count]", zmpop),
    spec!("bzmpop", -5, WRITE | BLOCKING | MOVABLE_KEYS, (0, 0, 0), "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "timeout numkeys key [key ...] MIN | MAX [COUNT count]", bzmpop),
    spec!("zremrangebyrank", 4, WRITE, (1, 1, 1), "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", "key start stop", zremrangebyrank),
    spec!("zremrangebyscore", 4, WRITE, (1, 1, 1), "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", "key min max", zremrangebyscore),
    spec!("zremrangebylex", 4, WRITE, (1, 1, 1), "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", "key min max", zremrangebylex),
    spec!("zunion", -3, READONLY | MOVABLE_KEYS, (0, 0, 0), "Returns the union of multiple sorted sets.", "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX] [WITHSCORES]", zsetop),
    spec!("zinter", -3, READONLY | MOVABLE_KEYS, (0, 0, 0), "Returns the intersect of multiple sorted sets.", "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX] [WITHSCORES]", zsetop),
    spec!("zdiff", -3, READONLY | MOVABLE_KEYS, (0, 0, 0), "Returns the difference between multiple sorted sets.", "numkeys key [key ...] [WITHSCORES]", zsetop),
    spec!("zunionstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, (1, 1, 1), "Stores the union of multiple sorted sets in a key.", "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]", zsetop),
    spec!("zinterstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, (1, 1, 1), "Stores the intersect of multiple sorted sets in a key.", "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]", zsetop),
    spec!("zdiffstore", -4, WRITE | DENYOOM | MOVABLE_KEYS, (1, 1, 1), "Stores the difference of multiple sorted sets in a key.", "destination numkeys key [key ...]", zsetop),
    spec!("zintercard", -3, READONLY | MOVABLE_KEYS, (0, 0, 0), "Returns the number of members of the intersect of multiple sorted sets.", "numkeys key [key ...] [LIMIT limit]", zintercard),
    spec!("zrandmember", -2, READONLY, (1, 1, 1), "Returns one or more random members from a sorted set.", "key [count [WITHSCORES]]", zrandmember),
    spec!("zscan", -3, READONLY, (1, 1, 1), "Iterates over members and scores of a sorted set.", "key cursor [MATCH pattern] [COUNT count]", zscan),
];

fn parse_score_bound(arg: &[u8]) -> Result<ScoreBound, Frame> {
    let err = || Frame::error("ERR min or max is not a float");
    match arg.strip_prefix(b"(") {
        Some(rest) => Ok(ScoreBound {
            value: parse_f64(rest).ok_or_else(err)?,
            exclusive: true,
        }),
        None => Ok(ScoreBound {
            value: parse_f64(arg).ok_or_else(err)?,
            exclusive: false,
        }),
    }
}

fn parse_lex_bound(arg: &[u8]) -> Result<LexBound, Frame> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::NegInf),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::PosInf),
        Some(b'[') => Ok(LexBound::Inclusive(arg[1..].to_vec())),
        Some(b'(') => Ok(LexBound::Exclusive(arg[1..].to_vec())),
        _ => Err(Frame::error("ERR min or max not valid string range item")),
    }
}

/// A member/score list as a reply, with or without scores, shaped per
/// protocol (pairs in RESP3, flat in RESP2).
fn scored_reply(items: Vec<(Blob, f64)>, withscores: bool, proto: Protocol) -> Frame {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (m, s) in items {
        if !withscores {
            out.push(Frame::Bulk(m.to_bytes()));
        } else if proto == Protocol::Resp3 {
            out.push(Frame::Array(vec![
                Frame::Bulk(m.to_bytes()),
                Frame::Double(s),
            ]));
        } else {
            out.push(Frame::Bulk(m.to_bytes()));
            out.push(Frame::Double(s));
        }
    }
    Frame::Array(out)
}

pub(super) fn zadd(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if is(a, "gt") {
            gt = true;
        } else if is(a, "lt") {
            lt = true;
        } else if is(a, "ch") {
            ch = true;
        } else if is(a, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(ERR_SYNTAX);
    }
    if nx && xx {
        return Err(Frame::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (gt && lt) || (nx && (gt || lt)) {
        return Err(Frame::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && pairs.len() > 2 {
        return Err(Frame::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let mut scored = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks(2) {
        scored.push((float(&pair[0])?, pair[1].clone()));
    }
    let key = &args[1];
    let Some(z) = write_zset(ctx, key, !xx)? else {
        return Ok(if incr { Frame::Null } else { Frame::Integer(0) });
    };
    let (mut added, mut changed) = (0i64, 0i64);
    let mut incr_result = None;
    for (score, member) in scored {
        match z.score(&member) {
            Some(current) => {
                if nx {
                    continue;
                }
                let new = if incr { current + score } else { score };
                if new.is_nan() {
                    ctx.modified(key, (added + changed) as u64);
                    return Err(Frame::error("ERR resulting score is not a number (NaN)"));
                }
                if (gt && new <= current) || (lt && new >= current) {
                    continue;
                }
                incr_result = Some(new);
                if new != current {
                    z.insert(&member, new);
                    changed += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(&member, score);
                incr_result = Some(score);
                added += 1;
            }
        }
    }
    ctx.modified(key, (added + changed) as u64);
    Ok(if incr {
        incr_result.map(Frame::Double).unwrap_or(Frame::Null)
    } else {
        Frame::Integer(if ch { added + changed } else { added })
    })
}

fn zincrby(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let delta = float(&args[2])?;
    let z = write_zset(ctx, &args[1], true)?.expect("created");
    let new = z.score(&args[3]).unwrap_or(0.0) + delta;
    if new.is_nan() {
        ctx.modified(&args[1], 0);
        return Err(Frame::error("ERR resulting score is not a number (NaN)"));
    }
    z.insert(&args[3], new);
    ctx.modified(&args[1], 1);
    Ok(Frame::Double(new))
}

fn zrem(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let Some(z) = write_zset(ctx, &args[1], false)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..].iter().filter(|m| z.remove(m).is_some()).count();
    if removed > 0 {
        ctx.modified(&args[1], removed as u64);
    }
    Ok(Frame::Integer(removed as i64))
}

fn zcard(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_zset(ctx, &args[1])?.map_or(0, |z| z.len()) as i64,
    ))
}

fn zscore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(read_zset(ctx, &args[1])?
        .and_then(|z| z.score(&args[2]))
        .map(Frame::Double)
        .unwrap_or(Frame::Null))
}

fn zmscore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let z = read_zset(ctx, &args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| {
                z.and_then(|z| z.score(m))
                    .map(Frame::Double)
                    .unwrap_or(Frame::Null)
            })
            .collect(),
    ))
}

fn zcount(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (min, max) = (parse_score_bound(&args[2])?, parse_score_bound(&args[3])?);
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(Frame::Integer(0));
    };
    Ok(Frame::Integer(
        z.end_rank_by_score(max)
            .saturating_sub(z.first_rank_by_score(min)) as i64,
    ))
}

fn zlexcount(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (min, max) = (parse_lex_bound(&args[2])?, parse_lex_bound(&args[3])?);
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(Frame::Integer(0));
    };
    Ok(Frame::Integer(
        z.end_rank_by_lex(&max)
            .saturating_sub(z.first_rank_by_lex(&min)) as i64,
    ))
}

fn zrank(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let rev = is(&args[0], "zrevrank");
    let withscore = match args.len() {
        3 => false,
        4 if is(&args[3], "withscore") => true,
        _ => return Err(ERR_SYNTAX),
    };
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(if withscore {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let Some(rank) = z.rank(&args[2]) else {
        return Ok(if withscore {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let rank = if rev { z.len() - 1 - rank } else { rank } as i64;
    Ok(if withscore {
        Frame::Array(vec![
            Frame::Integer(rank),
            Frame::Double(z.score(&args[2]).unwrap_or(0.0)),
        ])
    } else {
        Frame::Integer(rank)
    })
}

#[derive(Clone, Debug)]
enum Range {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

/// Members of `z` in `range`, in ascending (or, with `rev`, descending)
/// order, after skipping `offset` and taking at most `count` (None = all).
fn collect_range(
    z: &ZSet,
    range: &Range,
    rev: bool,
    offset: usize,
    count: Option<usize>,
) -> Vec<(Blob, f64)> {
    let len = z.len();
    let (first, end) = match range {
        Range::Rank(start, stop) => match normalize_range(*start, *stop, len) {
            None => return Vec::new(),
            Some((a, b)) if rev => (len - 1 - b, len - a),
            Some((a, b)) => (a, b + 1),
        },
        Range::Score(min, max) => (z.first_rank_by_score(*min), z.end_rank_by_score(*max)),
        Range::Lex(min, max) => (z.first_rank_by_lex(min), z.end_rank_by_lex(max)),
    };
    if first >= end {
        return Vec::new();
    }
    let span = end - first;
    let take = count.unwrap_or(usize::MAX).min(span.saturating_sub(offset));
    if offset >= span || take == 0 {
        return Vec::new();
    }
    let iter: Box<dyn Iterator<Item = (&Blob, f64)>> = if rev {
        Box::new(z.iter_rev_from_rank(end - 1))
    } else {
        Box::new(z.iter_from_rank(first))
    };
    iter.skip(offset)
        .take(take)
        .map(|(m, s)| (m.clone(), s))
        .collect()
}

fn zrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let store = name == "zrangestore";
    let base = if store { 2 } else { 1 };
    let (src, a, b) = (&args[base], &args[base + 1], &args[base + 2]);
    let (mut by, mut rev) = match name.as_str() {
        "zrangebyscore" => ("score", false),
        "zrevrangebyscore" => ("score", true),
        "zrangebylex" => ("lex", false),
        "zrevrangebylex" => ("lex", true),
        "zrevrange" => ("rank", true),
        _ => ("rank", false),
    };
    let generic = name == "zrange" || store;
    let (mut withscores, mut limit) = (false, None);
    let mut i = base + 3;
    while i < args.len() {
        let opt = &args[i];
        if is(opt, "withscores") && !store && name != "zrangebylex" && name != "zrevrangebylex" {
            withscores = true;
        } else if is(opt, "limit") && i + 2 < args.len() && (generic || by != "rank") {
            limit = Some((int(&args[i + 1])?, int(&args[i + 2])?));
            i += 2;
        } else if generic && is(opt, "byscore") {
            by = "score";
        } else if generic && is(opt, "bylex") {
            by = "lex";
        } else if generic && is(opt, "rev") {
            rev = true;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    if limit.is_some() && by == "rank" {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == "lex" {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // With REV, score and lex ranges are written max first.
    let (lo, hi) = if rev && by != "rank" { (b, a) } else { (a, b) };
    let range = match by {
        "score" => Range::Score(parse_score_bound(lo)?, parse_score_bound(hi)?),
        "lex" => Range::Lex(parse_lex_bound(lo)?, parse_lex_bound(hi)?),
        _ => Range::Rank(int(lo)?, int(hi)?),
    };
    let (offset, count) = match limit {
        Some((off, _)) if off < 0 => {
            return Ok(if store {
                store_result(ctx, &args[1], ZSet::new())?
            } else {
                Frame::Array(vec![])
            })
        }
        Some((off, cnt)) => (
            off as usize,
            if cnt < 0 { None } else { Some(cnt as usize) },
        ),
        None => (0, None),
    };
    let proto = ctx.session.proto;
    let items = match read_zset(ctx, src)? {
        Some(z) => collect_range(z, &range, rev, offset, count),
        None => Vec::new(),
    };
    if store {
        let mut z = ZSet::new();
        for (m, s) in &items {
            z.insert(m, *s);
        }
        return store_result(ctx, &args[1], z);
    }
    Ok(scored_reply(items, withscores, proto))
}

fn store_result(ctx: &mut ExecCtx, dst: &[u8], z: ZSet) -> CmdResult {
    let len = z.len();
    let db = ctx.db();
    if z.is_empty() {
        db.remove(dst);
    } else {
        db.set(dst, Value::ZSet(Arc::new(z)), false);
    }
    ctx.modified(dst, 1);
    Ok(Frame::Integer(len as i64))
}

/// Pops up to `count` lowest (`min`) or highest members; `None` if missing.
fn pop(
    ctx: &mut ExecCtx,
    key: &[u8],
    min: bool,
    count: usize,
) -> Result<Option<Vec<(Blob, f64)>>, Frame> {
    let Some(z) = write_zset(ctx, key, false)? else {
        return Ok(None);
    };
    let n = count.min(z.len());
    let items: Vec<(Blob, f64)> = if min {
        z.iter_from_rank(0)
            .take(n)
            .map(|(m, s)| (m.clone(), s))
            .collect()
    } else {
        z.iter_rev_from_rank(z.len().saturating_sub(1))
            .take(n)
            .map(|(m, s)| (m.clone(), s))
            .collect()
    };
    for (m, _) in &items {
        z.remove(m);
    }
    if n > 0 {
        ctx.modified(key, n as u64);
        let count = n.to_string();
        ctx.propagate(&[
            if min {
                b"ZPOPMIN".as_slice()
            } else {
                b"ZPOPMAX"
            },
            key,
            count.as_bytes(),
        ]);
    }
    Ok(Some(items))
}

fn zpop_command(ctx: &mut ExecCtx, args: &[Bytes], min: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(ERR_SYNTAX);
    }
    let count = match args.get(2) {
        Some(c) => {
            let n = int(c)?;
            if n < 0 {
                return Err(Frame::error("ERR value is out of range, must be positive"));
            }
            Some(n as usize)
        }
        None => None,
    };
    let proto = ctx.session.proto;
    let items = pop(ctx, &args[1], min, count.unwrap_or(1))?.unwrap_or_default();
    if count.is_none() || proto == Protocol::Resp2 {
        // Without COUNT the reply is a flat [member, score], also in RESP3.
        return Ok(scored_reply(items, true, Protocol::Resp2));
    }
    Ok(scored_reply(items, true, proto))
}

fn zpopmin(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    zpop_command(ctx, args, true)
}

fn zpopmax(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    zpop_command(ctx, args, false)
}

fn bzpop(ctx: &mut ExecCtx, args: &[Bytes], min: bool) -> CmdResult {
    let deadline = parse_timeout(&args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    for key in keys {
        if read_zset(ctx, key)?.is_some() {
            if let Some(reply) = pop_for_waiter(ctx, key, min, 1, false) {
                return Ok(reply);
            }
        }
    }
    Ok(block_client(
        ctx,
        keys,
        BlockOp::ZPop {
            min,
            count: 1,
            mpop: false,
        },
        deadline,
    ))
}

fn bzpopmin(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, true)
}

fn bzpopmax(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, false)
}

fn parse_zmpop(args: &[Bytes]) -> Result<(Vec<Bytes>, bool, usize), Frame> {
    let numkeys = int(&args[0])?;
    if numkeys <= 0 {
        return Err(Frame::error("ERR numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if numkeys + 1 > args.len() - 1 {
        return Err(ERR_SYNTAX);
    }
    let keys = args[1..=numkeys].to_vec();
    let where_ = &args[numkeys + 1];
    let min = if is(where_, "min") {
        true
    } else if is(where_, "max") {
        false
    } else {
        return Err(ERR_SYNTAX);
    };
    let rest = &args[numkeys + 2..];
    let count = match rest.len() {
        0 => 1,
        2 if is(&rest[0], "count") => {
            let n = int(&rest[1])?;
            if n <= 0 {
                return Err(Frame::error("ERR count should be greater than 0"));
            }
            n as usize
        }
        _ => return Err(ERR_SYNTAX),
    };
    Ok((keys, min, count))
}

fn zmpop_first(
    ctx: &mut ExecCtx,
    keys: &[Bytes],
    min: bool,
    count: usize,
) -> Result<Option<Frame>, Frame> {
    for key in keys {
        if read_zset(ctx, key)?.is_some() {
            return Ok(pop_for_waiter(ctx, key, min, count, true));
        }
    }
    Ok(None)
}

fn zmpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (keys, min, count) = parse_zmpop(&args[1..])?;
    Ok(zmpop_first(ctx, &keys, min, count)?.unwrap_or(Frame::NullArray))
}

fn bzmpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let deadline = parse_timeout(&args[1])?;
    let (keys, min, count) = parse_zmpop(&args[2..])?;
    if let Some(reply) = zmpop_first(ctx, &keys, min, count)? {
        return Ok(reply);
    }
    Ok(block_client(
        ctx,
        &keys,
        BlockOp::ZPop {
            min,
            count,
            mpop: true,
        },
        deadline,
    ))
}

/// Pops for BZPOPMIN/BZPOPMAX (`[key, member, score]`) or ZMPOP/BZMPOP
/// (`[key, [[member, score], ...]]`).
pub(super) fn pop_for_waiter(
    ctx: &mut ExecCtx,
    key: &[u8],
    min: bool,
    count: usize,
    mpop: bool,
) -> Option<Frame> {
    let items = pop(ctx, key, min, count).ok()??;
    let key = Frame::Bulk(Bytes::copy_from_slice(key));
    if mpop {
        let pairs = items
            .into_iter()
            .map(|(m, s)| Frame::Array(vec![Frame::Bulk(m.to_bytes()), Frame::Double(s)]))
            .collect();
        return Some(Frame::Array(vec![key, Frame::Array(pairs)]));
    }
    let (m, s) = items.into_iter().next()?;
    Some(Frame::Array(vec![
        key,
        Frame::Bulk(m.to_bytes()),
        Frame::Double(s),
    ]))
}

fn remove_range(ctx: &mut ExecCtx, key: &[u8], range: Range) -> CmdResult {
    let Some(z) = write_zset(ctx, key, false)? else {
        return Ok(Frame::Integer(0));
    };
    let members = collect_range(z, &range, false, 0, None);
    for (m, _) in &members {
        z.remove(m);
    }
    if !members.is_empty() {
        ctx.modified(key, members.len() as u64);
    }
    Ok(Frame::Integer(members.len() as i64))
}

fn zremrangebyrank(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let range = Range::Rank(int(&args[2])?, int(&args[3])?);
    remove_range(ctx, &args[1], range)
}

fn zremrangebyscore(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let range = Range::Score(parse_score_bound(&args[2])?, parse_score_bound(&args[3])?);
    remove_range(ctx, &args[1], range)
}

fn zremrangebylex(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let range = Range::Lex(parse_lex_bound(&args[2])?, parse_lex_bound(&args[3])?);
    remove_range(ctx, &args[1], range)
}

/// Reads a key as member → score for the ZUNION family: sets count with
/// score 1, missing keys are empty.
fn read_scores(ctx: &mut ExecCtx, key: &[u8]) -> Result<Option<Map<Blob, f64>>, Frame> {
    let now = ctx.now_ms;
    match ctx.db().get(key, now) {
        None => Ok(None),
        Some(Value::ZSet(z)) => Ok(Some(z.dict().clone())),
        Some(Value::Set(s)) => Ok(Some(s.iter().map(|m| (m.clone(), 1.0)).collect())),
        Some(_) => Err(ERR_WRONGTYPE),
    }
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(agg: Aggregate, a: f64, b: f64) -> f64 {
    match agg {
        Aggregate::Sum => {
            let s = a + b;
            if s.is_nan() {
                0.0
            } else {
                s
            }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

fn zsetop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let store = name.ends_with("store");
    let op = &name[1..if store { name.len() - 5 } else { name.len() }];
    let base = if store { 2 } else { 1 };
    let numkeys = int(&args[base])?;
    if numkeys < 1 {
        return Err(Frame::error_owned(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if base + numkeys >= args.len() {
        return Err(ERR_SYNTAX);
    }
    let keys = &args[base + 1..=base + numkeys];
    let mut weights = vec![1.0; numkeys];
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut i = base + 1 + numkeys;
    while i < args.len() {
        let opt = &args[i];
        if op != "diff" && is(opt, "weights") && i + numkeys < args.len() {
            for (w, arg) in weights.iter_mut().zip(&args[i + 1..=i + numkeys]) {
                *w = parse_f64(arg).ok_or(Frame::error("ERR weight value is not a float"))?;
            }
            i += numkeys + 1;
        } else if op != "diff" && is(opt, "aggregate") && i + 1 < args.len() {
            let a = &args[i + 1];
            agg = if is(a, "sum") {
                Aggregate::Sum
            } else if is(a, "min") {
                Aggregate::Min
            } else if is(a, "max") {
                Aggregate::Max
            } else {
                return Err(ERR_SYNTAX);
            };
            i += 2;
        } else if !store && is(opt, "withscores") {
            withscores = true;
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let mut inputs = Vec::with_capacity(numkeys);
    for key in keys {
        inputs.push(read_scores(ctx, key)?);
    }
    let weighted = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: Map<Blob, f64> = Map::default();
    match op {
        "union" => {
            for (input, w) in inputs.iter().zip(&weights) {
                for (m, s) in input.iter().flatten() {
                    let v = weighted(*s, *w);
                    result
                        .entry(m.clone())
                        .and_modify(|acc| *acc = aggregate(agg, *acc, v))
                        .or_insert(v);
                }
            }
        }
        "inter" => {
            if inputs.iter().all(|i| i.is_some()) {
                let sets: Vec<&Map<Blob, f64>> = inputs.iter().flatten().collect();
                let smallest = (0..sets.len()).min_by_key(|&i| sets[i].len()).unwrap_or(0);
                'member: for m in sets[smallest].keys() {
                    let mut acc: Option<f64> = None;
                    for (set, w) in sets.iter().zip(&weights) {
                        let Some(s) = set.get(m) else {
                            continue 'member;
                        };
                        let v = weighted(*s, *w);
                        acc = Some(match acc {
                            None => v,
                            Some(a) => aggregate(agg, a, v),
                        });
                    }
                    result.insert(m.clone(), acc.unwrap_or(0.0));
                }
            }
        }
        _ => {
            if let Some(Some(first)) = inputs.first() {
                for (m, s) in first {
                    if inputs[1..]
                        .iter()
                        .flatten()
                        .all(|other| !other.contains_key(m))
                    {
                        result.insert(m.clone(), *s);
                    }
                }
            }
        }
    }
    let mut z = ZSet::new();
    for (m, s) in &result {
        z.insert(m, *s);
    }
    if store {
        return store_result(ctx, &args[1], z);
    }
    let items = z.iter_from_rank(0).map(|(m, s)| (m.clone(), s)).collect();
    Ok(scored_reply(items, withscores, ctx.session.proto))
}

fn zintercard(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (keys, limit) = parse_numkeys_limit(&args[1..])?;
    let mut inputs = Vec::new();
    for key in &keys {
        match read_scores(ctx, key)? {
            Some(m) => inputs.push(m),
            None => return Ok(Frame::Integer(0)),
        }
    }
    inputs.sort_by_key(|m| m.len());
    let (first, rest) = inputs.split_first().expect("numkeys >= 1");
    let mut n = 0;
    for m in first.keys() {
        if rest.iter().all(|r| r.contains_key(m)) {
            n += 1;
            if limit > 0 && n >= limit {
                break;
            }
        }
    }
    Ok(Frame::Integer(n as i64))
}

fn zrandmember(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let withscores = match args.len() {
        2 | 3 => false,
        4 if is(&args[3], "withscores") => true,
        _ => return Err(ERR_SYNTAX),
    };
    let count = if args.len() >= 3 {
        Some(parse_rand_count(&args[2])?)
    } else {
        None
    };
    let proto = ctx.session.proto;
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(vec![])
        } else {
            Frame::Null
        });
    };
    let dict = z.dict();
    let Some(count) = count else {
        return Ok(Frame::Bulk(
            dict.get_index(rand::random_range(0..dict.len()))
                .expect("non-empty")
                .0
                .to_bytes(),
        ));
    };
    let items = random_indexes(dict.len(), count)
        .into_iter()
        .map(|i| {
            dict.get_index(i)
                .map(|(m, s)| (m.clone(), *s))
                .expect("in range")
        })
        .collect();
    Ok(scored_reply(items, withscores, proto))
}

fn zscan(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let opts = parse_scan_options(&args[3..], false)?;
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])]));
    };
    let dict = z.dict();
    let mut out = Vec::new();
    let next = scan_positions(dict.len(), cursor, opts.count, |i| {
        let (m, s) = dict.get_index(i).expect("in range");
        if opts
            .pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, m, false))
        {
            out.push(Frame::Bulk(m.to_bytes()));
            out.push(Frame::bulk(format_double(*s)));
        }
    });
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(out),
    ]))
}
