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

/// One atomically applied piece of the stream: one command, or the
/// commands of a transaction (MULTI/EXEC themselves stripped).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub commands: Vec<Vec<Bytes>>,
}

/// The units completed by some input, and their exact stream bytes (all
/// of them, in order), which the replica forwards verbatim to its own log.
#[derive(Debug, Default, PartialEq)]
pub struct Units {
    pub units: Vec<Unit>,
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
    /// What the decoder has not consumed yet.
    buf: BytesMut,
    /// Input not yet handed out as a unit's bytes: the open unit's
    /// complete commands, then the bytes of a command still incomplete.
    input: Vec<u8>,
    /// Bytes of `input` the decoder consumed.
    consumed: usize,
    /// Where in `input` the last complete command ends.
    command_end: usize,
    /// Where in `input` the last complete unit ends.
    unit_end: usize,
    tx: Option<Vec<Vec<Bytes>>>,
    /// A buffer handed back after use, for the next `input`.
    spare: Vec<u8>,
}

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Length of `args` encoded as a canonical RESP array of bulk strings.
fn canonical_len(args: &[Bytes]) -> usize {
    3 + decimal_digits(args.len())
        + args
            .iter()
            .map(|a| 5 + decimal_digits(a.len()) + a.len())
            .sum::<usize>()
}

impl UnitSplitter {
    pub fn new() -> UnitSplitter {
        UnitSplitter::default()
    }

    /// Bytes received that are not yet part of a complete unit.
    pub fn pending_bytes(&self) -> usize {
        self.input.len()
    }

    /// After [`UnitSplitter::handle_bytes`] failed: how many of the bytes
    /// that were pending before it form whole units ahead of the error (the
    /// last good unit boundary, counted from the start of what was pending).
    pub fn good_bytes(&self) -> usize {
        self.unit_end
    }

    /// Feeds stream bytes; returns the units they complete, in order.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Units, ApplyError> {
        let limits = DecodeLimits {
            max_bulk_bytes: 1 << 30,
            max_multibulk_len: 1 << 24,
        };
        let mut units = Vec::new();
        self.input.extend_from_slice(bytes);
        self.buf.extend_from_slice(bytes);
        loop {
            let before = self.buf.len();
            let decoded = self.decoder.decode(&mut self.buf, &limits)?;
            self.consumed += before - self.buf.len();
            let Some(args) = decoded else { break };
            // The stream is canonical RESP (the bytes forwarded are exactly
            // what a re-encoding would give); anything else is refused.
            if canonical_len(&args) != self.consumed - self.command_end {
                return Err(ApplyError::Structure(
                    "the stream must carry commands as RESP arrays",
                ));
            }
            self.command_end = self.consumed;
            if is(&args[0], "multi") {
                if self.tx.is_some() {
                    return Err(ApplyError::Structure("nested MULTI"));
                }
                self.tx = Some(Vec::new());
                continue;
            }
            if is(&args[0], "exec") {
                let Some(commands) = self.tx.take() else {
                    return Err(ApplyError::Structure("EXEC without MULTI"));
                };
                units.push(Unit { commands });
                self.unit_end = self.command_end;
                continue;
            }
            match &mut self.tx {
                Some(commands) => commands.push(args),
                None => {
                    units.push(Unit {
                        commands: vec![args],
                    });
                    self.unit_end = self.command_end;
                }
            }
        }
        let done = std::mem::take(&mut self.unit_end);
        let raw = if done == self.input.len() {
            std::mem::replace(&mut self.input, std::mem::take(&mut self.spare))
        } else {
            let mut raw = std::mem::take(&mut self.spare);
            raw.extend_from_slice(&self.input[..done]);
            self.input.drain(..done);
            raw
        };
        self.consumed -= done;
        self.command_end -= done;
        Ok(Units { units, raw })
    }

    /// Takes back a [`Units::raw`] buffer once its bytes are used, so the
    /// next input does not start in fresh memory.
    pub fn recycle(&mut self, mut raw: Vec<u8>) {
        raw.clear();
        if raw.capacity() > self.spare.capacity() {
            self.spare = raw;
        }
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
        let stream = wire(&[
            &["SELECT", "0"],
            &["SET", "a", "1"],
            &["MULTI"],
            &["INCR", "a"],
            &["INCR", "b"],
            &["EXEC"],
            &["DEL", "a"],
        ]);
        for split in 0..stream.len() {
            let mut s = UnitSplitter::new();
            let first = s.handle_bytes(&stream[..split]).unwrap();
            let second = s.handle_bytes(&stream[split..]).unwrap();
            let units: Vec<Unit> = first.units.into_iter().chain(second.units).collect();
            assert_eq!(units.len(), 4, "split at {split}");
            assert_eq!(units[2].commands.len(), 2);
            assert_eq!([first.raw, second.raw].concat(), stream);
            assert_eq!(s.pending_bytes(), 0);
        }
    }

    #[test]
    fn open_transaction_is_held_back() {
        let mut s = UnitSplitter::new();
        let open = wire(&[&["MULTI"], &["INCR", "a"]]);
        let units = s.handle_bytes(&open).unwrap();
        assert!(units.units.is_empty() && units.raw.is_empty());
        assert_eq!(s.pending_bytes(), open.len());
        let done = s.handle_bytes(&wire(&[&["EXEC"], &["PING"]])).unwrap();
        assert_eq!(done.units.len(), 2);
        assert_eq!(
            done.raw,
            wire(&[&["MULTI"], &["INCR", "a"], &["EXEC"], &["PING"]])
        );
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn recycled_buffers_carry_no_old_bytes() {
        let mut s = UnitSplitter::new();
        let mut raw = Vec::new();
        // Whole units, and units followed by an incomplete one, with the
        // buffers handed back each time.
        for (i, chunk) in [
            wire(&[&["SET", "a", "1"]]),
            wire(&[&["INCR", "a"], &["MULTI"]]),
            wire(&[&["INCR", "b"], &["EXEC"], &["DEL", "a"]]),
        ]
        .iter()
        .enumerate()
        {
            let units = s.handle_bytes(chunk).unwrap();
            raw.extend_from_slice(&units.raw);
            assert_eq!(units.units.len(), [1, 1, 2][i]);
            s.recycle(units.raw);
        }
        assert_eq!(
            raw,
            wire(&[
                &["SET", "a", "1"],
                &["INCR", "a"],
                &["MULTI"],
                &["INCR", "b"],
                &["EXEC"],
                &["DEL", "a"]
            ])
        );
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn after_an_error_the_last_good_boundary_is_known() {
        let mut s = UnitSplitter::new();
        let good = wire(&[&["SET", "a", "1"], &["SET", "b", "2"]]);
        let mut input = good.clone();
        input.extend_from_slice(b"*2\r\n$3\r\nfoo\r\nxx\r\n");
        assert!(s.handle_bytes(&input).is_err());
        assert_eq!(s.good_bytes(), good.len());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(UnitSplitter::new()
            .handle_bytes(b"*2\r\n$3\r\nfoo\r\nxx\r\n")
            .is_err());
        assert!(UnitSplitter::new()
            .handle_bytes(&wire(&[&["EXEC"]]))
            .is_err());
        assert!(
            UnitSplitter::new().handle_bytes(b"PING\r\n").is_err(),
            "inline commands are not stream commands"
        );
        assert!(
            UnitSplitter::new()
                .handle_bytes(b"*1\r\n$04\r\nPING\r\n")
                .is_err(),
            "non-canonical lengths are refused"
        );
    }
}
