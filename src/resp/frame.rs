//! The reply value type shared by every command.

use bytes::Bytes;
use std::borrow::Cow;

/// The protocol version a client speaks; chosen with `HELLO 2|3`.
///
/// RESP3 adds typed replies (maps, sets, doubles, booleans, nulls, pushes);
/// under RESP2 each is downgraded the way Redis downgrades it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// A reply, built by a command and encoded by [`crate::resp::encode`].
///
/// Commands return frames instead of writing to a socket so that clients,
/// `MULTI/EXEC`, the replica applier and unit tests share one path.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(Cow<'static, str>),
    /// The full error line without the leading `-`, e.g. `ERR syntax error`.
    Error(Cow<'static, str>),
    Integer(i64),
    Bulk(Bytes),
    /// Null bulk string in RESP2 (`$-1`), `_` in RESP3.
    Null,
    /// Null array in RESP2 (`*-1`), `_` in RESP3.
    NullArray,
    Array(Vec<Frame>),
    /// A map in RESP3, a flat array of key/value pairs in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// A set in RESP3, an array in RESP2.
    Set(Vec<Frame>),
    /// A double in RESP3, a bulk string in RESP2.
    Double(f64),
    /// A boolean in RESP3, the integer 1 or 0 in RESP2.
    Boolean(bool),
    /// An out-of-band push in RESP3 (pub/sub messages), an array in RESP2.
    Push(Vec<Frame>),
    /// A verbatim string in RESP3 (`=txt:`), a bulk string in RESP2.
    Verbatim(String),
    /// A big number in RESP3 (`(`), a bulk string in RESP2.
    BigNumber(String),
    /// Attributes before the reply they describe in RESP3 (`|`); nothing
    /// in RESP2.
    Attribute(Vec<(Frame, Frame)>),
    /// Several replies written back to back (e.g. one per channel for
    /// `SUBSCRIBE a b`). Never nested inside another frame.
    Multiple(Vec<Frame>),
    /// Nothing is written (a blocked client, or `CLIENT REPLY OFF`).
    NoReply,
}

impl Frame {
    pub const fn ok() -> Frame {
        Frame::Simple(Cow::Borrowed("OK"))
    }

    pub const fn simple(s: &'static str) -> Frame {
        Frame::Simple(Cow::Borrowed(s))
    }

    /// An error with a static text; the text includes its prefix (`ERR ...`).
    pub const fn error(s: &'static str) -> Frame {
        Frame::Error(Cow::Borrowed(s))
    }

    pub fn error_owned(s: String) -> Frame {
        Frame::Error(Cow::Owned(s))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    pub fn bulk_from_slice(b: &[u8]) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(b))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// The error text if this is an error frame.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }
}
