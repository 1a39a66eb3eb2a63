//! Cutting the received stream into units a replica applies atomically
//! (sans-IO).
//!
//! A unit is one command, or a whole MULTI … EXEC transaction. Batches may
//! end anywhere, even inside a command; bytes wait here until their unit is
//! complete. The replica's offset advances by whole units only, so after a
//! broken link it resumes at a unit boundary and never applies half a
//! transaction or a command twice.

use crate::resp::{DecodeLimits, ProtocolError, RequestDecoder};
use bytes::{Bytes, BytesMut};

/// One atomically applied piece of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The commands to run (MULTI/EXEC themselves stripped).
    pub commands: Vec<Vec<Bytes>>,
    /// The unit's exact stream bytes, forwarded verbatim to sub-replicas.
    pub raw: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("malformed replication stream: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("malformed replication stream: {0}")]
    Structure(&'static str),
}

#[derive(Default)]
pub struct UnitSplitter {
    decoder: RequestDecoder,
    buf: BytesMut,
    /// Raw bytes of the unit being assembled (complete commands only).
    raw: Vec<u8>,
    /// Bytes consumed from `buf` by the decoder but not yet part of a
    /// complete command.
    partial: usize,
    tx: Option<Vec<Vec<Bytes>>>,
}

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

impl UnitSplitter {
    pub fn new() -> UnitSplitter {
        UnitSplitter::default()
    }

    /// Bytes received that are not yet part of a complete unit.
    pub fn pending_bytes(&self) -> usize {
        self.raw.len() + self.partial + self.buf.len()
    }

    /// Feeds stream bytes; returns the units they complete, in order.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Unit>, ApplyError> {
        let limits = DecodeLimits { max_bulk_bytes: 1 << 30, max_multibulk_len: 1 << 24 };
        let mut units = Vec::new();
        self.buf.extend_from_slice(bytes);
        loop {
            let before = self.buf.len();
            let decoded = self.decoder.decode(&mut self.buf, &limits)?;
            let used = before - self.buf.len();
            self.partial += used;
            let Some(args) = decoded else { break };
            // The command spans the last `partial` bytes consumed. The
            // stream is canonical RESP, so re-encoding the arguments gives
            // those bytes back; anything else is refused.
            let len = self.partial;
            self.partial = 0;
            let mut encoded = Vec::with_capacity(len);
            crate::resp::encode_request(&args, &mut encoded);
            if encoded.len() != len {
                return Err(ApplyError::Structure("the stream must carry commands as RESP arrays"));
            }
            self.raw.extend_from_slice(&encoded);
            if is(&args[0], "multi") {
                if self.tx.is_some() {
                    return Err(ApplyError::Structure("nested MULTI"));
                }
                self.tx = Some(Vec::new());
                continue;
            }
            if is(&args[0], "exec") {
                let Some(commands) = self.tx.take() else { return Err(ApplyError::Structure("EXEC without MULTI")) };
                units.push(Unit { commands, raw: std::mem::take(&mut self.raw) });
                continue;
            }
            match &mut self.tx {
                Some(commands) => commands.push(args),
                None => units.push(Unit { commands: vec![args], raw: std::mem::take(&mut self.raw) }),
            }
        }
        Ok(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(cmds: &[&[&str]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            crate::resp::encode_request(c, &mut out);
        }
        out
    }

    #[test]
    fn units_survive_any_split() {
        let stream = wire(&[&["SELECT", "0"], &["SET", "a", "1"], &["MULTI"], &["INCR", "a"], &["INCR", "b"], &["EXEC"], &["DEL", "a"]]);
        for split in 0..stream.len() {
            let mut s = UnitSplitter::new();
            let mut units = s.handle_bytes(&stream[..split]).unwrap();
            units.extend(s.handle_bytes(&stream[split..]).unwrap());
            assert_eq!(units.len(), 4, "split at {split}");
            assert_eq!(units[2].commands.len(), 2);
            let raw: Vec<u8> = units.iter().flat_map(|u| u.raw.clone()).collect();
            assert_eq!(raw, stream);
            assert_eq!(s.pending_bytes(), 0);
        }
    }

    #[test]
    fn open_transaction_is_held_back() {
        let mut s = UnitSplitter::new();
        let units = s.handle_bytes(&wire(&[&["MULTI"], &["INCR", "a"]])).unwrap();
        assert!(units.is_empty());
        assert!(s.pending_bytes() > 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(UnitSplitter::new().handle_bytes(b"*2\r\n$3\r\nfoo\r\nxx\r\n").is_err());
        assert!(UnitSplitter::new().handle_bytes(&wire(&[&["EXEC"]])).is_err());
        assert!(UnitSplitter::new().handle_bytes(b"PING\r\n").is_err(), "inline commands are not stream commands");
    }
}
