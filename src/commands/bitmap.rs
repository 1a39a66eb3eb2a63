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
    spec!(
        "bitfield",
        -2,
        WRITE | DENYOOM,
        (1, 1, 1),
        "Performs arbitrary bitfield integer operations on strings.",
        "key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL] SET encoding offset value | INCRBY encoding offset increment ...]",
        bitfield
    ),
    spec!("bitfield_ro", -2, READONLY | FAST, (1, 1, 1), "Performs arbitrary read-only bitfield integer operations on strings.", "key [GET encoding offset ...]", bitfield_ro),
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

/// The string at `key` as a buffer holding at least byte `byte`, created
/// or zero-padded as needed (Redis's `lookupStringForBitCommand`), and
/// whether it had to be.
fn string_reaching<'a>(
    ctx: &'a mut ExecCtx,
    key: &[u8],
    byte: usize,
) -> Result<(&'a mut Vec<u8>, bool), Frame> {
    let now = ctx.now_ms;
    let existing = match ctx.db().peek(key, now) {
        Some(v) => Some(v.string_len().ok_or(ERR_WRONGTYPE)?),
        None => None,
    };
    let grows = existing.is_none_or(|len| len <= byte);
    let buf = string_buffer(ctx, key)?;
    if buf.len() <= byte {
        buf.resize(byte + 1, 0);
    }
    Ok((buf, grows))
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
    let (buf, grows) = string_reaching(ctx, &args[1], byte)?;
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
    // Eight bytes at a time: one popcount per word.
    let middle = &bytes[fb + 1..lb];
    let mut words = middle.chunks_exact(8);
    let mut count: u64 = (&mut words)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])).count_ones() as u64)
        .sum();
    count += words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum::<u64>();
    let middle = count;
    (bytes[fb] & head_mask).count_ones() as u64
        + middle
        + (bytes[lb] & tail_mask).count_ones() as u64
}

fn bitcount(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    // Redis's order: the key (missing: 0, wrong type), then the range.
    let now = ctx.now_ms;
    match ctx.db().peek(&args[1], now) {
        None => return Ok(Frame::Integer(0)),
        Some(v) if v.string_len().is_none() => return Err(ERR_WRONGTYPE),
        Some(_) => {}
    }
    let range_args = match args.len() {
        2 => None,
        4 | 5 => Some((int(&args[2])?, int(&args[3])?, range_unit(args.get(4))?)),
        _ => return Err(ERR_SYNTAX),
    };
    let Some(value) = ctx.db().get(&args[1], now) else {
        return Ok(Frame::Integer(0));
    };
    // Counted in place: a large bitmap is not copied per call.
    let count = value
        .with_string(|bytes| {
            let range = match range_args {
                None => bit_range(bytes.len() as u64, 0, -1, false),
                Some((start, end, _)) if start < 0 && end < 0 && start > end => None,
                Some((start, end, bits)) => bit_range(bytes.len() as u64, start, end, bits),
            };
            range.map_or(0, |(first, last)| count_bits(bytes, first, last))
        })
        .ok_or(ERR_WRONGTYPE)?;
    Ok(Frame::Integer(count as i64))
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

/// What BITFIELD does when a SET or INCRBY does not fit its type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldOp {
    Get,
    Set(i64),
    Incrby(i64),
}

/// One parsed BITFIELD operation: `signed` integer of `bits` at `offset`.
#[derive(Debug, Clone, Copy)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

fn field_type(arg: &[u8]) -> Result<(bool, u32), Frame> {
    let err = Frame::error(
        "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
    );
    let (signed, digits) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(err),
    };
    let bits = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|b| *b >= 1 && *b <= if signed { 64 } else { 63 })
        .ok_or(err)?;
    Ok((signed, bits as u32))
}

/// A bitfield offset: a bit offset, or `#N` for the N-th field of its width.
fn field_offset(ctx: &ExecCtx, arg: &[u8], bits: u32) -> Result<u64, Frame> {
    let (hash, digits) = match arg.split_first() {
        Some((b'#', rest)) => (true, rest),
        _ => (false, arg),
    };
    let n = int(digits).map_err(|_| ERR_BIT_OFFSET)?;
    let offset = if hash {
        n.checked_mul(bits as i64).ok_or(ERR_BIT_OFFSET)?
    } else {
        n
    };
    if offset < 0 || (offset as u64 >> 3) >= max_len(ctx) {
        return Err(ERR_BIT_OFFSET);
    }
    Ok(offset as u64)
}

