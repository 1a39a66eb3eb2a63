//! RESP2/RESP3: the wire format between Redis clients and a Quire node.
//!
//! Everything here is sans-IO: [`RequestDecoder`] turns bytes into command
//! argument vectors and [`encode`] turns a reply [`Frame`] into bytes for the
//! protocol version a client negotiated with `HELLO`. The connection task in
//! `server/` owns the socket and calls into these; unit tests drive them with
//! split and partial input.

mod decode;
mod encode;
mod frame;
mod reply;

pub use decode::{encode_request, split_args, DecodeLimits, ProtocolError, RequestDecoder};
pub use encode::{encode, format_double};
pub use frame::{Frame, Protocol};
pub use reply::{decode_reply, MalformedReply, Reply};
