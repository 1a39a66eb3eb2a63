//! Decoding one reply of a Redis-protocol server: the client side of RESP,
//! for the few places a node speaks to another over its client port
//! (finding an upstream's replication endpoint). Sans-IO: bytes in, a
//! reply out once all of it is there.

/// One reply, as far as a node needs to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    /// An aggregate (array, map, set, push): its header only.
    Aggregate(char),
}

/// The bytes are not a RESP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply: {0}")]
pub struct MalformedReply(pub String);

/// Largest bulk reply accepted.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// Decodes the reply at the start of `buf`: `Ok(None)` until it is all
/// there, else the reply and the bytes it took.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, MalformedReply> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(MalformedReply("line too long".into()));
        }
        return Ok(None);
    };
    let (kind, line) = match buf.split_first() {
        Some((kind, _)) => (*kind, &buf[1..end]),
        None => return Ok(None),
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || {
        text()
            .parse::<i64>()
            .map_err(|_| MalformedReply(format!("bad length or integer '{}'", text())))
    };
    let after = end + 2;
    let reply = match kind {
        b'+' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Integer(number()?),
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let len = len as usize;
            if len > MAX_REPLY_BYTES {
                return Err(MalformedReply(format!("bulk of {len} bytes")));
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(MalformedReply("bulk not followed by CRLF".into()));
            }
            return Ok(Some((
                Reply::Bulk(Some(buf[after..after + len].to_vec())),
                after + len + 2,
            )));
        }
        b'*' | b'%' | b'~' | b'>' => Reply::Aggregate(kind as char),
        other => return Err(MalformedReply(format!("unknown type byte {other:#04x}"))),
    };
    Ok(Some((reply, after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_kind_and_waits_for_the_rest() {
        assert_eq!(
            decode_reply(b"+OK\r\n").unwrap(),
            Some((Reply::Status("OK".into()), 5))
        );
        assert_eq!(
            decode_reply(b"-NOAUTH x\r\n").unwrap(),
            Some((Reply::Error("NOAUTH x".into()), 11))
        );
        assert_eq!(
            decode_reply(b":12\r\n").unwrap(),
            Some((Reply::Integer(12), 5))
        );
        assert_eq!(decode_reply(b"$5\r\nhel").unwrap(), None);
        assert_eq!(decode_reply(b"+OK").unwrap(), None);
        assert_eq!(
            decode_reply(b"$5\r\nhello\r\n+").unwrap(),
            Some((Reply::Bulk(Some(b"hello".to_vec())), 11))
        );
        assert_eq!(
            decode_reply(b"$-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
    }

    #[test]
    fn refuses_what_is_not_resp() {
        assert!(decode_reply(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(decode_reply(b"$x\r\n").is_err());
        assert!(decode_reply(b"$2\r\nabcd\r\n").is_err());
        assert!(decode_reply(b"$99999999\r\n").is_err());
    }
}
