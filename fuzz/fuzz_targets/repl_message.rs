//! Replication control messages and stream frames from an untrusted peer:
//! length-prefixed postcard, decoded with bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quire::replication::protocol::{MessageReader, PrimaryMessage, ReplicaMessage};

fuzz_target!(|data: &[u8]| {
    let mut a = MessageReader::new();
    a.handle_bytes(data);
    while let Ok(Some(_)) = a.poll_message::<PrimaryMessage>() {}
    let mut b = MessageReader::new();
    b.handle_bytes(data);
    while let Ok(Some(_)) = b.poll_message::<ReplicaMessage>() {}
});
