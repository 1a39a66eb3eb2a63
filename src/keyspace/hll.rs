//! HyperLogLog in Redis's string layout, so an HLL written by Redis counts
//! the same here and the other way round (DUMP/RESTORE, or a plain `SET` of
//! its bytes).
//!
//! The value is a string: a 16-byte header (`HYLL`, an encoding byte, three
//! unused bytes, an 8-byte little-endian cached cardinality whose top bit
//! marks it stale) and then 16,384 six-bit registers, either *dense*
//! (12,288 packed bytes, register `i` at bit `6·i`, least significant bit
//! first) or *sparse*: run-length opcodes `ZERO` (`00xxxxxx`: 1–64 zero
//! registers), `XZERO` (`01xxxxxx yyyyyyyy`: 1–16,384 zero registers) and
//! `VAL` (`1vvvvvxx`: 1–4 registers of value 1–32). Elements hash with
//! MurmurHash64A (seed `0xadc83b19`): the low 14 bits pick the register,
//! the run of zeros above them (+1) is the value. The estimate is Ertl's
//! improved estimator, as Redis 5+ computes it.
//!
//! Sparse values are kept in their shortest form: a change decodes the
//! registers, applies the change and encodes again, promoting to dense
//! when a value exceeds 32 or the encoding would grow past
//! `hll-sparse-max-bytes`.

pub const REGISTERS: usize = 1 << P;
const P: u32 = 14;
const Q: u32 = 64 - P;
const BITS: usize = 6;
const MAX_VALUE: u8 = (1 << BITS) - 1;
pub const HEADER: usize = 16;
pub const DENSE_SIZE: usize = HEADER + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SPARSE_VAL_MAX: u8 = 32;
const SPARSE_VAL_RUN: usize = 4;
const SPARSE_ZERO_RUN: usize = 64;
const SPARSE_XZERO_RUN: usize = 16384;
const CACHE_STALE: u8 = 0x80;

/// Why a string is not a usable HLL: not one at all (Redis answers
/// `WRONGTYPE`), or one whose registers do not decode (`INVALIDOBJ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HllError {
    NotHll,
    Corrupt,
}

/// One register per entry, values 0–63.
pub type Registers = Box<[u8; REGISTERS]>;

fn zeroed() -> Registers {
    Box::new([0; REGISTERS])
}

/// A new, empty HLL: sparse, one `XZERO` covering every register, cached
/// cardinality 0 (what `PFADD key` creates).
pub fn new_sparse() -> Vec<u8> {
    let mut v = header(SPARSE);
    push_zero_run(&mut v, REGISTERS);
    v
}

fn header(encoding: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + 2);
    v.extend_from_slice(b"HYLL");
    v.extend_from_slice(&[encoding, 0, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    v
}

/// Whether `bytes` is an HLL (Redis's `isHLLObjectOrReply`): magic,
/// a known encoding, and the dense size when dense. Returns whether sparse.
pub fn check(bytes: &[u8]) -> Result<bool, HllError> {
    if bytes.len() < HEADER || &bytes[..4] != b"HYLL" {
        return Err(HllError::NotHll);
    }
    match bytes[4] {
        DENSE if bytes.len() == DENSE_SIZE => Ok(false),
        SPARSE => Ok(true),
        _ => Err(HllError::NotHll),
    }
}

/// MurmurHash64A, as Redis's `hyperloglog.c` uses it.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4a7935bd1e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the value it offers there.
pub fn position(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc83b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // The sentinel bit bounds the count at Q + 1.
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let bit = i * BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = regs[byte] as u16;
    let hi = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((lo | (hi << 8)) >> shift) as u8) & MAX_VALUE
}

fn dense_set(regs: &mut [u8], i: usize, value: u8) {
    let bit = i * BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let mask = (MAX_VALUE as u16) << shift;
    let v = ((value & MAX_VALUE) as u16) << shift;
    regs[byte] = (regs[byte] & !(mask as u8)) | v as u8;
    if shift > 8 - BITS {
        let (m, v) = ((mask >> 8) as u8, (v >> 8) as u8);
        regs[byte + 1] = (regs[byte + 1] & !m) | v;
    }
}

