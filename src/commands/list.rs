//! List commands, including the blocking pops and moves.

use super::args::*;
use super::blocking::BlockOp;
use super::flags::*;
use super::typed::{read_list, write_list};
use super::{block_client, parse_timeout, CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::{Blob, ValueKind};
use crate::resp::Frame;
use bytes::Bytes;

const G: &str = "list";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("lpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), "Prepends one or more elements to a list. Creates the key if it doesn't exist.", "key element [element ...]", lpush),
    spec!("rpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), "Appends one or more elements to a list. Creates the key if it doesn't exist.", "key element [element ...]", rpush),
    spec!("lpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), "Prepends one or more elements to a list only when the list exists.", "key element [element ...]", lpushx),
    spec!("rpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), "Appends an element to a list only when the list exists.", "key element [element ...]", rpushx),
    spec!("lpop", -2, WRITE | FAST, (1, 1, 1), "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", "key [count]", lpop),
    spec!("rpop", -2, WRITE | FAST, (1, 1, 1), "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", "key [count]", rpop),
    spec!("llen", 2, READONLY | FAST, (1, 1, 1), "Returns the length of a list.", "key", llen),
    spec!("lrange", 4, READONLY, (1, 1, 1), "Returns a range of elements from a list.", "key start stop", lrange),
    spec!("lindex", 3, READONLY, (1, 1, 1), "Returns an element from a list by its index.", "key index", lindex),
    spec!("lset", 4, WRITE | DENYOOM, (1, 1, 1), "Sets the value of an element in a list by its index.", "key index element", lset),
    spec!("lrem", 4, WRITE, (1, 1, 1), "Removes elements from a list. Deletes the list if the last element was removed.", "key count element", lrem),
    spec!("ltrim", 4, WRITE, (1, 1, 1), "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", "key start stop", ltrim),
    spec!("linsert", 5, WRITE | DENYOOM, (1, 1, 1), "Inserts an element before or after another element in a list.", "key BEFORE | AFTER pivot element", linsert),
    spec!("lpos", -3, READONLY, (1, 1, 1), "Returns the index of matching elements in a list.", "key element [RANK rank] [COUNT num-matches] [MAXLEN len]", lpos),
    spec!(
        "lmove",
        5,
        WRITE | DENYOOM,
        (1, 2, 1),
        "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.",
        "source destination LEFT | RIGHT LEFT | RIGHT",
        lmove
    ),
    spec!(
        "rpoplpush",
        3,
        WRITE | DENYOOM,
        (1, 2, 1),
        "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.",
        "source destination",
        rpoplpush
    ),
    spec!(
        "lmpop",
        -4,
        WRITE | MOVABLE_KEYS,
        (0, 0, 0),
        "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.",
        "numkeys key [key ...] LEFT | RIGHT [COUNT count]",
        lmpop
    ),
    spec!(
        "blpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        (1, -2, 1),
        "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        "key [key ...] timeout",
        blpop
    ),
    spec!(
        "brpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        (1, -2, 1),
        "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        "key [key ...] timeout",
        brpop
    ),
    spec!(
        "blmove",
        6,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        (1, 2, 1),
        "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.",
        "source destination LEFT | RIGHT LEFT | RIGHT timeout",
        blmove
    ),
    spec!(
        "brpoplpush",
        4,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        (1, 2, 1),
        "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.",
        "source destination timeout",
        brpoplpush
    ),
    spec!(
        "blmpop",
        -5,
        WRITE | BLOCKING | MOVABLE_KEYS,
        (0, 0, 0),
        "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        "timeout numkeys key [key ...] LEFT | RIGHT [COUNT count]",
        blmpop
    ),
];

fn push(ctx: &mut ExecCtx, args: &[Bytes], left: bool, only_existing: bool) -> CmdResult {
    let Some(list) = write_list(ctx, &args[1], !only_existing)? else {
        return Ok(Frame::Integer(0));
    };
    for item in &args[2..] {
        if left {
            list.push_front(Blob::new(item));
        } else {
            list.push_back(Blob::new(item));
        }
    }
    let len = list.len();
    ctx.modified(&args[1], (args.len() - 2) as u64);
    Ok(Frame::Integer(len as i64))
}

fn lpush(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, true, false)
}

fn rpush(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, false, false)
}

fn lpushx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, true, true)
}

fn rpushx(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    push(ctx, args, false, true)
}

