//! Bitmap commands on the string type: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, with Redis's bit order (bit 0 is the most significant bit of the
//! first byte), ranges, errors and replies.

use super::args::*;
use super::flags::*;
use super::strings::{max_len, read, string_buffer};
use super::{CmdResult, CommandSpec, ExecCtx};
use crate::keyspace::Value;
use crate::resp::Frame;
use bytes::Bytes;
use std::sync::Arc;

const G: &str = "bitmap";

pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("setbit", 4, WRITE | DENYOOM, (1, 1, 1), "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", "key offset value", setbit),
    spec!("getbit", 3, READONLY | FAST, (1, 1, 1), "Returns a bit value by offset.", "key offset", getbit),
    spec!("bitcount", -2, READONLY, (1, 1, 1), "Counts the number of set bits (population counting) in a string.", "key [start end [BYTE | BIT]]", bitcount),
    spec!("bitpos", -3, READONLY, (1, 1, 1), "Finds the first set (1) or clear (0) bit in a string.", "key bit [start [end [BYTE | BIT]]]", bitpos),
    spec!("bitop", -4, WRITE | DENYOOM, (2, -1, 1), "Performs bitwise operations on multiple strings, and stores the result.", "AND | OR | XOR | NOT destkey key [key ...]", bitop),
];

const ERR_BIT_OFFSET: Frame = Frame::error("ERR bit offset is not an integer or out of range");
const ERR_BIT_VALUE: Frame = Frame::error("ERR bit is not an integer or out of range");

/// A bit offset: a non-negative integer whose byte is within
/// `proto-max-bulk-len` (Redis's limit, 512 MB by default).
fn bit_offset(ctx: &ExecCtx, arg: &[u8]) -> Result<u64, Frame> {
    let offset = int(arg).map_err(|_| ERR_BIT_OFFSET)?;
    if offset < 0 || (offset as u64 >> 3) >= max_len(ctx) {
        return Err(ERR_BIT_OFFSET);
    }
    Ok(offset as u64)
}

fn bit_of(bytes: &[u8], offset: u64) -> bool {
    bytes
        .get((offset >> 3) as usize)
        .is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

fn setbit(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2])?;
    let on = match int(&args[3]).map_err(|_| ERR_BIT_VALUE)? {
        0 => false,
        1 => true,
        _ => return Err(ERR_BIT_VALUE),
    };
    let byte = (offset >> 3) as usize;
    let now = ctx.now_ms;
    let existing = match ctx.db().peek(&args[1], now) {
        Some(v) => Some(v.string_len().ok_or(ERR_WRONGTYPE)?),
        None => None,
    };
    let grows = existing.is_none_or(|len| len <= byte);
    let buf = string_buffer(ctx, &args[1])?;
    if buf.len() <= byte {
        buf.resize(byte + 1, 0);
    }
    let mask = 0x80u8 >> (offset & 7);
    let was = buf[byte] & mask != 0;
    if was != on {
        buf[byte] ^= mask;
    }
    if grows || was != on {
        ctx.db().signal_modified(&args[1]);
        ctx.dirty(1);
    }
    Ok(Frame::Integer(was as i64))
}

fn getbit(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2])?;
    let value = read(ctx, &args[1])?.unwrap_or_default();
    Ok(Frame::Integer(bit_of(&value, offset) as i64))
}

/// A `start end [BYTE|BIT]` range over a string of `len` bytes, as bit
/// positions `[first, last]` (inclusive), after Redis's negative-index
/// and clamping rules; `None` when empty.
fn bit_range(len: u64, start: i64, end: i64, bits: bool) -> Option<(u64, u64)> {
    let total = if bits { len as i64 * 8 } else { len as i64 };
    let fix = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, mut end) = (fix(start), fix(end));
    if end >= total {
        end = total - 1;
    }
    if start > end || total == 0 {
        return None;
    }
    Some(if bits {
        (start as u64, end as u64)
    } else {
        (start as u64 * 8, end as u64 * 8 + 7)
    })
}

fn range_unit(arg: Option<&Bytes>) -> Result<bool, Frame> {
    match arg {
        None => Ok(false),
        Some(a) if is(a, "byte") => Ok(false),
        Some(a) if is(a, "bit") => Ok(true),
        Some(_) => Err(ERR_SYNTAX),
    }
}

/// Set bits in the bit positions `[first, last]` of `bytes`.
fn count_bits(bytes: &[u8], first: u64, last: u64) -> u64 {
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let head_mask = 0xffu8 >> (first & 7);
    let tail_mask = 0xffu8 << (7 - (last & 7));
    if fb == lb {
        return (bytes[fb] & head_mask & tail_mask).count_ones() as u64;
    }
    let middle: u64 = bytes[fb + 1..lb]
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum();
    (bytes[fb] & head_mask).count_ones() as u64
        + middle
        + (bytes[lb] & tail_mask).count_ones() as u64
}

