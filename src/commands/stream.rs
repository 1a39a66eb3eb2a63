//! Stream commands: XADD and reads, trimming, consumer groups, and the
//! blocking XREAD/XREADGROUP (served from `commands::blocking`).
//!
//! Replication follows Redis's effect rules: XADD goes out with the ID it
//! generated and approximate trimming made exact (`MAXLEN = <length>`);
//! XREADGROUP, XCLAIM and XAUTOCLAIM never replicate themselves but as the
//! XCLAIM / XGROUP SETID / XGROUP CREATECONSUMER effects that rebuild the
//! same pending lists on a replica. XREADGROUP also sends the group's
//! read counter (XGROUP SETID ... ENTRIESREAD) after its XCLAIMs, so a
//! replica's lag matches the primary's.

use super::args::*;
use super::blocking::BlockOp;
use super::flags::*;
use super::keys::help_reply as help;
use super::typed::{read_stream, write_stream};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::stream::{
    parse_id, AddError, Entry, Group, IdSyntax, Stream, StreamId, Trim, ENTRIES_READ_INVALID,
};
use crate::keyspace::Blob;
use crate::resp::{Frame, Protocol};
use bytes::Bytes;

const G: &str = "stream";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "xadd",
        -5,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Appends a new message to a stream. Creates the key if it doesn't exist.",
        "key [NOMKSTREAM] [<MAXLEN | MINID> [= | ~] threshold [LIMIT count]] <* | id> field value [field value ...]",
        xadd
    ),
    spec!(
        "xrange",
        -4,
        READONLY,
        (1, 1, 1),
        "Returns the messages from a stream within a range of IDs.",
        "key start end [COUNT count]",
        xrange
    ),
    spec!(
        "xrevrange",
        -4,
        READONLY,
        (1, 1, 1),
        "Returns the messages from a stream within a range of IDs in reverse order.",
        "key end start [COUNT count]",
        xrevrange
    ),
    spec!(
        "xlen",
        2,
        READONLY | FAST,
        (1, 1, 1),
        "Return the number of messages in a stream.",
        "key",
        xlen
    ),
    spec!(
        "xdel",
        -3,
        WRITE | FAST,
        (1, 1, 1),
        "Returns the number of messages after removing them from a stream.",
        "key id [id ...]",
        xdel
    ),
    spec!(
        "xtrim",
        -4,
        WRITE,
        (1, 1, 1),
        "Deletes messages from the beginning of a stream.",
        "key <MAXLEN | MINID> [= | ~] threshold [LIMIT count]",
        xtrim
    ),
    spec!(
        "xread",
        -4,
        READONLY | BLOCKING | MOVABLE_KEYS,
        "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise.",
        "[COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]",
        xread
    ),
    spec!(
        "xreadgroup",
        -7,
        WRITE | BLOCKING | MOVABLE_KEYS,
        "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise.",
        "GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]",
        xreadgroup
    ),
    spec!(
        "xgroup",
        -2,
        WRITE,
        (2, 2, 1),
        "A container for consumer groups commands.",
        "<CREATE | SETID | DESTROY | CREATECONSUMER | DELCONSUMER | HELP> ...",
        xgroup
    ),
    spec!(
        "xack",
        -4,
        WRITE | FAST,
        (1, 1, 1),
        "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream.",
        "key group id [id ...]",
        xack
    ),
    spec!(
        "xpending",
        -3,
        READONLY,
        (1, 1, 1),
        "Returns the information and entries from a stream consumer group's pending entries list.",
        "key group [[IDLE min-idle-time] start end count [consumer]]",
        xpending
    ),
    spec!(
        "xclaim",
        -6,
        WRITE | FAST,
        (1, 1, 1),
        "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member.",
        "key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]",
        xclaim
    ),
    spec!(
        "xautoclaim",
        -6,
        WRITE | FAST,
        (1, 1, 1),
        "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member.",
        "key group consumer min-idle-time start [COUNT count] [JUSTID]",
        xautoclaim
    ),
    spec!(
        "xinfo",
        -2,
        READONLY,
        (2, 2, 1),
        "A container for stream introspection commands.",
        "<STREAM | GROUPS | CONSUMERS | HELP> ...",
        xinfo
    ),
    spec!(
        "xsetid",
        -3,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "An internal command for replicating stream values.",
        "key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]",
        xsetid
    ),
];

const ERR_INVALID_ID: Frame =
    Frame::error("ERR Invalid stream ID specified as stream command argument");

const STRICT: IdSyntax = IdSyntax {
    missing_seq: 0,
    strict: true,
    seq_star: false,
};

/// An ID that must not be `-` or `+`.
fn strict_id(arg: &[u8]) -> Result<StreamId, Frame> {
    parse_id(arg, STRICT)
        .map(|(id, _)| id)
        .ok_or(ERR_INVALID_ID)
}

