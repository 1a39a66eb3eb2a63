//! `DEBUG DIGEST` and `DEBUG DIGEST-VALUE` with Redis's algorithm
//! (`debug.c`), so the same data has the same digest in Redis and in
//! Quire: operators can check a migration or a relay end to end, and
//! replication tests compare nodes with it.
//!
//! Per key: SHA1-chained "mix" of the key, the type (big-endian u32), then
//! the value — strings mixed whole, list elements mixed in order, set
//! members XORed, hash fields and sorted-set members (with the score as
//! `%.17g`) digested pairwise and XORed — and a `!!expire!!` marker when
//! the key has a TTL. Keys are XORed together, databases mixed in by
//! number, so the result does not depend on iteration order.

use super::blob::Blob;
use super::value::Value;
use super::Keyspace;

pub type Digest = [u8; 20];

fn sha1(data: &[u8]) -> Digest {
    let mut h = sha1_smol::Sha1::new();
    h.update(data);
    h.digest().bytes()
}

/// Redis's `xorDigest`: digest ^= SHA1(data).
fn xor(digest: &mut Digest, data: &[u8]) {
    for (a, b) in digest.iter_mut().zip(sha1(data)) {
        *a ^= b;
    }
}

/// Redis's `mixDigest`: digest = SHA1(digest ^ SHA1(data)), order-keeping.
fn mix(digest: &mut Digest, data: &[u8]) {
    xor(digest, data);
    *digest = sha1(digest);
}

/// C's `%.17g`.
fn g17(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..17).contains(&exp) {
        trim(&format!("{x:.prec$}", prec = (16 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

const TYPE_STRING: u32 = 0;
const TYPE_LIST: u32 = 1;
const TYPE_SET: u32 = 2;
const TYPE_ZSET: u32 = 3;
const TYPE_HASH: u32 = 4;
const TYPE_STREAM: u32 = 6;

/// Redis's `xorObjectDigest`: the value (and its TTL marker) mixed into
/// `digest`.
fn object_digest(digest: &mut Digest, value: &Value, has_ttl: bool) {
    let kind = match value {
        Value::Str(_) | Value::Int(_) | Value::Raw(_) => TYPE_STRING,
        Value::List(_) => TYPE_LIST,
        Value::Set(_) => TYPE_SET,
        Value::ZSet(_) => TYPE_ZSET,
        Value::Hash(_) => TYPE_HASH,
        Value::Stream(_) => TYPE_STREAM,
    };
    mix(digest, &kind.to_be_bytes());
    match value {
        Value::Str(_) | Value::Int(_) | Value::Raw(_) => {
            value.with_string(|s| mix(digest, s));
        }
        Value::List(list) => {
            for item in list.iter() {
                mix(digest, item);
            }
        }
        Value::Set(set) => {
            for m in set.iter() {
                xor(digest, m);
            }
        }
        Value::ZSet(z) => {
            for (m, score) in z.dict().iter() {
                let mut element = [0u8; 20];
                mix(&mut element, m);
                mix(&mut element, g17(*score).as_bytes());
                xor(digest, &element);
            }
        }
        Value::Hash(hash) => {
            for (f, v) in hash.iter() {
                let mut element = [0u8; 20];
                mix(&mut element, f);
                mix(&mut element, v);
                xor(digest, &element);
            }
        }
        Value::Stream(stream) => {
            for entry in stream.entries() {
                mix(
                    digest,
                    format!("{}.{}", entry.id.ms, entry.id.seq).as_bytes(),
                );
                for (f, v) in entry.pairs() {
                    mix(digest, f);
                    mix(digest, v);
                }
            }
        }
    }
    if has_ttl {
        xor(digest, b"!!expire!!");
    }
}

/// `DEBUG DIGEST-VALUE`'s digest of one value.
pub fn value_digest(value: &Value, has_ttl: bool) -> Digest {
    let mut d = [0u8; 20];
    object_digest(&mut d, value, has_ttl);
    d
}

fn key_digest(key: &Blob, value: &Value, has_ttl: bool) -> Digest {
    let mut d = [0u8; 20];
    mix(&mut d, key);
    object_digest(&mut d, value, has_ttl);
    d
}

/// Hex digest of the live dataset; all zeros when empty (as Redis). Keys
/// past their TTL but not yet deleted do not count (Redis counts them):
/// a replica holds such a key until its primary's DEL arrives, and the two
/// must digest alike at the same offset.
pub fn dataset_digest(ks: &Keyspace, now_ms: i64) -> String {
    let mut fin = [0u8; 20];
    for (i, db) in ks.dbs.iter().enumerate() {
        let live = |e: &Option<i64>| !matches!(e, Some(at) if *at <= now_ms);
        if !db.iter().any(|(_, _, e)| live(&e)) {
            continue;
        }
        mix(&mut fin, &(i as u32).to_be_bytes());
        for (key, value, expire) in db.iter() {
            if !live(&expire) {
                continue;
            }
            xor(&mut fin, &key_digest(key, value, expire.is_some()));
        }
    }
    hex(&fin)
}

pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_is_c_printf() {
        assert_eq!(g17(1.5), "1.5");
        assert_eq!(g17(0.1), "0.10000000000000001");
        assert_eq!(g17(1e20), "1e+20");
        assert_eq!(g17(123456789.0), "123456789");
        assert_eq!(g17(1e-5), "1.0000000000000001e-05");
        assert_eq!(g17(-2.0), "-2");
        assert_eq!(g17(f64::INFINITY), "inf");
        assert_eq!(g17(3479099956230698.0), "3479099956230698");
    }
}
