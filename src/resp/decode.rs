//! Request decoding: RESP multibulk arrays and inline commands.
//!
//! The decoder is resumable: it consumes each complete bulk string as soon as
//! it has arrived, so a large multibulk delivered in many reads costs linear
//! time, and a half-received request leaves the decoder mid-array.
//! Every length is checked against [`DecodeLimits`] before anything is
//! allocated. Errors carry Redis's exact texts; after one the connection is
//! answered and closed.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Redis's `PROTO_INLINE_MAX_SIZE`: longest inline request or length line.
pub const INLINE_MAX_BYTES: usize = 64 * 1024;

/// Limits applied to untrusted request lengths.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// `proto-max-bulk-len`: longest accepted bulk string.
    pub max_bulk_bytes: usize,
    /// Largest accepted multibulk count (Redis: 1024*1024*1024, or 10 before
    /// a client has authenticated when a password is set).
    pub max_multibulk_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024 * 1024,
        }
    }
}

/// A malformed request. The text is what Redis replies after `-ERR `.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// Resumable state of a partly received multibulk request.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// Arguments still expected in the current multibulk, if inside one.
    remaining_args: Option<usize>,
    /// Length of the bulk string being waited for, once its header is read.
    pending_bulk_len: Option<usize>,
    args: Vec<Bytes>,
    /// Argument positions found by the whole-request scan (reused).
    spans: Vec<(usize, usize)>,
}

/// Finds a complete, well-formed multibulk request at the front of `buf`
/// within `limits` without consuming anything; returns its length and the
/// arguments' positions. Anything else — incomplete, malformed, empty,
/// over a limit — is `None`, and the incremental decoder takes it (with
/// Redis's errors).
fn scan_complete_multibulk(
    buf: &[u8],
    limits: &DecodeLimits,
    spans: &mut Vec<(usize, usize)>,
) -> Option<usize> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (count, mut pos) = scan_length_line(buf, 1)?;
    if count == 0 || count > limits.max_multibulk_len || count > buf.len() / 4 {
        return None;
    }
    spans.clear();
    for _ in 0..count {
        if buf.get(pos) != Some(&b'$') {
            return None;
        }
        let (len, start) = scan_length_line(buf, pos + 1)?;
        if len > limits.max_bulk_bytes {
            return None;
        }
        let end = start.checked_add(len)?;
        if buf.get(end..end + 2) != Some(b"\r\n".as_slice()) {
            return None;
        }
        spans.push((start, end));
        pos = end + 2;
    }
    Some(pos)
}

/// Reads a non-negative length line from `at` up to `\r\n` with
/// [`parse_len`]: the value and the position after the line.
fn scan_length_line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let end = at + buf.get(at..)?.iter().take(21).position(|&b| b == b'\r')?;
    if buf.get(end + 1) != Some(&b'\n') {
        return None;
    }
    let value = parse_len(&buf[at..end]).filter(|v| *v >= 0)?;
    Some((value as usize, end + 2))
}

impl RequestDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the decoder is waiting for beyond what `buf` holds, when it
    /// knows (inside a bulk string); lets the reader reserve capacity once.
    pub fn wanted_bytes(&self, buf: &BytesMut) -> Option<usize> {
        self.pending_bulk_len
            .map(|len| (len + 2).saturating_sub(buf.len()))
    }

    /// Decodes the next complete request from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; what was consumed stays
    /// consumed, the decoder remembers where it was. An empty vector is never
    /// returned: empty inline lines and `*0` arrays are skipped like Redis.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &DecodeLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.remaining_args.is_none() {
                // The common case, a whole well-formed request already in
                // the buffer: one split, arguments sliced from it.
                if let Some(total) = scan_complete_multibulk(buf, limits, &mut self.spans) {
                    let frame = buf.split_to(total).freeze();
                    return Ok(Some(
                        self.spans
                            .iter()
                            .map(|&(start, end)| frame.slice(start..end))
                            .collect(),
                    ));
                }
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match decode_inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    }
                }
                let Some(line) = take_line(buf, ProtocolError::MultibulkCountTooBig)? else {
                    return Ok(None);
                };
                let count = parse_len(&line[1..]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count > limits.max_multibulk_len as i64 {
                    return Err(if limits.max_multibulk_len < 1024 {
                        ProtocolError::UnauthenticatedMultibulk
                    } else {
                        ProtocolError::InvalidMultibulkLength
                    });
                }
                if count <= 0 {
                    continue;
                }
                let count = count as usize;
                self.remaining_args = Some(count);
                self.args = Vec::with_capacity(count.min(1024));
            }
            while let Some(remaining) = self.remaining_args {
                if remaining == 0 {
                    self.remaining_args = None;
                    return Ok(Some(std::mem::take(&mut self.args)));
                }
                let len = match self.pending_bulk_len {
                    Some(len) => len,
                    None => {
                        let Some(&first) = buf.first() else {
                            return Ok(None);
                        };
                        if first != b'$' {
                            return Err(ProtocolError::ExpectedBulk(first as char));
                        }
                        let Some(line) = take_line(buf, ProtocolError::BulkCountTooBig)? else {
                            return Ok(None);
                        };
                        let len = parse_len(&line[1..]).ok_or(ProtocolError::InvalidBulkLength)?;
                        if len < 0 || len as u64 > limits.max_bulk_bytes as u64 {
                            return Err(if limits.max_multibulk_len < 1024 {
                                ProtocolError::UnauthenticatedBulk
                            } else {
                                ProtocolError::InvalidBulkLength
                            });
                        }
                        self.pending_bulk_len = Some(len as usize);
                        len as usize
                    }
                };
                if buf.len() < len + 2 {
                    return Ok(None);
                }
                let arg = buf.split_to(len).freeze();
                buf.advance(2);
                self.args.push(arg);
                self.pending_bulk_len = None;
                self.remaining_args = Some(remaining - 1);
            }
        }
    }
}