/// The sparse opcodes after the header, decoded. A run past the last
/// register, a truncated `XZERO` or a total short of 16,384 is corrupt.
fn decode_sparse(ops: &[u8], mut each: impl FnMut(usize, usize, u8)) -> Result<(), HllError> {
    let (mut idx, mut p) = (0usize, 0usize);
    while p < ops.len() {
        let op = ops[p];
        let (run, value) = if op & 0xc0 == 0 {
            p += 1;
            ((op & 0x3f) as usize + 1, 0)
        } else if op & 0xc0 == 0x40 {
            let low = *ops.get(p + 1).ok_or(HllError::Corrupt)?;
            p += 2;
            (((((op & 0x3f) as usize) << 8) | low as usize) + 1, 0)
        } else {
            p += 1;
            ((op & 0x3) as usize + 1, ((op >> 2) & 0x1f) + 1)
        };
        if idx + run > REGISTERS {
            return Err(HllError::Corrupt);
        }
        each(idx, run, value);
        idx += run;
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(HllError::Corrupt)
    }
}

/// Every register of a checked HLL.
pub fn registers(bytes: &[u8]) -> Result<Registers, HllError> {
    let mut regs = zeroed();
    merge_into(&mut regs, bytes)?;
    Ok(regs)
}

/// `max[i] = max(max[i], register i)` for every register (PFMERGE's and
/// multi-key PFCOUNT's union).
pub fn merge_into(max: &mut [u8; REGISTERS], bytes: &[u8]) -> Result<(), HllError> {
    if check(bytes)? {
        decode_sparse(&bytes[HEADER..], |idx, run, value| {
            if value > 0 {
                for m in &mut max[idx..idx + run] {
                    *m = (*m).max(value);
                }
            }
        })
    } else {
        let dense = &bytes[HEADER..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(dense, i));
        }
        Ok(())
    }
}

fn push_zero_run(out: &mut Vec<u8>, mut run: usize) {
    while run > 0 {
        if run > SPARSE_ZERO_RUN {
            let n = run.min(SPARSE_XZERO_RUN);
            out.push(0x40 | ((n - 1) >> 8) as u8);
            out.push(((n - 1) & 0xff) as u8);
            run -= n;
        } else {
            out.push((run - 1) as u8);
            run = 0;
        }
    }
}

/// The shortest sparse opcodes for `regs`, or `None` when a value is
/// beyond what sparse can hold (> 32).
fn encode_sparse(regs: &[u8; REGISTERS]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < REGISTERS {
        let value = regs[i];
        let run = regs[i..].iter().take_while(|r| **r == value).count();
        if value == 0 {
            push_zero_run(&mut out, run);
        } else if value > SPARSE_VAL_MAX {
            return None;
        } else {
            let mut left = run;
            while left > 0 {
                let n = left.min(SPARSE_VAL_RUN);
                out.push(0x80 | ((value - 1) << 2) | (n - 1) as u8);
                left -= n;
            }
        }
        i += run;
    }
    Some(out)
}

fn dense_from(regs: &[u8; REGISTERS], cache: &[u8]) -> Vec<u8> {
    let mut out = header(DENSE);
    out[8..HEADER].copy_from_slice(cache);
    out.resize(DENSE_SIZE, 0);
    for (i, r) in regs.iter().enumerate() {
        if *r != 0 {
            dense_set(&mut out[HEADER..], i, *r);
        }
    }
    out
}

/// Writes `regs` into `hll` in its encoding (kept sparse while the values
/// fit and the sparse form stays within `sparse_max` bytes or does not
/// grow), keeping the header's cache bytes.
fn store(hll: &mut Vec<u8>, regs: &[u8; REGISTERS], sparse_max: u64) {
    if hll[4] == SPARSE {
        if let Some(ops) = encode_sparse(regs) {
            let len = HEADER + ops.len();
            if len as u64 <= sparse_max || len <= hll.len() {
                hll.truncate(HEADER);
                hll.extend_from_slice(&ops);
                return;
            }
        }
        let dense = dense_from(regs, &hll[8..HEADER]);
        *hll = dense;
    } else {
        let dense = &mut hll[HEADER..];
        for (i, r) in regs.iter().enumerate() {
            dense_set(dense, i, *r);
        }
    }
}

