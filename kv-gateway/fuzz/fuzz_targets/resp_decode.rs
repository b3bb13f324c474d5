//! Fuzzes the RESP request decoder: arbitrary bytes, fed in arbitrary
//! pieces, must never panic, never consume more than was given, never yield
//! an argument or request over the limits, and always make progress or ask
//! for more input.
#![no_main]

use keel_kv::resp::{DecodeLimits, Decoder, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, input)) = data.split_first() else { return };
    let limits = DecodeLimits { bulk_bytes_max: 64, multibulk_len_max: 16, request_bytes_max: 256, inline_bytes_max: 64 };
    let mut decoder = Decoder::new(limits);
    let mut buffer = Vec::new();
    let piece = usize::from(split_seed % 17) + 1;
    for chunk in input.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            let (n, frame) = decoder.decode(&buffer);
            assert!(n <= buffer.len());
            buffer.drain(..n);
            match frame {
                Some(Frame::Fatal(_)) => return,
                Some(Frame::Command(args)) => {
                    assert!(!args.is_empty());
                    assert!(args.len() <= limits.multibulk_len_max || args.iter().map(Vec::len).sum::<usize>() <= limits.inline_bytes_max);
                    assert!(args.iter().all(|a| a.len() <= limits.bulk_bytes_max.max(limits.inline_bytes_max)));
                }
                Some(Frame::Refused(_)) => {}
                None if n == 0 => break,
                None => {}
            }
        }
        // Unconsumed input never exceeds what one request may hold plus its framing.
        assert!(buffer.len() <= limits.request_bytes_max + limits.inline_bytes_max + 4096);
    }
});
