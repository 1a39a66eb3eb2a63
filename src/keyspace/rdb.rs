//! Redis's RDB serialization of values, so data moves between Redis and
//! Quire with standard tools: `DUMP`/`RESTORE` payloads (a value, the RDB
//! version, a CRC64) and the RDB file a Redis replica loads at `SYNC`.
//!
//! Written values use the plain encodings every Redis since 2.x loads
//! (strings with Redis's integer and LZF encodings, lists, sets, hashes
//! as element sequences, sorted sets with binary scores), marked RDB
//! version 10 as Redis 7.0 writes. Read: those, and the compact encodings
//! Redis writes (intset, ziplist, listpack, quicklist 1 and 2, listpack
//! sets of 7.2). Every length is checked against the input, so a corrupt
//! payload is an error, never a panic or a huge allocation.

use super::stream::{Group, Pending, Stream, StreamId};
use super::{Blob, Db, HashValue, Libraries, ListValue, SetValue, Value, ZSet};
use std::sync::Arc;

/// The RDB version written (Redis 7.0's).
pub const RDB_VERSION: u16 = 10;
/// The newest version read (Redis 7.2's: its listpack sets).
const RDB_VERSION_READ: u16 = 11;

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_LIST_ZIPLIST: u8 = 10;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_ZSET_ZIPLIST: u8 = 12;
const TYPE_HASH_ZIPLIST: u8 = 13;
const TYPE_LIST_QUICKLIST: u8 = 14;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;
const TYPE_STREAM_LISTPACKS: u8 = 15;
const TYPE_STREAM_LISTPACKS_2: u8 = 19;
const TYPE_SET_LISTPACK: u8 = 20;
const TYPE_STREAM_LISTPACKS_3: u8 = 21;

/// Stream entry flags in a listpack.
const STREAM_DELETED: i64 = 1;
const STREAM_SAMEFIELDS: i64 = 2;

const OP_FUNCTION2: u8 = 245;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// No string in a payload is longer than Redis's largest bulk string.
const MAX_STRING: usize = 512 * 1024 * 1024;

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// Why a payload was refused, with Redis's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("ERR DUMP payload version or checksum are wrong")]
    Footer,
    #[error("ERR Bad data format")]
    Format,
}

type Result<T> = std::result::Result<T, RdbError>;

// ---- writing ----

fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// An integer in Redis's compact string form, when it fits 32 bits.
fn put_int_encoded(out: &mut Vec<u8>, n: i64) -> bool {
    if let Ok(v) = i8::try_from(n) {
        out.extend_from_slice(&[0xc0 | ENC_INT8, v as u8]);
    } else if let Ok(v) = i16::try_from(n) {
        out.push(0xc0 | ENC_INT16);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(n) {
        out.push(0xc0 | ENC_INT32);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// A string as Redis saves it: integer-encoded when it is a short
/// canonical integer, LZF-compressed past 20 bytes when that saves space,
/// raw otherwise.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(n) = super::canonical_i64(s) {
            if put_int_encoded(out, n) {
                return;
            }
        }
    }
    if s.len() > 20 {
        if let Ok(packed) = lzf::compress(s) {
            if packed.len() + 4 < s.len() {
                out.push(0xc0 | ENC_LZF);
                put_len(out, packed.len() as u64);
                put_len(out, s.len() as u64);
                out.extend_from_slice(&packed);
                return;
            }
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The value's type byte and body.
pub fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int(n) => {
            out.push(TYPE_STRING);
            if !put_int_encoded(out, *n) {
                put_string(out, itoa::Buffer::new().format(*n).as_bytes());
            }
        }
        Value::Str(_) | Value::Raw(_) => {
            out.push(TYPE_STRING);
            value.with_string(|s| put_string(out, s));
        }
        Value::List(list) => {
            out.push(TYPE_LIST);
            put_len(out, list.len() as u64);
            for e in list.iter() {
                put_string(out, e);
            }
        }
        Value::Set(set) => {
            out.push(TYPE_SET);
            put_len(out, set.len() as u64);
            for e in set.iter() {
                put_string(out, e);
            }
        }
        Value::Hash(hash) => {
            out.push(TYPE_HASH);
            put_len(out, hash.len() as u64);
            for (f, v) in hash.iter() {
                put_string(out, f);
                put_string(out, v);
            }
        }
        Value::Stream(stream) => put_stream(out, stream),
        Value::ZSet(zset) => {
            out.push(TYPE_ZSET_2);
            put_len(out, zset.len() as u64);
            for (member, score) in zset.dict().iter() {
                put_string(out, member);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
    }
}

/// A listpack under construction (Redis's `lpAppend`: strings that are
/// canonical integers are stored as integers).
struct ListpackWriter {
    body: Vec<u8>,
    count: usize,
}

impl ListpackWriter {
    fn new() -> Self {
        ListpackWriter {
            body: Vec::new(),
            count: 0,
        }
    }

    fn element(&mut self, encoded: &[u8]) {
        self.body.extend_from_slice(encoded);
        let l = encoded.len();
        // The back-length: the element's size, 7 bits a byte, readable
        // from its end.
        match l {
            0..=127 => self.body.push(l as u8),
            128..=16382 => self
                .body
                .extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]),
            16383..=2097150 => self.body.extend_from_slice(&[
                (l >> 14) as u8,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]),
            2097151..=268435454 => self.body.extend_from_slice(&[
                (l >> 21) as u8,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]),
            _ => self.body.extend_from_slice(&[
                (l >> 28) as u8,
                ((l >> 21) & 127) as u8 | 128,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]),
        }
        self.count += 1;
    }

    fn int(&mut self, v: i64) {
        let mut e = Vec::with_capacity(9);
        if (0..=127).contains(&v) {
            e.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u16) & 0x1fff;
            e.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
        } else if let Ok(x) = i16::try_from(v) {
            e.push(0xf1);
            e.extend_from_slice(&x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            e.push(0xf2);
            e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            e.push(0xf3);
            e.extend_from_slice(&x.to_le_bytes());
        } else {
            e.push(0xf4);
            e.extend_from_slice(&v.to_le_bytes());
        }
        self.element(&e);
    }

    fn bytes(&mut self, s: &[u8]) {
        if let Some(v) = super::canonical_i64(s) {
            return self.int(v);
        }
        let mut e = Vec::with_capacity(s.len() + 5);
        let n = s.len();
        if n < 64 {
            e.push(0x80 | n as u8);
        } else if n < 4096 {
            e.extend_from_slice(&[0xe0 | (n >> 8) as u8, n as u8]);
        } else {
            e.push(0xf0);
            e.extend_from_slice(&(n as u32).to_le_bytes());
        }
        e.extend_from_slice(s);
        self.element(&e);
    }

    fn finish(self) -> Vec<u8> {
        let total = 6 + self.body.len() + 1;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(self.count.min(65535) as u16).to_le_bytes());
        out.extend_from_slice(&self.body);
        out.push(0xff);
        out
    }
}