/// Adds `elements` to a checked HLL (PFADD); whether a register changed.
/// Invalidates the cached cardinality when one did.
pub fn add<'a>(
    hll: &mut Vec<u8>,
    elements: impl IntoIterator<Item = &'a [u8]>,
    sparse_max: u64,
) -> Result<bool, HllError> {
    let mut changed = false;
    if check(hll)? {
        let mut regs = registers(hll)?;
        for e in elements {
            let (i, v) = position(e);
            if regs[i] < v {
                regs[i] = v;
                changed = true;
            }
        }
        if changed {
            store(hll, &regs, sparse_max);
        }
    } else {
        let dense = &mut hll[HEADER..];
        for e in elements {
            let (i, v) = position(e);
            if dense_get(dense, i) < v {
                dense_set(dense, i, v);
                changed = true;
            }
        }
    }
    if changed {
        invalidate_cache(hll);
    }
    Ok(changed)
}

/// Raises `hll`'s registers to `max` (PFMERGE into an existing HLL), as
/// dense when `dense` (a source was), and invalidates its cache.
pub fn merge_store(hll: &mut Vec<u8>, max: &[u8; REGISTERS], dense: bool, sparse_max: u64) {
    if dense && hll[4] == SPARSE {
        to_dense(hll).ok();
    }
    store(hll, max, sparse_max);
    invalidate_cache(hll);
}

/// Converts a checked sparse HLL to dense; whether it was sparse.
pub fn to_dense(hll: &mut Vec<u8>) -> Result<bool, HllError> {
    if !check(hll)? {
        return Ok(false);
    }
    let regs = registers(hll)?;
    *hll = dense_from(&regs, &hll[8..HEADER]);
    Ok(true)
}

/// The cached cardinality, when it is current.
pub fn cached(hll: &[u8]) -> Option<u64> {
    let card: [u8; 8] = hll.get(8..HEADER)?.try_into().ok()?;
    (card[7] & CACHE_STALE == 0).then(|| u64::from_le_bytes(card))
}

pub fn set_cache(hll: &mut [u8], card: u64) {
    hll[8..HEADER].copy_from_slice(&card.to_le_bytes());
}

fn invalidate_cache(hll: &mut [u8]) {
    hll[HEADER - 1] |= CACHE_STALE;
}