fn bitcount(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let Some(value) = read(ctx, &args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let range = match args.len() {
        2 => bit_range(value.len() as u64, 0, -1, false),
        4 | 5 => {
            let (start, end) = (int(&args[2])?, int(&args[3])?);
            let bits = range_unit(args.get(4))?;
            if start < 0 && end < 0 && start > end {
                return Ok(Frame::Integer(0));
            }
            bit_range(value.len() as u64, start, end, bits)
        }
        _ => return Err(ERR_SYNTAX),
    };
    Ok(Frame::Integer(
        range.map_or(0, |(first, last)| count_bits(&value, first, last)) as i64,
    ))
}

/// The first bit equal to `bit` in the positions `[first, last]`.
fn find_bit(bytes: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let skip = if bit { 0x00 } else { 0xff };
    let mut at = first;
    while at <= last {
        // Whole bytes that cannot hold the bit are skipped at once.
        if at & 7 == 0 && at + 7 <= last && bytes[(at >> 3) as usize] == skip {
            at += 8;
            continue;
        }
        if bit_of(bytes, at) == bit {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn bitpos(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    let bit = match int(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(Frame::error("ERR The bit argument must be 1 or 0.")),
    };
    if args.len() > 6 {
        return Err(ERR_SYNTAX);
    }
    // A missing key is an infinite run of zeros.
    let Some(value) = read(ctx, &args[1])? else {
        return Ok(Frame::Integer(if bit { -1 } else { 0 }));
    };
    let len = value.len() as u64;
    let bits = range_unit(args.get(5))?;
    let start = args.get(3).map(|a| int(a)).transpose()?.unwrap_or(0);
    let end_given = args.len() >= 5;
    let end = if end_given { int(&args[4])? } else { -1 };
    let Some((first, last)) = bit_range(len, start, end, bits) else {
        return Ok(Frame::Integer(-1));
    };
    Ok(Frame::Integer(match find_bit(&value, bit, first, last) {
        Some(at) => at as i64,
        // Looking for a clear bit past an open-ended range: the string
        // continues with zeros after its last byte.
        None if !bit && !end_given => ((last >> 3) + 1) as i64 * 8,
        None => -1,
    }))
}

fn bitop(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = match text(&args[1]).to_ascii_lowercase().as_str() {
        "and" => Op::And,
        "or" => Op::Or,
        "xor" => Op::Xor,
        "not" => Op::Not,
        _ => return Err(ERR_SYNTAX),
    };
    if op == Op::Not && args.len() != 4 {
        return Err(Frame::error(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut sources = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        sources.push(read(ctx, key)?.unwrap_or_default());
    }
    let width = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let byte = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
    let result: Vec<u8> = (0..width)
        .map(|i| {
            let first = byte(&sources[0], i);
            let rest = sources[1..].iter().map(|s| byte(s, i));
            match op {
                Op::And => rest.fold(first, |a, b| a & b),
                Op::Or => rest.fold(first, |a, b| a | b),
                Op::Xor => rest.fold(first, |a, b| a ^ b),
                Op::Not => !first,
            }
        })
        .collect();
    let dest = &args[2];
    if result.is_empty() {
        if ctx.db().remove(dest).is_some() {
            ctx.dirty(1);
        }
    } else {
        ctx.db().set(dest, Value::Raw(Arc::new(result)), false);
        ctx.dirty(1);
    }
    Ok(Frame::Integer(width as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis() {
        // "foobar": 6 bytes.
        assert_eq!(bit_range(6, 0, -1, false), Some((0, 47)));
        assert_eq!(bit_range(6, 1, 1, false), Some((8, 15)));
        assert_eq!(bit_range(6, -2, -1, false), Some((32, 47)));
        assert_eq!(bit_range(6, 5, 30, true), Some((5, 30)));
        assert_eq!(bit_range(6, 3, 1, false), None);
        assert_eq!(bit_range(0, 0, -1, false), None);
        assert_eq!(bit_range(6, 0, 100, false), Some((0, 47)));
    }

    #[test]
    fn counting_and_finding_bits() {
        let foobar = b"foobar";
        assert_eq!(count_bits(foobar, 0, 47), 26);
        assert_eq!(count_bits(foobar, 8, 15), 6);
        assert_eq!(count_bits(foobar, 5, 30), 17);
        let v = [0xff, 0xf0, 0x00];
        assert_eq!(find_bit(&v, false, 0, 23), Some(12));
        assert_eq!(find_bit(&v, true, 12, 23), None);
        assert_eq!(find_bit(&[0x00, 0x01], true, 0, 15), Some(15));
    }
}
