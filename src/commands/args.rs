//! Argument parsing helpers shared by handlers, with Redis's error texts.
//!
//! Errors are returned as reply frames so handlers can use `?`; a bad
//! argument never closes the connection.

use crate::resp::Frame;
use bytes::Bytes;

pub const ERR_SYNTAX: Frame = Frame::error("ERR syntax error");
pub const ERR_NOT_INT: Frame = Frame::error("ERR value is not an integer or out of range");
pub const ERR_NOT_FLOAT: Frame = Frame::error("ERR value is not a valid float");
pub const ERR_WRONGTYPE: Frame =
    Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value");
pub const ERR_NO_SUCH_KEY: Frame = Frame::error("ERR no such key");
pub const ERR_OVERFLOW: Frame = Frame::error("ERR increment or decrement would overflow");
pub const ERR_NAN: Frame = Frame::error("ERR increment would produce NaN or Infinity");
pub const ERR_DB_RANGE: Frame = Frame::error("ERR DB index is out of range");
pub const ERR_STRING_TOO_LONG: Frame =
    Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");

/// Parses a signed 64-bit integer exactly as Redis's `string2ll`.
pub fn int(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or(ERR_NOT_INT)
}

pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    if arg.len() == 1 && arg[0] == b'0' {
        return Some(0);
    }
    let (neg, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub((d - b'0') as i64)?
        } else {
            v.checked_add((d - b'0') as i64)?
        };
    }
    Some(v)
}

/// A non-negative integer in range, with a custom error if out of range.
pub fn uint(arg: &[u8], err: Frame) -> Result<u64, Frame> {
    match parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(_) => Err(err),
        None => Err(ERR_NOT_INT),
    }
}

/// Parses a double like Redis's `string2d`/`strtold`: accepts `inf`,
/// `+inf`, `-inf`, rejects NaN, spaces and trailing garbage.
pub fn parse_f64(arg: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            if lower.contains("inf") || lower.contains("nan") {
                return None;
            }
            lower.parse::<f64>().ok()?
        }
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

pub fn float(arg: &[u8]) -> Result<f64, Frame> {
    parse_f64(arg).ok_or(ERR_NOT_FLOAT)
}

/// Case-insensitive comparison of an argument with an option name.
pub fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

pub fn text(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

pub use crate::keyspace::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_redis() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"0"), Some(0));
        for bad in [
            &b"01"[..],
            b"+1",
            b" 1",
            b"1.0",
            b"",
            b"-0",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None);
        }
    }

    #[test]
    fn floats_like_redis() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"abc"), None);
    }
}