/// The cardinality estimate for these registers (Ertl's estimator, as
/// Redis's `hllCount`).
pub fn estimate(regs: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for r in regs.iter() {
        histogram[*r as usize] += 1;
    }
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - histogram[q + 1] as f64) / m);
    for j in (1..=q).rev() {
        z += histogram[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histogram[0] as f64 / m);
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// `PFDEBUG DECODE`'s text for a sparse HLL: `z:N` and `Z:N` zero runs,
/// `v:value,run`, space separated.
pub fn describe_sparse(hll: &[u8]) -> Result<String, HllError> {
    let ops = &hll[HEADER..];
    let mut parts = Vec::new();
    let mut p = 0;
    while p < ops.len() {
        let op = ops[p];
        if op & 0xc0 == 0 {
            parts.push(format!("z:{}", (op & 0x3f) as usize + 1));
            p += 1;
        } else if op & 0xc0 == 0x40 {
            let low = *ops.get(p + 1).ok_or(HllError::Corrupt)?;
            parts.push(format!(
                "Z:{}",
                ((((op & 0x3f) as usize) << 8) | low as usize) + 1
            ));
            p += 2;
        } else {
            parts.push(format!("v:{},{}", ((op >> 2) & 0x1f) + 1, (op & 3) + 1));
            p += 1;
        }
    }
    Ok(parts.join(" "))
}

/// PFSELFTEST: the dense register packing round-trips at every position
/// and value, sparse and dense agree, and estimates stay within Redis's
/// bound (5 standard errors, 1.04/√m) up to 100,000 elements.
pub fn self_test() -> Result<(), String> {
    let mut dense = vec![0u8; DENSE_SIZE - HEADER];
    let mut expect = zeroed();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..64u8 {
        for (i, e) in expect.iter_mut().enumerate() {
            let v = ((next() as u8) ^ round) & MAX_VALUE;
            dense_set(&mut dense, i, v);
            *e = v;
        }
        for (i, e) in expect.iter().enumerate() {
            if dense_get(&dense, i) != *e {
                return Err(format!("TESTFAILED Register error at {i}"));
            }
        }
    }
    let mut sparse = new_sparse();
    let mut full = new_sparse();
    to_dense(&mut full).map_err(|_| "TESTFAILED dense conversion".to_string())?;
    let bound = 5.0 * 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for n in 1..=100_000u64 {
        let element = next().to_le_bytes();
        add(&mut sparse, [&element[..]], 3000).map_err(|_| "TESTFAILED sparse add")?;
        add(&mut full, [&element[..]], 3000).map_err(|_| "TESTFAILED dense add")?;
        if n == checkpoint {
            checkpoint *= 10;
            let a = estimate(&*registers(&sparse).map_err(|_| "TESTFAILED sparse decode")?);
            let b = estimate(&*registers(&full).map_err(|_| "TESTFAILED dense decode")?);
            if a != b {
                return Err(format!(
                    "TESTFAILED sparse {a} and dense {b} estimates differ"
                ));
            }
            let error = (b as f64 - n as f64).abs() / n as f64;
            if error > bound.max(0.01) && n >= 100 {
                return Err(format!("TESTFAILED Too big error. card:{b} abserr:{error}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_bytes_match_redis() {
        // Read from redis-server 7.0 with PFADD and PFDEBUG DECODE.
        assert_eq!(position(b""), (5938, 2));
        assert_eq!(position(b"a"), (12711, 2));
        assert_eq!(position(b"foo"), (7348, 5));
        assert_eq!(position(b"hello12345678"), (12225, 2));
        let mut hll = new_sparse();
        add(&mut hll, [&b"a"[..], b"b", b"c"], 3000).unwrap();
        let redis = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a";
        assert_eq!(hll, redis);
    }

    #[test]
    fn empty_hll_is_redis_bytes() {
        let hll = new_sparse();
        assert_eq!(hll.len(), 18);
        assert_eq!(&hll[..5], b"HYLL\x01");
        assert_eq!(&hll[16..], &[0x7f, 0xff]);
        assert_eq!(cached(&hll), Some(0));
        assert_eq!(estimate(&registers(&hll).unwrap()), 0);
    }

    #[test]
    fn sparse_and_dense_count_the_same() {
        let mut sparse = new_sparse();
        let mut dense = new_sparse();
        to_dense(&mut dense).unwrap();
        assert_eq!(dense.len(), DENSE_SIZE);
        let items: Vec<String> = (0..500).map(|i| format!("item-{i}")).collect();
        assert!(add(&mut sparse, items.iter().map(|s| s.as_bytes()), 3000).unwrap());
        assert!(add(&mut dense, items.iter().map(|s| s.as_bytes()), 3000).unwrap());
        assert_eq!(check(&sparse), Ok(true));
        let (a, b) = (registers(&sparse).unwrap(), registers(&dense).unwrap());
        assert_eq!(a, b);
        let card = estimate(&a);
        assert!((480..=520).contains(&card), "{card}");
        assert_eq!(cached(&sparse), None);
    }

    #[test]
    fn sparse_promotes_past_its_size_limit() {
        let mut hll = new_sparse();
        let items: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        add(&mut hll, items.iter().map(|s| s.as_bytes()), 30).unwrap();
        assert_eq!(check(&hll), Ok(false));
    }

    #[test]
    fn corrupt_input_is_refused_not_trusted() {
        let mut hll = new_sparse();
        add(&mut hll, [&b"a"[..], b"b", b"c"], 3000).unwrap();
        let mut tail = hll.clone();
        tail.extend_from_slice(b"hello");
        assert_eq!(registers(&tail).unwrap_err(), HllError::Corrupt);
        let mut truncated = hll.clone();
        truncated.pop();
        assert_eq!(registers(&truncated).unwrap_err(), HllError::Corrupt);
        let mut magic = hll.clone();
        magic[..4].copy_from_slice(b"0123");
        assert_eq!(check(&magic), Err(HllError::NotHll));
        let mut dense_short = hll.clone();
        dense_short[4] = 0;
        assert_eq!(check(&dense_short), Err(HllError::NotHll));
        assert_eq!(check(b"HYLL"), Err(HllError::NotHll));
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut dense = vec![0u8; DENSE_SIZE - HEADER];
        for i in 0..REGISTERS {
            dense_set(&mut dense, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&dense, i), (i % 64) as u8);
        }
    }

    #[test]
    fn self_test_passes() {
        self_test().unwrap();
    }
}