/// Pops up to `count` elements from one end; `None` if the key is missing.
fn pop_n(
    ctx: &mut ExecCtx,
    key: &[u8],
    left: bool,
    count: usize,
) -> Result<Option<Vec<Frame>>, Frame> {
    let Some(list) = write_list(ctx, key, false)? else {
        return Ok(None);
    };
    let n = count.min(list.len());
    let items: Vec<Frame> = (0..n)
        .filter_map(|_| {
            if left {
                list.pop_front()
            } else {
                list.pop_back()
            }
        })
        .map(|b| Frame::Bulk(b.to_bytes()))
        .collect();
    if n > 0 {
        ctx.modified(key, n as u64);
        // Blocking and multi-key pops replicate as the pop that happened.
        let count = n.to_string();
        ctx.propagate(&[
            if left { b"LPOP".as_slice() } else { b"RPOP" },
            key,
            count.as_bytes(),
        ]);
    }
    Ok(Some(items))
}

fn parse_pop_count(arg: &[u8]) -> Result<usize, Frame> {
    let n = int(arg).map_err(|_| Frame::error("ERR value is out of range, must be positive"))?;
    if n < 0 {
        return Err(Frame::error("ERR value is out of range, must be positive"));
    }
    Ok(n as usize)
}

fn pop_command(ctx: &mut ExecCtx, args: &[Bytes], left: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(super::wrong_arity(if left { "lpop" } else { "rpop" }));
    }
    match args.get(2) {
        None => Ok(pop_n(ctx, &args[1], left, 1)?
            .and_then(|mut v| v.pop())
            .unwrap_or(Frame::Null)),
        Some(c) => {
            let count = parse_pop_count(c)?;
            Ok(pop_n(ctx, &args[1], left, count)?
                .map(Frame::Array)
                .unwrap_or(Frame::NullArray))
        }
    }
}

fn lpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    pop_command(ctx, args, true)
}

fn rpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    pop_command(ctx, args, false)
}

fn llen(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_list(ctx, &args[1])?.map_or(0, |l| l.len()) as i64,
    ))
}

/// Normalises a Redis start/stop pair against `len`; `None` if empty.
pub(super) fn normalize_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

fn lrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (start, stop) = (int(&args[2])?, int(&args[3])?);
    let Some(list) = read_list(ctx, &args[1])? else {
        return Ok(Frame::Array(vec![]));
    };
    let Some((a, b)) = normalize_range(start, stop, list.len()) else {
        return Ok(Frame::Array(vec![]));
    };
    Ok(Frame::Array(
        list.range(a..=b)
            .map(|v| Frame::Bulk(v.to_bytes()))
            .collect(),
    ))
}

fn index_of(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (i >= 0 && i < len as i64).then_some(i as usize)
}

fn lindex(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let index = int(&args[2])?;
    let Some(list) = read_list(ctx, &args[1])? else {
        return Ok(Frame::Null);
    };
    Ok(index_of(index, list.len())
        .and_then(|i| list.get(i))
        .map(|v| Frame::Bulk(v.to_bytes()))
        .unwrap_or(Frame::Null))
}

fn lset(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let index = int(&args[2])?;
    let Some(list) = write_list(ctx, &args[1], false)? else {
        return Err(ERR_NO_SUCH_KEY);
    };
    let Some(i) = index_of(index, list.len()) else {
        return Err(Frame::error("ERR index out of range"));
    };
    list[i] = Blob::new(&args[3]);
    ctx.modified(&args[1], 1);
    Ok(Frame::ok())
}

