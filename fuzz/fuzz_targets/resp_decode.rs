//! The client-facing RESP decoder on arbitrary bytes, fed in two pieces:
//! it must return requests or a protocol error, never panic or loop.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quire::resp::{DecodeLimits, RequestDecoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map(|b| *b as usize % (data.len() + 1)).unwrap_or(0);
    for limits in [DecodeLimits::default(), DecodeLimits { max_bulk_bytes: 64, max_multibulk_len: 4 }] {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        'feed: for part in [&data[..split], &data[split..]] {
            buf.extend_from_slice(part);
            loop {
                match decoder.decode(&mut buf, &limits) {
                    Ok(Some(args)) => assert!(!args.is_empty()),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
});