fn parse_fields(ctx: &ExecCtx, args: &[Bytes]) -> Result<Vec<Field>, Frame> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let rest = args.len() - j - 1;
        let sub = &args[j];
        let op = if is(sub, "get") && rest >= 2 {
            FieldOp::Get
        } else if is(sub, "set") && rest >= 3 {
            FieldOp::Set(0)
        } else if is(sub, "incrby") && rest >= 3 {
            FieldOp::Incrby(0)
        } else if is(sub, "overflow") && rest >= 1 {
            overflow = match text(&args[j + 1]).to_ascii_lowercase().as_str() {
                "wrap" => Overflow::Wrap,
                "sat" => Overflow::Sat,
                "fail" => Overflow::Fail,
                _ => return Err(Frame::error("ERR Invalid OVERFLOW type specified")),
            };
            j += 2;
            continue;
        } else {
            return Err(ERR_SYNTAX);
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = field_offset(ctx, &args[j + 2], bits)?;
        let op = match op {
            FieldOp::Get => FieldOp::Get,
            FieldOp::Set(_) => FieldOp::Set(int(&args[j + 3])?),
            FieldOp::Incrby(_) => FieldOp::Incrby(int(&args[j + 3])?),
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(fields)
}

/// The unsigned value of `bits` bits at bit `offset` (zeros past the end).
fn get_field(bytes: &[u8], offset: u64, bits: u32) -> u64 {
    (0..bits as u64).fold(0u64, |v, i| (v << 1) | bit_of(bytes, offset + i) as u64)
}

fn set_field(bytes: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..bits as u64 {
        let on = value & (1u64 << (bits as u64 - 1 - i)) != 0;
        let at = offset + i;
        let mask = 0x80u8 >> (at & 7);
        let byte = &mut bytes[(at >> 3) as usize];
        *byte = if on { *byte | mask } else { *byte & !mask };
    }
}

/// As a signed integer of `bits` bits (two's complement).
fn signed_value(raw: u64, bits: u32) -> i64 {
    if bits < 64 && raw & (1u64 << (bits - 1)) != 0 {
        (raw | (u64::MAX << bits)) as i64
    } else {
        raw as i64
    }
}

/// `value + incr` stored in a field: `Ok(stored)` when it fits or the
/// overflow rule gives a value, `Err(())` when the rule is FAIL. Works in
/// i128, so it is exact where Redis's checks are.
fn fit(value: i128, incr: i128, signed: bool, bits: u32, overflow: Overflow) -> Result<u64, ()> {
    let sum = value + incr;
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    let low = |v: i128| (v.rem_euclid(1i128 << 64) as u64) & (u64::MAX >> (64 - bits));
    if (min..=max).contains(&sum) {
        return Ok(low(sum));
    }
    match overflow {
        Overflow::Fail => Err(()),
        Overflow::Sat => Ok(low(if sum > max { max } else { min })),
        Overflow::Wrap => Ok(low(sum)),
    }
}

fn bitfield(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

fn bitfield_ro(ctx: &mut ExecCtx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

fn bitfield_generic(ctx: &mut ExecCtx, args: &[Bytes], read_only: bool) -> CmdResult {
    let fields = parse_fields(ctx, args)?;
    let writes = fields.iter().any(|f| f.op != FieldOp::Get);
    if !writes {
        let value = read(ctx, &args[1])?.unwrap_or_default();
        let replies = fields
            .iter()
            .map(|f| {
                let raw = get_field(&value, f.offset, f.bits);
                Frame::Integer(if f.signed {
                    signed_value(raw, f.bits)
                } else {
                    raw as i64
                })
            })
            .collect();
        return Ok(Frame::Array(replies));
    }
    if read_only {
        return Err(Frame::error(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    let highest = fields
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + f.bits as u64 - 1)
        .max()
        .unwrap_or(0);
    // Created or padded: a change even if every write then fails, so the
    // stream carries it (Redis counts only the writes).
    let (buf, grew) = string_reaching(ctx, &args[1], (highest >> 3) as usize)?;
    let mut changes = 0u64;
    let mut replies = Vec::with_capacity(fields.len());
    for f in &fields {
        let raw = get_field(buf, f.offset, f.bits);
        let old = if f.signed {
            signed_value(raw, f.bits) as i128
        } else {
            raw as i128
        };
        let (value, incr, returns_new) = match f.op {
            FieldOp::Get => {
                replies.push(Frame::Integer(old as i64));
                continue;
            }
            // A SET's value is taken as the field's type would store it:
            // unsigned fields see a negative value as its 64-bit pattern.
            FieldOp::Set(v) if !f.signed => (v as u64 as i128, 0, false),
            FieldOp::Set(v) => (v as i128, 0, false),
            FieldOp::Incrby(by) => (old, by as i128, true),
        };
        match fit(value, incr, f.signed, f.bits, f.overflow) {
            Err(()) => replies.push(Frame::Null),
            Ok(stored) => {
                let new = if f.signed {
                    signed_value(stored, f.bits) as i128
                } else {
                    stored as i128
                };
                replies.push(Frame::Integer(if returns_new { new } else { old } as i64));
                set_field(buf, f.offset, f.bits, stored);
                if grew || new != old {
                    changes += 1;
                }
            }
        }
    }
    if changes > 0 || grew {
        ctx.db().signal_modified(&args[1]);
        ctx.dirty(changes.max(1));
    }
    Ok(Frame::Array(replies))
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

    #[test]
    fn bitfield_overflow_rules() {
        // i8: 127 + 1.
        assert_eq!(fit(127, 1, true, 8, Overflow::Wrap), Ok(0x80));
        assert_eq!(fit(127, 1, true, 8, Overflow::Sat), Ok(0x7f));
        assert_eq!(fit(127, 1, true, 8, Overflow::Fail), Err(()));
        assert_eq!(fit(-128, -1, true, 8, Overflow::Sat), Ok(0x80));
        // u8: 0 - 1, and a SET of -1 (its 64-bit pattern).
        assert_eq!(fit(0, -1, false, 8, Overflow::Wrap), Ok(0xff));
        assert_eq!(fit(0, -1, false, 8, Overflow::Sat), Ok(0));
        assert_eq!(fit(u64::MAX as i128, 0, false, 8, Overflow::Sat), Ok(0xff));
        assert_eq!(
            fit(i64::MAX as i128, 1, true, 64, Overflow::Wrap),
            Ok(1u64 << 63)
        );
        assert_eq!(signed_value(0x80, 8), -128);
        let mut b = vec![0u8; 2];
        set_field(&mut b, 4, 8, 0xab);
        assert_eq!(b, vec![0x0a, 0xb0]);
        assert_eq!(get_field(&b, 4, 8), 0xab);
    }
}