fn id_key(id: StreamId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.ms.to_be_bytes());
    k[8..].copy_from_slice(&id.seq.to_be_bytes());
    k
}

/// One node as Redis's stream listpack: the master entry (live and
/// deleted counts, the first entry's field names), then each entry as
/// flags, ID deltas, fields (or values only when the names match the
/// master's) and its element count.
fn stream_listpack(master: StreamId, entries: &[super::stream::Entry]) -> Vec<u8> {
    let mut lp = ListpackWriter::new();
    let live = entries.iter().filter(|e| !e.is_deleted()).count();
    let master_fields: Vec<&Blob> = entries
        .first()
        .map(|e| e.pairs().map(|(f, _)| f).collect())
        .unwrap_or_default();
    lp.int(live as i64);
    lp.int((entries.len() - live) as i64);
    lp.int(master_fields.len() as i64);
    for f in &master_fields {
        lp.bytes(f);
    }
    lp.int(0);
    for e in entries {
        let same = e.fields.len() / 2 == master_fields.len()
            && e.pairs().zip(&master_fields).all(|((f, _), m)| f == *m);
        let mut flags = if e.is_deleted() { STREAM_DELETED } else { 0 };
        if same {
            flags |= STREAM_SAMEFIELDS;
        }
        lp.int(flags);
        lp.int(e.id.ms.wrapping_sub(master.ms) as i64);
        lp.int(e.id.seq.wrapping_sub(master.seq) as i64);
        let n = e.fields.len() / 2;
        if same {
            for (_, v) in e.pairs() {
                lp.bytes(v);
            }
            lp.int(n as i64 + 3);
        } else {
            lp.int(n as i64);
            for (f, v) in e.pairs() {
                lp.bytes(f);
                lp.bytes(v);
            }
            lp.int(2 * n as i64 + 4);
        }
    }
    lp.finish()
}

fn put_stream_id(out: &mut Vec<u8>, id: StreamId) {
    put_len(out, id.ms);
    put_len(out, id.seq);
}