/// Takes one `\r\n`-terminated line (without the terminator) from `buf`.
fn take_line(
    buf: &mut BytesMut,
    too_big: ProtocolError,
) -> Result<Option<BytesMut>, ProtocolError> {
    match memchr_newline(buf) {
        Some(pos) if pos > INLINE_MAX_BYTES => Err(too_big),
        Some(pos) => {
            let mut line = buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(pos - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > INLINE_MAX_BYTES => Err(too_big),
        None => Ok(None),
    }
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Parses a decimal length as Redis's `string2ll` does: optional `-`, digits
/// only, no leading `+`, no spaces.
fn parse_len(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let (neg, digits) = match digits[0] {
        b'-' => (true, &digits[1..]),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if neg { -value } else { value })
}

fn decode_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(line) = take_line(buf, ProtocolError::InlineTooBig)? else {
        return Ok(None);
    };
    split_args(&line).map(Some)
}

/// Splits an inline command line like Redis's `sdssplitargs`: whitespace
/// separated, with "double quotes" (backslash escapes, `\xHH`) and
/// 'single quotes', which may also open inside a word (`name="foo"`); a
/// closing quote must end its word.
pub fn split_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_double {
                let Some(c) = c else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    let hex = std::str::from_utf8(&line[i + 2..i + 4])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    current.push(hex.unwrap_or(0));
                    i += 4;
                } else if c == b'\\' && i + 1 < line.len() {
                    current.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    i += 1;
                    if i < line.len() && !line[i].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(c) = c else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    current.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    i += 1;
                    if i < line.len() && !line[i].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else {
                match c {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(c) => current.push(c),
                }
                i += 1;
            }
        }
        args.push(Bytes::from(current));
    }
    Ok(args)
}

/// Encodes a command as a RESP multibulk, as clients send it and as the
/// replication stream carries it.
pub fn encode_request<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf, &DecodeLimits::default())? {
            out.push(args);
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline() {
        let got = decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\nset a \"b c\\x41\"\r\n")
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(got[1], vec![Bytes::from("PING")]);
        assert_eq!(
            got[2],
            vec![Bytes::from("set"), Bytes::from("a"), Bytes::from("b cA")]
        );
    }

    #[test]
    fn split_args_opens_quotes_inside_a_word_as_sdssplitargs() {
        let args = split_args(b"#!lua name=\"foo\" x='a b'").unwrap();
        assert_eq!(args, [&b"#!lua"[..], b"name=foo", b"x=a b"]);
        assert!(split_args(b"a\"b\"c").is_err());
        assert!(split_args(b"a\"b").is_err());
    }

    /// Decodes `input` fed one byte at a time (the incremental path only)
    /// until the first error.
    fn decode_bytewise(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match decoder.decode(&mut buf, &DecodeLimits::default()) {
                    Ok(Some(args)) => out.push(args),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn whole_request_scan_agrees_with_the_incremental_path() {
        let cases: &[&[u8]] = &[
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
            b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n",
            b"*2\n$3\nGET\n$1\nk\r\n",
            b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n+4\r\nPING\r\n",
            b"*007\r\n$1\r\na\r\n",
            b"*1\r\n$0004\r\nPING\r\n",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nvv\r\n",
        ];
        for case in cases {
            let whole = {
                let mut decoder = RequestDecoder::new();
                let mut buf = BytesMut::from(*case);
                let mut out = Vec::new();
                let err = loop {
                    match decoder.decode(&mut buf, &DecodeLimits::default()) {
                        Ok(Some(args)) => out.push(args),
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                (out, err)
            };
            assert_eq!(
                whole,
                decode_bytewise(case),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn byte_by_byte_input_resumes() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPING\r\n";
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(args) = decoder.decode(&mut buf, &DecodeLimits::default()).unwrap() {
                out.push(args);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0][2], Bytes::from("value"));
        assert!(buf.is_empty());
    }

    #[test]
    fn errors_use_redis_texts() {
        assert_eq!(
            decode_all(b"*x\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            decode_all(b"*1\r\n+a\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            decode_all(b"*1\r\n$-5\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            decode_all(b"set \"a\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        let long = vec![b'a'; INLINE_MAX_BYTES + 1];
        assert_eq!(decode_all(&long).unwrap_err(), ProtocolError::InlineTooBig);
        let limits = DecodeLimits {
            max_bulk_bytes: 10,
            ..Default::default()
        };
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        assert_eq!(
            RequestDecoder::new().decode(&mut buf, &limits).unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        // A multibulk count of a billion must not reserve a billion slots.
        let mut buf = BytesMut::from(&b"*1000000000\r\n$3\r\nGET\r\n"[..]);
        let mut decoder = RequestDecoder::new();
        assert_eq!(
            decoder.decode(&mut buf, &DecodeLimits::default()).unwrap(),
            None
        );
        assert!(decoder.args.capacity() <= 1024);
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(reqs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6), 1..5), split in 1usize..50) {
            let mut wire = Vec::new();
            for req in &reqs {
                encode_request(req, &mut wire);
            }
            let mut decoder = RequestDecoder::new();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(split) {
                buf.extend_from_slice(chunk);
                while let Some(args) = decoder.decode(&mut buf, &DecodeLimits::default()).unwrap() {
                    out.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(out, reqs);
        }

        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&input);
        }
    }
}
