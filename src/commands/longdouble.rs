//! INCRBYFLOAT's arithmetic in C's long double, as Redis computes it (the
//! C side is `csrc/long_double.c`): the stored text equals Redis's for
//! the same operands, so `40 + 94.455` is `134.455`.

use std::os::raw::{c_char, c_int};

extern "C" {
    fn quire_ld_incr(
        cur: *const c_char,
        cur_len: usize,
        incr: *const c_char,
        incr_len: usize,
        out: *mut c_char,
        out_len: usize,
    ) -> c_int;
}

#[derive(Debug, PartialEq, Eq)]
pub enum IncrError {
    /// An operand is not a float (Redis's `strtold` rules).
    NotFloat,
    /// The sum is NaN or infinite.
    NanOrInfinity,
}

/// `current + increment` (a missing current value counts as 0), as the
/// text Redis stores.
pub fn incr(current: Option<&[u8]>, increment: &[u8]) -> Result<String, IncrError> {
    let mut out = vec![0u8; 5 * 1024 + 32];
    let (cur_ptr, cur_len) = match current {
        Some(c) => (c.as_ptr() as *const c_char, c.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: every pointer comes with its length; the C side reads within
    // those lengths (copying into its own buffer) and writes at most
    // `out.len()` bytes into `out`.
    let n = unsafe {
        quire_ld_incr(
            cur_ptr,
            cur_len,
            increment.as_ptr() as *const c_char,
            increment.len(),
            out.as_mut_ptr() as *mut c_char,
            out.len(),
        )
    };
    match n {
        -2 => Err(IncrError::NanOrInfinity),
        n if n < 0 => Err(IncrError::NotFloat),
        n => {
            out.truncate(n as usize);
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_as_redis_prints_them() {
        assert_eq!(incr(Some(b"40"), b"94.455").unwrap(), "134.455");
        assert_eq!(incr(None, b"10.5").unwrap(), "10.5");
        assert_eq!(incr(Some(b"10.5"), b"-10.5").unwrap(), "0");
        assert_eq!(incr(Some(b"5.0e3"), b"2.0e2").unwrap(), "5200");
        assert_eq!(incr(Some(b"1"), b"1e-20").unwrap(), "1");
        assert_eq!(incr(Some(b"abc"), b"1").unwrap_err(), IncrError::NotFloat);
        assert_eq!(incr(Some(b"1"), b" 1").unwrap_err(), IncrError::NotFloat);
        assert_eq!(incr(Some(b"1"), b"").unwrap_err(), IncrError::NotFloat);
        assert_eq!(incr(Some(b"1"), b"nan").unwrap_err(), IncrError::NotFloat);
        assert_eq!(
            incr(Some(b"1e4932"), b"1e4932").unwrap_err(),
            IncrError::NanOrInfinity
        );
        assert_eq!(
            incr(Some(b"1"), &[b'1'; 6000]).unwrap_err(),
            IncrError::NotFloat
        );
    }
}