fn lrem(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let count = int(&args[2])?;
    let target = args[3].as_ref();
    let Some(list) = write_list(ctx, &args[1], false)? else {
        return Ok(Frame::Integer(0));
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        let mut i = 0;
        while i < list.len() && removed < limit {
            if list[i].as_bytes() == target {
                list.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = list.len();
        while i > 0 && removed < limit {
            i -= 1;
            if list[i].as_bytes() == target {
                list.remove(i);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        ctx.modified(&args[1], removed as u64);
    }
    Ok(Frame::Integer(removed as i64))
}

fn ltrim(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (start, stop) = (int(&args[2])?, int(&args[3])?);
    let Some(list) = write_list(ctx, &args[1], false)? else {
        return Ok(Frame::ok());
    };
    match normalize_range(start, stop, list.len()) {
        None => list.clear(),
        Some((a, b)) => {
            list.truncate(b + 1);
            list.drain(..a);
        }
    }
    ctx.modified(&args[1], 1);
    Ok(Frame::ok())
}

fn linsert(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let before = if is(&args[2], "before") {
        true
    } else if is(&args[2], "after") {
        false
    } else {
        return Err(ERR_SYNTAX);
    };
    let Some(list) = write_list(ctx, &args[1], false)? else {
        return Ok(Frame::Integer(0));
    };
    let Some(pos) = list.iter().position(|v| v.as_bytes() == args[3].as_ref()) else {
        return Ok(Frame::Integer(-1));
    };
    list.insert(if before { pos } else { pos + 1 }, Blob::new(&args[4]));
    let len = list.len();
    ctx.modified(&args[1], 1);
    Ok(Frame::Integer(len as i64))
}

fn lpos(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(ERR_SYNTAX);
        }
        let v = int(&args[i + 1])?;
        if is(&args[i], "rank") {
            if v == 0 {
                return Err(Frame::error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
            }
            if v == i64::MIN {
                return Err(Frame::error_owned(format!(
                    "ERR value is out of range, value must between -{} and {}",
                    i64::MAX,
                    i64::MAX
                )));
            }
            rank = v;
        } else if is(&args[i], "count") {
            if v < 0 {
                return Err(Frame::error("ERR COUNT can't be negative"));
            }
            count = Some(v as usize);
        } else if is(&args[i], "maxlen") {
            if v < 0 {
                return Err(Frame::error("ERR MAXLEN can't be negative"));
            }
            maxlen = v as usize;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 2;
    }
    let target = args[2].clone();
    let Some(list) = read_list(ctx, &args[1])? else {
        return Ok(if count.is_some() {
            Frame::Array(vec![])
        } else {
            Frame::Null
        });
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() as usize - 1;
    let mut found = Vec::new();
    let len = list.len();
    let limit = if maxlen == 0 { len } else { maxlen.min(len) };
    for step in 0..limit {
        let idx = if rank > 0 { step } else { len - 1 - step };
        if list[idx].as_bytes() == target.as_ref() {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(Frame::Integer(idx as i64));
            if found.len() >= want {
                break;
            }
        }
    }
    Ok(match count {
        Some(_) => Frame::Array(found),
        None => found.pop().unwrap_or(Frame::Null),
    })
}

fn parse_side(arg: &[u8]) -> Result<bool, Frame> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(ERR_SYNTAX)
    }
}

/// Moves one element from `src` to `dst`; `Ok(None)` when `src` is empty.
fn move_one(
    ctx: &mut ExecCtx,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<Option<Bytes>, Frame> {
    if read_list(ctx, src)?.is_none() {
        return Ok(None);
    }
    super::typed::check_type(ctx, dst, ValueKind::List)?;
    let list = write_list(ctx, src, false)?.expect("checked above");
    let Some(item) = (if from_left {
        list.pop_front()
    } else {
        list.pop_back()
    }) else {
        return Ok(None);
    };
    ctx.modified(src, 1);
    let dest = write_list(ctx, dst, true)?.expect("created");
    if to_left {
        dest.push_front(item.clone());
    } else {
        dest.push_back(item.clone());
    }
    ctx.modified(dst, 1);
    let side = |left: bool| if left { b"LEFT".as_slice() } else { b"RIGHT" };
    ctx.propagate(&[
        b"LMOVE".as_slice(),
        src,
        dst,
        side(from_left),
        side(to_left),
    ]);
    Ok(Some(item.to_bytes()))
}

fn lmove(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (from_left, to_left) = (parse_side(&args[3])?, parse_side(&args[4])?);
    Ok(move_one(ctx, &args[1], &args[2], from_left, to_left)?
        .map(Frame::Bulk)
        .unwrap_or(Frame::Null))
}

fn rpoplpush(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(move_one(ctx, &args[1], &args[2], false, true)?
        .map(Frame::Bulk)
        .unwrap_or(Frame::Null))
}

/// Parses `numkeys key... LEFT|RIGHT [COUNT n]` (LMPOP/BLMPOP).
fn parse_mpop(args: &[Bytes]) -> Result<(Vec<Bytes>, bool, usize), Frame> {
    let numkeys = int(&args[0]).unwrap_or(0);
    if numkeys <= 0 {
        return Err(Frame::error("ERR numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if numkeys + 1 > args.len() - 1 {
        return Err(ERR_SYNTAX);
    }
    let keys = args[1..=numkeys].to_vec();
    let left = parse_side(&args[numkeys + 1])?;
    let rest = &args[numkeys + 2..];
    let count = match rest.len() {
        0 => 1,
        2 if is(&rest[0], "count") => {
            let n = int(&rest[1]).unwrap_or(0);
            if n <= 0 {
                return Err(Frame::error("ERR count should be greater than 0"));
            }
            n as usize
        }
        _ => return Err(ERR_SYNTAX),
    };
    Ok((keys, left, count))
}

fn mpop_first(
    ctx: &mut ExecCtx,
    keys: &[Bytes],
    left: bool,
    count: usize,
) -> Result<Option<Frame>, Frame> {
    for key in keys {
        if read_list(ctx, key)?.is_some() {
            let items = pop_n(ctx, key, left, count)?.unwrap_or_default();
            return Ok(Some(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::Array(items),
            ])));
        }
    }
    Ok(None)
}

fn lmpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (keys, left, count) = parse_mpop(&args[1..])?;
    Ok(mpop_first(ctx, &keys, left, count)?.unwrap_or(Frame::NullArray))
}

fn bpop(ctx: &mut ExecCtx, args: &[Bytes], left: bool) -> CmdResult {
    let deadline = parse_timeout(&args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    for key in keys {
        if read_list(ctx, key)?.is_some() {
            let item = pop_n(ctx, key, left, 1)?
                .and_then(|mut v| v.pop())
                .unwrap_or(Frame::Null);
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), item]));
        }
    }
    Ok(block_client(
        ctx,
        keys,
        BlockOp::ListPop {
            left,
            count: 1,
            mpop: false,
        },
        deadline,
    ))
}

