//! The value stored under a key.
//!
//! Collections sit behind `Arc` so that cloning a database for a
//! point-in-time snapshot shares them; a write after that goes through
//! `Arc::make_mut`, which copies a collection only while a snapshot still
//! holds it (copy-on-write, the role `fork()` plays for Redis).

use super::blob::Blob;
use super::stream::Stream;
use super::zset::ZSet;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

pub type HashBuilder = foldhash::fast::RandomState;
pub type Map<K, V> = indexmap::IndexMap<K, V, HashBuilder>;
pub type Set<K> = indexmap::IndexSet<K, HashBuilder>;

pub type HashValue = Map<Blob, Blob>;
pub type ListValue = VecDeque<Blob>;
pub type SetValue = Set<Blob>;

#[derive(Clone, Debug)]
pub enum Value {
    /// A string (Redis `embstr`/`raw`).
    Str(Blob),
    /// A string that is the canonical decimal form of an i64 (`int`).
    Int(i64),
    /// A string grown in place by APPEND/SETRANGE (amortised growth).
    Raw(Arc<Vec<u8>>),
    Hash(Arc<HashValue>),
    List(Arc<ListValue>),
    Set(Arc<SetValue>),
    ZSet(Arc<ZSet>),
    Stream(Arc<Stream>),
}

/// The kinds `TYPE` reports and `SCAN ... TYPE` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Hash => "hash",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::ZSet => "zset",
            ValueKind::Stream => "stream",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<ValueKind> {
        Some(match name.to_ascii_lowercase().as_slice() {
            b"string" => ValueKind::String,
            b"hash" => ValueKind::Hash,
            b"list" => ValueKind::List,
            b"set" => ValueKind::Set,
            b"zset" => ValueKind::ZSet,
            b"stream" => ValueKind::Stream,
            _ => return None,
        })
    }
}

impl Value {
    /// A string value, stored as `Int` when `bytes` is an integer's canonical
    /// text (so `GET` returns exactly what was `SET`).
    pub fn string(bytes: &[u8]) -> Value {
        match canonical_i64(bytes) {
            Some(n) => Value::Int(n),
            None => Value::Str(Blob::new(bytes)),
        }
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Str(_) | Value::Int(_) | Value::Raw(_) => ValueKind::String,
            Value::Hash(_) => ValueKind::Hash,
            Value::List(_) => ValueKind::List,
            Value::Set(_) => ValueKind::Set,
            Value::ZSet(_) => ValueKind::ZSet,
            Value::Stream(_) => ValueKind::Stream,
        }
    }

    /// The string's bytes, or `None` if this is not a string.
    pub fn string_bytes(&self) -> Option<Bytes> {
        match self {
            Value::Str(b) => Some(Bytes::copy_from_slice(b)),
            Value::Int(n) => Some(Bytes::copy_from_slice(
                itoa::Buffer::new().format(*n).as_bytes(),
            )),
            Value::Raw(v) => Some(Bytes::copy_from_slice(v)),
            _ => None,
        }
    }

    /// Calls `f` with the string's bytes without copying them.
    pub fn with_string<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            Value::Str(b) => Some(f(b)),
            Value::Int(n) => Some(f(itoa::Buffer::new().format(*n).as_bytes())),
            Value::Raw(v) => Some(f(v)),
            _ => None,
        }
    }

    pub fn string_len(&self) -> Option<usize> {
        match self {
            Value::Str(b) => Some(b.len()),
            Value::Int(n) => Some(itoa::Buffer::new().format(*n).len()),
            Value::Raw(v) => Some(v.len()),
            _ => None,
        }
    }

    /// True for a collection with no elements (such keys are deleted).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            _ => false,
        }
    }

    /// The `OBJECT ENCODING` name, following Redis 7's thresholds.
    /// What Redis 7.0's OBJECT ENCODING would answer for this data under
    /// these thresholds (lists are always quicklists in 7.0; sets are
    /// intsets or hash tables).
    pub fn encoding(&self, limits: &super::EncodingLimits) -> &'static str {
        let within = |n: usize, max: u64| n as u64 <= max;
        match self {
            Value::Int(_) => "int",
            Value::Str(b) if b.len() <= 44 => "embstr",
            Value::Str(_) | Value::Raw(_) => "raw",
            Value::Hash(h)
                if within(h.len(), limits.hash_max_listpack_entries)
                    && h.iter().all(|(k, v)| {
                        within(k.len(), limits.hash_max_listpack_value)
                            && within(v.len(), limits.hash_max_listpack_value)
                    }) =>
            {
                "listpack"
            }
            Value::Hash(_) => "hashtable",
            Value::List(_) => "quicklist",
            Value::Set(s)
                if within(s.len(), limits.set_max_intset_entries)
                    && s.iter().all(|m| canonical_i64(m).is_some()) =>
            {
                "intset"
            }
            Value::Set(_) => "hashtable",
            Value::ZSet(z)
                if within(z.len(), limits.zset_max_listpack_entries)
                    && z.iter_from_rank(0)
                        .all(|(m, _)| within(m.len(), limits.zset_max_listpack_value)) =>
            {
                "listpack"
            }
            Value::ZSet(_) => "skiplist",
            Value::Stream(_) => "stream",
        }
    }

    /// Rough heap bytes, for `MEMORY USAGE` and INFO estimates.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Value::Str(b) => b.heap_bytes(),
            Value::Int(_) => 0,
            Value::Raw(v) => v.capacity() + 40,
            Value::Hash(h) => h
                .iter()
                .map(|(k, v)| 56 + k.heap_bytes() + v.heap_bytes())
                .sum(),
            Value::List(l) => l.iter().map(|m| 24 + m.heap_bytes()).sum(),
            Value::Set(s) => s.iter().map(|m| 40 + m.heap_bytes()).sum(),
            Value::ZSet(z) => z.approx_bytes(),
            Value::Stream(s) => s.approx_bytes(),
        }
    }
}

/// What a key and its value take, as MEMORY USAGE reports it and
/// eviction counts what it frees: the value's heap bytes, the key's, and
/// the entry's slots in the database's tables.
pub fn entry_bytes(key: &[u8], value: &Value) -> usize {
    value.approx_bytes() + key.len() + 64
}

/// Parses `bytes` as an i64 only if it is the integer's canonical text:
/// no sign on zero, no leading zeros or `+`, no spaces.
pub fn canonical_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || bytes.len() != digits.len()))
    {
        return None;
    }
    let mut value: i64 = 0;
    let negative = digits.len() != bytes.len();
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = (d - b'0') as i64;
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers_only() {
        assert_eq!(canonical_i64(b"123"), Some(123));
        assert_eq!(canonical_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(canonical_i64(b"9223372036854775808"), None);
        for bad in [&b"0123"[..], b"-0", b"+1", b" 1", b"", b"-", b"1a"] {
            assert_eq!(canonical_i64(bad), None, "{:?}", bad);
        }
        assert_eq!(canonical_i64(b"0"), Some(0));
    }
}
