//! Record marking, RPC headers, credentials and the NFS argument types, on
//! arbitrary bytes: nothing may panic, and no decoded length may exceed
//! its limit.
#![no_main]

use keel_nfs::nfs3::types::{decode_fattr, decode_sattr};
use keel_nfs::rpc::message::{decode_reply, CallHeader};
use keel_nfs::rpc::{Credential, Deframer};
use keel_nfs::xdr::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut deframer = Deframer::new(64 * 1024);
    let mut rest = data;
    while !rest.is_empty() {
        // Reads of up to 97 bytes; a large record's own buffer may offer less.
        let spare = deframer.spare();
        let n = spare.len().min(rest.len()).min(97);
        spare[..n].copy_from_slice(&rest[..n]);
        deframer.filled(n);
        rest = &rest[n..];
        while let Ok(Some(record)) = deframer.next_record() {
            assert!(record.len() <= 64 * 1024);
            decode_one(&record);
        }
    }
    decode_one(data);
});

fn decode_one(message: &[u8]) {
    if let Ok((header, mut args)) = CallHeader::decode(message) {
        let _ = Credential::decode(header.cred);
        let mut a = args.clone();
        let _ = decode_sattr(&mut a);
        let _ = args.opaque(64).map(|fh| assert!(fh.len() <= 64));
        let _ = args.string(4096).map(|s| assert!(s.len() <= 4096));
    }
    let _ = decode_reply(message);
    let _ = decode_fattr(&mut Reader::new(message));
}