fn blpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bpop(ctx, args, true)
}

fn brpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bpop(ctx, args, false)
}

fn bmove(
    ctx: &mut ExecCtx,
    src: &Bytes,
    dst: &Bytes,
    from_left: bool,
    to_left: bool,
    timeout: &[u8],
) -> CmdResult {
    let deadline = parse_timeout(timeout)?;
    if let Some(item) = move_one(ctx, src, dst, from_left, to_left)? {
        return Ok(Frame::Bulk(item));
    }
    Ok(block_client(
        ctx,
        std::slice::from_ref(src),
        BlockOp::ListMove {
            from_left,
            dest: Blob::new(dst),
            to_left,
        },
        deadline,
    ))
}

fn blmove(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let (from_left, to_left) = (parse_side(&args[3])?, parse_side(&args[4])?);
    bmove(ctx, &args[1], &args[2], from_left, to_left, &args[5])
}

fn brpoplpush(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bmove(ctx, &args[1], &args[2], false, true, &args[3])
}

fn blmpop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let deadline = parse_timeout(&args[1])?;
    let (keys, left, count) = parse_mpop(&args[2..])?;
    if let Some(reply) = mpop_first(ctx, &keys, left, count)? {
        return Ok(reply);
    }
    Ok(block_client(
        ctx,
        &keys,
        BlockOp::ListPop {
            left,
            count,
            mpop: true,
        },
        deadline,
    ))
}

/// Serves a client blocked in BLPOP/BRPOP/BLMPOP from `key`.
pub(super) fn pop_for_waiter(
    ctx: &mut ExecCtx,
    key: &[u8],
    left: bool,
    count: usize,
    mpop: bool,
) -> Option<Frame> {
    let items = pop_n(ctx, key, left, count).ok()??;
    if items.is_empty() {
        return None;
    }
    let key = Frame::Bulk(Bytes::copy_from_slice(key));
    Some(if mpop {
        Frame::Array(vec![key, Frame::Array(items)])
    } else {
        Frame::Array(std::iter::once(key).chain(items).collect())
    })
}

/// Serves a client blocked in BLMOVE/BRPOPLPUSH from `key`.
pub(super) fn move_for_waiter(
    ctx: &mut ExecCtx,
    key: &[u8],
    from_left: bool,
    dest: &Blob,
    to_left: bool,
) -> Option<Frame> {
    // A destination of the wrong type is this waiter's error (the element
    // stays for the next one), as Redis serves it.
    match move_one(ctx, key, dest, from_left, to_left) {
        Ok(moved) => moved.map(Frame::Bulk),
        Err(e) => Some(e),
    }
}
