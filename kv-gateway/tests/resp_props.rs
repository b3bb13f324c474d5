//! Property tests of the RESP request decoder. They (and the fuzz target)
//! stop at decoding; what happens to a decoded request — routing, key checks,
//! replies in order — is checked end to end on a running appliance by
//! `every_well_framed_request_of_any_pipeline_gets_exactly_one_reply` in
//! bad_requests_mid_pipeline.rs.

use keel_kv::resp::{DecodeLimits, Decoder, Frame};
use proptest::prelude::*;

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Feeds `input` in pieces of the given sizes; returns the frames and
/// whether decoding stopped on a fatal error.
fn feed(input: &[u8], pieces: &[usize], limits: DecodeLimits) -> (Vec<Frame>, bool) {
    let mut d = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut sizes = pieces.iter().cycle();
    while pos < input.len() {
        let take = (*sizes.next().unwrap_or(&1)).max(1).min(input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + take]);
        pos += take;
        loop {
            let (n, frame) = d.decode(&buf);
            assert!(n <= buf.len());
            buf.drain(..n);
            match frame {
                Some(Frame::Fatal(why)) => {
                    frames.push(Frame::Fatal(why));
                    return (frames, true);
                }
                Some(f) => frames.push(f),
                None if n == 0 => break,
                None => {}
            }
        }
    }
    (frames, false)
}

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(arg(), 1..6)
}

proptest! {
    #[test]
    fn pipelines_decode_to_the_same_commands_however_they_are_split(
        commands in prop::collection::vec(command(), 1..20),
        pieces in prop::collection::vec(1usize..64, 1..8),
    ) {
        let input: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
        let (frames, fatal) = feed(&input, &pieces, DecodeLimits::default());
        prop_assert!(!fatal);
        let expect: Vec<Frame> = commands.into_iter().map(Frame::Command).collect();
        prop_assert_eq!(frames, expect);
    }

    #[test]
    fn oversized_arguments_are_refused_and_later_commands_still_decode(
        before in command(),
        big_len in 65usize..500,
        after in command(),
        pieces in prop::collection::vec(1usize..64, 1..8),
    ) {
        let limits = DecodeLimits { bulk_bytes_max: 64, ..DecodeLimits::default() };
        let before: Vec<Vec<u8>> = before.into_iter().map(|mut a| { a.truncate(64); a }).collect();
        let after: Vec<Vec<u8>> = after.into_iter().map(|mut a| { a.truncate(64); a }).collect();
        let mut input = encode(&before);
        input.extend(encode(&[b"SET".to_vec(), b"k".to_vec(), vec![b'v'; big_len]]));
        input.extend(encode(&after));
        let (frames, fatal) = feed(&input, &pieces, limits);
        prop_assert!(!fatal);
        prop_assert_eq!(frames.len(), 3);
        prop_assert_eq!(&frames[0], &Frame::Command(before));
        prop_assert!(matches!(frames[1], Frame::Refused(_)));
        prop_assert_eq!(&frames[2], &Frame::Command(after));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_exceed_limits(
        input in prop::collection::vec(any::<u8>(), 0..2000),
        pieces in prop::collection::vec(1usize..64, 1..8),
    ) {
        let limits = DecodeLimits { bulk_bytes_max: 32, multibulk_len_max: 8, request_bytes_max: 128, inline_bytes_max: 64 };
        let (frames, _) = feed(&input, &pieces, limits);
        for f in frames {
            if let Frame::Command(args) = f {
                prop_assert!(!args.is_empty());
                prop_assert!(args.iter().all(|a| a.len() <= 64));
            }
        }
    }

    #[test]
    fn resp_prefixed_garbage_after_a_star_is_fatal_or_waits_never_misframes(
        count in 1usize..5,
        junk in prop::collection::vec(any::<u8>(), 1..50),
    ) {
        let mut input = format!("*{count}\r\n").into_bytes();
        input.extend_from_slice(&junk);
        let (frames, _) = feed(&input, &[7], DecodeLimits::default());
        for f in frames {
            if let Frame::Command(args) = f {
                prop_assert_eq!(args.len(), count);
            }
        }
    }
}