/// A stream as Redis 7.0 saves it (RDB_TYPE_STREAM_LISTPACKS_2).
fn put_stream(out: &mut Vec<u8>, s: &Stream) {
    out.push(TYPE_STREAM_LISTPACKS_2);
    put_len(out, s.node_count() as u64);
    for (master, entries) in s.nodes() {
        put_string_raw(out, &id_key(master));
        put_string_raw(out, &stream_listpack(master, entries));
    }
    put_len(out, s.len());
    put_stream_id(out, s.last_id);
    put_stream_id(out, s.first_id);
    put_stream_id(out, s.max_deleted_id);
    put_len(out, s.entries_added);
    put_len(out, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_string_raw(out, name);
        put_stream_id(out, g.last_id);
        put_len(out, g.entries_read as u64);
        put_len(out, g.pel.len() as u64);
        for (id, p) in &g.pel {
            out.extend_from_slice(&id_key(*id));
            out.extend_from_slice(&p.delivery_time.to_le_bytes());
            put_len(out, p.delivery_count);
        }
        put_len(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_string_raw(out, cname);
            out.extend_from_slice(&c.seen_time.to_le_bytes());
            put_len(out, c.pel.len() as u64);
            for id in &c.pel {
                out.extend_from_slice(&id_key(*id));
            }
        }
    }
}

/// A string saved as is (never integer-encoded or compressed): stream
/// node keys and listpacks, which Redis reads as plain buffers.
fn put_string_raw(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Each library as Redis 7.0 saves it: `FUNCTION2` and its source.
fn put_functions(out: &mut Vec<u8>, functions: &Libraries) {
    for (_, source) in functions.iter() {
        out.push(OP_FUNCTION2);
        put_string(out, source);
    }
}

/// A `DUMP` payload: the value, the RDB version, and a CRC64 of both.
pub fn dump(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_value(&mut out, value);
    with_footer(out)
}

/// A payload's body followed by the RDB version and a CRC64 of both.
fn with_footer(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A whole RDB file of `dbs` (keys already expired at `now_ms` left out),
/// with `aux` fields after the header, then the function libraries, ending
/// in EOF and the CRC64.
pub fn write_file(
    dbs: &[Db],
    functions: &Libraries,
    now_ms: i64,
    aux: &[(&str, String)],
) -> Vec<u8> {
    let mut out = format!("REDIS{RDB_VERSION:04}").into_bytes();
    for (key, value) in aux {
        out.push(OP_AUX);
        put_string(&mut out, key.as_bytes());
        put_string(&mut out, value.as_bytes());
    }
    put_functions(&mut out, functions);
    for (index, db) in dbs.iter().enumerate() {
        if db.is_empty() {
            continue;
        }
        out.push(OP_SELECTDB);
        put_len(&mut out, index as u64);
        out.push(OP_RESIZEDB);
        put_len(&mut out, db.len() as u64);
        put_len(&mut out, db.expires_len() as u64);
        for (key, value, expire) in db.iter() {
            if let Some(at) = expire {
                if at <= now_ms {
                    continue;
                }
                out.push(OP_EXPIRETIME_MS);
                out.extend_from_slice(&at.to_le_bytes());
            }
            let start = out.len();
            put_value(&mut out, value);
            // The type byte goes before the key.
            let mut key_bytes = Vec::with_capacity(key.len() + 5);
            put_string(&mut key_bytes, key);
            out.splice(start + 1..start + 1, key_bytes);
        }
    }
    out.push(OP_EOF);
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

// ---- reading ----

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A length, or the marker of a specially encoded string.
enum Len {
    Plain(u64),
    Encoded(u8),
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(RdbError::Format)?;
        let s = self.buf.get(self.pos..end).ok_or(RdbError::Format)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn raw_len(&mut self) -> Result<Len> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Len::Plain((first & 0x3f) as u64),
            1 => Len::Plain((((first & 0x3f) as u64) << 8) | self.byte()? as u64),
            3 => Len::Encoded(first & 0x3f),
            _ => match first {
                0x80 => Len::Plain(u32::from_be_bytes(self.array()?) as u64),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(RdbError::Format),
            },
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| RdbError::Format)
    }

    fn len(&mut self) -> Result<u64> {
        match self.raw_len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(_) => Err(RdbError::Format),
        }
    }

    /// A count of elements, bounded by what the rest of the input could
    /// hold (each element takes at least a byte).
    fn count(&mut self) -> Result<usize> {
        let n = self.len()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(RdbError::Format);
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.raw_len()? {
            Len::Plain(n) => {
                if n as usize > MAX_STRING {
                    return Err(RdbError::Format);
                }
                Ok(self.take(n as usize)?.to_vec())
            }
            Len::Encoded(ENC_INT8) => Ok(decimal(self.byte()? as i8 as i64)),
            Len::Encoded(ENC_INT16) => Ok(decimal(i16::from_le_bytes(self.array()?) as i64)),
            Len::Encoded(ENC_INT32) => Ok(decimal(i32::from_le_bytes(self.array()?) as i64)),
            Len::Encoded(ENC_LZF) => {
                let packed_len = self.len()? as usize;
                let len = self.len()? as usize;
                let packed = self.take(packed_len)?;
                // LZF expands at most ~100x: a larger claim is corrupt.
                if len > MAX_STRING || len > packed_len.saturating_mul(100) + 64 {
                    return Err(RdbError::Format);
                }
                let out = lzf::decompress(packed, len).map_err(|_| RdbError::Format)?;
                if out.len() != len {
                    return Err(RdbError::Format);
                }
                Ok(out)
            }
            Len::Encoded(_) => Err(RdbError::Format),
        }
    }

    /// The old text score of RDB_TYPE_ZSET.
    fn text_double(&mut self) -> Result<f64> {
        match self.byte()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => std::str::from_utf8(self.take(n as usize)?)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(RdbError::Format),
        }
    }
}