/// A range bound: `-`, `+`, an ID (a bare time takes `missing_seq`), or
/// `(`ID for an exclusive bound.
fn interval_id(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Frame> {
    let syntax = IdSyntax {
        missing_seq,
        strict: false,
        seq_star: false,
    };
    if arg.len() > 1 && arg[0] == b'(' {
        let syntax = IdSyntax {
            strict: true,
            ..syntax
        };
        return parse_id(&arg[1..], syntax)
            .map(|(id, _)| (id, true))
            .ok_or(ERR_INVALID_ID);
    }
    parse_id(arg, syntax)
        .map(|(id, _)| (id, false))
        .ok_or(ERR_INVALID_ID)
}

/// The inclusive start of a range given as `arg`.
fn range_start(arg: &[u8]) -> Result<StreamId, Frame> {
    match interval_id(arg, 0)? {
        (id, true) => id
            .next()
            .ok_or(Frame::error("ERR invalid start ID for the interval")),
        (id, false) => Ok(id),
    }
}

/// The inclusive end of a range given as `arg`.
fn range_end(arg: &[u8]) -> Result<StreamId, Frame> {
    match interval_id(arg, u64::MAX)? {
        (id, true) => id
            .prev()
            .ok_or(Frame::error("ERR invalid end ID for the interval")),
        (id, false) => Ok(id),
    }
}

fn id_frame(id: StreamId) -> Frame {
    Frame::Bulk(Bytes::from(id.to_text()))
}

/// An entry as Redis replies with it: `[id, [field, value, ...]]`.
fn entry_frame(e: &Entry) -> Frame {
    Frame::Array(vec![
        id_frame(e.id),
        Frame::Array(e.fields.iter().map(|f| Frame::Bulk(f.to_bytes())).collect()),
    ])
}

/// What XADD/XTRIM were asked to trim.
#[derive(Default)]
struct TrimArgs {
    trim: Option<Trim>,
    approx: bool,
    /// Entries the trim may remove (0: no bound).
    limit: u64,
    no_mkstream: bool,
    /// XADD's ID argument position, and the ID with whether its sequence
    /// was given (None for `*`).
    id_pos: usize,
    id: Option<(StreamId, bool)>,
}

/// Redis's `streamParseAddOrTrimArgsOrReply`.
fn parse_add_trim(ctx: &ExecCtx, args: &[Bytes], xadd: bool) -> Result<TrimArgs, Frame> {
    const BOTH: Frame = Frame::error(
        "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
    );
    let mut t = TrimArgs::default();
    let mut limit_given = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if xadd && opt.as_ref() == b"*" {
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if t.trim.is_some() {
                return Err(BOTH);
            }
            t.approx = false;
            let next = &args[i + 1];
            if more >= 2 && (next.as_ref() == b"~" || next.as_ref() == b"=") {
                t.approx = next.as_ref() == b"~";
                i += 1;
            }
            let value = &args[i + 1];
            t.trim = Some(if is(opt, "maxlen") {
                let n = int(value)?;
                if n < 0 {
                    return Err(Frame::error("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen(n as u64)
            } else {
                Trim::MinId(strict_id(value)?)
            });
            i += 2;
            continue;
        } else if is(opt, "limit") && more > 0 {
            let n = int(&args[i + 1])?;
            if n < 0 {
                return Err(Frame::error("ERR The LIMIT argument must be >= 0."));
            }
            limit_given = Some(n as u64);
            i += 2;
            continue;
        } else if xadd && is(opt, "nomkstream") {
            t.no_mkstream = true;
        } else if xadd {
            let syntax = IdSyntax {
                seq_star: true,
                ..STRICT
            };
            t.id = Some(parse_id(opt, syntax).ok_or(ERR_INVALID_ID)?);
            break;
        } else {
            return Err(ERR_SYNTAX);
        }
        i += 1;
    }
    t.id_pos = i;
    if limit_given.is_some_and(|n| n > 0) && t.trim.is_none() {
        return Err(Frame::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.trim.is_none() {
        return Err(Frame::error(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if ctx.session.replicated {
        // The stream carries exact trims only.
        t.limit = 0;
    } else if let Some(n) = limit_given {
        if !t.approx {
            return Err(Frame::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        t.limit = n;
    } else if t.approx {
        let per_node = ctx.node.settings.read().encoding.stream_node_max_entries;
        t.limit = match per_node.saturating_mul(100) {
            0 => 10_000,
            n => n.min(1_000_000),
        };
    }
    Ok(t)
}

/// The trim as it replicates: exact, at what the stream now holds.
fn exact_trim(t: &TrimArgs, stream: &Stream) -> Vec<Bytes> {
    match t.trim {
        None => Vec::new(),
        Some(Trim::MaxLen(n)) => {
            let n = if t.approx { stream.len() } else { n };
            vec![
                Bytes::from_static(b"MAXLEN"),
                Bytes::from_static(b"="),
                Bytes::from(n.to_string()),
            ]
        }
        Some(Trim::MinId(id)) => {
            let id = if t.approx { first_entry_id(stream) } else { id };
            vec![
                Bytes::from_static(b"MINID"),
                Bytes::from_static(b"="),
                Bytes::from(id.to_text()),
            ]
        }
    }
}

/// The first entry's ID, or the largest ID for an empty stream (Redis's
/// `streamGetEdgeID` with tombstones).
fn first_entry_id(stream: &Stream) -> StreamId {
    stream
        .entries()
        .next()
        .map(|e| e.id)
        .unwrap_or(StreamId::MAX)
}

fn node_limits(ctx: &ExecCtx) -> crate::keyspace::stream::NodeLimits {
    ctx.node.settings.read().encoding.stream_nodes()
}

fn xadd(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let t = parse_add_trim(ctx, args, true)?;
    let field_pos = t.id_pos + 1;
    let nfields = args.len().saturating_sub(field_pos);
    if nfields < 2 || nfields % 2 == 1 {
        return Err(super::wrong_arity("xadd"));
    }
    if let Some((id, true)) = t.id {
        if id.is_zero() {
            return Err(Frame::error(
                "ERR The ID specified in XADD must be greater than 0-0",
            ));
        }
    }
    let limits = node_limits(ctx);
    let now = ctx.now_ms.max(0) as u64;
    let key = &args[1];
    let Some(stream) = write_stream(ctx, key, !t.no_mkstream)? else {
        return Ok(Frame::Null);
    };
    if stream.last_id == StreamId::MAX {
        return Err(Frame::error(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    // A new stream (last ID 0-0) takes any ID above 0-0, so an error here
    // never leaves an empty key behind.
    let id = stream.next_id(t.id, now).map_err(|AddError::NotGreater| {
        Frame::error(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        )
    })?;
    let fields = args[field_pos..].iter().map(Blob::from).collect();
    stream.append(id, fields, limits);
    if let Some(trim) = t.trim {
        stream.trim(trim, t.approx, t.limit);
    }
    let mut effect = vec![Bytes::from_static(b"XADD"), key.clone()];
    if t.no_mkstream {
        effect.push(Bytes::from_static(b"NOMKSTREAM"));
    }
    effect.extend(exact_trim(&t, stream));
    effect.push(Bytes::from(id.to_text()));
    effect.extend(args[field_pos..].iter().cloned());
    ctx.modified(key, 1);
    ctx.propagate(&effect);
    Ok(id_frame(id))
}

fn range_generic(ctx: &mut ExecCtx, args: &[Bytes], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = range_start(start_arg)?;
    let end = range_end(end_arg)?;
    let mut count: Option<usize> = None;
    let mut i = 4;
    while i < args.len() {
        if is(&args[i], "count") && i + 1 < args.len() {
            count = Some(int(&args[i + 1])?.max(0) as usize);
            i += 2;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let Some(stream) = read_stream(ctx, &args[1])? else {
        return Ok(Frame::Array(vec![]));
    };
    if count == Some(0) {
        return Ok(Frame::NullArray);
    }
    let n = count.unwrap_or(usize::MAX);
    let entries: Vec<Frame> = if rev {
        stream
            .range(start, end)
            .rev()
            .take(n)
            .map(entry_frame)
            .collect()
    } else {
        stream.range(start, end).take(n).map(entry_frame).collect()
    };
    Ok(Frame::Array(entries))
}

fn xrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, false)
}

fn xrevrange(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, true)
}

fn xlen(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(
        read_stream(ctx, &args[1])?.map_or(0, |s| s.len() as i64),
    ))
}

fn xdel(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if read_stream(ctx, &args[1])?.is_none() {
        return Ok(Frame::Integer(0));
    }
    let ids = args[2..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let stream = write_stream(ctx, &args[1], false)?.expect("checked above");
    let mut deleted = 0;
    for id in ids {
        if stream.delete(id) {
            deleted += 1;
        }
    }
    if deleted > 0 {
        stream.refresh_first_id();
        ctx.modified(&args[1], deleted);
    }
    Ok(Frame::Integer(deleted as i64))
}

fn xtrim(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let t = parse_add_trim(ctx, args, false)?;
    if read_stream(ctx, &args[1])?.is_none() {
        return Ok(Frame::Integer(0));
    }
    let stream = write_stream(ctx, &args[1], false)?.expect("checked above");
    let deleted = stream.trim(t.trim.expect("checked by the parser"), t.approx, t.limit);
    if deleted > 0 {
        let mut effect = vec![Bytes::from_static(b"XTRIM"), args[1].clone()];
        effect.extend(exact_trim(&t, stream));
        ctx.modified(&args[1], deleted);
        ctx.propagate(&effect);
    }
    Ok(Frame::Integer(deleted as i64))
}

// ---- reading, with and without groups ----

/// A parsed XREAD / XREADGROUP.
struct ReadArgs {
    count: usize,
    block: Option<Option<std::time::Instant>>,
    noack: bool,
    group: Option<(Bytes, Bytes)>,
    keys: Vec<Bytes>,
    /// The ID argument for each key, unresolved (`$`, `>` or an ID).
    ids: Vec<Bytes>,
}

fn parse_read(ctx: &ExecCtx, args: &[Bytes], xreadgroup: bool) -> Result<ReadArgs, Frame> {
    let mut r = ReadArgs {
        count: 0,
        block: None,
        noack: false,
        group: None,
        keys: Vec::new(),
        ids: Vec::new(),
    };
    let mut i = 1;
    let mut streams_at = None;
    while i < args.len() {
        let more = args.len() - i - 1;
        let opt = &args[i];
        if is(opt, "block") && more > 0 {
            if ctx.session.in_script {
                return Err(Frame::error_owned(format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    String::from_utf8_lossy(&args[0])
                )));
            }
            let ms = int(&args[i + 1])
                .map_err(|_| Frame::error("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(Frame::error("ERR timeout is negative"));
            }
            r.block = Some(if ms == 0 {
                None
            } else {
                Some(std::time::Instant::now() + std::time::Duration::from_millis(ms as u64))
            });
            i += 2;
        } else if is(opt, "count") && more > 0 {
            r.count = int(&args[i + 1])?.max(0) as usize;
            i += 2;
        } else if is(opt, "streams") && more > 0 {
            streams_at = Some(i + 1);
            break;
        } else if is(opt, "group") && more >= 2 {
            if !xreadgroup {
                return Err(Frame::error(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.group = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else if is(opt, "noack") {
            if !xreadgroup {
                return Err(Frame::error(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.noack = true;
            i += 1;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let Some(at) = streams_at else {
        return Err(ERR_SYNTAX);
    };
    let rest = &args[at..];
    if !rest.len().is_multiple_of(2) {
        return Err(Frame::error(
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
        ));
    }
    if xreadgroup && r.group.is_none() {
        return Err(Frame::error("ERR Missing GROUP option for XREADGROUP"));
    }
    let n = rest.len() / 2;
    r.keys = rest[..n].to_vec();
    r.ids = rest[n..].to_vec();
    Ok(r)
}

/// The ID a reader wants entries above: for `>`, [`StreamId::MAX`]
/// stands for "the group's last delivered".
fn resolve_ids(ctx: &mut ExecCtx, r: &ReadArgs) -> Result<Vec<StreamId>, Frame> {
    let mut out = Vec::with_capacity(r.keys.len());
    for (key, id) in r.keys.iter().zip(&r.ids) {
        let stream = read_stream(ctx, key)?;
        if let Some((group, _)) = &r.group {
            if stream.is_none_or(|s| !s.groups.contains_key(group.as_ref())) {
                return Err(Frame::error_owned(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(group)
                )));
            }
        }
        let last_id = stream.map_or(StreamId::MIN, |s| s.last_id);
        match id.as_ref() {
            b"$" => {
                if r.group.is_some() {
                    return Err(Frame::error(
                        "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                    ));
                }
                out.push(last_id);
            }
            b">" => {
                if r.group.is_none() {
                    return Err(Frame::error(
                        "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                    ));
                }
                out.push(StreamId::MAX);
            }
            _ => out.push(strict_id(id)?),
        }
    }
    Ok(out)
}

/// The reply for the streams that had something, in the client's protocol.
fn read_reply(proto: Protocol, served: Vec<(Bytes, Frame)>) -> Frame {
    if proto == Protocol::Resp3 {
        Frame::Map(
            served
                .into_iter()
                .map(|(k, v)| (Frame::Bulk(k), v))
                .collect(),
        )
    } else {
        Frame::Array(
            served
                .into_iter()
                .map(|(k, v)| Frame::Array(vec![Frame::Bulk(k), v]))
                .collect(),
        )
    }
}

/// Entries above `after`, at most `count` (0: all), for a plain XREAD.
fn entries_after(stream: &Stream, after: StreamId, count: usize) -> Option<Frame> {
    let start = after.next()?;
    if stream.is_empty() || stream.last_valid_id() < start {
        return None;
    }
    let n = if count == 0 { usize::MAX } else { count };
    Some(Frame::Array(
        stream
            .range(start, StreamId::MAX)
            .take(n)
            .map(entry_frame)
            .collect(),
    ))
}

fn xread(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let r = parse_read(ctx, args, false)?;
    let ids = resolve_ids(ctx, &r)?;
    let mut served = Vec::new();
    for (key, after) in r.keys.iter().zip(&ids) {
        if let Some(stream) = read_stream(ctx, key)? {
            if let Some(entries) = entries_after(stream, *after, r.count) {
                served.push((key.clone(), entries));
            }
        }
    }
    reply_or_block(ctx, served, &r, |count, resp3| BlockOp::XRead {
        ids,
        count,
        resp3,
    })
}

/// The reply of an XREAD/XREADGROUP that served `served`; when nothing
/// was there, blocks with `op(count, resp3)` if BLOCK was given (COUNT
/// defaults to 1000 then, as Redis), else the null reply.
fn reply_or_block(
    ctx: &mut ExecCtx,
    served: Vec<(Bytes, Frame)>,
    r: &ReadArgs,
    op: impl FnOnce(usize, bool) -> BlockOp,
) -> CmdResult {
    if !served.is_empty() {
        return Ok(read_reply(ctx.session.proto, served));
    }
    let Some(deadline) = r.block else {
        return Ok(Frame::NullArray);
    };
    let count = if r.count == 0 { 1000 } else { r.count };
    let op = op(count, ctx.session.proto == Protocol::Resp3);
    Ok(super::block_client(ctx, &r.keys, op, deadline))
}

/// Delivers entries above the group's last ID to `consumer` (XREADGROUP
/// with `>`), with the PEL updates and their effects. `None` when there is
/// nothing new.
fn deliver_new(
    ctx: &mut ExecCtx,
    key: &Bytes,
    group: &[u8],
    consumer: &[u8],
    count: usize,
    noack: bool,
) -> Option<Frame> {
    let now = ctx.now_ms;
    let stream = write_stream(ctx, key, false).ok()??;
    let last = stream.groups.get(group)?.last_id;
    let start = last.next()?;
    if stream.is_empty() || stream.last_valid_id() < start {
        return None;
    }
    let n = if count == 0 { usize::MAX } else { count };
    let delivered: Vec<Entry> = stream
        .range(start, StreamId::MAX)
        .take(n)
        .cloned()
        .collect();
    let mut effects = Vec::new();
    if stream
        .groups
        .get_mut(group)
        .map(|g| g.consumer_mut(consumer, now).1)
        .unwrap_or(false)
        && noack
    {
        effects.push(vec![
            Bytes::from_static(b"XGROUP"),
            Bytes::from_static(b"CREATECONSUMER"),
            key.clone(),
            Bytes::copy_from_slice(group),
            Bytes::copy_from_slice(consumer),
        ]);
    }
    for e in &delivered {
        stream.advance_group(group, e.id);
        if !noack {
            let g = stream.groups.get_mut(group).expect("looked up above");
            let pending = g.deliver(e.id, consumer, now).clone();
            effects.push(xclaim_effect(key, group, g, e.id, &pending));
        }
    }
    // The group's position and read counter go out explicitly (Redis 7.0
    // sends them only for NOACK, so its replicas lose `entries-read`).
    let g = &stream.groups[group];
    effects.push(setid_effect(key, group, g));
    for effect in effects {
        ctx.propagate(&effect);
    }
    ctx.dirty(1);
    Some(Frame::Array(delivered.iter().map(entry_frame).collect()))
}

/// `XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID
/// last`: rebuilds one pending entry on a replica, idempotently.
fn xclaim_effect(
    key: &Bytes,
    group_name: &[u8],
    group: &Group,
    id: StreamId,
    p: &crate::keyspace::stream::Pending,
) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        Bytes::copy_from_slice(group_name),
        p.consumer.to_bytes(),
        Bytes::from_static(b"0"),
        Bytes::from(id.to_text()),
        Bytes::from_static(b"TIME"),
        Bytes::from(p.delivery_time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(p.delivery_count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        Bytes::from(group.last_id.to_text()),
    ]
}

/// `XGROUP SETID key group last ENTRIESREAD n`.
fn setid_effect(key: &Bytes, group_name: &[u8], group: &Group) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        key.clone(),
        Bytes::copy_from_slice(group_name),
        Bytes::from(group.last_id.to_text()),
        Bytes::from_static(b"ENTRIESREAD"),
        Bytes::from(group.entries_read.to_string()),
    ]
}

/// A consumer's own pending entries above `after` (XREADGROUP with an
/// ID): each delivered again (count and time updated); deleted entries
/// come back as `[id, nil]`.
fn history(
    ctx: &mut ExecCtx,
    key: &Bytes,
    group: &[u8],
    consumer: &[u8],
    after: StreamId,
    count: usize,
) -> Frame {
    let now = ctx.now_ms;
    let Ok(Some(stream)) = write_stream(ctx, key, false) else {
        return Frame::Array(vec![]);
    };
    let created = stream
        .groups
        .get_mut(group)
        .map(|g| g.consumer_mut(consumer, now).1)
        .unwrap_or(false);
    let Some(start) = after.next() else {
        return Frame::Array(vec![]);
    };
    let n = if count == 0 { usize::MAX } else { count };
    let ids: Vec<StreamId> = stream
        .groups
        .get(group)
        .and_then(|g| g.consumers.get(consumer))
        .map(|c| c.pel.range(start..).take(n).copied().collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match stream.get(id).map(entry_frame) {
            Some(frame) => {
                if let Some(p) = stream
                    .groups
                    .get_mut(group)
                    .and_then(|g| g.pel.get_mut(&id))
                {
                    p.delivery_time = now;
                    p.delivery_count += 1;
                }
                out.push(frame);
            }
            None => out.push(Frame::Array(vec![id_frame(id), Frame::NullArray])),
        }
    }
    if created {
        ctx.dirty(1);
    }
    Frame::Array(out)
}

fn xreadgroup(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    // Effects only (XCLAIM, XGROUP SETID / CREATECONSUMER), never itself.
    ctx.effects.get_or_insert_with(Vec::new);
    let r = parse_read(ctx, args, true)?;
    let ids = resolve_ids(ctx, &r)?;
    let (group, consumer) = r.group.clone().expect("checked by the parser");
    let mut served = Vec::new();
    for (key, after) in r.keys.iter().zip(&ids) {
        if *after != StreamId::MAX {
            let entries = history(ctx, key, &group, &consumer, *after, r.count);
            served.push((key.clone(), entries));
        } else if let Some(entries) = deliver_new(ctx, key, &group, &consumer, r.count, r.noack) {
            served.push((key.clone(), entries));
        }
    }
    let noack = r.noack;
    reply_or_block(ctx, served, &r, |count, resp3| BlockOp::XReadGroup {
        group: Blob::new(&group),
        consumer: Blob::new(&consumer),
        noack,
        count,
        resp3,
    })
}

/// Serves a client blocked in XREAD or XREADGROUP on `key`: `None` leaves
/// it waiting (nothing new yet).
pub(super) fn serve_waiter(
    ctx: &mut ExecCtx,
    key: &Blob,
    index: usize,
    op: &BlockOp,
) -> Option<Frame> {
    let key_bytes = key.to_bytes();
    match op {
        BlockOp::XRead { ids, count, resp3 } => {
            let stream = read_stream(ctx, key).ok()??;
            let entries = entries_after(stream, *ids.get(index)?, *count)?;
            Some(read_reply(proto(*resp3), vec![(key_bytes, entries)]))
        }
        BlockOp::XReadGroup {
            group,
            consumer,
            noack,
            count,
            resp3,
        } => {
            let stream = match read_stream(ctx, key) {
                Ok(Some(s)) => s,
                // The key went away or changed type: the group went with it.
                _ => return Some(Frame::error("UNBLOCKED the stream key no longer exists")),
            };
            if !stream.groups.contains_key(group.as_bytes()) {
                return Some(Frame::error(
                    "NOGROUP the consumer group this client was blocked on no longer exists",
                ));
            }
            let entries = deliver_new(ctx, &key_bytes, group, consumer, *count, *noack)?;
            Some(read_reply(proto(*resp3), vec![(key_bytes, entries)]))
        }
        _ => None,
    }
}

fn proto(resp3: bool) -> Protocol {
    if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    }
}

// ---- consumer groups ----

fn entries_read_arg(arg: &[u8]) -> Result<i64, Frame> {
    let n = int(arg)?;
    if n < 0 && n != ENTRIES_READ_INVALID {
        return Err(Frame::error(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(n)
}

fn xgroup_syntax(sub: &[u8]) -> Frame {
    Frame::error_owned(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XGROUP HELP.",
        String::from_utf8_lossy(sub)
    ))
}

/// Checks a container's subcommand and its arity as Redis 7's subcommand
/// table does (`-n`: at least n arguments).
fn check_subcommand(args: &[Bytes], container: &str, table: &[(&str, i32)]) -> Result<(), Frame> {
    let Some((name, arity)) = table.iter().find(|(n, _)| is(&args[1], n)) else {
        return Err(super::keys::unknown_subcommand(&args[1], container));
    };
    let argc = args.len() as i32;
    if (*arity >= 0 && argc != *arity) || (*arity < 0 && argc < -arity) {
        return Err(Frame::error_owned(format!(
            "ERR wrong number of arguments for '{}|{}' command",
            container.to_ascii_lowercase(),
            name
        )));
    }
    Ok(())
}

const XGROUP_SUBCOMMANDS: &[(&str, i32)] = &[
    ("create", -5),
    ("setid", -5),
    ("destroy", 4),
    ("createconsumer", 5),
    ("delconsumer", 5),
    ("help", 2),
];

const XINFO_SUBCOMMANDS: &[(&str, i32)] =
    &[("stream", -3), ("groups", 3), ("consumers", 4), ("help", 2)];

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Print this help.",
];

fn xgroup(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    check_subcommand(args, "XGROUP", XGROUP_SUBCOMMANDS)?;
    let sub = args[1].to_ascii_lowercase();
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_INVALID;
    if args.len() >= 4 {
        let mut i = 5;
        while i < args.len() {
            if sub == b"create" && is(&args[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if (sub == b"create" || sub == b"setid")
                && is(&args[i], "entriesread")
                && i + 1 < args.len()
            {
                entries_read = entries_read_arg(&args[i + 1])?;
                i += 2;
            } else {
                return Err(xgroup_syntax(&args[1]));
            }
        }
    }
    if sub == b"help" && args.len() == 2 {
        return Ok(help(XGROUP_HELP));
    }
    if args.len() < 4 {
        return Err(xgroup_syntax(&args[1]));
    }
    let key = &args[2];
    let group = &args[3];
    let exists = read_stream(ctx, key)?.is_some();
    if !mkstream {
        let Some(stream) = read_stream(ctx, key)? else {
            return Err(Frame::error(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        };
        if !stream.groups.contains_key(group.as_ref())
            && matches!(
                sub.as_slice(),
                b"setid" | b"createconsumer" | b"delconsumer"
            )
        {
            return Err(no_such_group(group, key));
        }
    }
    let now = ctx.now_ms;
    match sub.as_slice() {
        b"create" if (5..=8).contains(&args.len()) => {
            let last = read_stream(ctx, key)?.map_or(StreamId::MIN, |s| s.last_id);
            let id = if args[4].as_ref() == b"$" {
                last
            } else {
                strict_id(&args[4])?
            };
            let stream = write_stream(ctx, key, true)?.expect("created");
            if stream.groups.contains_key(group.as_ref()) {
                return Err(Frame::error("BUSYGROUP Consumer Group name already exists"));
            }
            stream.groups.insert(
                Blob::new(group),
                Group {
                    last_id: id,
                    entries_read,
                    ..Default::default()
                },
            );
            ctx.modified(key, 1 + !exists as u64);
            Ok(Frame::ok())
        }
        b"setid" if args.len() == 5 || args.len() == 7 => {
            let id = if args[4].as_ref() == b"$" {
                read_stream(ctx, key)?.map_or(StreamId::MIN, |s| s.last_id)
            } else {
                let syntax = IdSyntax {
                    strict: false,
                    ..STRICT
                };
                parse_id(&args[4], syntax).ok_or(ERR_INVALID_ID)?.0
            };
            let g = group_mut(ctx, key, group)?;
            g.last_id = id;
            g.entries_read = entries_read;
            ctx.modified(key, 1);
            Ok(Frame::ok())
        }
        b"destroy" if args.len() == 4 => {
            let stream = write_stream(ctx, key, false)?.expect("checked above");
            if stream.groups.remove(group.as_ref()).is_none() {
                return Ok(Frame::Integer(0));
            }
            ctx.modified(key, 1);
            Ok(Frame::Integer(1))
        }
        b"createconsumer" if args.len() == 5 => {
            let g = group_mut(ctx, key, group)?;
            if g.consumers.contains_key(args[4].as_ref()) {
                return Ok(Frame::Integer(0));
            }
            g.consumer_mut(&args[4], now);
            ctx.modified(key, 1);
            Ok(Frame::Integer(1))
        }
        b"delconsumer" if args.len() == 5 => {
            let g = group_mut(ctx, key, group)?;
            match g.delete_consumer(&args[4]) {
                Some(pending) => {
                    ctx.modified(key, 1);
                    Ok(Frame::Integer(pending as i64))
                }
                None => Ok(Frame::Integer(0)),
            }
        }
        _ => Err(xgroup_syntax(&args[1])),
    }
}

/// Redis's NOGROUP for a group missing from an existing stream.
fn no_such_group(group: &[u8], key: &[u8]) -> Frame {
    Frame::error_owned(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

/// The group `group` of the stream at `key`, for changing it.
fn group_mut<'a>(ctx: &'a mut ExecCtx, key: &[u8], group: &[u8]) -> Result<&'a mut Group, Frame> {
    write_stream(ctx, key, false)?
        .and_then(|s| s.groups.get_mut(group))
        .ok_or_else(|| no_such_group(group, key))
}

fn no_group(key: &[u8], group: &[u8]) -> Frame {
    Frame::error_owned(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

fn xack(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let has_group =
        read_stream(ctx, &args[1])?.is_some_and(|s| s.groups.contains_key(args[2].as_ref()));
    if !has_group {
        return Ok(Frame::Integer(0));
    }
    let ids = args[3..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let stream = write_stream(ctx, &args[1], false)?.expect("checked above");
    let g = stream
        .groups
        .get_mut(args[2].as_ref())
        .expect("checked above");
    let acked = ids.into_iter().filter(|id| g.ack(*id)).count();
    // Redis counts the change but does not signal the key (WATCH).
    ctx.dirty(acked as u64);
    Ok(Frame::Integer(acked as i64))
}

fn xpending(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let summary = args.len() == 3;
    if args.len() != 3 && !(6..=9).contains(&args.len()) {
        return Err(ERR_SYNTAX);
    }
    let mut range = None;
    let mut min_idle = 0i64;
    if !summary {
        let mut at = 3;
        if is(&args[3], "idle") {
            min_idle = int(&args[4])?;
            if args.len() < 8 {
                return Err(ERR_SYNTAX);
            }
            at += 2;
        }
        let count = int(&args[at + 2])?.max(0) as usize;
        let start = range_start(&args[at])?;
        let end = range_end(&args[at + 1])?;
        let consumer = args.get(at + 3).cloned();
        range = Some((start, end, count, consumer));
    }
    let now = ctx.now_ms;
    let Some(g) = read_stream(ctx, &args[1])?.and_then(|s| s.groups.get(args[2].as_ref())) else {
        return Err(no_group(&args[1], &args[2]));
    };
    let Some((start, end, count, consumer)) = range else {
        if g.pel.is_empty() {
            return Ok(Frame::Array(vec![
                Frame::Integer(0),
                Frame::Null,
                Frame::Null,
                Frame::NullArray,
            ]));
        }
        let first = *g.pel.keys().next().expect("not empty");
        let last = *g.pel.keys().next_back().expect("not empty");
        let consumers = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(name, c)| {
                Frame::Array(vec![
                    Frame::Bulk(name.to_bytes()),
                    Frame::Bulk(Bytes::from(c.pel.len().to_string())),
                ])
            })
            .collect();
        return Ok(Frame::Array(vec![
            Frame::Integer(g.pel.len() as i64),
            id_frame(first),
            id_frame(last),
            Frame::Array(consumers),
        ]));
    };
    let ids: Box<dyn Iterator<Item = StreamId>> = match &consumer {
        Some(name) => match g.consumers.get(name.as_ref()) {
            Some(c) => Box::new(c.pel.range(start..=end.max(start)).copied()),
            None => return Ok(Frame::Array(vec![])),
        },
        None => Box::new(g.pel.range(start..=end.max(start)).map(|(id, _)| *id)),
    };
    let mut out = Vec::new();
    if start <= end {
        for id in ids {
            if out.len() >= count {
                break;
            }
            let p = &g.pel[&id];
            let idle = (now - p.delivery_time).max(0);
            if min_idle > 0 && idle < min_idle {
                continue;
            }
            out.push(Frame::Array(vec![
                id_frame(id),
                Frame::Bulk(p.consumer.to_bytes()),
                Frame::Integer(idle),
                Frame::Integer(p.delivery_count as i64),
            ]));
        }
    }
    Ok(Frame::Array(out))
}

fn claim_error(option: &str) -> Frame {
    Frame::error_owned(format!("ERR Invalid {option} option argument for XCLAIM"))
}

fn xclaim(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    ctx.effects.get_or_insert_with(Vec::new);
    let key = &args[1];
    let group = &args[2];
    let consumer = &args[3];
    if !read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(group.as_ref())) {
        return Err(no_group(key, group));
    }
    let min_idle = int(&args[4])
        .map_err(|_| Frame::error("ERR Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match strict_id(&args[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = ctx.now_ms;
    let (mut force, mut justid) = (false, false);
    let mut delivery_time: Option<i64> = None;
    let mut retry_count: Option<i64> = None;
    let mut last_id = StreamId::MIN;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more > 0 {
            j += 1;
            delivery_time = Some(now - int(&args[j]).map_err(|_| claim_error("IDLE"))?);
        } else if is(opt, "time") && more > 0 {
            j += 1;
            delivery_time = Some(int(&args[j]).map_err(|_| claim_error("TIME"))?);
        } else if is(opt, "retrycount") && more > 0 {
            j += 1;
            retry_count = Some(int(&args[j]).map_err(|_| claim_error("RETRYCOUNT"))?);
        } else if is(opt, "lastid") && more > 0 {
            j += 1;
            last_id = strict_id(&args[j])?;
        } else {
            return Err(Frame::error_owned(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    let delivery_time = match delivery_time {
        Some(t) if t >= 0 && t <= now => t,
        _ => now,
    };
    let stream = write_stream(ctx, key, false)?.expect("checked above");
    let mut effects = Vec::new();
    let mut propagate_last_id = false;
    {
        let g = stream
            .groups
            .get_mut(group.as_ref())
            .expect("checked above");
        if last_id > g.last_id {
            g.last_id = last_id;
            propagate_last_id = true;
        }
    }
    let mut replies = Vec::new();
    let mut changes = 0u64;
    for id in ids {
        let exists = stream.contains(id);
        let g = stream
            .groups
            .get_mut(group.as_ref())
            .expect("checked above");
        if !exists {
            // An entry deleted from the stream leaves the PEL too.
            if let Some(p) = g.pel.get(&id).cloned() {
                effects.push(xclaim_effect(key, group, g, id, &p));
                propagate_last_id = false;
                g.ack(id);
                changes += 1;
            }
            continue;
        }
        if force && !g.pel.contains_key(&id) {
            g.pel.insert(
                id,
                crate::keyspace::stream::Pending {
                    consumer: Blob::new(b""),
                    delivery_time: now,
                    delivery_count: 0,
                },
            );
        }
        let Some(p) = g.pel.get(&id) else {
            continue;
        };
        if !p.consumer.is_empty() && min_idle > 0 && now - p.delivery_time < min_idle {
            continue;
        }
        g.consumer_mut(consumer, now);
        g.claim(id, consumer);
        let p = g.pel.get_mut(&id).expect("present");
        p.delivery_time = delivery_time;
        match retry_count {
            Some(n) if n >= 0 => p.delivery_count = n as u64,
            _ if !justid => p.delivery_count += 1,
            _ => {}
        }
        let p = p.clone();
        effects.push(xclaim_effect(key, group, g, id, &p));
        propagate_last_id = false;
        changes += 1;
        if justid {
            replies.push(id_frame(id));
        } else if let Some(e) = stream.get(id) {
            replies.push(entry_frame(e));
        }
    }
    if propagate_last_id {
        let g = &stream.groups[group.as_ref()];
        effects.push(setid_effect(key, group, g));
        changes += 1;
    }
    for e in effects {
        ctx.propagate(&e);
    }
    if changes > 0 {
        ctx.modified(key, changes);
    }
    Ok(Frame::Array(replies))
}

fn xautoclaim(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    ctx.effects.get_or_insert_with(Vec::new);
    let key = &args[1];
    let group = &args[2];
    let consumer = &args[3];
    let min_idle = int(&args[4])
        .map_err(|_| Frame::error("ERR Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let start = range_start(&args[5])?;
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if is(&args[j], "count") && more > 0 {
            let max = i64::MAX / 16;
            count = match int(&args[j + 1]) {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => return Err(Frame::error("ERR COUNT must be > 0")),
            };
            j += 1;
        } else if is(&args[j], "justid") {
            justid = true;
        } else {
            return Err(ERR_SYNTAX);
        }
        j += 1;
    }
    if !read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(group.as_ref())) {
        return Err(no_group(key, group));
    }
    let now = ctx.now_ms;
    let stream = write_stream(ctx, key, false)?.expect("checked above");
    let mut attempts = count.saturating_mul(10);
    let mut remaining = count;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut effects = Vec::new();
    let mut cursor = start;
    let mut next = StreamId::MIN;
    loop {
        let candidate = stream.groups[group.as_ref()]
            .pel
            .range(cursor..)
            .next()
            .map(|(id, p)| (*id, p.clone()));
        let Some((id, p)) = candidate else {
            break;
        };
        if attempts == 0 || remaining == 0 {
            next = id;
            break;
        }
        attempts -= 1;
        cursor = match id.next() {
            Some(n) => n,
            None => StreamId::MAX,
        };
        let exists = stream.contains(id);
        let g = stream
            .groups
            .get_mut(group.as_ref())
            .expect("checked above");
        if !exists {
            effects.push(xclaim_effect(key, group, g, id, &p));
            g.ack(id);
            deleted.push(id_frame(id));
            remaining -= 1;
            if id == StreamId::MAX {
                break;
            }
            continue;
        }
        if min_idle > 0 && now - p.delivery_time < min_idle {
            if id == StreamId::MAX {
                break;
            }
            continue;
        }
        g.consumer_mut(consumer, now);
        g.claim(id, consumer);
        let pending = g.pel.get_mut(&id).expect("present");
        pending.delivery_time = now;
        if !justid {
            pending.delivery_count += 1;
        }
        let pending = pending.clone();
        effects.push(xclaim_effect(key, group, g, id, &pending));
        remaining -= 1;
        if justid {
            claimed.push(id_frame(id));
        } else if let Some(e) = stream.get(id) {
            claimed.push(entry_frame(e));
        }
        if id == StreamId::MAX {
            break;
        }
    }
    let changes = effects.len() as u64;
    for e in effects {
        ctx.propagate(&e);
    }
    if changes > 0 {
        ctx.modified(key, changes);
    }
    Ok(Frame::Array(vec![
        id_frame(next),
        Frame::Array(claimed),
        Frame::Array(deleted),
    ]))
}

// ---- introspection ----

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Print this help.",
];

fn bulk(s: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(s.as_bytes()))
}

fn entries_read_frame(n: i64) -> Frame {
    if n == ENTRIES_READ_INVALID {
        Frame::Null
    } else {
        Frame::Integer(n)
    }
}

fn lag_frame(stream: &Stream, g: &Group) -> Frame {
    stream.lag(g).map_or(Frame::Null, Frame::Integer)
}

fn xinfo_syntax(sub: &[u8]) -> Frame {
    Frame::error_owned(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn xinfo(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    check_subcommand(args, "XINFO", XINFO_SUBCOMMANDS)?;
    if is(&args[1], "help") {
        if args.len() != 2 {
            return Err(xinfo_syntax(&args[1]));
        }
        return Ok(help(XINFO_HELP));
    }
    if args.len() < 3 {
        return Err(xinfo_syntax(&args[1]));
    }
    let now = ctx.now_ms;
    let Some(stream) = read_stream(ctx, &args[2])? else {
        return Err(ERR_NO_SUCH_KEY);
    };
    if is(&args[1], "consumers") && args.len() == 4 {
        let Some(g) = stream.groups.get(args[3].as_ref()) else {
            return Err(no_such_group(&args[3], &args[2]));
        };
        return Ok(Frame::Array(
            g.consumers
                .iter()
                .map(|(name, c)| {
                    Frame::Map(vec![
                        (bulk("name"), Frame::Bulk(name.to_bytes())),
                        (bulk("pending"), Frame::Integer(c.pel.len() as i64)),
                        (bulk("idle"), Frame::Integer((now - c.seen_time).max(0))),
                    ])
                })
                .collect(),
        ));
    }
    if is(&args[1], "groups") && args.len() == 3 {
        return Ok(Frame::Array(
            stream
                .groups
                .iter()
                .map(|(name, g)| {
                    Frame::Map(vec![
                        (bulk("name"), Frame::Bulk(name.to_bytes())),
                        (bulk("consumers"), Frame::Integer(g.consumers.len() as i64)),
                        (bulk("pending"), Frame::Integer(g.pel.len() as i64)),
                        (bulk("last-delivered-id"), id_frame(g.last_id)),
                        (bulk("entries-read"), entries_read_frame(g.entries_read)),
                        (bulk("lag"), lag_frame(stream, g)),
                    ])
                })
                .collect(),
        ));
    }
    if is(&args[1], "stream") {
        return stream_info(stream, &args[3..]);
    }
    Err(xinfo_syntax(&args[1]))
}

fn stream_info(stream: &Stream, opts: &[Bytes]) -> CmdResult {
    let syntax = || xinfo_syntax(b"STREAM");
    let (full, count) = match opts.len() {
        0 => (false, 0),
        1 | 3 if is(&opts[0], "full") => {
            let mut count = 10usize;
            if opts.len() == 3 {
                if !is(&opts[1], "count") {
                    return Err(syntax());
                }
                let n = int(&opts[2])?;
                count = if n < 0 { 10 } else { n as usize };
            }
            (true, count)
        }
        _ => return Err(syntax()),
    };
    let mut map = vec![
        (bulk("length"), Frame::Integer(stream.len() as i64)),
        (
            bulk("radix-tree-keys"),
            Frame::Integer(stream.node_count() as i64),
        ),
        (
            bulk("radix-tree-nodes"),
            Frame::Integer(stream.node_count() as i64 + 1),
        ),
        (bulk("last-generated-id"), id_frame(stream.last_id)),
        (
            bulk("max-deleted-entry-id"),
            id_frame(stream.max_deleted_id),
        ),
        (
            bulk("entries-added"),
            Frame::Integer(stream.entries_added as i64),
        ),
        (bulk("recorded-first-entry-id"), id_frame(stream.first_id)),
    ];
    let limit = if count == 0 { usize::MAX } else { count };
    if !full {
        map.push((bulk("groups"), Frame::Integer(stream.groups.len() as i64)));
        let first = stream.entries().next().map_or(Frame::Null, entry_frame);
        let last = stream
            .range(StreamId::MIN, StreamId::MAX)
            .next_back()
            .map_or(Frame::Null, entry_frame);
        map.push((bulk("first-entry"), first));
        map.push((bulk("last-entry"), last));
        return Ok(Frame::Map(map));
    }
    map.push((
        bulk("entries"),
        Frame::Array(stream.entries().take(limit).map(entry_frame).collect()),
    ));
    let groups = stream
        .groups
        .iter()
        .map(|(name, g)| {
            let pending = g
                .pel
                .iter()
                .take(limit)
                .map(|(id, p)| {
                    Frame::Array(vec![
                        id_frame(*id),
                        Frame::Bulk(p.consumer.to_bytes()),
                        Frame::Integer(p.delivery_time),
                        Frame::Integer(p.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cname, c)| {
                    let pending = c
                        .pel
                        .iter()
                        .take(limit)
                        .map(|id| {
                            let p = &g.pel[id];
                            Frame::Array(vec![
                                id_frame(*id),
                                Frame::Integer(p.delivery_time),
                                Frame::Integer(p.delivery_count as i64),
                            ])
                        })
                        .collect();
                    Frame::Map(vec![
                        (bulk("name"), Frame::Bulk(cname.to_bytes())),
                        (bulk("seen-time"), Frame::Integer(c.seen_time)),
                        (bulk("pel-count"), Frame::Integer(c.pel.len() as i64)),
                        (bulk("pending"), Frame::Array(pending)),
                    ])
                })
                .collect();
            Frame::Map(vec![
                (bulk("name"), Frame::Bulk(name.to_bytes())),
                (bulk("last-delivered-id"), id_frame(g.last_id)),
                (bulk("entries-read"), entries_read_frame(g.entries_read)),
                (bulk("lag"), lag_frame(stream, g)),
                (bulk("pel-count"), Frame::Integer(g.pel.len() as i64)),
                (bulk("pending"), Frame::Array(pending)),
                (bulk("consumers"), Frame::Array(consumers)),
            ])
        })
        .collect();
    map.push((bulk("groups"), Frame::Array(groups)));
    Ok(Frame::Map(map))
}

fn xsetid(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let id = strict_id(&args[2])?;
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if is(&args[i], "entriesadded") && more > 0 {
            let n = int(&args[i + 1])?;
            if n < 0 {
                return Err(Frame::error("ERR entries_added must be positive"));
            }
            entries_added = Some(n as u64);
            i += 2;
        } else if is(&args[i], "maxdeletedid") && more > 0 {
            max_deleted = strict_id(&args[i + 1])?;
            if id < max_deleted {
                return Err(Frame::error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            i += 2;
        } else {
            return Err(ERR_SYNTAX);
        }
    }
    let Some(stream) = write_stream(ctx, &args[1], false)? else {
        return Err(ERR_NO_SUCH_KEY);
    };
    if !stream.is_empty() {
        if id < stream.last_valid_id() {
            return Err(Frame::error(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added.is_some_and(|n| stream.len() > n) {
            return Err(Frame::error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    stream.last_id = id;
    if let Some(n) = entries_added {
        stream.entries_added = n;
    }
    if !max_deleted.is_zero() {
        stream.max_deleted_id = max_deleted;
    }
    ctx.modified(&args[1], 1);
    Ok(Frame::ok())
}
