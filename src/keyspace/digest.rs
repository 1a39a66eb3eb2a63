//! `DEBUG DIGEST`: a hash of the whole dataset, independent of insertion
//! order, so two nodes with the same data report the same digest. Tests of
//! replication compare nodes with it.

use super::blob::Blob;
use super::value::Value;
use super::Keyspace;

pub type Digest = [u8; 20];

fn sha1(parts: &[&[u8]]) -> Digest {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.digest().bytes()
}

fn xor_into(acc: &mut Digest, d: &Digest) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a ^= b;
    }
}

/// Digest of one value (type and contents, not the key).
pub fn value_digest(value: &Value) -> Digest {
    let mut acc = [0u8; 20];
    match value {
        Value::Str(_) | Value::Int(_) | Value::Raw(_) => {
            acc = value
                .with_string(|s| sha1(&[b"string", s]))
                .expect("string value");
        }
        Value::List(list) => {
            let mut h = sha1_smol::Sha1::new();
            h.update(b"list");
            for item in list.iter() {
                h.update(&(item.len() as u64).to_le_bytes());
                h.update(item);
            }
            acc = h.digest().bytes();
        }
        Value::Hash(hash) => {
            xor_into(&mut acc, &sha1(&[b"hash"]));
            for (f, v) in hash.iter() {
                xor_into(&mut acc, &sha1(&[f, v]));
            }
        }
        Value::Set(set) => {
            xor_into(&mut acc, &sha1(&[b"set"]));
            for m in set.iter() {
                xor_into(&mut acc, &sha1(&[m]));
            }
        }
        Value::ZSet(z) => {
            xor_into(&mut acc, &sha1(&[b"zset"]));
            for (m, s) in z.dict().iter() {
                xor_into(&mut acc, &sha1(&[m, &s.to_le_bytes()]));
            }
        }
    }
    acc
}

fn key_digest(db: usize, key: &Blob, value: &Value, expire: Option<i64>) -> Digest {
    let v = value_digest(value);
    let expire = expire.unwrap_or(-1).to_le_bytes();
    sha1(&[&(db as u64).to_le_bytes(), key, &v, &expire])
}

/// Hex digest of every live key; all zeros for an empty dataset (as Redis).
pub fn dataset_digest(ks: &Keyspace, now_ms: i64) -> String {
    let mut acc = [0u8; 20];
    for (i, db) in ks.dbs.iter().enumerate() {
        for (key, value, expire) in db.iter() {
            if matches!(expire, Some(at) if at <= now_ms) {
                continue;
            }
            xor_into(&mut acc, &key_digest(i, key, value, expire));
        }
    }
    hex(&acc)
}

pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