fn decimal(n: i64) -> Vec<u8> {
    itoa::Buffer::new().format(n).as_bytes().to_vec()
}

/// The entries of a ziplist (Redis < 7 compact lists, hashes, zsets).
fn ziplist(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let total = u32::from_le_bytes(r.array()?) as usize;
    let _tail = r.take(4)?;
    let _count = r.take(2)?;
    if total != bytes.len() {
        return Err(RdbError::Format);
    }
    let mut out = Vec::new();
    loop {
        if r.buf.get(r.pos) == Some(&0xff) {
            r.pos += 1;
            break;
        }
        if r.byte()? == 254 {
            r.take(4)?;
        }
        let enc = r.byte()?;
        let entry = match enc >> 6 {
            0 => r.take((enc & 0x3f) as usize)?.to_vec(),
            1 => {
                let n = (((enc & 0x3f) as usize) << 8) | r.byte()? as usize;
                r.take(n)?.to_vec()
            }
            2 => {
                let n = u32::from_be_bytes(r.array()?) as usize;
                r.take(n)?.to_vec()
            }
            _ => decimal(match enc {
                0xc0 => i16::from_le_bytes(r.array()?) as i64,
                0xd0 => i32::from_le_bytes(r.array()?) as i64,
                0xe0 => i64::from_le_bytes(r.array()?),
                0xf0 => {
                    let b: [u8; 3] = r.array()?;
                    (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as i64
                }
                0xfe => r.byte()? as i8 as i64,
                0xf1..=0xfd => (enc & 0x0f) as i64 - 1,
                _ => return Err(RdbError::Format),
            }),
        };
        out.push(entry);
    }
    if r.pos != bytes.len() {
        return Err(RdbError::Format);
    }
    Ok(out)
}

/// The entries of a listpack (Redis 7 compact encodings).
fn listpack(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let total = u32::from_le_bytes(r.array()?) as usize;
    let _count = r.take(2)?;
    if total != bytes.len() {
        return Err(RdbError::Format);
    }
    let mut out = Vec::new();
    loop {
        let start = r.pos;
        let enc = r.byte()?;
        if enc == 0xff {
            break;
        }
        let entry = if enc & 0x80 == 0 {
            decimal((enc & 0x7f) as i64)
        } else if enc & 0xc0 == 0x80 {
            r.take((enc & 0x3f) as usize)?.to_vec()
        } else if enc & 0xe0 == 0xc0 {
            let v = (((enc & 0x1f) as u16) << 8) | r.byte()? as u16;
            decimal(((v << 3) as i16 >> 3) as i64)
        } else if enc & 0xf0 == 0xe0 {
            let n = (((enc & 0x0f) as usize) << 8) | r.byte()? as usize;
            r.take(n)?.to_vec()
        } else {
            match enc {
                0xf0 => {
                    let n = u32::from_le_bytes(r.array()?) as usize;
                    r.take(n)?.to_vec()
                }
                0xf1 => decimal(i16::from_le_bytes(r.array()?) as i64),
                0xf2 => {
                    let b: [u8; 3] = r.array()?;
                    decimal((i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as i64)
                }
                0xf3 => decimal(i32::from_le_bytes(r.array()?) as i64),
                0xf4 => decimal(i64::from_le_bytes(r.array()?)),
                _ => return Err(RdbError::Format),
            }
        };
        // The back-length: the entry's size in 1-5 bytes of 7 bits.
        let size = r.pos - start;
        let backlen = match size {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        r.take(backlen)?;
        out.push(entry);
    }
    if r.pos != bytes.len() {
        return Err(RdbError::Format);
    }
    Ok(out)
}

fn lp_int(item: &[u8]) -> Result<i64> {
    std::str::from_utf8(item)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(RdbError::Format)
}

/// The entries of one stream listpack (see `stream_listpack`), checked
/// element by element as Redis's deep integrity check does.
fn stream_node(master: StreamId, items: &[Vec<u8>]) -> Result<Vec<(StreamId, Vec<Blob>, bool)>> {
    let mut it = items.iter();
    let next_int = |it: &mut std::slice::Iter<Vec<u8>>| -> Result<i64> {
        lp_int(it.next().ok_or(RdbError::Format)?)
    };
    let live = next_int(&mut it)?;
    let deleted = next_int(&mut it)?;
    let nmaster = next_int(&mut it)?;
    if live < 0 || deleted < 0 || nmaster < 0 || nmaster as usize > items.len() {
        return Err(RdbError::Format);
    }
    let master_fields: Vec<Blob> = (0..nmaster)
        .map(|_| it.next().map(|f| Blob::new(f)).ok_or(RdbError::Format))
        .collect::<Result<_>>()?;
    if next_int(&mut it)? != 0 {
        return Err(RdbError::Format);
    }
    let total = (live + deleted) as usize;
    if total > items.len() {
        return Err(RdbError::Format);
    }
    let mut out = Vec::with_capacity(total);
    let mut seen_live = 0;
    for _ in 0..total {
        let flags = next_int(&mut it)?;
        let ms = master.ms.wrapping_add(next_int(&mut it)? as u64);
        let seq = master.seq.wrapping_add(next_int(&mut it)? as u64);
        let mut fields = Vec::new();
        let count_expected = if flags & STREAM_SAMEFIELDS != 0 {
            for f in &master_fields {
                let v = it.next().ok_or(RdbError::Format)?;
                fields.push(f.clone());
                fields.push(Blob::new(v));
            }
            nmaster + 3
        } else {
            let n = next_int(&mut it)?;
            if n < 0 || n as usize > items.len() {
                return Err(RdbError::Format);
            }
            for _ in 0..n * 2 {
                fields.push(Blob::new(it.next().ok_or(RdbError::Format)?));
            }
            2 * n + 4
        };
        if next_int(&mut it)? != count_expected {
            return Err(RdbError::Format);
        }
        let is_deleted = flags & STREAM_DELETED != 0;
        seen_live += !is_deleted as i64;
        out.push((StreamId::new(ms, seq), fields, is_deleted));
    }
    if it.next().is_some() || seen_live != live {
        return Err(RdbError::Format);
    }
    Ok(out)
}

fn read_stream_id(r: &mut Reader) -> Result<StreamId> {
    Ok(StreamId::new(r.len()?, r.len()?))
}

fn raw_stream_id(r: &mut Reader) -> Result<StreamId> {
    let k: [u8; 16] = r.array()?;
    Ok(StreamId::new(
        u64::from_be_bytes(k[..8].try_into().map_err(|_| RdbError::Format)?),
        u64::from_be_bytes(k[8..].try_into().map_err(|_| RdbError::Format)?),
    ))
}

/// A stream in any of Redis's three stream encodings (6.x, 7.0, 7.2).
fn read_stream(r: &mut Reader, kind: u8) -> Result<Value> {
    let mut s = Stream::new();
    for _ in 0..r.count()? {
        let key = r.string()?;
        let master = {
            let mut kr = Reader { buf: &key, pos: 0 };
            let id = raw_stream_id(&mut kr)?;
            if kr.pos != key.len() {
                return Err(RdbError::Format);
            }
            id
        };
        let lp = r.string()?;
        let entries = stream_node(master, &listpack(&lp)?)?;
        if entries.first().is_some_and(|e| e.0 != master) {
            return Err(RdbError::Format);
        }
        s.push_node(entries).map_err(|_| RdbError::Format)?;
    }
    let length = r.len()?;
    if length != s.len() {
        return Err(RdbError::Format);
    }
    s.last_id = read_stream_id(r)?;
    if kind == TYPE_STREAM_LISTPACKS {
        s.refresh_first_id();
        s.entries_added = length;
    } else {
        s.first_id = read_stream_id(r)?;
        s.max_deleted_id = read_stream_id(r)?;
        s.entries_added = r.len()?;
    }
    if s.last_valid_id() > s.last_id {
        return Err(RdbError::Format);
    }
    for _ in 0..r.count()? {
        let name = r.string()?;
        let last_id = read_stream_id(r)?;
        let entries_read = if kind == TYPE_STREAM_LISTPACKS {
            s.estimate_distance(last_id)
        } else {
            r.len()? as i64
        };
        let mut group = Group {
            last_id,
            entries_read,
            ..Default::default()
        };
        for _ in 0..r.count()? {
            let id = raw_stream_id(r)?;
            let delivery_time = i64::from_le_bytes(r.array()?);
            let delivery_count = r.len()?;
            let pending = Pending {
                consumer: Blob::new(b""),
                delivery_time,
                delivery_count,
            };
            if group.pel.insert(id, pending).is_some() {
                return Err(RdbError::Format);
            }
        }
        let mut owned = 0;
        for _ in 0..r.count()? {
            let cname = r.string()?;
            let seen_time = i64::from_le_bytes(r.array()?);
            if kind == TYPE_STREAM_LISTPACKS_3 {
                let _active_time: [u8; 8] = r.array()?;
            }
            let (consumer, created) = group.consumer_mut(&cname, seen_time);
            if !created {
                return Err(RdbError::Format);
            }
            let mut ids = Vec::new();
            for _ in 0..r.count()? {
                ids.push(raw_stream_id(r)?);
            }
            consumer.pel.extend(ids.iter().copied());
            for id in ids {
                let p = group.pel.get_mut(&id).ok_or(RdbError::Format)?;
                p.consumer = Blob::new(&cname);
                owned += 1;
            }
        }
        if owned != group.pel.len() {
            return Err(RdbError::Format);
        }
        if s.groups.insert(Blob::new(&name), group).is_some() {
            return Err(RdbError::Format);
        }
    }
    Ok(Value::Stream(Arc::new(s)))
}

fn intset(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let width = u32::from_le_bytes(r.array()?) as usize;
    let count = u32::from_le_bytes(r.array()?) as usize;
    if !matches!(width, 2 | 4 | 8) || count.checked_mul(width) != Some(bytes.len() - 8) {
        return Err(RdbError::Format);
    }
    (0..count)
        .map(|_| {
            Ok(decimal(match width {
                2 => i16::from_le_bytes(r.array()?) as i64,
                4 => i32::from_le_bytes(r.array()?) as i64,
                _ => i64::from_le_bytes(r.array()?),
            }))
        })
        .collect()
}

fn pairs(entries: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if !entries.len().is_multiple_of(2) {
        return Err(RdbError::Format);
    }
    let mut it = entries.into_iter();
    let mut out = Vec::new();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn list_of(items: impl IntoIterator<Item = Vec<u8>>) -> Result<Value> {
    let list: ListValue = items.into_iter().map(|e| Blob::new(&e)).collect();
    if list.is_empty() {
        return Err(RdbError::Format);
    }
    Ok(Value::List(Arc::new(list)))
}

fn set_of(items: impl IntoIterator<Item = Vec<u8>>) -> Result<Value> {
    let mut set = SetValue::default();
    for e in items {
        // A duplicate member is a corrupt payload (Redis's sanitizer).
        if !set.insert(Blob::new(&e)) {
            return Err(RdbError::Format);
        }
    }
    if set.is_empty() {
        return Err(RdbError::Format);
    }
    Ok(Value::Set(Arc::new(set)))
}

fn hash_of(items: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<Value> {
    let mut hash = HashValue::default();
    for (f, v) in items {
        if hash.insert(Blob::new(&f), Blob::new(&v)).is_some() {
            return Err(RdbError::Format);
        }
    }
    if hash.is_empty() {
        return Err(RdbError::Format);
    }
    Ok(Value::Hash(Arc::new(hash)))
}

fn zset_of(items: impl IntoIterator<Item = (Vec<u8>, f64)>) -> Result<Value> {
    let mut zset = ZSet::new();
    for (m, score) in items {
        if score.is_nan() || zset.insert(&m, score).is_some() {
            return Err(RdbError::Format);
        }
    }
    if zset.is_empty() {
        return Err(RdbError::Format);
    }
    Ok(Value::ZSet(Arc::new(zset)))
}

fn parse_score(s: &[u8]) -> Result<f64> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RdbError::Format)
}

fn read_value(r: &mut Reader, kind: u8) -> Result<Value> {
    match kind {
        TYPE_STRING => Ok(Value::string(&r.string()?)),
        TYPE_LIST => {
            let n = r.count()?;
            let items = (0..n).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
            list_of(items)
        }
        TYPE_SET => {
            let n = r.count()?;
            let items = (0..n).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
            set_of(items)
        }
        TYPE_HASH => {
            let n = r.count()?;
            let items = (0..n)
                .map(|_| Ok((r.string()?, r.string()?)))
                .collect::<Result<Vec<_>>>()?;
            hash_of(items)
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = r.count()?;
            let items = (0..n)
                .map(|_| {
                    let m = r.string()?;
                    let score = if kind == TYPE_ZSET_2 {
                        f64::from_le_bytes(r.array()?)
                    } else {
                        r.text_double()?
                    };
                    Ok((m, score))
                })
                .collect::<Result<Vec<_>>>()?;
            zset_of(items)
        }
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
            read_stream(r, kind)
        }
        TYPE_SET_INTSET => set_of(intset(&r.string()?)?),
        TYPE_SET_LISTPACK => set_of(listpack(&r.string()?)?),
        TYPE_LIST_ZIPLIST => list_of(ziplist(&r.string()?)?),
        TYPE_HASH_ZIPLIST => hash_of(pairs(ziplist(&r.string()?)?)?),
        TYPE_HASH_LISTPACK => hash_of(pairs(listpack(&r.string()?)?)?),
        TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => {
            let bytes = r.string()?;
            let entries = if kind == TYPE_ZSET_ZIPLIST {
                ziplist(&bytes)?
            } else {
                listpack(&bytes)?
            };
            let items = pairs(entries)?
                .into_iter()
                .map(|(m, s)| Ok((m, parse_score(&s)?)))
                .collect::<Result<Vec<_>>>()?;
            zset_of(items)
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.count()?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let container = if kind == TYPE_LIST_QUICKLIST_2 {
                    r.len()?
                } else {
                    2
                };
                let bytes = r.string()?;
                match container {
                    // A plain node: one large element.
                    1 => items.push(bytes),
                    2 if kind == TYPE_LIST_QUICKLIST => items.extend(ziplist(&bytes)?),
                    2 => items.extend(listpack(&bytes)?),
                    _ => return Err(RdbError::Format),
                }
            }
            list_of(items)
        }
        _ => Err(RdbError::Format),
    }
}

/// The RDB version and CRC64 footer of a `DUMP` payload are right.
pub fn verify(payload: &[u8]) -> Result<()> {
    if payload.len() < 10 {
        return Err(RdbError::Footer);
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version > RDB_VERSION_READ {
        return Err(RdbError::Footer);
    }
    let crc = u64::from_le_bytes(crc.try_into().map_err(|_| RdbError::Footer)?);
    // Redis accepts a zero checksum (written with rdbchecksum no).
    if crc != 0 && CRC64.checksum(body) != crc {
        return Err(RdbError::Footer);
    }
    Ok(())
}

/// A `FUNCTION DUMP` payload: each library's `FUNCTION2` record, the RDB
/// version, and a CRC64 of both (the same footer as a key's `DUMP`).
pub fn dump_functions(functions: &Libraries) -> Vec<u8> {
    let mut out = Vec::new();
    put_functions(&mut out, functions);
    with_footer(out)
}

/// Why a `FUNCTION RESTORE` payload was refused, with Redis's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionPayloadError {
    #[error("DUMP payload version or checksum are wrong")]
    Footer,
    #[error("can not read data type")]
    Type,
    #[error("given type is not a function")]
    NotFunction,
    #[error("failed loading the given functions payload")]
    Body,
}

/// The library sources of a `FUNCTION DUMP` payload, in payload order
/// (compiling them is the engine's work).
pub fn restore_functions(
    payload: &[u8],
) -> std::result::Result<Vec<Vec<u8>>, FunctionPayloadError> {
    verify(payload).map_err(|_| FunctionPayloadError::Footer)?;
    let body = &payload[..payload.len() - 10];
    let mut r = Reader { buf: body, pos: 0 };
    let mut sources = Vec::new();
    while r.pos < body.len() {
        let kind = r.byte().map_err(|_| FunctionPayloadError::Type)?;
        if kind != OP_FUNCTION2 {
            return Err(FunctionPayloadError::NotFunction);
        }
        sources.push(r.string().map_err(|_| FunctionPayloadError::Body)?);
    }
    Ok(sources)
}

/// The value of a `DUMP` payload (`RESTORE`), footer verified first.
pub fn restore(payload: &[u8]) -> Result<Value> {
    verify(payload)?;
    let body = &payload[..payload.len() - 10];
    let mut r = Reader { buf: body, pos: 0 };
    let kind = r.byte().map_err(|_| RdbError::Format)?;
    let value = read_value(&mut r, kind)?;
    if r.pos != body.len() {
        return Err(RdbError::Format);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) -> Value {
        restore(&dump(v)).unwrap()
    }

    #[test]
    fn function_payloads_round_trip_and_refuse_bad_input() {
        let mut libs = Libraries::default();
        libs.insert(
            "a".into(),
            bytes::Bytes::from_static(
                b"#!lua name=a\nredis.register_function('f', function() return 1 end)",
            ),
        );
        libs.insert("b".into(), bytes::Bytes::from_static(b"#!lua name=b\n"));
        let payload = dump_functions(&libs);
        let sources = restore_functions(&payload).unwrap();
        let expected: Vec<Vec<u8>> = libs.iter().map(|(_, s)| s.to_vec()).collect();
        assert_eq!(sources, expected);
        assert_eq!(
            restore_functions(&dump_functions(&Libraries::default())).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            restore_functions(b"bad_payload"),
            Err(FunctionPayloadError::Footer)
        );
        // A key's DUMP is not a function payload.
        let key = dump(&Value::string(b"x"));
        assert_eq!(
            restore_functions(&key),
            Err(FunctionPayloadError::NotFunction)
        );
        // A truncated library (footer recomputed so only the body is wrong).
        let mut body = payload[..payload.len() - 10].to_vec();
        body.truncate(body.len() - 3);
        assert_eq!(
            restore_functions(&with_footer(body)),
            Err(FunctionPayloadError::Body)
        );
    }

    #[test]
    fn dump_of_a_string_is_redis_bytes() {
        // redis-server 7.0: DUMP of SET foo bar.
        let redis = b"\x00\x03bar\x0a\x00\xe6\xbe\x49\x60\xee\x66\xfd\x17";
        assert_eq!(dump(&Value::string(b"bar")), redis);
        assert_eq!(restore(redis).unwrap().string_bytes().unwrap(), "bar");
    }

    #[test]
    fn redis_quicklist_dump_restores() {
        // redis-server 7.0: DUMP of RPUSH l a 1 ccc (quicklist 2, listpack).
        let redis = b"\x12\x01\x02\x11\x11\x00\x00\x00\x03\x00\x81a\x02\x01\x01\x83ccc\x04\xff\x0a\x00\x31\xa4\x42\xaa\x41\xda\x43\x67";
        let Value::List(l) = restore(redis).unwrap() else {
            panic!("not a list")
        };
        let items: Vec<&[u8]> = l.iter().map(|b| b.as_bytes()).collect();
        assert_eq!(items, [&b"a"[..], b"1", b"ccc"]);
    }

    #[test]
    fn values_round_trip() {
        for s in [
            &b"12"[..],
            b"-70000",
            b"9223372036854775807",
            b"",
            &[b'x'; 300],
        ] {
            let v = round_trip(&Value::string(s));
            assert_eq!(v.string_bytes().unwrap(), s);
        }
        let list: ListValue = ["a", "1", "ccc"].iter().map(|s| Blob::from(*s)).collect();
        let Value::List(l) = round_trip(&Value::List(Arc::new(list.clone()))) else {
            panic!()
        };
        assert_eq!(*l, list);
        let mut z = ZSet::new();
        z.insert(b"m", 1.5);
        z.insert(b"n", f64::INFINITY);
        let Value::ZSet(back) = round_trip(&Value::ZSet(Arc::new(z))) else {
            panic!()
        };
        assert_eq!(back.score(b"n"), Some(f64::INFINITY));
        assert_eq!(back.score(b"m"), Some(1.5));
    }

    #[test]
    fn compact_encodings_decode() {
        // A listpack of "a", 5, -3000, written as Redis 7 does.
        let mut lp = vec![0, 0, 0, 0, 3, 0];
        lp.extend_from_slice(&[0x81, b'a', 2]);
        lp.extend_from_slice(&[0x05, 1]);
        let v = (-3000i16 as u16) & 0x1fff;
        lp.extend_from_slice(&[0xc0 | (v >> 8) as u8, v as u8, 2]);
        lp.push(0xff);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        assert_eq!(
            listpack(&lp).unwrap(),
            vec![b"a".to_vec(), b"5".to_vec(), b"-3000".to_vec()]
        );
        let mut is = vec![2, 0, 0, 0, 2, 0, 0, 0];
        is.extend_from_slice(&7i16.to_le_bytes());
        is.extend_from_slice(&(-9i16).to_le_bytes());
        assert_eq!(intset(&is).unwrap(), vec![b"7".to_vec(), b"-9".to_vec()]);
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let good = dump(&Value::string(b"hello world"));
        let mut bad_crc = good.clone();
        bad_crc[2] ^= 1;
        assert_eq!(restore(&bad_crc).unwrap_err(), RdbError::Footer);
        assert_eq!(restore(b"...").unwrap_err(), RdbError::Footer);
        // A list claiming 2^40 elements, with a zero checksum.
        let mut huge = vec![TYPE_LIST, 0x81];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&RDB_VERSION.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(restore(&huge).unwrap_err(), RdbError::Format);
        for cut in 0..good.len() - 10 {
            let mut p = good[..cut].to_vec();
            p.extend_from_slice(&RDB_VERSION.to_le_bytes());
            p.extend_from_slice(&[0; 8]);
            assert!(restore(&p).is_err());
        }
    }

    #[test]
    fn rdb_files_carry_function_libraries_as_redis_7_saves_them() {
        let mut functions = Libraries::default();
        let source = b"#!lua name=lib1\nredis.register_function('f1', function() return 1 end)";
        functions.insert("lib1".into(), bytes::Bytes::from_static(source));
        let file = write_file(&[], &functions, 0, &[("redis-ver", "7.0.15".into())]);
        // After the header and aux field: FUNCTION2, then the source as
        // an RDB string; then EOF and the checksum.
        let mut expected = vec![OP_FUNCTION2];
        put_string(&mut expected, source);
        expected.push(OP_EOF);
        let body = &file[..file.len() - 8];
        assert!(body.ends_with(&expected), "{body:?}");
        assert_eq!(CRC64.checksum(body).to_le_bytes(), file[file.len() - 8..]);
    }
}
