//! HyperLogLog commands on the string type: PFADD, PFCOUNT, PFMERGE,
//! PFDEBUG and PFSELFTEST, over Redis's byte layout (`keyspace::hll`).

use super::args::*;
use super::flags::*;
use super::strings::{read, string_buffer};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::hll::{self, HllError};
use crate::keyspace::Value;
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "hyperloglog";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!(
        "pfadd",
        -2,
        WRITE | DENYOOM | FAST,
        (1, 1, 1),
        "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.",
        "key [element [element ...]]",
        pfadd
    ),
    spec!(
        "pfcount",
        -2,
        READONLY | MAY_REPLICATE,
        (1, -1, 1),
        "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).",
        "key [key ...]",
        pfcount
    ),
    spec!(
        "pfmerge",
        -2,
        WRITE | DENYOOM,
        (1, -1, 1),
        "Merges one or more HyperLogLog values into a single key.",
        "destkey [sourcekey [sourcekey ...]]",
        pfmerge
    ),
    spec!(
        "pfdebug",
        3,
        WRITE | DENYOOM | ADMIN,
        (2, 2, 1),
        "Internal commands for debugging HyperLogLog values.",
        "subcommand key",
        pfdebug
    ),
    spec!(
        "pfselftest",
        1,
        ADMIN,
        "An internal command for testing HyperLogLog values.",
        "",
        pfselftest
    ),
];

const ERR_NOT_HLL: Frame = Frame::error("WRONGTYPE Key is not a valid HyperLogLog string value.");
const ERR_CORRUPT: Frame = Frame::error("INVALIDOBJ Corrupted HLL object detected");

fn hll_error(e: HllError) -> Frame {
    match e {
        HllError::NotHll => ERR_NOT_HLL,
        HllError::Corrupt => ERR_CORRUPT,
    }
}

fn sparse_max(ctx: &ExecCtx) -> u64 {
    ctx.node.settings.read().encoding.hll_sparse_max_bytes
}

/// The HLL at `key` as a buffer to change, created empty when missing
/// (whether it was), after Redis's type and format checks.
fn hll_buffer<'a>(ctx: &'a mut ExecCtx, key: &[u8]) -> Result<(&'a mut Vec<u8>, bool), Frame> {
    let now = ctx.now_ms;
    let created = match ctx.db().peek(key, now) {
        None => {
            ctx.db()
                .set(key, Value::Raw(Arc::new(hll::new_sparse())), false);
            true
        }
        Some(v) => {
            let ok = v.with_string(hll::check).ok_or(ERR_WRONGTYPE)?;
            ok.map_err(hll_error)?;
            false
        }
    };
    Ok((string_buffer(ctx, key)?, created))
}

/// An existing HLL's bytes (None when the key is missing), checked.
fn hll_bytes(ctx: &mut ExecCtx, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    let Some(bytes) = read(ctx, key)? else {
        return Ok(None);
    };
    hll::check(&bytes).map_err(hll_error)?;
    Ok(Some(bytes))
}

fn pfadd(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let max = sparse_max(ctx);
    let (hll, created) = hll_buffer(ctx, &args[1])?;
    let changed = hll::add(hll, args[2..].iter().map(|a| &a[..]), max).map_err(hll_error)?;
    if created || changed {
        ctx.modified(&args[1], 1);
    }
    Ok(Frame::Integer((created || changed) as i64))
}

fn pfcount(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        let mut max = Box::new([0u8; hll::REGISTERS]);
        for key in &args[1..] {
            if let Some(bytes) = hll_bytes(ctx, key)? {
                hll::merge_into(&mut max, &bytes).map_err(hll_error)?;
            }
        }
        return Ok(Frame::Integer(hll::estimate(&max) as i64));
    }
    // A current cache answers without copying the value.
    let now = ctx.now_ms;
    if let Some(Some(Ok(card))) = ctx.db().get(&args[1], now).map(|v| {
        v.with_string(|s| hll::check(s).map(|_| hll::cached(s)))
            .map(|r| r.map_err(|_| ()).and_then(|c| c.ok_or(())))
    }) {
        return Ok(Frame::Integer(card as i64));
    }
    let Some(bytes) = hll_bytes(ctx, &args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let card = hll::estimate(&*hll::registers(&bytes).map_err(hll_error)?);
    // The cache is part of the value's bytes: written where the stream is
    // made (and where it is applied), so replicas keep the primary's bytes.
    if ctx.propagates() || ctx.session.replicated {
        let buf = string_buffer(ctx, &args[1])?;
        hll::set_cache(buf, card);
        ctx.db().signal_modified(&args[1]);
        ctx.dirty(1);
        ctx.propagate(&args[..2]);
    }
    Ok(Frame::Integer(card as i64))
}

fn pfmerge(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let mut max = Box::new([0u8; hll::REGISTERS]);
    let mut dense = false;
    for key in &args[1..] {
        if let Some(bytes) = hll_bytes(ctx, key)? {
            dense |= !hll::check(&bytes).map_err(hll_error)?;
            hll::merge_into(&mut max, &bytes).map_err(hll_error)?;
        }
    }
    let limit = sparse_max(ctx);
    let (hll, _) = hll_buffer(ctx, &args[1])?;
    hll::merge_store(hll, &max, dense, limit);
    ctx.modified(&args[1], 1);
    Ok(Frame::ok())
}

fn pfdebug(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let sub = args[1].to_ascii_lowercase();
    let key = &args[2];
    let Some(bytes) = read(ctx, key)? else {
        return Err(Frame::error("ERR The specified key does not exist"));
    };
    let sparse = hll::check(&bytes).map_err(hll_error)?;
    match sub.as_slice() {
        b"getreg" => {
            let regs = hll::registers(&bytes).map_err(hll_error)?;
            if sparse {
                convert_to_dense(ctx, key)?;
            }
            Ok(Frame::Array(
                regs.iter().map(|r| Frame::Integer(*r as i64)).collect(),
            ))
        }
        b"decode" => {
            if !sparse {
                return Err(Frame::error("ERR HLL encoding is not sparse"));
            }
            Ok(Frame::Simple(std::borrow::Cow::Owned(
                hll::describe_sparse(&bytes).map_err(hll_error)?,
            )))
        }
        b"encoding" => Ok(Frame::simple(if sparse { "sparse" } else { "dense" })),
        b"todense" => {
            if sparse {
                convert_to_dense(ctx, key)?;
            }
            Ok(Frame::Integer(sparse as i64))
        }
        _ => Err(Frame::error_owned(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            text(&args[1])
        ))),
    }
}

fn convert_to_dense(ctx: &mut ExecCtx, key: &[u8]) -> Result<(), Frame> {
    let buf = string_buffer(ctx, key)?;
    hll::to_dense(buf).map_err(hll_error)?;
    ctx.modified(key, 1);
    Ok(())
}

fn pfselftest(_ctx: &mut ExecCtx, _args: &[Bytes]) -> CmdResult {
    hll::self_test()
        .map(|()| Frame::ok())
        .map_err(Frame::error_owned)
}
